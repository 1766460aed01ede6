#!/usr/bin/env bash
# MeterGate fault suite: injects faults into the real gateway on real parts and accounts for every interval
# that must exist by the suite's own clock, judged by docs/test-vectors/peer_verify.py.
#   bash faults/run.sh [--ci|--full] [--only SCENARIO]... [--kills N] [--seed S] [--outage SECONDS]
#                      [--bin PATH] [--release] [--report FILE] [--keep] [--verbose]
# --ci (default): the bounded subset CI runs (3 SIGKILLs, a 12 s outage, short meter runs; about 2-3 minutes).
# --full: 1000 SIGKILLs (--kills N to change), a 120 s outage, longer meter runs and a larger config corpus.
# Needs mosquitto, mosquitto_sub, socat and python3 (scripts/apt-packages.txt), and jwcrypto in .venv
# (scripts/setup.sh; or METERGATE_PEER_PYTHON names a Python that has it). Exit 0: every scenario
# passed (or failed as recorded in EXPECTED_FAILURES); 1: a scenario failed; 2: usage.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=ci; bin=""; release=0; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ci) mode=ci ;;
    --full) mode=full ;;
    --release) release=1 ;;
    --bin) bin="$2"; shift ;;
    --bin=*) bin="${1#--bin=}" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ -z "$bin" ]; then
  config=debug; [ "$release" = 1 ] && config=release
  swift build -c "$config" --product metergate 2>&1 | grep -E "error|warning:" || true
  bin="$(swift build -c "$config" --show-bin-path)/metergate"
fi
[ -x "$bin" ] || { echo "faults/run.sh: no metergate binary at $bin" >&2; exit 2; }
exec python3 faults/faultsuite.py --bin "$bin" --mode "$mode" ${args[@]+"${args[@]}"}
