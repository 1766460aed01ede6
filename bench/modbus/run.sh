#!/usr/bin/env bash
# Builds and runs the Modbus poll-cycle benchmark (release build). Needs socat (scripts/apt-packages.txt).
# Usage: bench/modbus/run.sh [--cycles N]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product modbus-bench 2>&1 | grep -E "error|warning:" || true
exec .build/release/modbus-bench --profiles profiles "$@"
