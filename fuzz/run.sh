#!/usr/bin/env bash
# Coverage-guided fuzzing of MeterGate with libFuzzer (Swift's -sanitize=fuzzer, with AddressSanitizer):
# the Modbus register decoders, the config parser and the record reader behind `metergate verify`.
#
#   bash fuzz/run.sh [--seconds N] [TARGET...]      targets: modbus config verify replay (default: all)
#
# Each target starts from its seeds (written by the binary from profiles/, examples/, boards/ and
# docs/test-vectors/) plus fuzz/corpus/TARGET/ (kept findings), and runs N seconds (default 60). New inputs
# go to .build/fuzz-corpus/TARGET/ (reused by the next run); a crash is saved as .build/fuzz-artifacts/TARGET-crash-*
# and the script exits 1. After fixing the bug, copy the input into fuzz/corpus/TARGET/ (SeededFuzzTests
# replays that folder on every test run) and add a unit test next to the fixed code.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(modbus config verify replay)

scratch=.build/fuzz
echo "building metergate-fuzz with -sanitize=fuzzer,address (scratch path $scratch)"
mkdir -p .build/fuzz-artifacts
if ! swift build -c debug --scratch-path "$scratch" --product metergate-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING >.build/fuzz-artifacts/build.log 2>&1; then
    grep -E "error" .build/fuzz-artifacts/build.log | head -20
    echo "the build failed (log .build/fuzz-artifacts/build.log)"
    exit 2
fi
bin="$scratch/debug/metergate-fuzz"

# Swift's runtime keeps metadata caches for the life of the process; LeakSanitizer would report them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
status=0
for t in "${targets[@]}"; do
    work=".build/fuzz-corpus/$t"
    mkdir -p "$work" .build/fuzz-artifacts "fuzz/corpus/$t"
    METERGATE_FUZZ_TARGET="$t" METERGATE_FUZZ_SEEDS_TO="$work" "$bin" >/dev/null 2>&1 || true
    echo "== $t: $(ls "$work" | wc -l) corpus inputs, $(ls "fuzz/corpus/$t" | wc -l) kept, ${seconds} s"
    log=".build/fuzz-artifacts/$t.log"
    if METERGATE_FUZZ_TARGET="$t" "$bin" "$work" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=4096 -max_len=8192 -print_final_stats=1 -artifact_prefix=".build/fuzz-artifacts/$t-" >"$log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ +DONE" "$log" | tr '\n' ' '; echo
        echo "   coverage: $(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
    else
        status=1
        echo "   FOUND A CRASH (log $log):"
        grep -E "Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer|deadly signal|Test unit written|SUMMARY" "$log" | head -8 | sed 's/^/   /'
    fi
done
exit $status
