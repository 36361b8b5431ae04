#!/usr/bin/env bash
# Shows that `confide-workload` — the binary whose measurement a contract approves — builds
# reproducibly: the same commit and toolchain, built twice from copies in two different
# directories with two different target directories, give the same bytes. An owner can so
# rebuild it and compare the digest with the one a contract allows.
#
#   bash scripts/reproducible-workload.sh [COMMIT]      (default: HEAD)
#
# Paths are the only thing that differs between the two builds, so the build maps them away:
# the source and target directories (rustc's --remap-path-prefix, and -ffile-prefix-map for
# the C that aws-lc builds) and cargo's home. Two release builds: expect 20 minutes or more on
# two cores.
set -euo pipefail
root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
commit="$(git -C "$root" rev-parse "${1:-HEAD}")"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

build() {
  local dir="$1"
  mkdir -p "$dir/src"
  git -C "$root" archive "$commit" | tar -x -C "$dir/src"
  (
    cd "$dir/src"
    export CARGO_TARGET_DIR="$dir/target" CARGO_INCREMENTAL=0 SOURCE_DATE_EPOCH=0
    export RUSTFLAGS="--remap-path-prefix=$dir/src=/confide --remap-path-prefix=$dir/target=/target --remap-path-prefix=$cargo_home=/cargo"
    export CFLAGS="-ffile-prefix-map=$dir=/build -ffile-prefix-map=$cargo_home=/cargo"
    export CXXFLAGS="$CFLAGS"
    cargo build --quiet --locked --release -p confide-workload --bin confide-workload
  )
  sha256sum "$dir/target/release/confide-workload" | cut -d' ' -f1
}

echo "building confide-workload at $commit twice, in two directories, with:"
rustc -vV | sed 's/^/  /'
first="$(build "$work/one")"
second="$(build "$work/elsewhere/two")"
echo "first:  $first"
echo "second: $second"
if [[ "$first" != "$second" ]]; then
  echo "NOT reproducible: the two builds differ" >&2
  exit 1
fi
echo "reproducible: sha256 $first"
