#!/usr/bin/env python3
"""Polling cost: `metergate run` polling N eastron-sdm630 meters once a second over Modbus TCP (PORTS pymodbus
servers of N/PORTS units each, never MeterGate's simulator), interval 15 minutes so no record closes, against a
plain C loop over libmodbus (bench/polling/c_loop.c) making the same requests to the same servers in the same
run. Prints CPU per Modbus request of each and their ratio (target <= 1.3).

The register image the servers answer with is read once from `metergate simulate` (plausible SDM630 values),
then served by pymodbus. The requests are the gateway's own plan (`metergate scan --plan`). The gateway's
requests are counted from its metrics (polls answered and failed, times the plan's requests); the identity
read (at the first answer, then every 5 minutes) falls in the warm-up.

    python3 bench/polling/polling.py --bin .build/release [--meters 100] [--ports 1] [--seconds 60]
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(REPO, "bench", "footprint"))
from footprint import cpu_seconds, free_port, wait_until  # noqa: E402  (the footprint benchmark's helpers)
PROFILE = "eastron-sdm630"


def payload(compact):
    """The JSON payload of a JWS compact record."""
    part = compact.strip().split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def peer_python():
    """The Python with pymodbus: $METERGATE_PEER_PYTHON or the checkout's .venv (scripts/setup.sh)."""
    for python in (os.environ.get("METERGATE_PEER_PYTHON"), os.path.join(REPO, ".venv", "bin", "python")):
        if python and os.path.exists(python) and subprocess.run([python, "-c", "import pymodbus"], capture_output=True).returncode == 0:
            return python
    sys.exit("polling: no Python with pymodbus (run bash scripts/setup.sh, or set METERGATE_PEER_PYTHON)")


def plan_requests(binary):
    """The gateway's requests for one meter, as (function code, address, count): the part of `metergate scan --plan`
    that says what `metergate run` reads."""
    out = subprocess.run([binary, "scan", "--plan", PROFILE, "--profiles", f"{REPO}/profiles"], capture_output=True, text=True,
                         check=True).stdout
    if "what metergate run reads" not in out:
        sys.exit(f"polling: `scan --plan` does not say what run reads:\n{out}")
    out = out.split("what metergate run reads", 1)[1]
    found = [(int(fc), int(address), int(count)) for fc, address, count in re.findall(r"FC(\d+) @(\d+) \(0x[0-9A-F]+\) ×(\d+)", out)]
    if not found:
        sys.exit(f"polling: no requests in the plan:\n{out}")
    return found


class Work:
    """A scratch folder and the processes started in it (`spawn`, output to a log file there); leaving the `with`
    block kills them, newest first, and removes the folder."""

    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.procs = []

    def spawn(self, argv, log, **kw):
        p = subprocess.Popen(argv, stdout=open(os.path.join(self.path, log), "wb"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=REPO, **kw)
        self.procs.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.path, ignore_errors=True)


def start_meters(binary, python, work, spawn, meters, ports, requests):
    """`ports` pymodbus servers of meters/ports units each, every unit answering the register image of one eastron-sdm630 of
    MeterGate's simulator (read once with pymodbus, so the values are plausible). Returns the servers' ports."""
    sport = free_port()
    sim = spawn([binary, "simulate", "--tcp", f"127.0.0.1:{sport}", "--meter", f"1={PROFILE}:3000"], "simulator.log")
    if not wait_until(lambda: "listening tcp" in open(f"{work}/simulator.log").read(), 30):
        sys.exit("polling: the simulator did not start")
    image_path = os.path.join(work, "image.json")
    reader = f"""
import json, sys
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("127.0.0.1", port={sport}); c.connect()
image = {{"input": {{}}, "holding": {{}}}}
for fc, address, count in {json.dumps(requests + [(3, 0xFC00, 2)])}:
    r = (c.read_holding_registers if fc == 3 else c.read_input_registers)(address, count=count, device_id=1)
    if not r.isError():
        image["holding" if fc == 3 else "input"].update({{str(address + i): w for i, w in enumerate(r.registers)}})
json.dump(image, open({image_path!r}, "w"))
"""
    subprocess.run([python, "-c", reader], check=True)
    sim.kill()
    sim.wait()

    found = [free_port() for _ in range(ports)]
    for i, port in enumerate(found):
        spawn([python, os.path.join(HERE, "register_server.py"), str(port), str(meters // ports), image_path], f"server-{i}.log")
    for i, port in enumerate(found):
        if not wait_until(lambda: "listening" in open(f"{work}/server-{i}.log").read() and
                          subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True).returncode == 0, 30):
            sys.exit(f"polling: pymodbus server {i} did not start: " + open(f"{work}/server-{i}.log").read()[-1000:])
    return found


def start_mosquitto(work, spawn):
    """A mosquitto of its own on a free loopback port; returns the port."""
    port = free_port()
    with open(f"{work}/mosquitto.conf", "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    spawn(["mosquitto", "-c", f"{work}/mosquitto.conf"], "mosquitto.log")
    if not wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True).returncode == 0, 30):
        sys.exit("polling: mosquitto did not start: " + open(f"{work}/mosquitto.log").read()[-1000:])
    return port


def start_gateway(binary, work, spawn, ports, per_port, interval, metrics_port, broker_port, self_check=True, name="gateway"):
    """`metergate run` polling every unit of `ports` at 1 s, state in WORK/NAME-state, log in WORK/NAME.log."""
    if not os.path.exists(f"{work}/k.key"):
        subprocess.run([binary, "keygen", "--out", f"{work}/k.key"], check=True, capture_output=True)
    lines = [f"gateway: {{ id: poll-gw, board: sim, state_dir: {work}/{name}-state, interval: {interval} }}",
             f"metrics: {{ listen: 127.0.0.1:{metrics_port} }}", "buses:"]
    lines += [f"  - {{ id: b{i}, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 1s }}" for i, port in enumerate(ports)]
    lines.append("meters:")
    lines += [f"  - {{ id: m{i}-{u}, bus: b{i}, unit: {u}, profile: {PROFILE}, poll: 1s }}"
              for i in range(len(ports)) for u in range(1, per_port + 1)]
    lines += [f"mqtt: {{ host: 127.0.0.1, port: {broker_port} }}",
              f"signing: {{ key: {work}/k.key, self_check: {'true' if self_check else 'false'} }}"]
    with open(f"{work}/{name}.yaml", "w") as f:
        f.write("\n".join(lines) + "\n")
    return spawn([binary, "run", "--config", f"{work}/{name}.yaml", "--boards", f"{REPO}/boards", "--profiles", f"{REPO}/profiles"],
                 f"{name}.log")


def metric(port, name):
    """The sum over its labels of one metric of a gateway's /metrics, and the labelled values (label text → value)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {labels or "": float(value) for labels, value in re.findall(rf'^{name}(?:\{{([^}}]*)\}})?\s+([0-9.e+-]+)', text, re.M)}
    return sum(values.values()), values


def c_loop_reference(cc, work, warmup, seconds, per_port, ports, requests):
    """Builds c_loop.c and runs it on the servers: its CPU seconds, requests answered and failed, wall seconds."""
    c_loop = os.path.join(work, "c_loop")
    subprocess.run([cc, "-O2", "-o", c_loop, os.path.join(HERE, "c_loop.c"), "-lmodbus", "-lpthread", "-I/usr/include/modbus"],
                   check=True)
    spec = [f"{fc}:{address}:{count}" for fc, address, count in requests]
    ref = subprocess.run([c_loop, str(warmup), str(seconds), str(per_port), ",".join(map(str, ports))] + spec,
                         capture_output=True, text=True)
    if ref.returncode != 0:
        sys.exit(f"polling: c_loop failed: {ref.stderr}")
    return {k: float(v) for k, v in (line.split() for line in ref.stdout.split("\n") if line)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding metergate (e.g. .build/release)")
    ap.add_argument("--meters", type=int, default=100)
    ap.add_argument("--ports", type=int, default=1, help="Modbus TCP servers (buses), the meters split among them")
    ap.add_argument("--seconds", type=int, default=60, help="measured window after the warm-up")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--cc", default=shutil.which("cc") or "clang")
    ap.add_argument("--interval", default="15m", help="the gateway's settlement interval; with a short one (15s) the "
                    "records of the intervals wholly inside the window are counted by quality")
    ap.add_argument("--no-reference", action="store_true", help="skip the C loop (the 1,000-meter row needs no ratio)")
    ap.add_argument("--perf", help="record the gateway's window with `perf record -e cpu-clock -g` into this file")
    o = ap.parse_args()
    if o.meters % o.ports:
        sys.exit("polling: --meters must split evenly among --ports")
    binary = os.path.join(o.bin, "metergate")
    python = peer_python()
    with Work("metergate-polling-") as w:
        work, spawn = w.path, w.spawn
        requests = plan_requests(binary)
        ports = start_meters(binary, python, work, spawn, o.meters, o.ports, requests)
        per_port = o.meters // o.ports

        # The reference, alone on the machine with the servers.
        spec = [f"{fc}:{address}:{count}" for fc, address, count in requests]
        c = None if o.no_reference else c_loop_reference(o.cc, work, o.warmup, o.seconds, per_port, ports, requests)

        # The gateway, on the same servers.
        bport, mport = start_mosquitto(work, spawn), free_port()
        gw = start_gateway(binary, work, spawn, ports, per_port, interval=o.interval, metrics_port=mport, broker_port=bport)

        def polls():
            _, values = metric(mport, "metergate_polls_total")
            total = {"ok": 0.0, "error": 0.0}
            for labels, value in values.items():
                result = re.search(r'result="(ok|error)"', labels)
                if result:
                    total[result.group(1)] += value
            return total

        time.sleep(o.warmup)
        if gw.poll() is not None:
            sys.exit("polling: the gateway exited: " + open(f"{work}/gateway.log").read()[-2000:])
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", o.perf, "-p", str(gw.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if o.perf else None
        p0, c0, t0, wall0 = polls(), cpu_seconds(gw.pid), time.monotonic(), time.time()
        time.sleep(o.seconds)
        p1, c1, t1, wall1 = polls(), cpu_seconds(gw.pid), time.monotonic(), time.time()
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        gw.send_signal(signal.SIGTERM)
        gw.wait(60)

        answered = (p1["ok"] - p0["ok"]) * len(requests)
        failed = p1["error"] - p0["error"]
        gw_us = (c1 - c0) / max(1, answered) * 1e6
        expected = o.meters * len(requests) * o.seconds
        print(f"polling: {o.meters} {PROFILE} meters on {o.ports} pymodbus server(s), polled at 1 Hz, interval {o.interval}, "
              f"{len(requests)} requests a poll ({', '.join(spec)}), {o.warmup} s warm-up, {o.seconds} s measured")
        if c:
            c_us = c["cpu_seconds"] / max(1, c["answered"]) * 1e6
            print(f"c loop   {c['answered']:.0f} requests answered ({c['failed']:.0f} failed) in {c['wall_seconds']:.1f} s, "
                  f"{c['cpu_seconds']:.3f} CPU-s: {c_us:.1f} us a request")
        print(f"gateway  {answered:.0f} requests answered in polls ({failed:.0f} polls failed) in {t1 - t0:.1f} s, {c1 - c0:.3f} CPU-s: "
              f"{gw_us:.1f} us a request, {(c1 - c0) / (t1 - t0) * 100:.2f} % of a core ({expected} requests expected)")
        if c:
            print(f"ratio    gateway / C loop CPU per request: {gw_us / c_us:.2f} (target <= 1.3)")
        # Records of the intervals that lie wholly inside the window, by quality (every one should be measured).
        qualities = {}
        db = f"{work}/gateway-state/outbox.sqlite"
        if os.path.exists(db):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            for (blob,) in con.execute("SELECT bytes FROM records"):
                record = payload(bytes(blob).decode())
                if wall0 * 1000 <= record["start_ms"] and record["end_ms"] <= wall1 * 1000:
                    qualities[record["quality"]] = qualities.get(record["quality"], 0) + 1
            con.close()
        if qualities:
            total = sum(qualities.values())
            print(f"records  {total} intervals wholly inside the window: "
                  + ", ".join(f"{n} {q}" for q, n in sorted(qualities.items())) + f"; measured {qualities.get('measured', 0)} of {total}")


if __name__ == "__main__":
    main()
