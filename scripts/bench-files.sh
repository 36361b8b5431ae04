#!/usr/bin/env bash
# Whole-process figures for the file commands, each against a peer in the same run:
#   1. `confide encrypt` and `confide decrypt` against `age` (Debian's package) on the same 1 GiB
#      file of random bytes, timed by hyperfine (median of several runs), both to and from
#      files in RAM (/dev/shm) so that the disk does not decide the result, and the previous
#      outputs deleted before each run so that neither tool pays for freeing them. confide syncs its
#      output before renaming it into place; on tmpfs that sync costs nothing, as age does none.
#   2. confide's peak resident memory (GNU time's maximum RSS) while decrypting a 4 GiB file
#      to a file on disk, next to the same figure for `cat` of that file as a floor.
#
# Environment: BENCH_SIZE (bytes, default 1 GiB), BIG_SIZE (default 4 GiB), RUNS (default 5),
# FAST_DIR (default /dev/shm), DISK_DIR (default /tmp).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size=${BENCH_SIZE:-$((1 << 30))}
big=${BIG_SIZE:-$((4 << 30))}
runs=${RUNS:-5}

need=()
command -v age >/dev/null || need+=(age)
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml" -p confide-cli
confide="${CARGO_TARGET_DIR:-$root/target}/release/confide"

fast="$(mktemp -d "${FAST_DIR:-/dev/shm}/confide-bench.XXXXXX")"
disk="$(mktemp -d "${DISK_DIR:-/tmp}/confide-bench.XXXXXX")"
trap 'rm -rf "$fast" "$disk"' EXIT
cd "$fast"

"$confide" --home home member init --name bench >/dev/null
"$confide" --home home member show --json >id.json
age-keygen -o age.key 2>/dev/null
recipient=$(age-keygen -y age.key)
head -c "$size" /dev/urandom >plain

echo "== encrypt $size bytes (median of $runs runs)"
hyperfine --style basic --warmup 1 --runs "$runs" --export-json enc.json \
  --prepare "rm -f c.cfd" -n "confide encrypt" "$confide encrypt --to id.json --in plain --out c.cfd" \
  --prepare "rm -f c.age" -n "age encrypt" "age -r $recipient -o c.age plain"
echo "== decrypt $size bytes"
hyperfine --style basic --warmup 1 --runs "$runs" --export-json dec.json \
  --prepare "rm -f p.cfd" -n "confide decrypt" "$confide --home home decrypt --in c.cfd --out p.cfd" \
  --prepare "rm -f p.age" -n "age decrypt" "age -d -i age.key -o p.age c.age"
cmp plain p.cfd && cmp plain p.age

echo "== peak memory decrypting $big bytes (to $disk)"
head -c "$big" /dev/zero | "$confide" encrypt --to id.json --out "$disk/big.cfd"
/usr/bin/time -f '%M' -o rss.confide "$confide" --home home decrypt --in "$disk/big.cfd" --out "$disk/big.out"
/usr/bin/time -f '%M' -o rss.cat cat "$disk/big.cfd" >/dev/null
[ "$(stat -c %s "$disk/big.out")" = "$big" ]

python3 - "$size" "$big" <<'EOF'
import json, sys
size, big = int(sys.argv[1]), int(sys.argv[2])
def load(path):
    return {r["command"]: r for r in json.load(open(path))["results"]}
enc, dec = load("enc.json"), load("dec.json")
gib = size / 2**30
print(f"\nfigures ({gib:.2f} GiB file, one run of this script):")
for what, m in (("encrypt", enc), ("decrypt", dec)):
    c, a = m[f"confide {what}"], m[f"age {what}"]
    print(f"  {what}: median confide {c['median']:.3f} s, age {a['median']:.3f} s -> {a['median'] / c['median']:.2f}x;"
          f" fastest run {c['min']:.3f} s vs {a['min']:.3f} s -> {a['min'] / c['min']:.2f}x;"
          f" user CPU {c['user']:.3f} s vs {a['user']:.3f} s -> {a['user'] / c['user']:.2f}x")
rss = int(open("rss.confide").read().split()[-1])
cat = int(open("rss.cat").read().split()[-1])
print(f"  peak RSS decrypting {big / 2**30:.0f} GiB: confide {rss / 1024:.1f} MiB (cat of the same file: {cat / 1024:.1f} MiB)")
EOF
