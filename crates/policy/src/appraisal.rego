# confide's default appraisal policy: what verified evidence must show before the attestation
# service issues a token. Every refusal is a {rule, claim, detail} in `deny`.
#
# input: {claims: VerifiedClaims as JSON, reference: {measurements: [{kind, value}],
#         primary: the claim naming the code for this kind}, fresh: whether the evidence
#         answered a challenge of this service, profile: {insecure_allow_simulated_tee}}
package confide.appraisal

import rego.v1

# Simulated evidence proves nothing about hardware. The server's development profile, and only
# it, gives input.profile.insecure_allow_simulated_tee = true.
default insecure_allow_simulated_tee := false

insecure_allow_simulated_tee if input.profile.insecure_allow_simulated_tee == true

# Evidence that answers no challenge of this service (`POST /attest/nonce`) may be a report made
# earlier and replayed. A consortium that wants every token to stand on fresh evidence sets this
# to true. The KBS protocol always binds its own challenge, so its evidence is always fresh.
require_fresh_evidence := false

claims := input.claims

deny contains {"rule": "freshness", "claim": "nonce", "detail": "the evidence answers no challenge of this service (POST /attest/nonce), and the policy names require_fresh_evidence"} if {
	require_fresh_evidence
	not input.fresh
}

deny contains {"rule": "simulated_tee", "claim": "kind", "detail": "simulated evidence; the policy does not name insecure_allow_simulated_tee"} if {
	claims.simulated
	not insecure_allow_simulated_tee
}

deny contains {"rule": "debug", "claim": "debug", "detail": "the TEE runs with debugging enabled"} if {
	claims.debug
	not claims.simulated
}

deny contains {"rule": "tcb_status", "claim": "tcb.status", "detail": sprintf("TCB status %v", [claims.tcb.status])} if {
	claims.tcb.status in {"Revoked", "TCB_NOT_SUPPORTED"}
}

# When the consortium trusts measurements for this kind of TEE, the evidence's primary
# measurement must be one of them. Which claim is primary for each kind is given as data
# (input.reference.primary, from confide's one table of it), not restated here.
trusted := {m.value | some m in input.reference.measurements; m.kind == claims.kind}

deny contains {"rule": "measurement", "claim": name, "detail": sprintf("%v %v is not a trusted measurement", [name, value])} if {
	count(trusted) > 0
	name := input.reference.primary
	value := lower(claims.measurements[name])
	not value in trusted
}

allow if count(deny) == 0
