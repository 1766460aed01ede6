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
# Two steps, each a `swift test` run of its own: the unit and integration tests, then the fault suite's CI
# subset (FaultSuiteTests: the real gateway under injected faults, every reading accounted for), so the CI log
# shows each step's outcome and time. Tests run one after another inside each step: several suites start
# brokers and servers and call blocking helpers (child processes) that would starve a 2-core cooperative pool
# run in parallel (docs/bench-log/2026-12-test-time.md).
# Each step's log is kept so that a failure is repeated at the end, where a truncated CI log still shows it.
status=0
ran=0
skipped=""
logs=()
step() {
    local name="$1"; shift
    local log
    log="$(mktemp --suffix=.log /tmp/metergate-test.XXXXXX)"
    logs+=("$log")
    local started=$SECONDS
    echo "test: step '$name'"
    local rc=0
    swift test --skip-build --no-parallel "$@" 2>&1 | tee "$log" || rc=$?
    echo "test: step '$name' took $((SECONDS - started)) s, exit $rc"
    local count
    count=$(grep -aoE 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
    ran=$((ran + count))
    skipped+="$(grep -aE '^[^ ]+ Test .* skipped' "$log" || true)"$'\n'
    [ "$rc" -eq 0 ] || status=$rc
}
step "unit and integration tests" --skip FaultSuiteTests
step "fault suite (CI subset)" --filter FaultSuiteTests
# What ran and what did not: a skipped test is named with its reason, never folded into the passes.
skipped="$(printf '%s' "$skipped" | sed '/^$/d')"
count=$(printf '%s' "$skipped" | grep -c . || true)
ran=$((ran - count))
echo
echo "test: ${ran} tests ran, ${count} skipped$( [ -n "$skipped" ] && echo ':' || true)"
[ -n "$skipped" ] && printf '%s\n' "$skipped" | sed 's/^[^ ]* Test /  /'
if [ "$status" -ne 0 ]; then
    echo
    echo "test: FAILED (exit $status). The issues recorded, repeated from ${logs[*]}:"
    cat "${logs[@]}" | grep -a -A 12 -E '✘ Test .*(recorded an issue|failed)|error: |Fatal error|Crash|signal [0-9]+' | grep -av '^[◇✔] ' | head -300 || true
fi
exit "$status"
