# A release policy a key's owner may choose: the key goes to a workload whose attestation
# token shows code the consortium trusts. The token's CPU result (its one submod) must be
# affirming, or a warning that concerns the platform only (an out-of-date TCB, or simulated
# evidence where the development profile allowed it), and in either case its executables
# must have matched a measurement the consortium trusts (trustworthiness tier 2): a TEE kind
# whose measurements the consortium has not said it trusts gets no key, whatever it runs.
#
# input: {key: {name, owner}, token: the token's claims, contract: the record of the contract
#         the workload named, or null}
package confide.release

import rego.v1

default allow := false

allow if {
	some _, sub in input.token.submods
	sub["ear.status"] in {"affirming", "warning"}
	sub["ear.trustworthiness-vector"].executables == 2
}
