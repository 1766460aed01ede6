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
# Wall clock and CPU time (user + sys, all threads) of the whole command.
TIMEFORMAT='%R %U %S'
times=$( { time "$bin/metergate" verify --key "$tmp/records.txt.jwk" "$tmp/records.txt" > "$tmp/report.txt"; } 2>&1 )
tail -1 "$tmp/report.txt"
read -r wall user sys <<< "$times"
awk -v n="$n" -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN {
  printf "metergate verify end to end (JWS EdDSA, %d records, process start and file read included):\n", n
  printf "  %.0f records/s wall clock, %.0f records per CPU-second (%.2f s wall, %.2f s CPU)\n", n / w, n / (u + s), w, u + s }'
