# The release policy of a dataset's key: only to a workload running an approved contract that
# reads the dataset, whose attestation result is affirming or a warning about the platform.
# Which contract reads which dataset's key, whether the key's holder is the dataset's owner,
# and whether the workload's measurement is one the contract allows (the contract's
# measurements, which every owner approved, are this key's reference values) are governance's
# rules (`Governance::may_release`), checked by the key broker before this policy runs; the
# broker then gives the contract as `input.contract`, and null when none was named.
#
# input: {key: {name, owner}, token: the token's claims, contract: its record or null}
package confide.release

import rego.v1

default allow := false

allow if {
	input.contract.state == "approved"
	some _, sub in input.token.submods
	sub["ear.status"] in {"affirming", "warning"}
}
