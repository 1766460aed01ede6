#!/usr/bin/env bash
# Builds release, prints the signing benchmark table, then times `metergate verify` end to end on
# N JWS/EdDSA records against the raw swift-crypto rates printed above (same run, same machine).
#   bash bench/signing/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-50000}"
swift build -c release --product signing-bench >/dev/null
swift build -c release --product metergate >/dev/null
bin="$(swift build -c release --show-bin-path)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$bin/signing-bench" --records "$n" --write-records "$tmp/records.txt"
start=$(date +%s.%N)
"$bin/metergate" verify --key "$tmp/records.txt.jwk" "$tmp/records.txt" > "$tmp/report.txt"
end=$(date +%s.%N)
tail -1 "$tmp/report.txt"
awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "metergate verify end to end (JWS EdDSA, %d records, incl. process start and file read): %.0f records/s\n", n, n / (e - s) }'
