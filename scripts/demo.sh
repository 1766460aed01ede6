#!/usr/bin/env bash
# The MeterGate demo on a fresh Debian 12 machine: installs what is needed, builds, starts three simulated
# meters (an SDM630 and a SunSpec meter over Modbus TCP on 127.0.0.1:15020, an SDM120 over Modbus RTU on a
# socat pseudo-terminal pair) and a local mosquitto (127.0.0.1:18830), runs the gateway with
# examples/demo/metergate.yaml, and follows the signed readings with `metergate tail` (lines starting "tail |").
# After about 50 s it stops the broker for 30 s and starts it again: readings are kept in the outbox meanwhile
# and arrive afterwards, in order, verified. Ctrl-C (or SIGTERM) stops everything cleanly.
#   DEMO_SECONDS=N   stop by itself after N seconds
#   DEMO_OUTAGE=0    no broker outage
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "demo: building metergate"
swift build --product metergate 2>&1 | grep -E "error|warning:|Build complete" || true
swift build --product metergate >/dev/null
bin="$(swift build --show-bin-path)/metergate"

sim_port=15020
broker_port=18830
pids=()
broker_pid=""
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}" $broker_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: stopped"
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p state/demo
start_broker() {
  mosquitto -c state/demo/mosquitto.conf >> state/demo/mosquitto.log 2>&1 &
  broker_pid=$!
  for _ in $(seq 50); do port_busy "$broker_port" && break; sleep 0.1; done
}
own_broker=0
if port_busy "$broker_port"; then
  echo "demo: something already listens on 127.0.0.1:$broker_port; using it as the broker (no outage scene)"
else
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$broker_port" > state/demo/mosquitto.conf
  start_broker
  own_broker=1
  echo "demo: mosquitto on 127.0.0.1:$broker_port (log: state/demo/mosquitto.log)"
fi

if port_busy "$sim_port"; then
  echo "demo: 127.0.0.1:$sim_port is taken; stop what runs there (or edit examples/demo/metergate.yaml)" >&2
  exit 2
fi
"$bin" simulate --tcp "127.0.0.1:$sim_port" --meter 1=eastron-sdm630:12000 --meter 3=sunspec-203:4800 &
pids+=($!)
for _ in $(seq 50); do port_busy "$sim_port" && break; sleep 0.1; done
# The RTU line: a pseudo-terminal pair; the gateway opens the board's port (boards/sim.yaml), the simulator the other end.
mkdir -p /tmp/metergate-sim
socat pty,raw,echo=0,link=/tmp/metergate-sim/ttyGW pty,raw,echo=0,link=/tmp/metergate-sim/ttySIM &
pids+=($!)
for _ in $(seq 50); do [ -e /tmp/metergate-sim/ttySIM ] && break; sleep 0.1; done
"$bin" simulate --rtu /tmp/metergate-sim/ttySIM --baud 9600 --meter 2=eastron-sdm120:2300 &
pids+=($!)
sleep 0.5

if [ ! -e state/demo/signing.key ]; then
  "$bin" keygen --out state/demo/signing.key | sed 's/^/demo: /'
fi
"$bin" check --config examples/demo/metergate.yaml >/dev/null

# The settlement side trusts the demo key for demo-gw because it was handed over here (as at commissioning), not
# because it appears on the broker's keys topic.
"$bin" trust add --trust state/demo/trust.json --gateway demo-gw --key state/demo/signing.key | sed 's/^/demo: /'
# (Its output goes through a process substitution so that $! is the tail itself, which cleanup must stop: in a
# pipeline $! would be sed's, and a tail waiting for a stopped broker writes nothing that could end it.)
"$bin" tail --broker "mqtt://127.0.0.1:$broker_port" --gateway demo-gw --trust state/demo/trust.json > >(sed -u 's/^/tail | /') 2>&1 &
pids+=($!)

echo "demo: gateway starting (interval 15 s); Ctrl-C to stop"
"$bin" run --config examples/demo/metergate.yaml &
gateway=$!
pids=("$gateway" "${pids[@]}")

if [ "$own_broker" = 1 ] && [ "${DEMO_OUTAGE:-1}" != 0 ]; then
  (
    sleep 50
    echo "demo: ---- stopping the broker for 30 s: readings wait in the SQLite outbox ----"
    kill -KILL "$broker_pid" 2>/dev/null || true
    sleep 30
    echo "demo: ---- broker back: the backlog drains in order, then live readings continue ----"
    mosquitto -c state/demo/mosquitto.conf >> state/demo/mosquitto.log 2>&1 &
    echo $! > state/demo/broker.pid
    wait
  ) &
  pids+=($!)
fi
if [ -n "${DEMO_SECONDS:-}" ]; then
  ( sleep "$DEMO_SECONDS"; kill -TERM "$gateway" 2>/dev/null || true ) &
fi
set +e
wait "$gateway"
status=$?
set -e
[ -f state/demo/broker.pid ] && { kill -TERM "$(cat state/demo/broker.pid)" 2>/dev/null || true; rm -f state/demo/broker.pid; }
"$bin" outbox stats --db state/demo/outbox.sqlite 2>/dev/null | sed 's/^/demo: outbox: /' || true
echo "demo: gateway exited with status $status"
exit "$status"
