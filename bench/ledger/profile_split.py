#!/usr/bin/env python3
"""Where a ledger process's CPU goes, from a `perf record --call-graph dwarf` file (fleet_ingest.py --perf DIR):
each sample is charged to the first part, in the order below, that one of its stack frames belongs to.

    python3 bench/ledger/profile_split.py DIR/postgresql-1-queued-0.data
"""
import collections, re, subprocess, sys

PARTS = [
    ("Ed25519 verify (swift-crypto)", r"ED25519_verify"),
    ("record parsing and checks (ingest)", r"ConsumerC6ingest"),
    ("storing: the batch built, and SQLite's own work (LedgerPostgres, SQLite)", r"LedgerPostgres|SQLiteLedgerStore|sqlite3|SQLite"),
    ("postgres-nio event loop (socket reads and writes)", r"SelectableEventLoopC3run"),
    ("libmosquitto network thread (receive, PUBACK, callback)", r"mosquitto_loop"),
    ("other consumer work (flush, gaps, replays)", r"LedgerConsumer|ReplayScheduler"),
    ("thread wake-ups and idle waits (libdispatch)", r"_dispatch_semaphore_wait|_dispatch_sema4|_dispatch_mgr"),
    ("other Swift tasks (connection pool, timers, task switches)", r"swift_job_run"),
]


def main():
    out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "ip,sym"], capture_output=True, text=True, check=True).stdout
    counts, total, stack = collections.Counter(), 0, []

    def charge(frames):
        nonlocal total
        if not frames:
            return
        total += 1
        for name, pattern in PARTS:
            if any(re.search(pattern, f) for f in frames):
                counts[name] += 1
                return
        counts["elsewhere"] += 1

    for line in out.splitlines():
        if not line.strip():
            charge(stack)
            stack = []
        else:
            parts = line.strip().split(None, 1)
            stack.append(parts[1] if len(parts) > 1 else parts[0])
    charge(stack)
    print(f"{total} samples")
    for name, _ in PARTS + [("elsewhere", "")]:
        print(f"{100 * counts[name] / max(total, 1):6.1f} %  {name}")


if __name__ == "__main__":
    main()
