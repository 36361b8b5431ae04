#!/usr/bin/env bash
# confide's main job today, on a fresh machine: two banks create identities, one encrypts a
# dataset so that only both of them can read it, the other decrypts it, and an outsider and a
# tampered copy are refused. Everything happens in a temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml" -p confide-cli
confide="${CARGO_TARGET_DIR:-$root/target}/release/confide"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

for m in bank-a bank-b outsider; do
  run "$confide" --home "$m" member init --name "$m"
  "$confide" --home "$m" member show --json > "$m.id.json"
done

{
  echo "account,counterparty,amount_eur,booked_at"
  for i in $(seq 1 20000); do
    echo "ACC$((i % 997)),ACC$(((i * 7) % 991)),$(((i * 37) % 9000 + 100)).00,2026-11-$((i % 28 + 1))"
  done
} > transactions.csv

run "$confide" encrypt --to bank-a.id.json --to bank-b.id.json --in transactions.csv --out transactions.csv.cfd
ls -l transactions.csv transactions.csv.cfd

run "$confide" --home bank-b decrypt --in transactions.csv.cfd --out decrypted.csv
cmp transactions.csv decrypted.csv && echo "bank-b recovered the dataset byte for byte"

say "$confide --home outsider decrypt --in transactions.csv.cfd --out stolen.csv"
if "$confide" --home outsider decrypt --in transactions.csv.cfd --out stolen.csv; then
  echo "BUG: an outsider decrypted the file" >&2; exit 1
fi
[ ! -e stolen.csv ] && echo "refused, and nothing was written"

cp transactions.csv.cfd tampered.cfd
printf '\x01' | dd of=tampered.cfd bs=1 seek=200000 conv=notrunc status=none
say "$confide --home bank-a decrypt --in tampered.cfd --out tampered.csv   (one byte changed)"
if "$confide" --home bank-a decrypt --in tampered.cfd --out tampered.csv; then
  echo "BUG: a tampered file decrypted" >&2; exit 1
fi
[ ! -e tampered.csv ] && echo "refused, and nothing was written"
