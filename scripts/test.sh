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
# The log is kept so that a failure is repeated at the end, where a truncated CI log still shows it.
log="$(mktemp --suffix=.log /tmp/metergate-test.XXXXXX)"
status=0
swift test --skip-build --no-parallel 2>&1 | tee "$log" || status=$?
# What ran and what did not: a skipped test is named with its reason, never folded into the passes.
ran=$(grep -aoE 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
skipped=$(grep -aE '^[^ ]+ Test .* skipped' "$log" || true)
count=$(printf '%s' "$skipped" | grep -c . || true)
case "$ran" in ''|*[!0-9]*) ;; *) ran=$((ran - count)) ;; esac
echo
echo "test: ${ran} tests ran, ${count} skipped$( [ -n "$skipped" ] && echo ':' || true)"
[ -n "$skipped" ] && printf '%s\n' "$skipped" | sed 's/^[^ ]* Test /  /'
if [ "$status" -ne 0 ]; then
    echo
    echo "test: FAILED (exit $status). The issues recorded, repeated from $log:"
    grep -a -A 12 -E '✘ Test .*(recorded an issue|failed)|error: |Fatal error|Crash|signal [0-9]+' "$log" | grep -av '^[◇✔] ' | head -300 || true
fi
exit "$status"
