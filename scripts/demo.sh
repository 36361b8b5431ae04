#!/usr/bin/env bash
# confide's main job today, on a fresh machine: two banks create identities, one encrypts a
# dataset so that only both of them can read it, the other decrypts it, and an outsider and a
# tampered copy are refused. Then the check that decides whether a TEE may get the key: real
# AMD SEV-SNP and Intel TDX evidence verified against the pinned vendor roots, a one-bit change
# and simulated evidence refused. Last, the ledger: the banks found a consortium on a server,
# admit each other by vote, keep a key and a secret in the key broker (fetched by a guest over
# the KBS protocol; a non-owner refused), and audit the ledger and a receipt offline. Everything happens in a
# temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --locked --quiet --manifest-path "$root/Cargo.toml" -p confide-cli
confide="${CARGO_TARGET_DIR:-$root/target}/release/confide"
work="$(mktemp -d)"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
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

# Attestation: evidence recorded from real hardware (testdata/attestation, with provenance).
att="$root/testdata/attestation"
run "$confide" attest verify --evidence "$att/snp/S1-trustee-milan-vcek/test-report.bin" \
  --collateral "$att/snp/S1-trustee-milan-vcek/test-vcek.der" --at 2025-06-01T00:00:00Z
run "$confide" attest verify --evidence "$att/tdx/T1-dcap-qvl-v4/tdx_quote" \
  --collateral "$att/tdx/T1-dcap-qvl-v4/tdx_quote_collateral.json" --at 2025-06-20T10:32:27Z

cp "$att/snp/S1-trustee-milan-vcek/test-report.bin" tampered-report.bin
printf '\x01' | dd of=tampered-report.bin bs=1 seek=144 conv=notrunc status=none
say "$confide attest verify --evidence tampered-report.bin …   (one bit of the measurement changed)"
if "$confide" attest verify --evidence tampered-report.bin \
  --collateral "$att/snp/S1-trustee-milan-vcek/test-vcek.der" --at 2025-06-01T00:00:00Z; then
  echo "BUG: a tampered report verified" >&2; exit 1
fi

"$confide" attest collect --nonce 00112233 --sim > sim.json 2>/dev/null
say "$confide attest verify --evidence sim.json   (simulated evidence, no insecure switch)"
if "$confide" attest verify --evidence sim.json; then
  echo "BUG: simulated evidence verified without the insecure switch" >&2; exit 1
fi

# The ledger and governance, on a server on loopback.
say "$confide serve --dev --data data --listen 127.0.0.1:0 &"
"$confide" serve --dev --data data --listen 127.0.0.1:0 > serve.out 2> serve.err &
server_pid=$!
for _ in $(seq 50); do grep -q listening serve.out 2>/dev/null && break; sleep 0.1; done
cat serve.err
export CONFIDE_SERVER="$(sed -n 's/^listening on //p' serve.out)"
run "$confide" --home bank-a gov found
run "$confide" --home bank-a gov propose --add-member bank-b.id.json
proposal="$("$confide" --home bank-a gov list --json | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' | head -n 1)"
run "$confide" --home bank-a gov vote "$proposal" --approve
run "$confide" --home bank-b gov members

# The key broker: bank-a keeps a key for workloads running code the consortium trusts, and a
# secret that a guest speaking the Trustee KBS protocol fetches; Trustee's sample evidence
# measures nothing, so that secret's policy is the development profile's simulated one.
run "$confide" --home bank-a kms create dek-1 --any-attested-tee
printf 'the consortium API token' > secret.txt
run "$confide" --home bank-a kbs put-resource consortium/token/api secret.txt --insecure-simulated-tee
say "$confide kbs get-resource consortium/token/api --insecure-sample"
"$confide" kbs get-resource consortium/token/api --insecure-sample 2>/dev/null; echo
say "$confide --home bank-b kms rotate dek-1   (bank-b does not own dek-1)"
if "$confide" --home bank-b kms rotate dek-1; then
  echo "BUG: a non-owner rotated a key" >&2; exit 1
fi
run "$confide" ledger tail
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
run "$confide" ledger verify data/ledger --key data/ledger/ledger.pub
"$confide" ledger get data/ledger 2 --out ballot.cose
"$confide" ledger get data/ledger 2 --receipt --out ballot.receipt
run "$confide" ledger verify-receipt ballot.receipt --entry ballot.cose --key data/ledger/ledger.pub
