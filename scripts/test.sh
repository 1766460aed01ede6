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
# Five steps run side by side, each a `swift test` process of its own with its tests one after another: the
# fault suite's CI subset in two parts (FaultSuiteTests: the real gateway under injected faults, every reading
# accounted for), the ledger tests, the command-line tests, and the rest. The tests spend most of their time
# waiting on child processes, brokers, servers and meter intervals, so five processes share two cores well.
# Inside one process, tests run serially because several call blocking helpers that would starve a 2-core
# cooperative pool (docs/bench-log/2026-12-test-time.md). Each step hands out loopback ports from a range of its own.
# Each step's log is printed whole when the step ends (never interleaved), and a failure is repeated at the end,
# where a truncated CI log still shows it.
status=0
ran=0
skipped=""
names=(); logs=(); pids=()
start_step() {
    local name="$1" ports="$2"; shift 2
    local log
    log="$(mktemp --suffix=.log /tmp/metergate-test.XXXXXX)"
    names+=("$name"); logs+=("$log")
    (
        started=$SECONDS
        rc=0
        # --ignore-lock: the steps only run the one build made above, side by side; SwiftPM's lock would make them
        # wait for each other.
        METERGATE_TEST_PORTS="$ports" swift test --skip-build --ignore-lock --no-parallel "$@" >"$log" 2>&1 || rc=$?
        echo "test: step '$name' took $((SECONDS - started)) s, exit $rc" >>"$log"
        exit "$rc"
    ) &
    pids+=($!)
    echo "test: step '$name' started"
    # SwiftPM reads its build database before it starts the test binary, and a second reader at that moment
    # fails ("database is locked"): the next step starts once this one's test binary runs.
    local waited=0
    while [ "$waited" -lt 240 ] && kill -0 "$!" 2>/dev/null && ! test_binary_runs_under "$!"; do
        sleep 0.25; waited=$((waited + 1))
    done
}
# Whether the subshell $1's `swift test` has started its test binary.
test_binary_runs_under() {
    local swiftpm
    for swiftpm in $(pgrep -P "$1"); do
        pgrep -P "$swiftpm" -f 'PackageTests.xctest' >/dev/null && return 0
    done
    return 1
}
started_all=$SECONDS
start_step "fault suite (CI subset), part 1" 20000-21999 --filter FaultSuiteTests --skip 'FaultSuiteTests/.*Part2'
start_step "fault suite (CI subset), part 2" 22000-23999 --filter 'FaultSuiteTests/.*Part2'
start_step "ledger tests" 24000-26499 --filter '^LedgerTests\.'
start_step "command-line tests" 26500-28999 --filter '^CLITests\.' --skip FaultSuiteTests
start_step "unit and integration tests" 29000-32767 --skip '^LedgerTests\.' --skip '^CLITests\.'
running=("${pids[@]}")
while [ "${#running[@]}" -gt 0 ]; do
    finished=""
    rc=0
    wait -n -p finished "${running[@]}" || rc=$?
    still=()
    for pid in "${running[@]}"; do [ "$pid" = "$finished" ] || still+=("$pid"); done
    running=("${still[@]}")
    for i in "${!pids[@]}"; do
        [ "${pids[$i]}" = "$finished" ] || continue
        log="${logs[$i]}"
        echo
        echo "test: ===== step '${names[$i]}' ====="
        cat "$log"
        count=$(grep -aoE 'Test run with [0-9]+ tests?' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
        ran=$((ran + count))
        skipped+="$(grep -aE '^[^ ]+ Test .* skipped' "$log" || true)"$'\n'
        [ "$rc" -eq 0 ] || status=$rc
    done
done
echo "test: all steps took $((SECONDS - started_all)) s"
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
