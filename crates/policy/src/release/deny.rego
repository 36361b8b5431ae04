# The release policy a key gets unless its owner gives one: released to no one (default deny).
# Its owner chooses who may have it: a policy of its own, `dataset.rego` or `attested.rego`.
package confide.release

import rego.v1

default allow := false
