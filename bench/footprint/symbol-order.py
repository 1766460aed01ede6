#!/usr/bin/env python3
"""Writes the link order of `metergate`'s code (scripts/metergate-symbol-order.txt, passed to lld as
--symbol-ordering-file by Package.swift for release builds on Linux): the functions the running gateway uses
first, together, then those only its start-up uses, so that the kernel's fault-around (64 KiB mapped on each
page fault of a file mapping) maps code that is used rather than its neighbours.

Runs bench/footprint/footprint.py (100 simulated meters, 1 Hz) on a release build and profiles the gateway
from its start with perf: page faults and cpu-clock samples at 5 kHz, each with its call chain. After the
warm-up the executable is paged out (process_madvise MADV_PAGEOUT) every 1.5 s (every 0.1 s during the
warm-up), so that every page the gateway goes on using faults again and is seen. Functions seen after the warm-up come first; those seen only
before it (start-up) follow. Entries of the existing file that this run did not see are kept, between the
two groups (run it twice to widen the set). The RSS figures of such a run mean nothing (the page-outs).
SwiftPM does not relink when only this file changes: remove .build/release/metergate first.
Needs perf and root (or perf_event_paranoid <= 1).
    python3 bench/footprint/symbol-order.py --bin .build/release/metergate [--seconds 90] [--out FILE]
"""
import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYS_PIDFD_OPEN, SYS_PROCESS_MADVISE, MADV_PAGEOUT = 434, 440, 21


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def clean_mappings(pid):
    """The executable's mappings up to the end of its code, without the writable ones (as the gateway does)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    own = []
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) >= 6 and f[5] == exe:
            start, end = (int(x, 16) for x in f[0].split("-"))
            own.append((start, end, f[1]))
    code_end = max(e for s, e, p in own if "x" in p)
    return [(s, e) for s, e, p in own if e <= code_end and "w" not in p]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=int, default=90, help="the profiled window after the warm-up")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--out", default=os.path.join(REPO, "scripts", "metergate-symbol-order.txt"))
    o = ap.parse_args()
    work = tempfile.mkdtemp(prefix="metergate-order-")
    pid_file = os.path.join(work, "gateway.pid")
    footprint = subprocess.Popen([sys.executable, os.path.join(REPO, "bench", "footprint", "footprint.py"), "--bin", o.bin,
                                  "--seconds", str(o.seconds + 5), "--warmup", str(o.warmup), "--pid-file", pid_file],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    perfs = []
    try:
        while not os.path.exists(pid_file) or not open(pid_file).read().strip():
            if footprint.poll() is not None:
                sys.exit("footprint.py ended before the gateway started")
            time.sleep(0.001)
        pid = int(open(pid_file).read())
        for name, event in (("faults", ["-e", "page-faults", "-c", "1"]), ("cpu", ["-e", "cpu-clock", "-F", "5000"])):
            perfs.append(subprocess.Popen(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "--call-graph", "dwarf"] + event
                                          + ["-o", f"{work}/{name}.data", "-p", str(pid)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.3)   # perf attached
        ranges = clean_mappings(pid)
        vectors = (IOVec * len(ranges))(*[IOVec(s, e - s) for s, e in ranges])
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
        if pidfd < 0:
            sys.exit(f"pidfd_open: errno {ctypes.get_errno()}")
        # Paged out every 0.1 s during start-up, then every 1.5 s.
        window_start = time.clock_gettime(time.CLOCK_MONOTONIC) + o.warmup
        while time.clock_gettime(time.CLOCK_MONOTONIC) < window_start + o.seconds:
            if libc.syscall(SYS_PROCESS_MADVISE, pidfd, vectors, len(ranges), MADV_PAGEOUT, 0) < 0:
                sys.exit(f"process_madvise: errno {ctypes.get_errno()}")
            time.sleep(0.1 if time.clock_gettime(time.CLOCK_MONOTONIC) < window_start else 1.5)
    finally:
        for p in perfs:
            p.send_signal(signal.SIGINT)
            p.wait()
        footprint.wait()
    # Every function of the executable on the stack of a page fault or a sample: the call chains (unwound
    # from DWARF) name the callers too, not only the function that faulted or was sampled.
    binary = os.path.realpath(o.bin)
    steady, startup = {}, {}
    for name in ("faults", "cpu"):
        script = subprocess.run(["perf", "script", "-i", f"{work}/{name}.data", "--no-demangle", "-F", "time,ip,sym,dso"],
                                capture_output=True, text=True).stdout
        group = startup
        for line in script.splitlines():
            if line and not line[0].isspace():
                group = steady if float(line.split(":")[0]) >= window_start else startup
                continue
            frame = line.split(None, 1)
            if len(frame) == 2 and frame[1].endswith(f"({binary})"):
                symbol = frame[1][: -len(binary) - 2].strip()
                if symbol and symbol != "[unknown]":
                    group.setdefault(symbol, len(group))
    startup = {n: i for n, i in startup.items() if n not in steady}
    kept = []
    if os.path.exists(o.out):
        kept = [n for n in open(o.out).read().split() if n not in steady and n not in startup]
    order = sorted(steady, key=steady.get) + kept + sorted(startup, key=startup.get)
    with open(o.out, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{o.out}: {len(steady)} functions after the warm-up, {len(kept)} kept from before, {len(startup)} of start-up only")
    # SwiftPM does not see the file as an input of the link: remove the binary to have it linked again.
    print("relink: rm .build/release/metergate && swift build -c release --static-swift-stdlib --product metergate")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
