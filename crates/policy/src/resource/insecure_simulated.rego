# A resource policy for development only: the resource goes to a workload whose token stood on
# simulated evidence (confide's `sim`, or Trustee's `sample`, which measures nothing), which
# the attestation service accepts only in the development profile. A sealed server issues no
# such token, so there this policy gives nothing; it is for trying the KBS protocol and for
# benchmarks, never for a real secret.
#
# input: {resource: {repo, type, tag, path, owner}, token: the token's claims}
package confide.resource

import rego.v1

default allow := false

allow if {
	input.token["confide.simulated"] == true
	some _, sub in input.token.submods
	sub["ear.status"] == "warning"
}
