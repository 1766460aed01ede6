#!/usr/bin/env python3
"""CPU per reading on a realistic job: `metergate run` reading N eastron-sdm630 meters on pymodbus servers (never
MeterGate's simulator) once a second, settlement interval 1 s, so every poll closes an interval: each reading is
polled, accounted, signed, committed and published at QoS 1 to a real mosquitto. Measured with self-check on and off.

In the same run, on the same servers and broker:
- the floors of the parts, per reading: the gateway's Modbus requests made by a plain C libmodbus loop
  (bench/polling/c_loop.c), one raw Ed25519 signature, one raw verification (self-check on only), the record built,
  stored in the interval's batch and sent (pipeline-bench's floors table);
- a Python reference doing the same job with the same requests (python_pipeline.py: pymodbus, `cryptography`,
  sqlite3, paho-mqtt).

Prints CPU per reading of each, the gateway's against the sum of the floors (target <= 1.25x), and the Python
reference's against the gateway's (target >= 3x less with self-check off, >= 2x with it on).

    python3 bench/perreading/perreading.py --bin .build/release [--meters 100] [--ports 1] [--seconds 60]
                                           [--floors DIR]   # pipeline.txt and signing.txt of the same bench run
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(REPO, "bench", "polling"))
sys.path.insert(0, os.path.join(REPO, "bench", "footprint"))
from footprint import cpu_seconds, free_port  # noqa: E402
from polling import Work, c_loop_reference, metric, peer_python, plan_requests, start_gateway, start_meters, start_mosquitto  # noqa: E402


def reference_python():
    """The peers' Python (.venv) with paho-mqtt, which only this benchmark needs: installed on first use."""
    python = peer_python()
    if subprocess.run([python, "-c", "import paho.mqtt.client, cryptography"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                        os.path.join(HERE, "requirements.txt")], check=True)
    return python


def floors(bin_dir, from_dir):
    """Per reading, in µs: raw signature, built, stored, sent (pipeline-bench, EdDSA) and raw verify (signing-bench),
    from the raw outputs of the same bench run in `from_dir`, or measured here."""
    if from_dir:
        pipeline, signing = (open(os.path.join(from_dir, f)).read() for f in ("pipeline.txt", "signing.txt"))
    else:
        pipeline = subprocess.run([os.path.join(bin_dir, "pipeline-bench"), "--meters", "100", "--intervals", "30",
                                   "--algorithm", "EdDSA", "--self-check", "off"], capture_output=True, text=True, check=True,
                                  cwd=REPO).stdout
        signing = subprocess.run([os.path.join(bin_dir, "signing-bench"), "--raw-verify-only", "--seconds", "3"],
                                 capture_output=True, text=True, check=True).stdout
    row = re.search(r"^EdDSA\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+(within|out of) reach$",
                    pipeline, re.M)
    verify = re.search(r"swift-crypto raw verify/CPU-s: Ed25519\s+([0-9,]+)", signing)
    if not row or not verify:
        sys.exit("perreading: no EdDSA floors row in pipeline-bench's output or no raw verify rate in signing-bench's")
    sign, built, stored, sent = (float(row.group(i)) for i in (2, 3, 4, 5))
    return {"sign": sign, "built": built, "stored": stored, "sent": sent, "verify": 1e6 / float(verify.group(1).replace(",", ""))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding metergate, pipeline-bench and signing-bench")
    ap.add_argument("--meters", type=int, default=100)
    ap.add_argument("--ports", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--cc", default=shutil.which("cc") or "clang")
    ap.add_argument("--floors", help="a bench run's raw outputs (pipeline.txt, signing.txt) to take the floors from")
    o = ap.parse_args()
    if o.meters % o.ports:
        sys.exit("perreading: --meters must split evenly among --ports")
    binary = os.path.join(o.bin, "metergate")
    python = reference_python()
    with Work("metergate-perreading-") as w:
        work, spawn = w.path, w.spawn
        requests = plan_requests(binary)
        per_port = o.meters // o.ports
        ports = start_meters(binary, python, work, spawn, o.meters, o.ports, requests)
        broker = start_mosquitto(work, spawn)
        print("perreading: the C loop on the servers…", file=sys.stderr, flush=True)
        c = c_loop_reference(o.cc, work, o.warmup, o.seconds, per_port, ports, requests)
        request_us = c["cpu_seconds"] / max(1, c["answered"]) * 1e6

        gateway = {}
        for check in ("on", "off"):
            print(f"perreading: the gateway, self-check {check}…", file=sys.stderr, flush=True)
            mport = free_port()
            gw = start_gateway(binary, work, spawn, ports, per_port, interval="1s", metrics_port=mport, broker_port=broker,
                               self_check=check == "on", name=f"gateway-{check}")
            time.sleep(o.warmup)
            if gw.poll() is not None:
                sys.exit("perreading: the gateway exited: " + open(f"{work}/gateway-{check}.log").read()[-2000:])
            a0, c0, t0 = metric(mport, "metergate_mqtt_acknowledged_total")[0], cpu_seconds(gw.pid), time.monotonic()
            time.sleep(o.seconds)
            a1, c1, t1 = metric(mport, "metergate_mqtt_acknowledged_total")[0], cpu_seconds(gw.pid), time.monotonic()
            gw.send_signal(signal.SIGTERM)
            gw.wait(60)
            gateway[check] = {"cpu": c1 - c0, "readings": a1 - a0, "wall": t1 - t0}

        reference = {}
        spec = ",".join(f"{fc}:{address}:{count}" for fc, address, count in requests)
        for check in ("on", "off"):
            print(f"perreading: the Python reference, self-check {check}…", file=sys.stderr, flush=True)
            out = subprocess.run([python, os.path.join(HERE, "python_pipeline.py"), "--ports", ",".join(map(str, ports)),
                                  "--units", str(per_port), "--requests", spec, "--broker", str(broker),
                                  "--db", f"{work}/python-{check}.sqlite", "--self-check", check,
                                  "--warmup", str(o.warmup), "--seconds", str(o.seconds)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"perreading: the Python reference failed:\n{out.stdout[-1000:]}{out.stderr[-2000:]}")
            values = {k: float(v) for k, v in (line.split() for line in out.stdout.split("\n") if line)}
            reference[check] = {"cpu": values["cpu_seconds"], "readings": values["acknowledged"], "wall": values["wall_seconds"]}

        print("perreading: the floors…" if o.floors is None else f"perreading: the floors from {o.floors}", file=sys.stderr, flush=True)
        f = floors(o.bin, o.floors)
        expected = o.meters * o.seconds
        print(f"per reading: {o.meters} eastron-sdm630 meters on {o.ports} pymodbus server(s), polled at 1 Hz, interval 1 s, "
              f"{len(requests)} requests a reading ({spec}), a real mosquitto, {o.warmup} s warm-up, {o.seconds} s measured "
              f"(about {expected} readings expected)")
        print(f"floors   C loop {request_us:.1f} us a request (x{len(requests)}), raw Ed25519 sign {f['sign']:.1f}, "
              f"verify {f['verify']:.1f}, built {f['built']:.1f}, stored {f['stored']:.1f}, sent {f['sent']:.1f} us"
              + ("" if o.floors is None else f" (pipeline-bench and signing-bench of this run, {o.floors})"))
        print("who      self-check   readings   CPU s   us a reading   floors us   / floors   python / gateway")
        for check in ("on", "off"):
            floor = len(requests) * request_us + f["sign"] + f["built"] + f["stored"] + f["sent"] + (f["verify"] if check == "on" else 0)
            g, p = gateway[check], reference[check]
            g_us, p_us = g["cpu"] / max(1, g["readings"]) * 1e6, p["cpu"] / max(1, p["readings"]) * 1e6
            target = 2 if check == "on" else 3
            print(f"gateway  {check:>10} {g['readings']:10.0f} {g['cpu']:7.2f} {g_us:14.1f} {floor:11.1f} {g_us / floor:10.2f}   "
                  f"target <= 1.25")
            print(f"python   {check:>10} {p['readings']:10.0f} {p['cpu']:7.2f} {p_us:14.1f} {floor:11.1f} {p_us / floor:10.2f}   "
                  f"{p_us / g_us:.2f} (target >= {target})")


if __name__ == "__main__":
    main()
