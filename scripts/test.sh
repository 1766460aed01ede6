#!/usr/bin/env bash
# The whole MeterGate test suite on a fresh Debian 12 machine: installs what is needed (scripts/setup.sh),
# builds, and runs every test. The tests start their own mosquitto brokers, socat pty pairs and simulators.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: building (debug, with tests)"
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Applying|Wrapping)' || true
# grep hides progress lines only; a failed build still fails here:
swift build --build-tests >/dev/null
echo "test: running"
# Parallel test execution is off: several suites start brokers and servers and time out-of-process peers;
# on a 2-core machine running them one after another is both faster and steadier.
swift test --skip-build --no-parallel
