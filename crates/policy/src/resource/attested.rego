# A resource policy a resource's owner may choose: as `release/attested.rego` for keys, the
# token's CPU result is affirming or a platform warning, and its executables matched a
# measurement the consortium trusts.
#
# input: {resource: {repo, type, tag, path, owner}, token: the token's claims}
package confide.resource

import rego.v1

default allow := false

allow if {
	some _, sub in input.token.submods
	sub["ear.status"] in {"affirming", "warning"}
	sub["ear.trustworthiness-vector"].executables == 2
}
