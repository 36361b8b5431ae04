# The resource policy a KBS resource gets unless its owner gives one: given to no one
# (default deny), until its owner sets one such as `attested.rego`.
package confide.resource

import rego.v1

default allow := false
