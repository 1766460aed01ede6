#!/usr/bin/env python3
"""Footprint of `metergate run`: N simulated meters (one `metergate simulate` over Modbus TCP) polled at
1 Hz, signed, stored and published to a real mosquitto. Samples the gateway's CPU time and RSS from
/proc/PID every second after a warm-up and prints CPU share of one core, peak and final RSS, the RSS
trend over the window, records and outbox bytes, and outbox growth per day extrapolated from the
measured bytes per record. Standard library only; started by bench/footprint/run.sh.
"""
import argparse
import re
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS   # utime, stime (fields 14 and 15 of stat)


def rollup_kib(pid):
    """Rss, Pss and Private_Dirty (anonymous heap, stacks) from /proc/PID/smaps_rollup, in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def io_counters(pid):
    """/proc/PID/io: bytes the process had sent to the block layer (write_bytes, page-cache writeback included) and
    its write-like system calls (syscw)."""
    fields = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    return int(fields["write_bytes"]), int(fields["syscw"])


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def interval_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    number, unit = re.fullmatch(r"(\d+)\s*([a-z]+)", text.strip()).groups()
    return int(number) * units[unit]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--meters", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=120, help="measured window after the warm-up")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--interval", default="15s", help="the gateway's settlement interval")
    ap.add_argument("--state-save", help="the config's outbox.state_save (default: the gateway's, 10s)")
    ap.add_argument("--run-arg", action="append", default=[], help="one more argument for `metergate run` (repeatable)")
    ap.add_argument("--pid-file", help="write the gateway's process id here as soon as it is started (symbol-order.py)")
    o = ap.parse_args()
    work = tempfile.mkdtemp(prefix="metergate-footprint-")
    procs = []

    def spawn(argv, log):
        p = subprocess.Popen(argv, stdout=open(os.path.join(work, log), "wb"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=REPO)
        procs.append(p)
        return p

    try:
        bport = free_port()
        with open(f"{work}/mosquitto.conf", "w") as f:
            f.write(f"listener {bport} 127.0.0.1\nallow_anonymous true\n")
        spawn(["mosquitto", "-c", f"{work}/mosquitto.conf"], "mosquitto.log")
        sport = free_port()
        sim = ["simulate", "--tcp", f"127.0.0.1:{sport}"]
        for u in range(1, o.meters + 1):
            sim += ["--meter", f"{u}=eastron-sdm630:{500 + 37 * u}"]
        # The simulator runs from a copy: in production no other process maps the gateway's binary, and the
        # kernel pages out (`madvise(MADV_PAGEOUT)` once the gateway has started) only pages no other process maps.
        sim_bin = os.path.join(work, "metergate-simulator")
        subprocess.run(["cp", o.bin, sim_bin], check=True)
        spawn([sim_bin] + sim, "simulator.log")
        subprocess.run([sim_bin, "keygen", "--out", f"{work}/k.key"], check=True, capture_output=True)
        lines = [f"gateway: {{ id: fp-gw, board: sim, state_dir: {work}/state, interval: {o.interval} }}",
                 "metrics: { enabled: false }",
                 f"buses:\n  - {{ id: b, tcp: {{ host: 127.0.0.1, port: {sport} }}, timeout: 500ms }}", "meters:"]
        lines += [f"  - {{ id: m{u}, bus: b, unit: {u}, profile: eastron-sdm630, poll: 1s }}" for u in range(1, o.meters + 1)]
        lines += [f"mqtt: {{ host: 127.0.0.1, port: {bport} }}", f"signing: {{ key: {work}/k.key }}"]
        if o.state_save:
            lines.append(f"outbox: {{ state_save: {o.state_save} }}")
        with open(f"{work}/gw.yaml", "w") as f:
            f.write("\n".join(lines) + "\n")
        received = open(f"{work}/received.txt", "wb")
        procs.append(subprocess.Popen(["mosquitto_sub", "-p", str(bport), "-q", "1", "-t", "metergate/v1/fp-gw/+/reading"],
                                      stdout=received, stderr=subprocess.DEVNULL))
        if not wait_until(lambda: "listening tcp" in open(f"{work}/simulator.log").read(), 60):
            sys.exit("simulator did not start")
        gw = spawn([o.bin, "run", "--config", f"{work}/gw.yaml", "--boards", f"{REPO}/boards", "--profiles", f"{REPO}/profiles"] + o.run_arg, "gateway.log")
        if o.pid_file:
            with open(o.pid_file, "w") as f:
                f.write(f"{gw.pid}\n")
        time.sleep(o.warmup)
        if gw.poll() is not None:
            sys.exit("gateway exited: " + open(f"{work}/gateway.log").read()[-2000:])
        c0, t0, (w0, sw0) = cpu_seconds(gw.pid), time.monotonic(), io_counters(gw.pid)
        rss = []
        for _ in range(o.seconds):
            time.sleep(1)
            rss.append(status_kib(gw.pid, "VmRSS"))
        c1, t1, (w1, sw1) = cpu_seconds(gw.pid), time.monotonic(), io_counters(gw.pid)
        hwm = status_kib(gw.pid, "VmHWM")
        # RSS counts every touched page of the binary and the shared libraries; PSS splits shared pages among
        # the processes that map them, and private dirty memory is what the gateway itself allocated.
        rollup = rollup_kib(gw.pid)
        linked = "static Swift runtime" if b"libswiftCore.so" not in subprocess.run(["ldd", o.bin], capture_output=True).stdout else "dynamic Swift runtime"
        samples = sum(1 for l in open(f"{work}/gateway.log") if "polled" in l)
        released = [l.strip() for l in open(f"{work}/gateway.log", errors="replace") if "start-up memory" in l]
        gw.send_signal(signal.SIGTERM)
        gw.wait(60)
        db = f"{work}/state/outbox.sqlite"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        records, payload = con.execute("SELECT count(*), coalesce(sum(size), 0) FROM records").fetchone()
        con.close()
        file_bytes = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
        share = (c1 - c0) / (t1 - t0)
        half = len(rss) // 2
        first, second = sum(rss[:half]) / max(1, half), sum(rss[half:]) / max(1, len(rss) - half)
        per_record = file_bytes / max(1, records)
        per_day_15min = o.meters * 96 * per_record
        print(f"footprint: {o.meters} meters polled at 1 Hz over Modbus TCP, interval {o.interval}, "
              f"{o.warmup} s warm-up, {o.seconds} s measured")
        print(f"cpu       {share * 100:6.2f} % of one core   (target <= 2 %: ratio {share * 100 / 2:.2f})")
        print(f"rss       peak {hwm / 1024:.1f} MiB, final {rss[-1] / 1024:.1f} MiB   (target <= 25 MiB: ratio {hwm / 1024 / 25:.2f})")
        print(f"rss window highest {max(rss) / 1024:.1f} MiB, lowest {min(rss) / 1024:.1f} MiB (sampled once a second after the warm-up; "
              f"peak above is VmHWM, start-up included)")
        print(f"memory    final PSS {rollup.get('Pss', 0) / 1024:.1f} MiB, private dirty {rollup.get('Private_Dirty', 0) / 1024:.1f} MiB, "
              f"shared clean {rollup.get('Shared_Clean', 0) / 1024:.1f} MiB ({linked})")
        print(f"rss trend first half {first / 1024:.2f} MiB, second half {second / 1024:.2f} MiB ({(second - first) / 1024:+.2f} MiB)")
        print(f"outbox    {records} records, {payload} B of records, {file_bytes} B on disk ({per_record:.0f} B per record)")
        if records:
            print(f"outbox growth per day at 15 min settlement: {per_day_15min / 1e6:.2f} MB "
                  f"({o.meters} meters x 96 records x {per_record:.0f} B, before retention)")
        else:
            print("outbox growth per day: not measured (no interval closed in the window)")
        # Flash wear: what the gateway made the kernel write over the window (SQLite's WAL and checkpoints, the
        # high-water mark, the accounting state), per day at this interval; the filesystem's journal comes on top.
        written = (w1 - w0) / (t1 - t0) * 86400
        print(f"disk      {(w1 - w0) / 1e6:.2f} MB written in {t1 - t0:.0f} s ({(sw1 - sw0) / (t1 - t0):.1f} write calls/s): "
              f"{written / 1e9:.2f} GB a day at interval {o.interval}, state saved every {o.state_save or '10s'}; "
              f"{written / (o.meters * 86400 / interval_seconds(o.interval)):.0f} B per record; filesystem journal not included"
              + ("" if records else "; no interval closed in the window: state saves only, records not included"))
        for line in released:
            print(f"gateway   {line[line.find('start-up memory'):]}")
        if samples:
            print(f"note: {samples} 'polled' log lines")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
