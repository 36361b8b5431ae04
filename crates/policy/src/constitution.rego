# confide's default constitution: decides, after each ballot, whether a proposal is accepted,
# rejected, or still open.
#
# - Anything that grants access to a member's data (registering their dataset, appending to it,
#   approving a contract over it, setting its privacy budget) needs that member's approval; any
#   one owner of a contract's data can revoke it.
# - Everything else (membership, the constitution, policies, trusted measurements) needs a
#   majority of the members.
#
# Whatever a constitution says, the governance code (gov.rs, "consent is code") also holds back
# an action that grants or widens access to a member's data until that member voted yes, and a
# new constitution until every member did.
#
# input: {proposal: {id, proposer, actions}, ballots: {member: bool}, members: [member],
#         datasets: {id: {owner}}, contracts: {id: {datasets: [id]}}}
package confide.constitution

import rego.v1

members := {m | some m in input.members}

yes := {m | some m, v in input.ballots; v == true; m in members}

no := {m | some m, v in input.ballots; v == false; m in members}

data_actions := {"append_dataset", "approve_contract", "register_dataset", "revoke_contract", "set_budget"}

owners contains owner if {
	some a in input.proposal.actions
	a.action == "approve_contract"
	some d in a.datasets
	owner := input.datasets[d].owner
}

owners contains a.owner if {
	some a in input.proposal.actions
	a.action == "register_dataset"
}

# A dataset's privacy budget is its owner's alone to set: every owner whose budget a proposal
# sets must approve it.
owners contains owner if {
	some a in input.proposal.actions
	a.action == "set_budget"
	owner := input.datasets[a.dataset].owner
}

# A version appended to a dataset is its owner's alone to add.
owners contains owner if {
	some a in input.proposal.actions
	a.action == "append_dataset"
	owner := input.datasets[a.dataset].owner
}

revocation if {
	some a in input.proposal.actions
	a.action == "revoke_contract"
}

revokers contains owner if {
	some a in input.proposal.actions
	a.action == "revoke_contract"
	some d in input.contracts[a.id].datasets
	owner := input.datasets[d].owner
}

needs_majority if {
	some a in input.proposal.actions
	not a.action in data_actions
}

majority_missing if {
	needs_majority
	count(yes) * 2 <= count(members)
}

revocation_missing if {
	revocation
	count(revokers & yes) == 0
}

rejected if {
	some o in owners
	o in no
}

rejected if {
	needs_majority
	count(no) * 2 >= count(members)
}

rejected if {
	revocation
	count(revokers - no) == 0
}

accepted if {
	count(owners - yes) == 0
	not majority_missing
	not revocation_missing
}

decision := "rejected" if {
	rejected
} else := "accepted" if {
	accepted
} else := "open"
