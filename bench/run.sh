#!/usr/bin/env bash
# Every MeterGate benchmark in one command: builds release, runs the per-area benchmarks (signing, Modbus,
# outbox, accounting), the whole gateway end to end in one process (pinned to CPU 0 with taskset), the
# gateway footprint, its polling cost against a C libmodbus loop, its CPU per reading against the floors of
# its parts and a Python reference, the installed binary's size, and its disk writes (also at a 15 min
# interval, state saved every 10 s and 1 min: about 4 minutes more), prints one table of key figures (each next to its limit or reference as a ratio measured
# in the same run), then each benchmark's own table, and writes all of it to a file. Figures are comparable
# only within one run on one machine.
#   bash bench/run.sh [--quick] [--out FILE]
#     --quick   smaller runs (a 100k backlog instead of 1M, 100 end-to-end intervals instead of 300,
#               a 60 s footprint window instead of 600 s, the footprint target's 10 minutes)
#     --out     where to write the results (default .build/bench/results-<UTC time>.txt)
#     --from    re-render the table from the raw outputs in DIR (signing.txt, modbus.txt, ...) without running
#     --update-doc  paste this run's table and targets into BENCHMARKS.md (bench/render_doc.py)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; out=""; from=""; update_doc=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    --from) from="$2"; shift ;;   # re-render the table from the raw outputs kept in DIR (name.txt each)
    --update-doc) update_doc=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then backlog=100000; records=20000; verify_n=20000; fp_seconds=60; cycles=3; intervals=100; fleet_gateways=50; poll_seconds=30; flash_kept=300
else backlog=1000000; records=50000; verify_n=50000; fp_seconds=600; cycles=5; intervals=300; fleet_gateways=100; poll_seconds=60; flash_kept=2880; fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="${out:-.build/bench/results-$stamp.txt}"
mkdir -p "$(dirname "$out")"
if [ -n "$from" ]; then
  raw="$from"
else
  raw=$(mktemp -d)
  trap 'rm -rf "$raw"' EXIT
  # What the benchmarks need (mosquitto, PostgreSQL, libmodbus, the Python peers in .venv: pymodbus for polling).
  bash scripts/setup.sh >&2
  echo "building release (swift build -c release)…" >&2
  swift build -c release 2>&1 | grep -E "error|warning:" >&2 || true
  bin="$(swift build -c release --show-bin-path)"
  for p in metergate signing-bench modbus-bench OutboxBench pipeline-bench fleet-load; do
    [ -x "$bin/$p" ] || { echo "bench/run.sh: $bin/$p was not built" >&2; exit 1; }
  done

  # Runs one benchmark, showing its output as it comes and keeping it for the summary.
  run() {
    local name=$1; shift
    echo "== $name: $*" >&2
    local t0=$SECONDS
    if ! "$@" > "$raw/$name.txt" 2>&1; then echo "   $name FAILED; its output:" >&2; cat "$raw/$name.txt" >&2; exit 1; fi
    echo "   $name: $((SECONDS - t0)) s" >&2
  }
  run signing bash bench/signing/run.sh "$verify_n"
  run modbus "$bin/modbus-bench" --profiles profiles --cycles "$cycles"
  run outbox "$bin/OutboxBench" --backlog "$backlog" --records "$records" --window 256 --size 512
  run accounting bash bench/accounting/run.sh
  run ledger python3 bench/ledger/fleet_ingest.py --bin "$bin" --gateways "$fleet_gateways"
  # One core: the benchmark and its mosquitto (a child, so pinned alike) share CPU 0.
  pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)
  run pipeline "${pin[@]}" "$bin/pipeline-bench" --meters 100 --intervals "$intervals"
  # The footprint is measured on the binary as installed (scripts/install.sh): Swift runtime linked statically.
  # Built in a scratch path of its own: in the same one, the two builds undid each other (every module
  # rebuilt at each switch).
  echo "building metergate with the static Swift runtime, as installed…" >&2
  static=(-c release --static-swift-stdlib --scratch-path .build/static)
  bash scripts/fresh-scratch.sh .build/static
  swift build "${static[@]}" --product metergate 2>&1 | grep -E "error|warning:" >&2 || true
  sbin="$(swift build "${static[@]}" --show-bin-path)"
  run footprint python3 bench/footprint/footprint.py --bin "$sbin/metergate" --meters 100 --seconds "$fp_seconds"
  # Polling alone against a plain C libmodbus loop making the same requests to the same pymodbus servers.
  run polling python3 bench/polling/polling.py --bin "$sbin" --meters 100 --seconds "$poll_seconds"
  # 1,000 meters on ten servers, a 15 s interval: every record of the window measured, and the CPU share.
  run polling-1000 python3 bench/polling/polling.py --bin "$sbin" --meters 1000 --ports 10 --interval 15s --no-reference --seconds "$poll_seconds"
  # CPU per reading on the whole job (1 s interval, so every poll closes one) against the floors of its parts and a
  # Python reference making the same requests to the same servers; the floors from this run's pipeline and signing.
  run perreading python3 bench/perreading/perreading.py --bin "$sbin" --seconds "$poll_seconds" --floors "$raw"
  # The binary as scripts/install.sh installs it: static Swift runtime, stripped.
  strip -o "$raw/metergate.stripped" "$sbin/metergate"
  echo "binary metergate, static Swift runtime, stripped: $(stat -c %s "$raw/metergate.stripped") bytes" > "$raw/binary.txt"
  rm -f "$raw/metergate.stripped"
  # Flash wear at the usual 15 min settlement, where the open intervals' state saves are most of the writes:
  # the default outbox.state_save (10 s, six saves in the window) and 1m (three saves).
  run disk-10s python3 bench/footprint/footprint.py --bin "$sbin/metergate" --meters 100 --interval 15m --seconds 60
  run disk-1m python3 bench/footprint/footprint.py --bin "$sbin/metergate" --meters 100 --interval 15m --seconds 180 --state-save 1m
  # The records' own cost: a 1 min interval closes 100 records a minute; scaled to the 9,600 a day of 15 min.
  run disk-records python3 bench/footprint/footprint.py --bin "$sbin/metergate" --meters 100 --interval 1m --seconds 180
  # The outbox alone in its steady state: already holding the default 30 days of 100 meters at 15 min (2,880 intervals).
  run flash "$bin/OutboxBench" --flash-kept "$flash_kept" --flash-intervals 100
fi

# Key figures: area, figure, measured, reference, ratio.
summary() {
  local cpu cores
  cores=$(nproc); cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  # The run's own header (when and what it measured) is kept with its raw outputs: a re-render names the run.
  if [ ! -f "$raw/header.txt" ]; then
    { echo "MeterGate benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $cores cores ($cpu), $(swift --version 2>/dev/null | head -1 | sed 's/.*version \([0-9.]*\).*/Swift \1/')"
      echo "git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified)'); backlog $backlog, footprint window $fp_seconds s"; } > "$raw/header.txt"
  fi
  cat "$raw/header.txt"
  echo
  printf '%-11s %-58s %16s %26s %7s\n' area figure measured reference ratio
  [ -f "$raw/signing.txt" ] && awk -v OFS='\t' '
    /^JWS EdDSA  / && !s1 { s1=1; printf "%-11s %-58s %16s %26s %7s\n", "signing", "JWS EdDSA records/CPU-s vs swift-crypto raw Ed25519 sign", $3, $4 " raw", $5 }
    /^JWS ES256  / && !s2 { s2=1; printf "%-11s %-58s %16s %26s %7s\n", "signing", "JWS ES256 records/CPU-s vs swift-crypto raw P-256 sign", $3, $4 " raw", $5 }
    /^OCMF ES256  / && !s3 { s3=1; printf "%-11s %-58s %16s %26s %7s\n", "signing", "OCMF ES256 records/CPU-s vs raw P-256 sign", $3, $4 " raw", $5 }
    /swift-crypto raw verify\/CPU-s/ { gsub(",", "", $5); edv=$5 }
    /records\/s wall clock, / { w=$1; c=$5 }
    END { if (w) printf "%-11s %-58s %16s %26s %7.2f\n", "verify", "metergate verify end to end, records per CPU-s (JWS EdDSA)", c, edv " raw Ed25519 verify", c/edv }
  ' "$raw/signing.txt"
  [ -f "$raw/modbus.txt" ] && awk '
    /^Modbus RTU at/ { baud=$4; paced = /paced link/ }
    baud && !paced && NF==8 && $4+0>0 { if ($4+0>worst[baud]) { worst[baud]=$4+0; wp[baud]=$1 }; if ($7+0>nworst[baud]) nworst[baud]=$7+0 }
    baud && paced && NF==4 && $4+0>0 { if ($4+0>pworst[baud]) { pworst[baud]=$4+0; pp[baud]=$1 } }
    /request ratio/ { reqs=1; next }
    reqs && NF==7 { r=$7; sub("x","",r); if (min=="" || r+0<min) min=r+0; if (r+0>max) max=r+0 }
    /^$/ { reqs=0 }
    END {
      printf "%-11s %-58s %16s %26s %7s\n", "modbus", "requests per cycle: one-per-value / coalesced plan", sprintf("%.1fx-%.1fx", min, max), "(fewer is better)", ""
      for (b in worst) printf "%-11s %-58s %16s %26s %7.2f\n", "modbus", "RTU " b " baud on an unpaced pty: software overhead, cycle / modelled wire time (" wp[b] ")", "", "target <= 1.20", worst[b]
      for (b in pworst) printf "%-11s %-58s %16s %26s %7.2f\n", "modbus", "RTU " b " baud over a link paced at the baud rate: worst cycle / wire time (" pp[b] ")", "", "target <= 1.20", pworst[b]
    }
  ' "$raw/modbus.txt"
  [ -f "$raw/outbox.txt" ] && awk '
    function paren(x) { gsub(/[()]/, "", x); return x }
    /^baseline/ { base=$(NF-2) }
    /^append +1 record/ { printf "%-11s %-58s %16s %26s %7s\n", "outbox", "append, 1 record per fsynced transaction (records/s)", $(NF-2), base " mosquitto loop", paren($NF) }
    /^append +100 records/ { printf "%-11s %-58s %16s %26s %7s\n", "outbox", "append, 100 records per transaction (records/s)", $(NF-2), base " mosquitto loop", paren($NF) }
    /^e2e/ { printf "%-11s %-58s %16s %26s %7s\n", "outbox", "append + publish QoS 1 + PUBACK + subscriber (records/s)", $(NF-2), base " mosquitto loop", paren($NF) }
    /^drain/ && /PUBACK only/ { r=$0; sub(/.*subscriber: */, "", r); split(r, a, " "); printf "%-11s %-58s %16s %26s %7.2f\n", "outbox", "drain of " $2 " pending, PUBACK only (records/s)", a[1], "target 25000", a[1]/25000 }
    /^drain/ && !/PUBACK only/ { n++; if (n==2) printf "%-11s %-58s %16s %26s %7.2f\n", "outbox", "drain of " $2 " pending to a subscriber (records/s)", $5, "target 25000", $5/25000 }
    /^peak RSS while draining/ { printf "%-11s %-58s %16s %26s %7s\n", "outbox", "peak RSS draining the full backlog vs a tenth of it", "", "flat = 1.00", $NF }
  ' "$raw/outbox.txt"
  [ -f "$raw/pipeline.txt" ] && awk '
    / (met|NOT met)$/ && ($1 == "EdDSA," || $1 == "ES256,") {
      alg = substr($1, 1, length($1) - 1); curve = alg == "EdDSA" ? "Ed25519" : "P-256"
      printf "%-11s %-58s %16s %26s %7s\n", "gateway", "end-to-end readings/CPU-s (" alg ", self-check " $2 ")", $6, $7 " raw " curve, $8
    }
    / (within reach|out of reach)$/ && ($1 == "EdDSA" || $1 == "ES256") && NF == 10 {
      printf "%-11s %-58s %16s %26s %7s\n", "gateway", "ratio ceiling (" $1 "): sign + build " $4 " + store " $5 " + send " $6 " µs", "", "was 0.60 (withdrawn)", $7
    }
    # "<alg>, <on|off> <ratio> <ceiling> <share> of the ceiling": the end-to-end ratio as a share of the ceiling.
    / of the ceiling$/ && ($1 == "EdDSA," || $1 == "ES256,") {
      alg = substr($1, 1, length($1) - 1)
      printf "%-11s %-58s %16s %26s %7s\n", "gateway", "end to end / ceiling (" alg ", self-check " $2 ")", $3 " / " $4, "no target", $5
    }
    # The ceilings under a contract change: "<alg> <change words> <stored> <sent> <ceiling> within|out of reach".
    / (within reach|out of reach)$/ && ($1 == "EdDSA" || $1 == "ES256") && NF > 10 {
      last = $NF == "reach" && $(NF-2) == "out" ? NF - 3 : NF - 2
      change = $2; for (i = 3; i <= last - 3; i++) change = change " " $i
      printf "%-11s %-58s %16s %26s %7s\n", "gateway", "ceiling (" $1 ") if " change ", store+send µs", $(last-2) "+" $(last-1), "was 0.60 (withdrawn)", $last
    }
  ' "$raw/pipeline.txt"
  [ -f "$raw/ledger.txt" ] && awk '
    /^ingest / {
      store = $2 == "sqlite" ? "SQLite" : "PostgreSQL"; n = substr($3, 2, 1) + 0; mode = $4; sub(/:$/, "", mode)
      for (i = 1; i <= NF; i++) {
        if ($(i+1) == "records/s;") rate = $i
        if ($(i+1) == "records/CPU-s") per = $i
        if ($i == "raw" && $(i-1) == "of") raw = $(i+1)
      }
      label = "ingest " mode ", " store ", " n " process" (n > 1 ? "es" : "") ": records/ledger CPU-s"
      ref = store == "SQLite" ? raw " raw Ed25519 verify" : "target 0.6 of raw " raw
      printf "%-11s %-58s %16s %26s %7.2f\n", "ledger", label, per, ref, per/raw
      if (store == "SQLite") printf "%-11s %-58s %16s %26s %7s\n", "ledger", "ingest " mode " rate, SQLite, 1 process (records/s)", rate, "", ""
      if (store == "PostgreSQL" && n == 1) one[mode] = rate
      if (store == "PostgreSQL" && n == 2) printf "%-11s %-58s %16s %26s %7.2f\n", "ledger", "ingest " mode " rate, 2 processes vs 1, one PostgreSQL (records/s)", rate, "target 1.6x " one[mode] "/s", rate/one[mode]
    }
  ' "$raw/ledger.txt"
  [ -f "$raw/accounting.txt" ] && awk '
    /^counter sample:/ { printf "%-11s %-58s %16s %26s %7s\n", "accounting", "one counter sample (ns)", $3, "", "" }
    /^state save/ { printf "%-11s %-58s %16s %26s %7s\n", "accounting", "one state save, the shipped jsonBytes (ns)", $4, "", "" }
    /^sources one core keeps up/ { printf "%-11s %-58s %16s %26s %7s\n", "accounting", "sources one core keeps up with at 1 Hz, saving every sample", $NF, "", "" }
  ' "$raw/accounting.txt"
  [ -f "$raw/footprint.txt" ] && awk '
    function bare(x) { gsub(/[()]/, "", x); return x }
    /^cpu / { printf "%-11s %-58s %16s %26s %7s\n", "footprint", "metergate run, 100 meters at 1 Hz: CPU share of one core", $2 " %", "target <= 2 %", bare($NF) }
    /^rss +peak/ { printf "%-11s %-58s %16s %26s %7s\n", "footprint", "peak RSS (final " $6 " MiB)", $3 " MiB", "target <= 25 MiB", bare($NF) }
    /^memory +final PSS/ { printf "%-11s %-58s %16s %26s %7s\n", "footprint", "PSS; private dirty " $8 " MiB (shared pages split)", $4 " MiB", "", "" }
    /^rss trend/ { printf "%-11s %-58s %16s %26s %7s\n", "footprint", "RSS, second half of the window minus the first", bare($(NF-1)) " MiB", "flat", "" }
    /^outbox growth per day/ { printf "%-11s %-58s %16s %26s %7s\n", "footprint", "outbox growth per day, 100 meters at 15 min", $9 " MB", "", "" }
  ' "$raw/footprint.txt"
  [ -f "$raw/polling.txt" ] && awk '
    /^c loop/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "us") c = $i }
    /^gateway/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "us") g = $i }
    END { if (c && g) printf "%-11s %-58s %16s %26s %7.2f\n", "polling", "gateway CPU per Modbus request, 100 meters at 1 Hz", g " us", "target <= 1.3x C " c " us", g / c }
  ' "$raw/polling.txt"
  [ -f "$raw/polling-1000.txt" ] && awk '
    /^gateway/ { for (i = 1; i <= NF; i++) if ($i == "%") share = $(i - 1) }
    /^records/ { for (i = 1; i <= NF; i++) if ($i == "measured" && $(i + 2) == "of") { m = $(i + 1); n = $(i + 3) } }
    END { if (share != "") printf "%-11s %-58s %16s %26s %7s\n", "polling", "gateway CPU share of one core, 1000 meters at 1 Hz", share " %", "", ""
          if (n) printf "%-11s %-58s %16s %26s %7.4f\n", "polling", "1000 meters at 1 Hz, 15 s interval: records measured", m "/" n, "target 1 (all)", int(m / n * 10000) / 10000 }
  ' "$raw/polling-1000.txt"
  [ -f "$raw/perreading.txt" ] && awk '
    /^gateway / && NF == 10 { printf "%-11s %-58s %16s %26s %7s\n", "reading", "gateway CPU per reading vs the floors of its parts, self-check " $2, $5 " us", "target <= 1.25x " $6 " us", $7 }
    /^python / && NF == 11 { sub(/\)$/, "", $11); printf "%-11s %-58s %16s %26s %7s\n", "reading", "Python reference CPU per reading / the gateway, self-check " $2, $5 " us", "target >= " $11 "x", $8 }
  ' "$raw/perreading.txt"
  [ -f "$raw/binary.txt" ] && awk '
    /^binary / { mb = $NF == "bytes" ? $(NF - 1) / 1e6 : 0
                 if (mb) printf "%-11s %-58s %16s %26s %7.2f\n", "binary", "metergate as installed (static Swift runtime, stripped)", sprintf("%.1f MB", mb), "target <= 30 MB", mb / 30 }
  ' "$raw/binary.txt"
  [ -f "$raw/disk-records.txt" ] && awk '
    /^outbox +[0-9]+ records, [0-9]+ B of records/ { n=$2; bytes=$4 }
    /^disk / { for (i = 1; i <= NF; i++) if ($(i+1) == "B" && $(i+2) == "per" && $(i+3) ~ /^record/) per=$i }
    END { if (n && per) { day=per*9600/1e6; rec=bytes/n*9600/1e6
      printf "%-11s %-58s %16s %26s %7.2f\n", "footprint", "gateway disk writes a day, 100 meters at 15 min, a new outbox", sprintf("%.1f MB", day), sprintf("records %.1f MB", rec), day/rec } }
  ' "$raw/disk-records.txt"
  [ -f "$raw/flash.txt" ] && awk '
    /^flash / { for (i = 1; i <= NF; i++) { if ($(i + 1) == "B" && $(i + 2) == "written") w = $i; if ($i == "records") r = $(i + 1); if ($(i + 1) == "intervals" && $(i + 2) == "kept,") k = $i }
                x = $NF; sub(/x$/, "", x)
                printf "%-11s %-58s %16s %26s %7.2f\n", "footprint", "outbox writes per record, holding " k " intervals of 100 meters", w " B", "target <= 3x " r " B", x }
  ' "$raw/flash.txt"
  for f in footprint disk-10s disk-1m; do
    [ -f "$raw/$f.txt" ] && awk '
      /^disk / { for (i = 1; i <= NF; i++) { if ($i == "every") every = $(i + 1); if ($i == "interval" && at == "") at = $(i + 1); if ($i == "GB") gb = $(i - 1) }
                 sub(/;$/, "", every); sub(/,$/, "", at); only = /state saves only/ ? " (saves only)" : ""
                 printf "%-11s %-58s %16s %26s %7s\n", "footprint", "disk writes a day, 100 meters, interval " at ", state every " every only, gb " GB", "", "" }
    ' "$raw/$f.txt"
  done
  echo
  echo "Machine: shared and noisy (other builds may run at the same time); compare ratios, not absolute figures, across runs."
  for f in signing modbus outbox accounting ledger pipeline footprint polling polling-1000 perreading binary disk-10s disk-1m disk-records flash; do
    [ -f "$raw/$f.txt" ] || continue
    echo; echo "---- $f"; cat "$raw/$f.txt"
  done
}
summary | tee "$out"
echo "results written to $out" >&2
if [ "$update_doc" = 1 ]; then python3 bench/render_doc.py "$out" BENCHMARKS.md >&2; fi
