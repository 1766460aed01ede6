#!/usr/bin/env python3
"""Ledger ingest on a fleet's traffic: verified readings stored per CPU-second of the ledger processes, against
swift-crypto's raw Ed25519 verify rate measured just before and just after each run (the machine's speed drifts
between minutes), and the ingest rate with one and two `metergate ledger --share` processes on one PostgreSQL,
with SQLite on the same traffic as a third row. Each row runs in two modes, live (the ledger ingests while the
fleet publishes) and queued (the broker holds the whole fleet's readings first, as at an interval boundary), and
--repeats times; the run with the median ratio is reported.

Everything is real and on loopback: a mosquitto, a PostgreSQL started here (initdb as the postgres user when
run as root, default durability: fsync and synchronous_commit on), bench/fleet's fleet-load publishing
K gateways x M meters x N intervals of signed records (each gateway its own key) as fast as the broker
acknowledges, and the release `metergate ledger` processes.

    python3 bench/ledger/fleet_ingest.py --bin .build/release [--gateways 100 --meters 10 --intervals 20]
"""
import argparse, os, pwd, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, time

TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total


def children(parent):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def wait(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"fleet_ingest: timed out waiting for {what}")


class Postgres:
    def __init__(self, root, settings):
        versions = sorted(int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.dir = tempfile.mkdtemp(prefix="ledger-bench-pg-", dir=root)
        self.as_postgres = os.getuid() == 0
        self.password = "bench-" + os.urandom(6).hex()
        self.password_file = os.path.join(root, "pg-password")
        with open(self.password_file, "w") as f:
            f.write(self.password)
        os.chmod(self.password_file, 0o600)
        init_pw = os.path.join(self.dir, "pw")
        with open(init_pw, "w") as f:
            f.write(self.password)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            for path in (self.dir, init_pw):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.run([f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", "metergate", f"--pwfile={init_pw}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"])
        self.port = free_port()
        args = [f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-k", self.dir, "-c", "max_connections=100"] + [a for s in settings for a in ("-c", s)]
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen((["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + args, stdout=self.log, stderr=self.log)
        wait(lambda: "ready to accept connections" in open(os.path.join(self.dir, "server.log")).read(), 60, "PostgreSQL")
        with open(f"{self.dir}/data/postmaster.pid") as f:
            self.postmaster = int(f.readline())

    def run(self, cmd):
        subprocess.run((["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + cmd, check=True, capture_output=True)

    def psql(self, sql, db="postgres"):
        out = subprocess.run([f"{self.bin}/psql", "-h", self.dir, "-p", str(self.port), "-U", "metergate", "-d", db, "-X", "-q", "-A", "-t",
                              "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def cpu(self):
        return cpu_seconds([self.postmaster] + children(self.postmaster))

    def stop(self):
        os.kill(self.postmaster, signal.SIGQUIT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_verify(bin_dir):
    out = subprocess.run([f"{bin_dir}/signing-bench", "--raw-verify-only"], check=True, capture_output=True, text=True).stdout
    return float(out.split("Ed25519")[1].strip().replace(",", ""))


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--gateways", type=int, default=100)
    p.add_argument("--meters", type=int, default=10)
    p.add_argument("--intervals", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="runs of each row; the median is reported")
    p.add_argument("--pg-setting", action="append", default=[], help="extra PostgreSQL setting, name=value")
    p.add_argument("--perf", metavar="DIR", help="record each run's ledger processes with `perf record --call-graph dwarf` into DIR "
                   "(slows them; figures from such a run are not comparable); bench/ledger/profile_split.py reads the files")
    a = p.parse_args()
    total = a.gateways * a.meters * a.intervals
    root = tempfile.mkdtemp(prefix="ledger-bench-")
    os.chmod(root, 0o755)
    procs = []
    pg = None
    try:
        broker_port = free_port()
        conf = os.path.join(root, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\n")
        broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        pg = Postgres(root, a.pg_setting)
        settings = ", ".join(a.pg_setting) or "defaults (fsync on, synchronous_commit on)"
        print(f"traffic: {a.gateways} gateways x {a.meters} meters x {a.intervals} intervals = {total} signed records (JWS EdDSA), "
              f"QoS 1; PostgreSQL {pg.psql('SHOW server_version')}, {settings}; each row {a.repeats} runs, median reported")
        print("modes: live = the ledger runs while the fleet publishes (publisher, broker and ledger share the cores); "
              "queued = the fleet publishes into the broker's queue first, then the ledger drains it (an interval boundary)")

        def run_once(name, count, mode, n):
            tag = f"{name}-{count}-{mode}-{n}"
            work = os.path.join(root, tag)
            os.makedirs(work)
            if name == "sqlite":
                db, extra = os.path.join(work, "ledger.db"), []
            else:
                dbname = tag.replace("-", "_")
                pg.psql(f"CREATE DATABASE {dbname}")
                db, extra = f"postgresql://metergate@127.0.0.1:{pg.port}/{dbname}", ["--db-password-file", pg.password_file]
            trust, go = os.path.join(work, "trust.json"), os.path.join(work, "go")
            load = subprocess.Popen([f"{a.bin}/fleet-load", "--broker", f"127.0.0.1:{broker_port}", "--gateways", str(a.gateways),
                                     "--meters", str(a.meters), "--intervals", str(a.intervals), "--trust-out", trust,
                                     "--wait-file", go, "--linger", "3600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(load)
            wait(lambda: os.path.exists(trust), 300, "fleet-load's trust store")
            ledgers, logs = [], []
            for k in range(count):
                log = os.path.join(work, f"ledger-{k}.log")
                logs.append(log)
                ledgers.append(subprocess.Popen([f"{a.bin}/metergate", "ledger", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--trust", trust,
                                                 "--db", db, "--share", "bench"] + extra, stdout=open(log, "w"), stderr=subprocess.STDOUT))
            procs.extend(ledgers)
            for log in logs:
                wait(lambda: "count=2" in open(log).read(), 60, f"{log} to subscribe")
            if name == "sqlite":
                def stored():
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as c:
                        return c.execute("SELECT count(*) FROM readings").fetchone()[0]
            else:
                def stored():
                    return int(pg.psql("SELECT count(*) FROM readings", dbname))
            pids = [l.pid for l in ledgers]
            raw_before = raw_verify(a.bin)
            if mode == "queued":
                for l in ledgers:
                    l.send_signal(signal.SIGSTOP)
                open(go, "w").close()
                published = load.stdout.readline()
                if '"published"' not in published:
                    raise SystemExit(f"fleet_ingest: fleet-load did not publish: {published!r}")
            perf = None
            if a.perf:
                os.makedirs(a.perf, exist_ok=True)
                perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,32768", "-o", os.path.join(a.perf, f"{tag}.data"),
                                         "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = (cpu_seconds(pids), pg.cpu(), cpu_seconds([broker.pid]), cpu_seconds([load.pid]))
            t0 = time.time()
            if mode == "queued":
                for l in ledgers:
                    l.send_signal(signal.SIGCONT)
            else:
                open(go, "w").close()
            wait(lambda: stored() >= total, 1800, f"{tag} to store {total} readings")
            wall = time.time() - t0
            after = (cpu_seconds(pids), pg.cpu(), cpu_seconds([broker.pid]), cpu_seconds([load.pid]))
            ledger_cpu, pg_cpu, broker_cpu, load_cpu = (x - y for x, y in zip(after, before))
            got = stored()
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(120)
            for l in ledgers:
                l.send_signal(signal.SIGTERM)
            for l in ledgers:
                l.wait(30)
            load.send_signal(signal.SIGTERM)
            load.wait(30)
            raw = (raw_before + raw_verify(a.bin)) / 2
            size = int(pg.psql("SELECT pg_total_relation_size('readings')", dbname)) if name == "postgresql" else 0
            if name == "postgresql" and n + 1 < a.repeats:
                pg.psql(f"DROP DATABASE {dbname}")
            shutil.rmtree(work, ignore_errors=True)
            return dict(got=got, wall=wall, ledger_cpu=ledger_cpu, pg_cpu=pg_cpu, broker_cpu=broker_cpu, load_cpu=load_cpu, raw=raw, size=size)

        rates = {}
        for mode in ("live", "queued"):
            for name, count in (("sqlite", 1), ("postgresql", 1), ("postgresql", 2)):
                runs = [run_once(name, count, mode, n) for n in range(a.repeats)]
                for r in runs:
                    r["ratio"] = total / r["ledger_cpu"] / r["raw"]
                m = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
                rates[(name, count, mode)] = median([total / r["wall"] for r in runs])
                if name == "postgresql" and count == 1 and mode == "live":
                    print(f"postgresql readings table with its indexes: {m['size'] / total:.0f} bytes per reading")
                each = ", ".join(f"{r['ratio']:.2f}" for r in runs)
                print(f"ingest {name} x{count} {mode}: {min(r['got'] for r in runs)} records stored (each once: {all(r['got'] == total for r in runs)}) "
                      f"in {m['wall']:.2f} s wall = {rates[(name, count, mode)]:.0f} records/s; ledger CPU {m['ledger_cpu']:.2f} s = "
                      f"{total / m['ledger_cpu']:.0f} records/CPU-s = {m['ratio']:.2f} of raw {m['raw']:.0f} (runs: "
                      f"{each}); "
                      f"postgres CPU {m['pg_cpu']:.2f} s, broker CPU {m['broker_cpu']:.2f} s, fleet-load CPU {m['load_cpu']:.2f} s")
            one, two = rates[("postgresql", 1, mode)], rates[("postgresql", 2, mode)]
            print(f"scaling postgresql x2 / x1 {mode}: {two / one:.2f} ({two:.0f} vs {one:.0f} records/s)")
    finally:
        if pg:
            pg.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
