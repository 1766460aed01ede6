#!/usr/bin/env bash
# The MeterGate demo on a fresh Debian 12 machine: installs what is needed, builds, starts two simulated
# meters (Modbus TCP on 127.0.0.1:15020) and a local mosquitto (127.0.0.1:18830), then runs the gateway
# with examples/demo/metergate.yaml. Ctrl-C (or SIGTERM) stops everything cleanly.
# DEMO_SECONDS=N stops the demo by itself after N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "demo: building metergate"
swift build --product metergate 2>&1 | grep -E "error|warning:|Compiling metergate|Build complete" || true
swift build --product metergate >/dev/null
bin="$(swift build --show-bin-path)/metergate"

sim_port=15020
broker_port=18830
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: stopped"
}
trap cleanup INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p state/demo
if port_busy "$broker_port"; then
  echo "demo: something already listens on 127.0.0.1:$broker_port; using it as the broker"
else
  cat > state/demo/mosquitto.conf <<CONF
listener $broker_port 127.0.0.1
allow_anonymous true
persistence false
CONF
  mosquitto -c state/demo/mosquitto.conf > state/demo/mosquitto.log 2>&1 &
  pids+=($!)
  echo "demo: mosquitto on 127.0.0.1:$broker_port (log: state/demo/mosquitto.log)"
fi

if port_busy "$sim_port"; then
  echo "demo: 127.0.0.1:$sim_port is taken; stop what runs there (or edit examples/demo/metergate.yaml)" >&2
  exit 2
fi
"$bin" simulate --tcp "127.0.0.1:$sim_port" --meter 1=eastron-sdm630:12000 --meter 2=eastron-sdm630:3500 &
pids+=($!)
for _ in $(seq 50); do port_busy "$sim_port" && break; sleep 0.1; done

"$bin" check --config examples/demo/metergate.yaml >/dev/null
echo "demo: gateway starting; Ctrl-C to stop"
"$bin" run --config examples/demo/metergate.yaml &
gateway=$!
pids=("$gateway" "${pids[@]}")
if [ -n "${DEMO_SECONDS:-}" ]; then
  ( sleep "$DEMO_SECONDS"; kill -TERM "$gateway" 2>/dev/null || true ) &
fi
set +e
wait "$gateway"
status=$?
set -e
echo "demo: gateway exited with status $status"
exit "$status"
