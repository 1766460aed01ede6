#!/usr/bin/env python3
"""MeterGate fault suite: drives the real binary (`metergate simulate`, `metergate run`, `metergate outbox
export`, `metergate replay`, `metergate verify`), a real mosquitto and mosquitto_sub, injects one kind of fault
per scenario, and accounts for every settlement interval against ground truth taken from the suite's own clock,
judged by a verifier MeterGate did not write. Standard library only, plus docs/test-vectors/peer_verify.py run
by a Python with jwcrypto and cryptography (.venv from scripts/setup.sh, or $METERGATE_PEER_PYTHON); started by
faults/run.sh.

Intervals that must exist. The suite notes, by time.time(), when it starts each gateway run and when it stops
(SIGTERM) or kills (SIGKILL) it. The runs on one store make one span, from the first start to the last stop:
the gateway keeps its open interval across a restart and turns downtime into gap intervals. A run on a new
store (a damaged one moved aside) opens a new span; the time between is covered by neither store. For a span
[S, T] and the config's interval length L (intervals aligned to UTC), the interval [a, a + L) of every meter
must exist when

    a     >= S + 1.5 s + two poll periods       (start allowance)
    a + L <= T - (0.5 s + three poll periods)   (close allowance)

Start: the process starts, opens outbox and bus, and opens a meter's first interval at its first answer.
Close: an interval is signed at the first answer after its end; one that ended just before SIGTERM is saved as
accounting state for the next run instead. Both allow a meter two failed polls in a row. Where a scenario's
meters fail polls on purpose (meters, corrupt-frames, meter-slow), the close allowance is 0.5 s + four poll
periods + two bus timeouts: the first poll after the interval's end comes within a period, each failure costs
the bus timeout, and the gateway's back-off then waits one period, then two. So the first and last intervals, partial
or near the edges, never must exist; where they do exist they are checked like any other record. Under the
clock scenario's libfaketime, S and T are read on the gateway's wall clock: S plus the offset then in force,
and the latest time that clock showed by T (a step back revisits time already signed; the hour a step
forward skips must be filled). A meter that never gives one valid answer is no exception: the gateway signs a
gap record for each of its intervals from its start, so they must exist like any other meter's.

An interval that must exist is covered by readings the subscriber received and the peer verifier accepted
(signature, canonical form, key, link to the previous seq), of any quality: quality "gap" is a signed gap
record. Or it lies in time that a verified loss statement (`store_lost`, seqs a…b, cause quota or damage)
explains: from the end of the last received reading before seq a to the start of the first after seq b.

The columns (one row per scenario):
  expected  intervals that must exist, summed over meters
  received  distinct readings (meter, epoch, seq) the subscriber got; verified: those the peer accepted
  lost      intervals that must exist and are not covered, plus readings the outbox holds as delivered that
            never arrived (even after the subscriber asked again with `metergate replay`), plus readings still
            unsent at the end, unless the scenario ends in a declared outage (then they are unsent, with why)
  dup       deliveries beyond the first of a reading
  breaks    chain breaks by the peer's verdicts: links it rejects (prev not the SHA-256 of the seq before, or not
            zero for seq 1), forks (one seq, two validly signed payloads, between the outbox and what arrived or
            within it), and runs of seqs missing from a stream that no verified statement states lost
  gaps      received readings of quality gap; replayed: readings the subscriber asked for again
  unsent    readings still in the outbox at the end of a declared outage
Every scenario that signs readings also requires the outbox drained, each stream to cover time without a hole
or overlap (each reading starts where the one before ended, unless the seqs between are stated lost), the
store's seqs 1…n, and `metergate verify` to agree with the peer. Scenarios that sign no reading to judge
(config-corpus, bad-keys) show their own counts in the first three columns and "n/a" in the others.
"""
import argparse
import base64
import bisect
import collections
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The edges of the time the gateway must cover (the module docstring has the rule). Start: the process starts,
# loads config and key, opens the outbox and the bus, and opens a meter's first interval at its first answer.
# Close: an interval is signed at the first answer after its end; one that ended just before SIGTERM is saved
# as accounting state for the next run instead. Each allows a meter two failed polls in a row.
START_ALLOWANCE_MS = 1500      # plus two poll periods
CLOSE_ALLOWANCE_MS = 500       # plus three poll periods (four and two bus timeouts where meters fail polls)
DEFAULT_BUS_TIMEOUT_MS = 500   # the gateway's, for a bus that names none


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------

def _port_range():
    """METERGATE_TEST_PORTS=LOW-HIGH (scripts/test.sh gives each concurrent step its own), else None."""
    text = os.environ.get("METERGATE_TEST_PORTS")
    if not text:
        return None
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise SystemExit(f"METERGATE_TEST_PORTS must read LOW-HIGH (1024..65535), not {text!r}")
    return range(int(low), int(high) + 1)


_PORTS = _port_range()
# From a random place in the range, as the Swift tests do: a process left over from an earlier run (a subscriber
# with the same client id) is unlikely to sit on the port this run takes first.
_next_port = [random.randrange(len(_PORTS))] if _PORTS else None
_handed_out = set()


def free_port():
    """A port on 127.0.0.1 free a moment ago; from METERGATE_TEST_PORTS when set, each handed out once, so
    two fault suites running side by side never pick the same one."""
    if _PORTS is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        if port in _handed_out:
            continue
        _handed_out.add(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port left in METERGATE_TEST_PORTS={os.environ['METERGATE_TEST_PORTS']}")


def wait_until(condition, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, argv, log, env=None):
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def running(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends `sig`, waits up to `timeout` s (then SIGKILL) and returns the exit status (-N: killed by N)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Broker:
    """A real mosquitto on a free loopback port, persistent so a restart keeps the subscriber's session."""

    def __init__(self, work, name="broker", tls=None):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(self.dir, "mosquitto.conf")
        # tls: {"ca", "cert", "key"} files: the listener speaks TLS only, with that server certificate.
        self.tls = tls
        listener = f"listener {self.port} 127.0.0.1\n"
        if tls:
            listener += f"cafile {tls['ca']}\ncertfile {tls['cert']}\nkeyfile {tls['key']}\n"
        # Started as root, mosquitto drops to its own user unless told otherwise: it then could neither save its
        # persistence file in our working directory (the subscriber's session would not survive a restart) nor
        # read the test PKI. Run as whoever runs the suite (ignored when that is not root).
        listener += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        with open(self.config, "w") as f:
            f.write(f"{listener}allow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nautosave_interval 1\nautosave_on_changes true\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\n"
                    # debug lines name each SUBACK: the subscriber is ready only once it holds its subscription
                    "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                    "log_type subscribe\nlog_type debug\n")
        self.proc = None
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.proc = Proc([tool("mosquitto"), "-c", self.config], os.path.join(self.dir, f"mosquitto-{self.starts}.log"))
        if not wait_until(lambda: listening(self.port), 10):
            raise SuiteError(f"mosquitto did not listen on {self.port}: {self.proc.log()}")

    def subacks(self, client):
        """How many SUBACKs this broker has sent to `client`, over all its starts (from its debug log)."""
        total = 0
        for n in range(1, self.starts + 1):
            try:
                with open(os.path.join(self.dir, f"mosquitto-{n}.log"), "r", errors="replace") as f:
                    total += f.read().count(f"Sending SUBACK to {client}")
            except OSError:
                pass
        return total

    def kill(self, sig=signal.SIGKILL):
        if self.proc:
            self.proc.stop(sig, timeout=10)
            self.proc = None

    def stop(self):
        self.kill(signal.SIGTERM)


class SuiteError(Exception):
    pass


class Skip(Exception):
    """The scenario cannot run on this machine; the reason is printed and the run does not fail."""


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise SuiteError(f"{name} is not installed (scripts/apt-packages.txt lists it; run bash scripts/setup.sh)")
    return path


# --------------------------------------------------------------------------------------------------
# The parts of one scenario
# --------------------------------------------------------------------------------------------------

class Scenario:
    """One scenario's working directory, processes and tallies."""

    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self.bin = suite.bin
        self.work = os.path.join(suite.work, name)
        os.makedirs(self.work, exist_ok=True)
        self.gateway_id = "fault-gw"
        self.children = []
        self.injected = []
        self.failures = []
        self.notes = []
        self.key = os.path.join(self.work, "signing.key")
        self.db = os.path.join(self.work, "state", "outbox.sqlite")
        self.received = os.path.join(self.work, "received.txt")
        # Every file the subscriber wrote in this scenario (a scenario may start it again on a new file).
        self.received_files = [self.received]
        self.gateway = None
        self.gateway_runs = 0
        self.rows = {}
        # The ground truth, from this scenario's own clock: one entry per gateway run, {"start", "stop" (time.time()),
        # "new_store"}; the interval and poll period of its config; why the scenario ends with readings unsent, if it does.
        self.runs = []
        self.interval_ms = self.poll_ms = self.timeout_ms = None
        # Whether a meter of the scenario fails polls on purpose: the close allowance then covers the back-off.
        self.failing_polls = False
        self.outage = None
        # (real time, the gateway's wall-clock offset in s from then on): the clock scenario's libfaketime steps.
        self.clock_offsets = [(0.0, 0.0)]

    # ---- helpers

    def run(self, args, timeout=60, check=False):
        r = subprocess.run([self.bin] + args, capture_output=True, text=True, errors="replace", timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise SuiteError(f"metergate {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def spawn(self, argv, log):
        p = Proc(argv, os.path.join(self.work, log))
        self.children.append(p)
        return p

    def fail(self, why):
        self.failures.append(why)

    def expect(self, condition, why):
        if not condition:
            self.fail(why)
        return condition

    def cleanup(self):
        for p in reversed(self.children):
            p.stop(signal.SIGKILL, timeout=5)
        for b in getattr(self, "brokers", []):
            b.kill()
        for m in getattr(self, "mounts", []):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)

    # ---- real parts

    def keygen(self):
        self.run(["keygen", "--out", self.key], check=True)

    def simulator(self, meters, faults=(), extra=(), rtu=None):
        """`metergate simulate`: meters is a list of "UNIT=PROFILE[:WATTS]"; returns the TCP port (or None on RTU)."""
        argv = [self.bin, "simulate", "--profiles", os.path.join(REPO, "profiles")]
        argv += ["--rtu", rtu, "--baud", "115200"] if rtu else ["--tcp", "127.0.0.1:0"]
        for m in meters:
            argv += ["--meter", m]
        for f in faults:
            argv += ["--fault", f]
        argv += list(extra)
        sim = self.spawn(argv, "simulator.log")
        want = "listening rtu" if rtu else "listening tcp"
        if not wait_until(lambda: want in sim.log() or not sim.running(), 30):
            raise SuiteError(f"the simulator did not start: {sim.log()}")
        if not sim.running():
            raise SuiteError(f"the simulator exited: {sim.log()}")
        if rtu:
            return None
        line = next(l for l in sim.log().splitlines() if "listening tcp" in l)
        return int(line.rsplit(":", 1)[1].split()[0])

    def broker(self, tls=None):
        b = Broker(self.work, f"broker{len(getattr(self, 'brokers', []))}", tls=tls)
        self.brokers = getattr(self, "brokers", []) + [b]
        return b

    def subscribe(self, broker):
        """The settlement side: mosquitto_sub, QoS 1, a persistent session, every reading as one line of the received file."""
        out = open(self.received, "ab")
        client = f"settlement-{self.name}"
        before = broker.subacks(client)
        p = subprocess.Popen([tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-c",
                              "-i", client, "-t", f"metergate/v1/{self.gateway_id}/+/reading"]
                             + (["--cafile", broker.tls["ca"]] if broker.tls else []),
                             stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        sub = Proc.__new__(Proc)
        sub.argv, sub.log_path, sub._log, sub.popen = p.args, self.received, out, p
        self.children.append(sub)
        # Ready once the broker has acknowledged the subscription: a session without it, stored by a broker stopped
        # a moment later, would let the backlog published after a restart go to nobody.
        if not wait_until(lambda: broker.subacks(client) > before, 15, 0.05):
            raise SuiteError(f"mosquitto_sub ({client}) got no SUBACK from the broker in 15 s: {tail(broker.proc.log())}")
        return sub

    def config(self, bus, meters, broker_port, interval="1s", poll="250ms", extra="", metrics_port=None, mqtt_extra="",
               key=None):
        """A gateway config: bus is a YAML flow mapping, meters a list of (id, unit, profile). metrics_port: serve
        /metrics and /health there; mqtt_extra: more keys of the mqtt mapping (", ca_file: …"); key: another key file."""
        lines = [
            f"gateway: {{ id: {self.gateway_id}, board: sim, state_dir: {self.work}/state, interval: {interval} }}",
            f"metrics: {{ listen: 127.0.0.1:{metrics_port} }}" if metrics_port else "metrics: { enabled: false }",
            "buses:",
            f"  - {bus}",
            "meters:",
        ]
        for (mid, unit, profile, *more) in meters:
            rated = f", rated_power: {more[0]}" if more else ""
            lines.append(f"  - {{ id: {mid}, bus: b, unit: {unit}, profile: {profile}, poll: {poll}{rated} }}")
        lines += [f"mqtt: {{ host: 127.0.0.1, port: {broker_port}, inflight: 64{mqtt_extra} }}", f"signing: {{ key: {key or self.key} }}"]
        if extra:
            lines.append(extra)
        path = os.path.join(self.work, "gateway.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.config_path = path
        self.meter_ids = [m[0] for m in meters]
        self.interval_ms, self.poll_ms = duration_ms(interval), duration_ms(poll)
        timeout = re.search(r"timeout: (\d+(?:ms|s|m|h))", bus)
        self.timeout_ms = duration_ms(timeout.group(1)) if timeout else DEFAULT_BUS_TIMEOUT_MS
        return path

    def gateway_args(self):
        return ["run", "--config", self.config_path, "--boards", os.path.join(REPO, "boards"),
                "--profiles", os.path.join(REPO, "profiles"), "--drain-timeout", "10s"]

    def start_gateway(self, new_store=False):
        """Starts `metergate run`; new_store: on a store that is not the last run's (the time between them is
        covered by neither)."""
        self.gateway_runs += 1
        self.note_start(new_store)
        self.gateway = self.spawn([self.bin] + self.gateway_args(), f"gateway-{self.gateway_runs}.log")
        return self.gateway

    def note_start(self, new_store=False):
        self.runs.append({"start": time.time(), "stop": None, "new_store": new_store})

    def note_stop(self):
        if self.runs and self.runs[-1]["stop"] is None:
            self.runs[-1]["stop"] = time.time()

    def kill_gateway(self):
        """SIGKILL: the run ends now, as far as the ground truth goes."""
        self.note_stop()
        os.kill(self.gateway.pid, signal.SIGKILL)
        self.gateway.stop(signal.SIGKILL, 10)

    def rtu_pair(self):
        """A shared RTU bus: a socat pty pair; returns (the simulator's end, the gateway's end)."""
        a, b = os.path.join(self.work, "ttyA"), os.path.join(self.work, "ttyB")
        socat = self.spawn([tool("socat"), "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], "socat.log")
        if not wait_until(lambda: os.path.exists(a) and os.path.exists(b), 10):
            raise SuiteError(f"socat made no pty pair: {socat.log()}")
        return a, b

    def health(self, port):
        """GET /health: (HTTP status, body), or (None, why) when the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return None, str(e)

    def metric(self, port, name):
        """The value of one unlabelled metric from /metrics (None when absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop_gateway(self):
        g = self.gateway
        self.note_stop()
        status = g.stop(signal.SIGTERM, timeout=40)
        self.expect(status == 0, f"the gateway did not stop cleanly on SIGTERM (status {status}): {tail(g.log())}")
        self.expect("stopped cleanly" in g.log(), f"no 'stopped cleanly' in the gateway log: {tail(g.log())}")
        return status

    def outbox_states(self):
        """(meter, seq) → state (0 pending, 2 delivered), read with Python's own sqlite3: a record is pending while a sink
        still owes it (a row of `pending`; a claim in the gateway's memory writes nothing)."""
        if not os.path.exists(self.db):
            return {}
        # Read again while the file is locked: a locked outbox must never count as an empty (drained) one.
        deadline = time.monotonic() + 30
        while True:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
            try:
                return {(m, s): st for (m, s, st) in con.execute(
                    "SELECT r.meter, r.seq, CASE WHEN EXISTS(SELECT 1 FROM pending p WHERE p.record_id = r.id) THEN 0 ELSE 2 END "
                    "FROM records r")}
            except sqlite3.Error as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    return {}   # not made yet (no table), or a file a scenario damaged on purpose
                if time.monotonic() > deadline:
                    raise SuiteError(f"cannot read the outbox {self.db}: {error}")
                time.sleep(0.2)
            finally:
                con.close()

    def unsent(self):
        return sum(1 for st in self.outbox_states().values() if st != 2)

    # ---- the accounting of one scenario

    def export(self, name="outbox-export.txt"):
        """`metergate outbox export` of every meter into one file; returns its path."""
        exported = os.path.join(self.work, name)
        with open(exported, "w") as out:
            for meter in self.meter_ids:
                r = self.run(["outbox", "export", "--db", self.db, "--meter", meter])
                if r.returncode != 0:
                    self.notes.append(f"{meter}: no stored records ({r.stderr.strip()})")
                    continue
                out.write(r.stdout)
        return exported

    def account(self, replay=True, archive=()):
        """Accounts for every interval that must exist and every record the gateway signed (the module docstring
        states the rules) and fills the row. A subscriber that missed records the outbox holds as delivered asks
        for them again with `metergate replay`, as a settlement system would. archive: files of signed records
        the outbox pruned by policy after delivering them (what the subscriber got), read as still stored."""
        stored, stored_lines = self.read_store(archive)
        states = self.outbox_states()
        arrived = self.read_received()[0]
        missed = sorted(k for k in stored if k not in arrived and states.get((k[0], k[2])) == 2)
        replayed = self.replay(missed) if missed and replay else 0
        received, arrivals = self.read_received()
        verified, trusted, breaks, rejected = self.judge(stored_lines, self.received_lines())
        self.check_store_seqs(stored)
        self.check_holes(verified)
        pending = sorted(k for k in stored if states.get((k[0], k[2]), 2) != 2)
        required = self.required_intervals()
        lost = self.losses(stored, states, pending, trusted, required)
        self.note_truth(required, verified)

        # metergate verify, a second opinion: it must agree with the peer on whether anything is wrong.
        v = self.verify(self.received_files + [self.export_path], from_start=True, tolerate=True) if verified or rejected else None
        peer_clean = not breaks and not rejected
        if v is not None and v["passed"] != peer_clean:
            self.fail(f"metergate verify {'passes' if v['passed'] else 'fails'}, but the peer verifier "
                      f"{'accepts every record and link' if peer_clean else 'does not'}: {verify_summary(v)}")
        self.stored = stored
        self.rows = dict(expected=sum(len(r) for r in required.values()), received=len(received),
                         verified=len(trusted), lost=len(lost), duplicated=len(arrivals) - len(received),
                         breaks=len(breaks), gaps=sum(1 for p in trusted.values() if p["quality"] == "gap"),
                         replayed=replayed, unsent=len(pending) if self.outage else 0)
        if self.outage and pending:
            self.notes.append(f"{len(pending)} records unsent at the end, not lost: {self.outage}")
        return self.rows

    def judge(self, stored_lines, got):
        """The peer verifier over everything, what arrived (`got`) and what the store holds (a seq signed again
        with other bytes after a crash shows as a fork between the two). Returns (verified, trusted, breaks,
        rejected): trusted are the received readings of which a copy the subscriber got verifies, what the
        settlement side holds. Sets self.statements (the verified `store_lost` statements) and self.announced."""
        versions = {}
        for key, lines in list(got.items()) + list(stored_lines.items()):
            versions.setdefault(key, set()).update(lines)
        if not versions:
            self.statements, self.announced = [], set()
            return {}, {}, [], 0
        verdicts = peer_verify(self.suite.peer_python, self.jwks(), versions, os.path.join(self.work, "peer-input.txt"))
        verified, statements, breaks = judge_chains(versions, verdicts)
        rejected = 0
        for (meter, _, seq), lines in sorted(versions.items()):
            for why in sorted(verdicts[l][1] for l in lines if verdicts[l][0] == "bad"):
                rejected += 1
                self.fail(f"{meter} seq {seq}: the peer verifier rejects it: {why}")
        for b in breaks:
            self.fail(f"chain break (peer verifier): {b}")
        trusted = {k: verified[k] for k, lines in got.items() if k in verified and any(verdicts[l][0] == "ok" for l in lines)}
        for st in statements:
            st["received"] = (st["meter"], st["epoch"], st["seq"]) in trusted
        self.statements = statements
        self.announced = {(st["meter"], st["epoch"], q) for st in statements for q in range(st["from_seq"], st["to_seq"] + 1)}
        return verified, trusted, breaks, rejected

    def losses(self, stored, states, pending, trusted, required):
        """{(meter, interval start): why} of everything lost, each failed: intervals that must exist and are not
        covered, readings stored as delivered that never arrived verified, and readings still unsent (unless the
        scenario ends in a declared outage). Pending readings also fail the drain check."""
        if pending and not self.outage:
            self.fail(f"the outbox did not drain: {len(pending)} records pending at the end: "
                      f"{compress_pairs([(m, q) for (m, _, q) in pending])}")
        lost = {}   # (meter, interval start) → (why, seq or None)
        for k in stored:
            if k in trusted:
                continue
            if states.get((k[0], k[2]), 2) == 2:
                lost[(k[0], stored[k]["start_ms"])] = ("stored as delivered, never received verified (even after replay)", k[2])
            elif not self.outage:
                lost[(k[0], stored[k]["start_ms"])] = ("still unsent at the end", k[2])
        for key in self.uncovered(required, trusted, self.statements):
            lost.setdefault(key, ("must exist, neither received and verified nor covered by a signed gap or loss "
                                  "statement", None))
        groups = {}
        for (meter, start), (why, seq) in sorted(lost.items()):
            starts, seqs = groups.setdefault((meter, why), ([], []))
            starts.append(start)
            seqs += [seq] if seq is not None else []
        for (meter, why), (starts, seqs) in groups.items():
            self.fail(f"{meter}: {len(starts)} intervals lost, {why}: {intervals_text(starts, self.interval_ms)}"
                      + (f" (seqs {compress(seqs)})" if seqs else ""))
        return lost

    def read_store(self, archive=()):
        """The outbox export (and `archive` files): {(meter, epoch, seq): payload} and {key: {line}}."""
        self.export_path = self.export()
        stored, lines = {}, {}
        for path in list(archive) + [self.export_path]:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        p = payload(line)
                    except Exception:
                        self.fail(f"{os.path.basename(path)}: an exported record is unreadable: {line[:80]!r}")
                        continue
                    key = (p["meter"], p["epoch"], p["seq"])
                    stored[key] = p
                    lines.setdefault(key, set()).add(line)
        return stored, lines

    def check_store_seqs(self, stored):
        """Seqs per meter in the store must be exactly 1…n, but for those a signed record states lost."""
        for meter in self.meter_ids:
            seqs = sorted(s for (m, _, s) in stored if m == meter)
            stated = {s for (m, _, s) in self.announced if m == meter}
            missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs) - stated) if seqs else []
            if missing:
                self.fail(f"{meter}: outbox seqs are not 1…{seqs[-1]}: missing {compress(missing)}")

    def check_holes(self, verified):
        """Each stream covers time without a hole or an overlap: every record starts where the one before it
        ended (an outage shows as signed gap-quality readings, never as missing time). Across seqs a signed
        record states lost the time went with them."""
        streams = {}
        for (m, e, q), p in verified.items():
            streams.setdefault((m, e), {})[q] = p
        for (meter, epoch), records in sorted(streams.items()):
            seqs = sorted(records)
            holes = [(a, b, records[b]["start_ms"] - records[a]["end_ms"]) for a, b in zip(seqs, seqs[1:])
                     if b == a + 1 and records[b]["start_ms"] != records[a]["end_ms"]]
            for (a, b, ms) in holes[:5]:
                what = "are in no reading (a hole in time)" if ms > 0 else "are in two readings (overlap)"
                self.fail(f"{meter}: {abs(ms)} ms between seq {a} and seq {b} {what}")

    def spans(self):
        """The real-time spans the gateway was supposed to cover: from its first start on a store to its last stop
        on that store (it carries the open interval across a restart and turns downtime into gap intervals)."""
        spans = []
        for run in self.runs:
            stop = run["stop"] if run["stop"] is not None else time.time()
            if spans and not run["new_store"]:
                spans[-1][1] = stop
            else:
                spans.append([run["start"], stop])
        return spans

    def wall(self, t):
        """The gateway's wall clock at real time `t`."""
        offset = 0.0
        for at, off in self.clock_offsets:   # in the order the scenario set them
            if at <= t:
                offset = off
        return t + offset

    def wall_max(self, s, t):
        """The latest wall-clock time the gateway saw between real times `s` and `t` (a step back revisits time)."""
        latest = max(self.wall(s), self.wall(t))
        for (at, _) in self.clock_offsets:
            if s < at <= t:
                latest = max(latest, self.wall(at - 1e-6))
        return latest

    def required_intervals(self):
        """meter → [interval start ms]: every interval wholly inside a span, after the start allowance and before
        the close allowance (module docstring), of every meter."""
        if not self.runs or not self.interval_ms:
            return {}
        period = self.interval_ms
        starts = []
        for s, t in self.spans():
            first = -(-int(self.wall(s) * 1000 + start_allowance_ms(self.poll_ms)) // period) * period
            end = int(self.wall_max(s, t) * 1000 - close_allowance_ms(self.poll_ms, self.timeout_ms if self.failing_polls else None)) // period * period
            starts += range(first, end - period + 1, period)
        return {m: starts for m in self.meter_ids}

    def uncovered(self, required, received, statements):
        """(meter, start) of each required interval that no verified received record covers and no signed loss
        statement explains. A statement of seqs a…b explains the time between the last received record
        before a and the first after b."""
        out = []
        for meter, starts in required.items():
            mine = {(e, q): p for (m, e, q), p in received.items() if m == meter}
            segments = [(p["start_ms"], p["end_ms"]) for p in mine.values()]
            for st in (st for st in statements if st["meter"] == meter):
                seqs = [q for (e, q) in mine if e == st["epoch"]]
                before = max((q for q in seqs if q < st["from_seq"]), default=None)
                after = min((q for q in seqs if q > st["to_seq"]), default=st["seq"])
                lo = mine[(st["epoch"], before)]["end_ms"] if before is not None else -2**62
                hi = mine[(st["epoch"], after)]["start_ms"] if (st["epoch"], after) in mine else lo
                segments.append((lo, hi))
            merged = merge_segments(segments)
            for start in starts:
                i = bisect.bisect_right(merged, (start, 2**62)) - 1
                if i < 0 or merged[i][1] < start + self.interval_ms:
                    out.append((meter, start))
        return out

    def note_truth(self, required, verified):
        """A note with what had to exist, and how near the gateway came to the allowances (to see them drift):
        when each meter's first record starts after its span began, when its last ends before the span ended."""
        if not required:
            return
        spans = self.spans()
        starts = next(iter(required.values()))
        late, unsigned = [], []
        for meter in required:
            mine = [p for (m, _, _), p in verified.items() if m == meter]
            if mine:
                late.append(min(p["start_ms"] for p in mine) / 1000 - self.wall(spans[0][0]))
                unsigned.append(self.wall_max(*spans[-1]) - (max(p["end_ms"] for p in mine) + self.interval_ms) / 1000)
        window = f", {utc(starts[0])} to {utc(starts[-1] + self.interval_ms)}" if starts else ""
        self.notes.append(f"must exist: {len(starts)} intervals per meter{window} ({len(spans)} span(s) over "
                          f"{len(self.runs)} gateway run(s); allowances: start {start_allowance_ms(self.poll_ms) / 1000:g} s, "
                          f"close {close_allowance_ms(self.poll_ms, self.timeout_ms if self.failing_polls else None) / 1000:g} s)")
        if late:
            # Where these come near the allowances (plus up to one interval of rounding), the allowances are what
            # passes the scenario. Negative: the gateway signed beyond the edge (it polls on while it stops).
            self.notes.append(f"edges: a meter's first record starts at most {max(late):+.2f} s after the first start; "
                              f"the interval after a meter's last record ends at most {max(unsigned):+.2f} s before the last stop")

    def jwks(self):
        """The signing key's public half as a JWK Set, derived with Python's cryptography, not by metergate."""
        path = os.path.join(self.work, "peer-keys.jwks.json")
        if not os.path.exists(path):
            r = subprocess.run([self.suite.peer_python, "-c", JWKS_FROM_PRIVATE_KEY, self.key], capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                raise SuiteError(f"cannot derive the public JWK of {self.key}: {r.stderr.strip()[-300:]}")
            with open(path, "w") as f:
                f.write(r.stdout)
        return path

    def read_received(self):
        """(meter, epoch, seq) of every reading received, as a set and in arrival order."""
        arrivals = [k for k, _ in self.received_records()]
        return set(arrivals), arrivals

    def received_lines(self):
        """(meter, epoch, seq) → the distinct lines received for it."""
        out = {}
        for key, line in self.received_records():
            out.setdefault(key, set()).add(line)
        return out

    def received_records(self):
        """(key, line) per complete line the subscriber wrote, in arrival order (a line mosquitto_sub is still
        writing waits for the next look)."""
        out = []
        for path in self.received_files:
            try:
                with open(path, "r", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            for line in text.split("\n")[:-1]:
                line = line.strip()
                if not line:
                    continue
                try:
                    p = payload(line)
                    out.append(((p["meter"], p["epoch"], p["seq"]), line))
                except Exception:
                    self.fail(f"received an unreadable line: {line[:80]}")
        return out

    def replay(self, missed):
        """The settlement side asks for missed seqs again (`metergate replay` from the outbox) and waits for them."""
        by_meter = {}
        for (m, _, s) in missed:
            by_meter.setdefault(m, []).append(s)
        broker = self.brokers[-1]
        for meter, seqs in by_meter.items():
            for lo, hi in ranges(seqs):
                r = self.run(["replay", "--db", self.db, "--meter", meter, "--from", str(lo), "--to", str(hi),
                              "--host", "127.0.0.1", "--port", str(broker.port), "--gateway", self.gateway_id], timeout=120)
                if r.returncode != 0:
                    self.fail(f"metergate replay {meter} {lo}…{hi}: {r.stderr.strip()[-300:]}")
        want = set(missed)
        wait_until(lambda: want <= self.read_received()[0], 30, 0.2)
        return len(missed)

    def verify(self, files, from_start, tolerate):
        args = ["verify", "--key", self.key, "--json"]
        if from_start:
            args.append("--from-start")
        if tolerate:
            args.append("--tolerate-redelivery")
        if len(files) == 1:
            args.append(files[0])
            r = self.run(args, timeout=300)
        else:
            joined = os.path.join(self.work, "joined.txt")
            with open(joined, "w") as out:
                for f in files:
                    with open(f) as inp:
                        out.write(inp.read())
            r = self.run(args + [joined], timeout=300)
        if r.returncode not in (0, 1):
            raise SuiteError(f"metergate verify exited {r.returncode}: {r.stderr}")
        return json.loads(r.stdout)


def payload(line):
    """The JSON payload of a JWS compact record."""
    part = line.strip().split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# --------------------------------------------------------------------------------------------------
# Ground truth and the independent verifier
# --------------------------------------------------------------------------------------------------

PEER_VERIFY = os.path.join(REPO, "docs", "test-vectors", "peer_verify.py")

# The public half of an Ed25519 PKCS#8 key as a JWK Set, kid the RFC 7638 thumbprint (run by the peer's Python).
JWKS_FROM_PRIVATE_KEY = r"""
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
thumbprint = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}, sort_keys=True, separators=(",", ":"))
kid = b64(hashlib.sha256(thumbprint.encode()).digest())
print(json.dumps({"keys": [{"alg": "EdDSA", "crv": "Ed25519", "kid": kid, "kty": "OKP", "use": "sig", "x": b64(raw)}]}))
"""


def find_peer_python():
    """A Python that can run peer_verify.py (jwcrypto, cryptography): $METERGATE_PEER_PYTHON, the checkout's .venv
    (scripts/setup.sh), the main checkout's where this is a git worktree, or this one; None if none can."""
    common = subprocess.run(["git", "-C", REPO, "rev-parse", "--path-format=absolute", "--git-common-dir"],
                            capture_output=True, text=True).stdout.strip() if shutil.which("git") else ""
    checkouts = [REPO] + ([os.path.dirname(common)] if common else [])
    for python in [os.environ.get("METERGATE_PEER_PYTHON")] + [os.path.join(c, ".venv", "bin", "python") for c in checkouts] \
            + [sys.executable]:
        if python and os.path.exists(python) and subprocess.run(
                [python, "-c", "import jwcrypto, cryptography"], capture_output=True).returncode == 0:
            return python
    return None


def peer_verify(python, jwks, versions, path):
    """Runs docs/test-vectors/peer_verify.py over every distinct line of `versions` ({key: {line}}), written to
    `path` sorted by stream and seq (it checks each link against the line before it). Returns {line: (verdict,
    detail)}: "ok" (detail: the payload's SHA-256), "link" (signature good, prev not the hash of seq - 1's
    payload or not zero for seq 1) or "bad" (signature, canonical form or key)."""
    ordered = [line for key in sorted(versions) for line in sorted(versions[key])]
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in ordered)
    r = subprocess.run([python, PEER_VERIFY, "jws", jwks, path], capture_output=True, text=True, timeout=900)
    verdicts = {}
    for out in r.stdout.splitlines():
        m = re.match(r"line (\d+) (?:ok seq=\d+ sha256=([0-9a-f]{64})|FAIL (.*))$", out)
        if not m:
            continue
        line = ordered[int(m.group(1)) - 1]
        if m.group(2):
            verdicts[line] = ("ok", m.group(2))
        elif "must have a zero prev" in m.group(3) or "is not the SHA-256 of seq" in m.group(3):
            verdicts[line] = ("link", m.group(3))
        else:
            verdicts[line] = ("bad", m.group(3))
    if r.returncode not in (0, 1) or len(verdicts) != len(ordered):
        raise SuiteError(f"peer_verify.py exited {r.returncode} with {len(verdicts)} verdicts for {len(ordered)} "
                         f"records: {(r.stderr or r.stdout).strip()[-500:]}")
    return verdicts


def judge_chains(versions, verdicts):
    """From the peer's verdicts: (verified {key: payload}, statements, breaks). A key is verified when all its
    versions are one payload the peer accepted, signature and link. Breaks: each link the peer rejected, each
    seq with two validly signed payloads (a fork), and each run of seqs missing from a stream (below its
    highest seq, from 1) that no verified record's `store_lost` states."""
    verified, breaks, judged = {}, [], set()
    for key, lines in sorted(versions.items()):
        meter, _, seq = key
        good = {verdicts[l][1] for l in lines if verdicts[l][0] == "ok"}
        for why in sorted(verdicts[l][1] for l in lines if verdicts[l][0] == "link"):
            breaks.append(f"{meter} seq {seq}: {why}")
            judged.add(key)
        if len(good) > 1:
            breaks.append(f"{meter} seq {seq}: a fork, {len(good)} validly signed payloads")
            judged.add(key)
        elif good and key not in judged:
            verified[key] = payload(next(l for l in lines if verdicts[l][0] == "ok"))
    statements = [dict(meter=m, epoch=e, seq=q, from_seq=p["store_lost"]["from_seq"], to_seq=p["store_lost"]["to_seq"],
                       cause=p["store_lost"].get("cause", "damage"))
                  for (m, e, q), p in sorted(verified.items()) if p.get("store_lost")]
    stated = {(st["meter"], st["epoch"], q) for st in statements for q in range(st["from_seq"], st["to_seq"] + 1)}
    streams = {}
    for (m, e, q) in versions:
        streams.setdefault((m, e), set()).add(q)
    for (m, e), seqs in sorted(streams.items()):
        missing = [q for q in range(1, max(seqs) + 1)
                   if (m, e, q) not in verified and (m, e, q) not in judged and (m, e, q) not in stated]
        for lo, hi in ranges(missing):
            breaks.append(f"{m} seqs {lo}…{hi} of epoch {e[:8]} are missing and no signed record states them lost")
    return verified, statements, breaks


def merge_segments(segments):
    """[(start, end)] → sorted, merged, touching segments joined."""
    out = []
    for a, b in sorted(segments):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def duration_ms(text):
    """A config duration ("250ms", "1s", "15m", "1h") in ms."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[m.group(2)]


def start_allowance_ms(poll_ms):
    """From the gateway's start to the first interval that must exist (module docstring)."""
    return START_ALLOWANCE_MS + 2 * poll_ms


def close_allowance_ms(poll_ms, timeout_ms=None):
    """From the end of the last interval that must exist to the stop (module docstring); `timeout_ms` for a
    scenario whose meters fail polls on purpose."""
    if timeout_ms is None:
        return CLOSE_ALLOWANCE_MS + 3 * poll_ms
    return CLOSE_ALLOWANCE_MS + 4 * poll_ms + 2 * timeout_ms


def utc(ms):
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + (f".{ms % 1000:03d}" if ms % 1000 else "")


def intervals_text(starts, period):
    """Interval starts as "10:00:03…10:00:05 (3), 10:00:09" for messages."""
    runs = []
    for s in sorted(starts):
        if runs and s == runs[-1][1] + period:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(utc(a) if a == b else f"{utc(a)}…{utc(b)} ({(b - a) // period + 1})" for a, b in runs[:8]) \
        + (f" and {len(runs) - 8} more runs" if len(runs) > 8 else "")


def verify_summary(v):
    """What `metergate verify --json` found, per stream, briefly."""
    parts = []
    for s in v["streams"]:
        found = {k: s[k] for k in ("gaps", "forks", "broken_links", "key_problems", "tampered", "unknown_key") if s.get(k)}
        if found:
            parts.append(f"{s['meter']} {found}")
    return "; ".join(parts)[:600] or ("malformed lines" if v.get("malformed") else "no finding listed")


def ranges(seqs):
    seqs = sorted(seqs)
    out = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [tuple(r) for r in out]


def compress_pairs(pairs):
    """(meter, seq) pairs as "m1 3…5, m2 1" for messages."""
    return "; ".join(f"{m} {compress(q for (mm, q) in pairs if mm == m)}" for m in sorted({m for (m, _) in pairs})) or "none"


def compress(seqs):
    return ", ".join(f"{a}" if a == b else f"{a}…{b}" for a, b in ranges(seqs)) or "none"


def tail(text, n=1500):
    return text[-n:]


# --------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------

def scenario_sigkill(sc, opts):
    """(a) SIGKILL of the gateway at random moments under load, N times; then a clean run that drains."""
    n, meters = opts.kills, opts.kill_meters
    rng = random.Random(opts.seed)
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator([f"{u}=eastron-sdm630:{1000 + 400 * u}" for u in range(1, meters + 1)])
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [(f"m{u}", u, "eastron-sdm630") for u in range(1, meters + 1)], broker.port, poll="200ms")
    mid_production = 0
    for i in range(n):
        before = len(sc.outbox_states())
        g = sc.start_gateway()
        delay = rng.uniform(opts.kill_min, opts.kill_max)
        time.sleep(delay)
        if g.running():
            # Under load: the run had stored readings of its own before it was killed.
            if len(sc.outbox_states()) > before:
                mid_production += 1
            sc.kill_gateway()
        else:
            sc.note_stop()
            sc.fail(f"run {i + 1}: the gateway had exited before the SIGKILL (status {g.popen.returncode}): {tail(g.log())}")
        if opts.verbose and (i + 1) % 50 == 0:
            print(f"  … {i + 1}/{n} kills", flush=True)
    sc.injected.append(f"{n} SIGKILLs at random moments {opts.kill_min}–{opts.kill_max} s after start "
                       f"(seed {opts.seed}), {meters} meters at 1 s intervals; {mid_production} of them after the "
                       f"run had stored readings of its own")
    sc.expect(mid_production >= max(1, n // 3), f"only {mid_production} of {n} kills came after the run stored readings")
    g = sc.start_gateway()
    time.sleep(4)
    sc.expect(g.running(), f"the last gateway run died: {tail(g.log())}")
    sc.stop_gateway()
    sc.expect(sc.unsent() == 0, f"{sc.unsent()} records still unsent after the drain")
    wait_until(lambda: len(sc.read_received()[0]) >= len(sc.outbox_states()), 10)
    sc.account()
    sc.expect(len(sc.stored) >= meters, f"too few readings stored ({len(sc.stored)}) to judge")


def scenario_broker(sc, opts):
    """(b) broker killed and restarted; then held down for a longer outage while a backlog builds (full run:
    50 meters, so a 120 s outage leaves a backlog of about 6,000 records)."""
    meters = opts.broker_meters
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator([f"{u}=eastron-sdm630:{2000 * u}" for u in range(1, meters + 1)])
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [(f"m{u}", u, "eastron-sdm630") for u in range(1, meters + 1)], broker.port,
              poll="1s" if meters > 10 else "250ms")
    g = sc.start_gateway()
    sc.expect(wait_until(lambda: len(sc.read_received()[0]) >= meters * 2, 40), "no readings before the broker kill")
    broker.kill(signal.SIGKILL)
    time.sleep(3)
    broker.start()
    sc.injected.append("broker SIGKILL, down 3 s, restarted")
    time.sleep(5)
    broker.kill(signal.SIGKILL)
    outage = opts.outage
    time.sleep(outage)
    backlog = sc.unsent()
    broker.start()
    back = time.monotonic()
    sc.injected.append(f"broker SIGKILL, held down {outage} s (backlog {backlog} records), restarted")
    drained = wait_until(lambda: sc.unsent() == 0, 60, 0.2)
    sc.expect(drained, f"the backlog did not drain within 60 s of the broker's return ({sc.unsent()} left)")
    sc.notes.append(f"backlog of {backlog} drained {time.monotonic() - back:.1f} s after the broker came back "
                    f"(includes the reconnect back-off)")
    sc.expect(backlog >= meters * max(1, outage - 3), f"the outage built too small a backlog ({backlog})")
    sc.expect(g.running(), f"the gateway died during the outage: {tail(g.log())}")
    time.sleep(2)
    sc.stop_gateway()
    time.sleep(1)
    sc.account()


def scenario_meters(sc, opts):
    """(c) meter faults on one shared RTU bus (socat pty pair): dead unit, exception replies and corrupted
    frames beside a healthy meter that must keep its pace."""
    sc.failing_polls = True
    a, b = sc.rtu_pair()
    sc.keygen()
    broker = sc.broker()
    # Each counter fault runs in a scenario of its own (see METER_VARIANTS), so one finding does not hide another.
    faults, units, meters, extra = METER_VARIANTS[opts.meter_variant]
    sc.simulator(units, faults=faults, extra=extra, rtu=a)
    sc.injected += [f"unit {f}" for f in faults]
    sc.subscribe(broker)
    sc.config(f"{{ id: b, rtu: {{ device: {b}, baud: 115200 }}, timeout: 300ms }}", meters, broker.port, poll="1s")
    g = sc.start_gateway()
    duration = opts.meter_seconds
    started = time.monotonic()
    wait_until(lambda: not g.running(), duration, 0.2)   # a crash ends the wait early
    sc.expect(g.running(), f"the gateway died under meter faults: {tail(g.log())}")
    sc.stop_gateway()
    elapsed = time.monotonic() - started
    rows = sc.account()
    by_meter = {}
    for p in sc.stored.values():
        by_meter.setdefault(p["meter"], []).append(p)
    healthy = [p for p in by_meter.get("healthy", []) if p["quality"] == "measured"]
    # The first interval is partial and start-up takes a few seconds: allow a third less than the wall time.
    sc.expect(len(healthy) >= elapsed * 0.5, f"the healthy meter made only {len(healthy)} measured readings in {elapsed:.0f} s")
    # No energy is ever negative, and no interval holds more than the load could draw (a reset or a wrap
    # taken as consumption would): 60 kW for the interval, in mWh.
    for meter, records in sorted(by_meter.items()):
        for p in records:
            span_h = max(1, p["end_ms"] - p["start_ms"]) / 3_600_000
            if p["import_mwh"] < 0 or p["import_mwh"] > 60_000_000 * span_h * 1.5:
                sc.fail(f"{meter} seq {p['seq']}: implausible import delta {p['import_mwh']} mWh over {span_h * 3600:.0f} s "
                        f"(quality {p['quality']})")
        qualities = {}
        for p in records:
            qualities[p["quality"]] = qualities.get(p["quality"], 0) + 1
        sc.notes.append(f"{meter}: {len(records)} readings {qualities}")
    sc.expect("dead" not in by_meter or all(p["quality"] != "measured" for p in by_meter["dead"][1:]),
              "the dead meter has readings marked measured")


def storage_setup(sc):
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:3000"])
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [("m1", 1, "eastron-sdm630"), ("m2", 2, "eastron-sdm630")], broker.port)
    sc.start_gateway()
    sc.expect(wait_until(lambda: len(sc.outbox_states()) >= 8, 40), "no records before the damage")


def page_size(path):
    with open(path, "rb") as f:
        header = f.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def scenario_storage_structure(sc, opts):
    """(d) a database whose b-tree pages are damaged on disk at start (every page header after the first
    overwritten): the gateway moves it aside, reports it and starts a new store with a new epoch."""
    storage_setup(sc)
    sc.stop_gateway()
    expect_drained(sc, "before the damage")
    size, page = os.path.getsize(sc.db), page_size(sc.db)
    with open(sc.db, "r+b") as f:
        for n in range(1, size // page):
            f.seek(n * page)
            f.write(b"\xff" * 12)
    sc.injected.append(f"overwrote the 12-byte b-tree header of each of the {size // page - 1} pages after the first "
                       f"({page} B pages) of {os.path.basename(sc.db)}")
    # The settlement side keeps what it got from the first store apart.
    before = os.path.join(sc.work, "received-before.txt")
    for c in [c for c in sc.children if c.log_path == sc.received]:
        c.stop(signal.SIGTERM, 5)
        sc.children.remove(c)
    shutil.move(sc.received, before)
    sc.received_files.insert(0, before)
    old_epochs = {payload(l)["epoch"] for l in open(before) if l.strip()}
    sc.subscribe(sc.brokers[-1])
    # The store is destroyed with the open interval's state: the time from the stop to the new store's first
    # interval is covered by neither store.
    g = sc.start_gateway(new_store=True)
    reported = wait_until(lambda: "damaged and moved aside" in g.log() or not g.running(), 30)
    sc.expect(reported and g.running(), f"the damage was not reported, or the gateway stopped: {tail(g.log())}")
    moved = [f for f in os.listdir(os.path.dirname(sc.db)) if f.startswith("outbox.sqlite") and f not in
             ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm")]
    sc.expect(moved, "no moved-aside file beside the outbox")
    sc.notes.append(f"moved aside: {', '.join(sorted(moved)) or 'nothing'}")
    # Long enough for intervals of the new store that must exist (module docstring).
    fresh = lambda: {k for k in sc.read_received()[0] if k[1] not in old_epochs}
    sc.expect(wait_until(lambda: len(fresh()) >= 16, 40), f"only {len(fresh())} readings from the new store")
    sc.stop_gateway()
    sc.account()
    new_epochs = {p["epoch"] for p in sc.stored.values()}
    sc.expect(not (new_epochs & old_epochs), f"the new store kept the old epoch {old_epochs}")


def scenario_storage_content(sc, opts):
    """(d) flipped bytes inside stored values at start (b-trees intact): one byte of one record per meter and of
    each meter's stored chain head (the hash the next record links to). The damage must be found (moved aside
    and reported), or at least never published or chained on as if valid."""
    storage_setup(sc)
    sc.stop_gateway()
    expect_drained(sc, "before the damage")
    con = sqlite3.connect(f"file:{sc.db}?mode=ro", uri=True)
    heads = [h for (h,) in con.execute("SELECT last_hash FROM streams")]
    records = [b for (b,) in con.execute("SELECT bytes FROM records WHERE seq = 2")]
    con.close()
    with open(sc.db, "rb") as f:
        image = bytearray(f.read())
    flips = 0
    for value, at in [(h, 7) for h in heads] + [(r, 120) for r in records]:
        start = image.find(value)
        while start >= 0:
            image[start + at] ^= 0x01
            flips += 1
            start = image.find(value, start + 1)
    with open(sc.db, "r+b") as f:
        f.write(image)
    sc.injected.append(f"flipped one bit in {flips} stored values: each meter's chain head (and the equal hash of its last "
                       f"record) and record seq 2 of each meter")
    g = sc.start_gateway()
    # 8 s: after the start and close allowances, a run on the new store must still hold intervals to judge (5 s
    # left none on a busy machine).
    time.sleep(8)
    if "damaged and moved aside" in g.log():
        # A new store: the old one's open interval went with it (see storage-structure).
        sc.runs[-1]["new_store"] = True
        sc.notes.append("the damage was found and the store moved aside")
    sc.expect(g.running(), f"the gateway stopped: {tail(g.log())}")
    sc.stop_gateway()
    sc.account()


def expect_drained(sc, when):
    """The outbox delivered everything: what a store about to be damaged must have done."""
    sc.expect(sc.unsent() == 0, f"{sc.unsent()} records unsent {when}")


def scenario_storage_wal(sc, opts):
    """(d) a truncated WAL at start: the gateway is SIGKILLed while records sit in the WAL, the WAL is cut to
    half, and the gateway restarts. The committed transactions in the cut part are gone (SQLite reads the cut
    as the end of the log); the outbox's high-water mark, kept outside the database, says which seqs had been
    published. No seq may be signed again with other bytes (a fork at the settlement side), the chain after
    the restart must link to the last record published before the kill or state the seqs the store lost
    (signed `store_lost`), and no interval may be signed twice."""
    storage_setup(sc)
    time.sleep(2)
    sc.kill_gateway()
    before = sc.read_received()[0]
    sc.expect(os.path.exists(sc.db + ".mark-a") or os.path.exists(sc.db + ".mark-b"), "no high-water mark beside the outbox")
    wal = sc.db + "-wal"
    size = os.path.getsize(wal) if os.path.exists(wal) else 0
    sc.expect(size > 0, "no WAL to damage after the SIGKILL")
    with open(wal, "r+b") as f:
        f.truncate(size // 2)
    sc.injected.append(f"SIGKILL, then the WAL cut from {size} to {size // 2} bytes")
    g = sc.start_gateway()
    time.sleep(6)
    if "damaged and moved aside" in g.log():
        sc.notes.append("the damage was found and the store moved aside")
    sc.expect(g.running(), f"the gateway stopped: {tail(g.log())}")
    sc.stop_gateway()
    wait_until(lambda: len(sc.read_received()[0]) >= len(sc.outbox_states()), 10)
    sc.account()

    # No fork (a seq signed again with other bytes) and no broken link across the restart: the peer verifier
    # over the outbox and what was received together, checked in account(). It checks the link of the record
    # stating the loss to seq to_seq, the last published before the kill, where that record was received.
    lines = {}
    exported = os.path.join(sc.work, "outbox-export.txt")
    for path in (sc.received, exported):
        with open(path, errors="replace") as f:
            for line in f:
                if line.strip():
                    p = payload(line)
                    lines.setdefault((p["meter"], p["epoch"], p["seq"]), set()).add(line.strip())
    # No interval signed twice: one seq per (meter, epoch, interval start).
    starts = {}
    for (m, e, q), v in lines.items():
        starts.setdefault((m, e, payload(next(iter(v)))["start_ms"]), set()).add(q)
    twice = sorted((k, sorted(v)) for k, v in starts.items() if len(v) > 1)
    sc.expect(not twice, f"intervals signed twice under different seqs: {twice[:5]}")
    # Stated seqs that never arrived (handed to MQTT, killed before the broker had them): explicit, signed gaps.
    received = sc.read_received()[0]
    recovered = [st for st in sc.statements if st["cause"] == "damage"]
    for st in recovered:
        never = [q for q in range(st["from_seq"], st["to_seq"] + 1) if (st["meter"], st["epoch"], q) not in received]
        if never:
            sc.notes.append(f"{st['meter']}: seqs {compress(never)} never arrived; seq {st['seq']} states them lost, signed")
    published_max = {}
    for (m, e, q) in before:
        published_max[(m, e)] = max(published_max.get((m, e), 0), q)
    for (m, e), q in sorted(published_max.items()):
        sc.expect((m, e, q) in sc.stored or (m, e, q) in sc.announced,
                  f"{m}: seq {q} was received before the kill but is neither stored nor stated lost")
    summary = ", ".join(f"{st['meter']} lost {st['from_seq']}…{st['to_seq']} (stated by seq {st['seq']})" for st in recovered)
    sc.notes.append(f"streams continued from the high-water mark: {summary or 'none (the cut lost no published record)'}")


def scenario_config_corpus(sc, opts):
    """(e) a generated corpus of malformed config files: each must give exit 2 and a message naming the
    file and a key (or the line), never a crash."""
    rng = random.Random(opts.seed)
    sc.keygen()   # `check` opens the signing key too
    good = {
        "gateway": "{ id: gw, board: sim, state_dir: /tmp/x, interval: 1s }",
        "buses": "\n  - { id: b, tcp: { host: 127.0.0.1, port: 1502 }, timeout: 500ms }",
        "meters": "\n  - { id: m1, bus: b, unit: 1, profile: eastron-sdm630, poll: 1s }",
        "mqtt": "{ host: 127.0.0.1, port: 1883, inflight: 64 }",
        "signing": f"{{ key: {sc.key} }}",
        "outbox": "{ retention: 30d, quota: 256MB, quota_policy: keep }",
    }
    mutations = [
        ("gateway", "{ id: 'a/b', board: sim }", "gateway.id"),
        ("gateway", "{ id: gw, board: nope }", "gateway.board"),
        ("gateway", "{ id: gw, board: sim, interval: fast }", "gateway.interval"),
        ("gateway", "{ id: gw, board: sim, interval: 0s }", "gateway.interval"),
        ("gateway", "{ id: '', board: sim }", "gateway.id"),
        ("gateway", "{ id: 'gw+', board: sim }", "gateway.id"),
        ("gateway", "{ id: gw, board: sim, colour: red }", "gateway.colour"),
        ("gateway", "[1, 2, 3]", "gateway"),
        ("buses", "\n  - { id: b, tcp: { host: 127.0.0.1, port: 70000 } }", "buses[0].tcp.port"),
        ("buses", "\n  - { id: b, tcp: { host: 127.0.0.1, port: x } }", "buses[0].tcp.port"),
        ("buses", "\n  - { id: b, rtu: { device: /dev/null, baud: -5 } }", "buses[0].rtu.baud"),
        ("buses", "\n  - { id: b, timeout: 500ms }", "buses[0]"),
        ("buses", "\n  - { id: b, tcp: { host: 127.0.0.1, port: 1502 }, timeout: forever }", "buses[0].timeout"),
        ("meters", "\n  - { id: m1, bus: nobus, unit: 1, profile: eastron-sdm630 }", "meters[0].bus"),
        ("meters", "\n  - { id: m1, bus: b, unit: 300, profile: eastron-sdm630 }", "meters[0].unit"),
        ("meters", "\n  - { id: m1, bus: b, unit: 1, profile: no-such-meter }", "meters[0].profile"),
        ("meters", "\n  - { id: 'm#1', bus: b, unit: 1, profile: eastron-sdm630 }", "meters[0].id"),
        ("meters", "\n  - { id: m1, bus: b, unit: 1, profile: eastron-sdm630, poll: soon }", "meters[0].poll"),
        ("meters", "\n  - { bus: b, unit: 1, profile: eastron-sdm630 }", "meters[0].id"),
        ("meters", "\n  - { id: m1, bus: b, unit: 1, profile: eastron-sdm630 }\n  - { id: m1, bus: b, unit: 2, profile: eastron-sdm630 }", "meters[1]"),
        ("meters", "{ id: m1 }", "meters"),
        ("mqtt", "{ host: 127.0.0.1, port: -1 }", "mqtt.port"),
        ("mqtt", "{ host: 127.0.0.1, inflight: 0 }", "mqtt.inflight"),
        ("mqtt", "{ host: 127.0.0.1, qos: 7 }", "mqtt.qos"),
        ("signing", "{ key: /tmp/k.key, algorithm: RSA }", "signing.algorithm"),
        ("outbox", "{ quota: lots }", "outbox.quota"),
        ("outbox", "{ retention: -3d }", "outbox.retention"),
        ("outbox", "{ quota_policy: shred }", "outbox.quota_policy"),
    ]
    corpus = []
    for (section, bad, key) in mutations:
        doc = dict(good)
        doc[section] = bad
        corpus.append((f"{section}: {bad.strip()[:50]}", render(doc), key))
    # Structural damage: dropped sections, wrong types at the top, broken YAML, binary junk.
    corpus.append(("no gateway section", render({k: v for k, v in good.items() if k != "gateway"}), "gateway"))
    corpus.append(("unknown top-level key", render(dict(good, bogus="1")), "bogus"))
    corpus.append(("a list at the top", "- 1\n- 2\n", None))
    corpus.append(("unclosed flow mapping", "gateway: { id: gw, board: sim\n", None))
    corpus.append(("tab indentation", "gateway:\n\tid: gw\n", None))
    corpus.append(("empty file", "", None))
    text = render(good)
    for i in range(opts.corpus_random):
        kind = rng.choice(["truncate", "delete", "junk", "dup"])
        if kind == "truncate":
            cut = rng.randrange(1, len(text))
            corpus.append((f"truncated at byte {cut}", text[:cut], None))
        elif kind == "delete":
            i0 = rng.randrange(len(text))
            corpus.append((f"byte {i0} deleted", text[:i0] + text[i0 + 1:], None))
        elif kind == "junk":
            i0 = rng.randrange(len(text))
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))).decode("latin-1")
            corpus.append((f"{len(junk)} random bytes at {i0}", text[:i0] + junk + text[i0:], None))
        else:
            line = rng.choice(text.splitlines())
            corpus.append((f"line repeated: {line[:30]}", text + line + "\n", None))
    crashes, wrong_exit, unnamed, accepted, well = [], [], [], 0, 0
    for n, (what, body, key) in enumerate(corpus):
        path = os.path.join(sc.work, f"config-{n:03d}.yaml")
        with open(path, "w", encoding="latin-1" if any(ord(c) > 127 for c in body) else "utf-8") as f:
            f.write(body)
        r = sc.run(["check", "--config", path, "--boards", os.path.join(REPO, "boards"), "--profiles", os.path.join(REPO, "profiles")], timeout=30)
        if r.returncode < 0 or r.returncode > 2 or "Fatal error" in r.stderr:
            crashes.append(f"{what}: status {r.returncode}: {r.stderr[-300:]}")
        elif r.returncode == 0:
            # A random edit may leave a valid file (a deleted blank, a repeated comment): not an error.
            if key is not None:
                wrong_exit.append(f"{what}: accepted, expected an error at {key}")
            accepted += 1
        elif r.returncode != 2:
            wrong_exit.append(f"{what}: exit {r.returncode}: {r.stderr.strip()[:200]}")
        elif path not in r.stderr or (key is not None and key not in r.stderr):
            unnamed.append(f"{what}: expected '{path}' and '{key}' in: {r.stderr.strip()[:300]}")
        else:
            well += 1
    sc.injected.append(f"{len(corpus)} malformed config files ({len(mutations)} targeted, {opts.corpus_random} random edits, seed {opts.seed})")
    for c in crashes:
        sc.fail(f"crash: {c}")
    for w in wrong_exit:
        sc.fail(f"wrong exit: {w}")
    for u in unnamed:
        sc.fail(f"message does not name the file and key: {u}")
    refused = len(corpus) - accepted
    sc.expect(well + accepted == len(corpus), f"of {len(corpus)} files {well} were refused well and {accepted} accepted")
    sc.notes.append(f"{refused} refused, {well} of them with exit 2 naming the file and key; {accepted} random edits still valid")
    # No reading is signed here: the reading columns do not apply.
    sc.rows = dict(expected=len(corpus), received=refused, verified=well, **NO_READINGS)
    sc.columns = ("files", "refused", "well reported")


def render(doc):
    return "".join(f"{k}: {v}\n" for k, v in doc.items())


def scenario_corrupt_frames(sc, opts):
    """(e) random bytes as Modbus responses: the simulator damages every answer of one unit; the gateway
    must reject them all (no reading from garbage), keep the other unit, and not crash."""
    sc.failing_polls = True
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:3000"], faults=["2=corrupt"])
    sc.injected.append("unit 2 answers every request with a damaged frame (Modbus TCP)")
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 300ms }}",
              [("good", 1, "eastron-sdm630"), ("garbage", 2, "eastron-sdm630")], broker.port, poll="250ms")
    g = sc.start_gateway()
    time.sleep(opts.meter_seconds / 2)
    sc.expect(g.running(), f"the gateway died on damaged frames: {tail(g.log())}")
    sc.stop_gateway()
    sc.account()
    measured = [p for p in sc.stored.values() if p["meter"] == "garbage" and p["quality"] == "measured" and p["samples"] > 0]
    sc.expect(not measured, f"{len(measured)} readings of the garbage meter are marked measured with samples")
    good = [p for p in sc.stored.values() if p["meter"] == "good" and p["quality"] == "measured"]
    sc.expect(len(good) >= 3, f"the good meter made only {len(good)} measured readings")


def faketime_library():
    for d in ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime"):
        lib = os.path.join(d, "libfaketimeMT.so.1")
        if os.path.exists(lib):
            return lib
    raise SuiteError("libfaketime is not installed (Debian package faketime, listed in scripts/apt-packages.txt)")


class FaketimeShared:
    """Holds libfaketime's shared semaphore and memory for processes started under LD_PRELOAD.

    libfaketime 0.9.10 (Debian 12) creates a semaphore and a shared memory object in its constructor for every
    process it loads into, unless FAKETIME_SHARED names existing ones, and exports their names with setenv().
    setenv() moves `environ` to the heap, and the Swift runtime on Linux finds argv by walking back from
    `environ` towards the initial stack (stdlib/public/stubs/CommandLine.cpp, ArgvGrabber): a Swift binary then
    sees an empty CommandLine.arguments. The `faketime` wrapper creates both objects and exports the variable
    before it starts its command; a holder started through it lends the names to the gateway, whose libfaketime
    finds the variable set and leaves `environ` alone. Closing the holder's stdin ends it, and the wrapper then
    removes both objects."""

    log_path = None

    def __init__(self):
        if not shutil.which("faketime"):
            raise SuiteError("the faketime command is not installed (Debian package faketime, listed in scripts/apt-packages.txt)")
        self.popen = subprocess.Popen(["faketime", "-f", "+0", "sh", "-c", 'printf "%s\\n" "$FAKETIME_SHARED"; exec cat >/dev/null'],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.names = self.popen.stdout.readline().strip()
        if not self.names.startswith("/faketime_sem_"):
            self.stop()
            raise SuiteError(f"the faketime wrapper exported no FAKETIME_SHARED names: {self.names!r}")

    def stop(self, sig=None, timeout=10):
        if self.popen.poll() is None:
            self.popen.stdin.close()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def clock_steps_logged(log, meter):
    """The gateway's `interval <quality>` notices for `meter` that carry a wall-clock step, as
    (start_ms, quality, step_ns)."""
    found = []
    for line in log.splitlines():
        m = re.search(r"interval (\w+) events=\"?([^\"]*)\"? meter=(\S+) start=(\d+)", line)
        if not m or m.group(3) != meter:
            continue
        for ns in re.findall(r"clockStep\(nanoseconds: (-?\d+)\)", m.group(2)):
            found.append((int(m.group(4)), m.group(1), int(ns)))
    return found


def scenario_clock(sc, opts):
    """(f) the wall clock stepped under the running gateway (libfaketime, monotonic clocks left alone): back
    20 s, forward 1 h, back 1 h, back 90 s. No crash, every reading verifies and chains, no interval overlaps
    the one before it, every step is logged when it happens, and the intervals that carry the first two
    steps are marked (quality) in the records. After a step back the open interval takes the energy and
    closes only when the wall clock has caught up, so the 1 h and 90 s steps back end the run still open
    (their marking is covered by AccountingTests)."""
    lib = faketime_library()
    # Timers on the monotonic clocks must stay real (faults/faketime-timerfd.c says why).
    shim = os.path.join(sc.work, "faketime-timerfd.so")
    cc = shutil.which("cc") or shutil.which("clang")
    built = subprocess.run([cc or "cc", "-shared", "-fPIC", "-O2", "-o", shim, os.path.join(REPO, "faults", "faketime-timerfd.c")],
                           capture_output=True, text=True) if cc else None
    if not built or built.returncode != 0:
        raise SuiteError(f"cannot build faults/faketime-timerfd.c: {built.stderr.strip() if built else 'no C compiler'}")
    shared = FaketimeShared()
    sc.children.append(shared)
    offset_file = os.path.join(sc.work, "faketime")
    with open(offset_file, "w") as f:
        f.write("+0\n")
    env = dict(os.environ, LD_PRELOAD=f"{shim}:{lib}", FAKETIME_SHARED=shared.names, FAKETIME_TIMESTAMP_FILE=offset_file,
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_DONT_RESET="1")
    env.pop("FAKETIME", None)
    probe = subprocess.run([sc.bin, "keygen", "--help"], capture_output=True, text=True, env=env, timeout=30)
    if "USAGE: metergate keygen" not in probe.stdout:
        raise SuiteError(f"metergate sees no arguments under libfaketime even with FAKETIME_SHARED set: {probe.stdout[:200]!r}")
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:3000"])
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [("m1", 1, "eastron-sdm630"), ("m2", 2, "eastron-sdm630")], broker.port)
    sc.gateway_runs += 1
    sc.note_start()
    g = Proc([sc.bin, "run", "--config", sc.config_path, "--boards", os.path.join(REPO, "boards"),
              "--profiles", os.path.join(REPO, "profiles"), "--drain-timeout", "10s"],
             os.path.join(sc.work, f"gateway-{sc.gateway_runs}.log"), env=env)
    sc.children.append(g)
    sc.gateway = g
    sc.expect(wait_until(lambda: len(sc.read_received()[0]) >= 4, 40), f"no readings before the clock steps: {tail(g.log())}")
    # (offset, seconds held, the step it makes in seconds, whether its interval closes within the hold)
    steps = [("-20s", 26, -20, True), ("+1h", 6, 3620, True), ("+0", 6, -3600, False), ("-90s", 6, -90, False)]
    for offset, hold, made, closes in steps:
        with open(offset_file, "w") as f:
            f.write(offset + "\n")
        # The ground truth follows the gateway's wall clock: the intervals it must sign are those its clock passed.
        sc.clock_offsets.append((time.time(), sc.clock_offsets[-1][1] + made))
        time.sleep(hold)
        if closes:
            # A busy machine may close the interval carrying the step after the hold (the hour skipped is thousands of
            # gap readings to sign first); the next step back would then hold it open for an hour. Wait for its notice.
            def carried(step=made):
                return all(any(abs(m[2] / 1e9 - step) < 3 for m in clock_steps_logged(g.log(), meter)) for meter in sc.meter_ids)
            sc.expect(wait_until(carried, 120, 0.5), f"no interval carrying the {made:+d} s step closed within {hold} + 120 s: {tail(g.log())}")
    sc.injected.append("wall clock offset " + " → ".join(f"{o} for {h} s" + (" and until its interval closed" if c else "") for o, h, _, c in steps)
                       + " (libfaketime; monotonic clocks real)")
    sc.expect(g.running(), f"the gateway died on a clock step: {tail(g.log())}")
    # The hour skipped forward is thousands of gap readings; a busy machine needs a while to sign and deliver them.
    # An empty backlog alone proves nothing while they are still being signed (not yet in the outbox): wait until
    # each meter holds at least one record per second skipped (the interval is 1 s) and every record is sent.
    skipped = sum(made for _, _, made, _ in steps if made > 0)

    def stored_and_sent():
        states = sc.outbox_states()
        per_meter = collections.Counter(meter for meter, _ in states)
        return all(per_meter[m] >= skipped for m in sc.meter_ids) and all(st == 2 for st in states.values())

    waited = time.monotonic()
    sc.expect(wait_until(stored_and_sent, 180, 0.5),
              f"the gap readings of the {skipped} s skipped were not all stored and sent within 180 s "
              f"({sc.unsent()} unsent, {len(sc.outbox_states())} stored)")
    sc.notes.append(f"the backlog was stored and drained {time.monotonic() - waited:.0f} s after the last step's hold")
    sc.stop_gateway()
    shared.stop()
    sc.account()
    log = g.log()
    stepped = [int(ms) for ms in re.findall(r"wall clock stepped .* step_ms=(-?\d+)", log)]
    for _, _, made, _ in steps:
        sc.expect(any(abs(ms / 1000 - made) < 3 for ms in stepped), f"the {made:+d} s clock step is not logged (logged, ms: {stepped})")
    for meter in sc.meter_ids:
        # Overlapping intervals (one wall-clock time signed twice) are a hole check of account().
        records = sorted((p for p in sc.stored.values() if p["meter"] == meter), key=lambda p: p["seq"])
        qualities = {}
        for p in records:
            qualities[p["quality"]] = qualities.get(p["quality"], 0) + 1
        marked = clock_steps_logged(log, meter)
        by_start = {p["start_ms"]: p for p in records}
        for _, _, made, closes in steps:
            match = [m for m in marked if abs(m[2] / 1e9 - made) < 3]
            if not closes:
                continue
            if not sc.expect(match, f"{meter}: no closed interval carries the {made:+d} s clock step (marked: {marked})"):
                continue
            start, quality, _ = match[0]
            record = by_start.get(start)
            sc.expect(record is not None and record["quality"] == quality != "measured",
                      f"{meter}: the interval at {start} with the {made:+d} s step is not marked {quality} in the records "
                      f"({record and record['quality']})")
        sc.notes.append(f"{meter}: {len(records)} readings {qualities}; steps marked in closed intervals (s): "
                        f"{[round(m[2] / 1e9, 1) for m in marked]}")
    sc.notes.append(f"clock steps logged by the gateway (s): {[round(ms / 1000, 1) for ms in stepped]}")


HEALTHY = ("1=eastron-sdm630:3000", ("healthy", 1, "eastron-sdm630"))
METER_VARIANTS = {
    # Dead unit, exception replies and damaged frames on one shared bus beside a healthy meter.
    "faults": (["2=no-answer", "3=exception:4/every=3", "4=corrupt/every=3"],
               [HEALTHY[0], "2=eastron-sdm630:3000", "3=eastron-sdm630:3000", "4=eastron-sdm630:3000"],
               [HEALTHY[1], ("dead", 2, "eastron-sdm630"), ("exceptions", 3, "eastron-sdm630"), ("corrupt", 4, "eastron-sdm630")], []),
    # Counter reset (meter replaced or cleared) with no rated_power in the config.
    "reset": (["5=reset/after=6"], [HEALTHY[0], "5=eastron-sdm630:3000"], [HEALTHY[1], ("reset", 5, "eastron-sdm630")], []),
    # A u64 register (abb-b23, 0.01 kWh) that wraps at 10000 raw units (100 kWh), no rated_power.
    "rollover": (["6=rollover:10000/after=4"], [HEALTHY[0], "6=abb-b23:50000"], [HEALTHY[1], ("rollover", 6, "abb-b23")],
                 ["--import-kwh", "6=99.9"]),
    # Both again, with rated_power set: the accountant can tell a plausible wrap from a reset.
    "rated": (["5=reset/after=6", "6=rollover:10000/after=4"], [HEALTHY[0], "5=eastron-sdm630:3000", "6=abb-b23:50000"],
              [HEALTHY[1], ("reset", 5, "eastron-sdm630", 10000), ("rollover", 6, "abb-b23", 100000)], ["--import-kwh", "6=99.9"]),
}


def meter_variant(variant, doc):
    def run(sc, opts):
        opts.meter_variant = variant
        scenario_meters(sc, opts)
    run.__doc__ = doc
    return run


# --------------------------------------------------------------------------------------------------
# Slow and replaced meters, a full or capped outbox, bad signing keys, a broker behind the wrong CA
# --------------------------------------------------------------------------------------------------

def by_meter(stored):
    """The stored readings of each meter, in seq order."""
    out = {}
    for p in sorted(stored.values(), key=lambda p: p["seq"]):
        out.setdefault(p["meter"], []).append(p)
    return out


def constant_loads(watts):
    """Simulator options for a constant load per unit ({unit: W}): known energy per interval."""
    return [a for unit, w in sorted(watts.items()) for a in ("--load", f"{unit}=constant:{w}")]


def span_hours(p):
    return max(1, p["end_ms"] - p["start_ms"]) / 3_600_000


def tally_qualities(sc, readings):
    for meter, records in sorted(readings.items()):
        qualities = {}
        for p in records:
            qualities[p["quality"]] = qualities.get(p["quality"], 0) + 1
        sc.notes.append(f"{meter}: {len(records)} readings {qualities}")


def check_energy(sc, meter, records, watts, tolerance):
    """Every interval's import against the simulator's constant power (mWh = W × h × 1000), within
    `tolerance` of it (at least 60 mWh: a counter read a poll late); the whole run within 5 %."""
    bad = []
    for p in records:
        want = watts * span_hours(p) * 1000
        if p["export_mwh"] != 0 or abs(p["import_mwh"] - want) > max(60, tolerance * want):
            bad.append(f"seq {p['seq']} {p['quality']}: {p['import_mwh']} mWh import, {p['export_mwh']} export over "
                       f"{span_hours(p) * 3600:.2f} s, expected {want:.0f}")
    for b in bad[:5]:
        sc.fail(f"{meter}: {b}")
    total = sum(p["import_mwh"] for p in records)
    want = sum(watts * span_hours(p) * 1000 for p in records)
    sc.expect(records and abs(total - want) <= 0.05 * want,
              f"{meter}: {total} mWh in all, expected {want:.0f} ({len(records)} readings)")
    return len(bad)


def scenario_meter_slow(sc, opts):
    """(c) a slow unit on a shared RTU bus: a third of its answers come after the gateway's timeout, a third late
    but within it. The healthy neighbour keeps its poll rate, and no late reply is taken for the answer to the
    next request: every interval's kWh matches the simulator's known power."""
    sc.failing_polls = True
    a, b = sc.rtu_pair()
    sc.keygen()
    broker = sc.broker()
    watts = {"healthy": 1000, "slow": 5000}
    calm = opts.meter_seconds / 2   # the first part, without the fault: the healthy meter's baseline poll rate
    # Later faults win for a request both match: of each 6 requests to unit 2, 2 answer after 450 ms (past
    # the 300 ms timeout), 2 after 150 ms, 2 at once; a poll takes 2 requests, so about every other poll of
    # unit 2 succeeds. Distinct counters (100 and 700 kWh) make a reply taken for the other unit's show as a
    # jump of 600 kWh.
    faults = [f"2=slow:150ms/every=2/after={calm}", f"2=slow:450ms/every=3/after={calm}"]
    started = time.time()
    sc.simulator([f"1=eastron-sdm630:{watts['healthy']}", f"2=eastron-sdm630:{watts['slow']}"], faults=faults,
                 extra=["--import-kwh", "1=100", "--import-kwh", "2=700"] + constant_loads({1: watts["healthy"], 2: watts["slow"]}),
                 rtu=a)
    listening = time.time()
    sc.injected.append(f"unit 2 slow from {calm:.0f} s: answers 450 ms late (timeout 300 ms) to every third request, "
                       f"150 ms late to most others; unit 1 healthy; both polled every 500 ms")
    sc.subscribe(broker)
    sc.config(f"{{ id: b, rtu: {{ device: {b}, baud: 115200 }}, timeout: 300ms }}",
              [("healthy", 1, "eastron-sdm630"), ("slow", 2, "eastron-sdm630")], broker.port, poll="500ms")
    g = sc.start_gateway()
    wait_until(lambda: not g.running(), calm + opts.meter_seconds * 0.75, 0.2)
    sc.expect(g.running(), f"the gateway died beside a slow meter: {tail(g.log())}")
    sc.stop_gateway()
    sc.account()
    readings = by_meter(sc.stored)
    tally_qualities(sc, readings)
    # The healthy meter's samples per second before the fault (a run without it) and while it lasts; a
    # second's margin around the switch, which the simulator makes between `started` and `listening`.
    switch_ms = (started + calm) * 1000, (listening + calm) * 1000

    def rate(records):
        seconds = sum(span_hours(p) for p in records) * 3600
        return sum(p["samples"] for p in records) / seconds if seconds else 0

    healthy = readings.get("healthy", [])[1:]   # the first interval starts with the gateway, part way
    before = [p for p in healthy if p["end_ms"] <= switch_ms[0] - 500]
    during = [p for p in healthy if p["start_ms"] >= switch_ms[1] + 1000]
    r0, r1 = rate(before), rate(during)
    sc.notes.append(f"healthy meter: {r0:.2f} samples/s over {len(before)} intervals without the slow unit, "
                    f"{r1:.2f} over {len(during)} with it")
    if sc.expect(len(before) >= 3 and len(during) >= 3, f"too few intervals to compare ({len(before)}, {len(during)})"):
        sc.expect(r1 >= 0.75 * r0, f"the healthy meter's poll rate fell from {r0:.2f} to {r1:.2f} samples/s")
    slow_after = [p for p in readings.get("slow", []) if p["start_ms"] >= switch_ms[1] + 1000]
    sc.expect(any(p["samples"] > 0 for p in slow_after), "no answer of the slow unit was used at all")
    late = sum(1 for l in g.log().splitlines() if "slow" in l and ("timeout" in l.lower() or "timed out" in l.lower()))
    sc.notes.append(f"{late} gateway log lines report a timeout of the slow unit")
    for meter, records in readings.items():
        check_energy(sc, meter, records[1:], watts[meter], 0.4)


def scenario_meter_replaced(sc, opts):
    """(c) a meter replaced mid-interval: the simulator's unit comes back with a new serial number and its
    counter near 0 (50 Wh). No negative or huge kWh, the interval that holds the swap is flagged, the chain
    goes on, nothing lost."""
    sc.keygen()
    broker = sc.broker()
    swap = 6.5   # seconds after the simulator starts: half way through a 1 s interval
    started = time.time()
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:4000"], faults=[f"2=replace:0.05/after={swap}"],
                        extra=["--import-kwh", "2=1234.5"] + constant_loads({1: 3000, 2: 4000}))
    listening = time.time()
    sc.injected.append(f"unit 2 replaced {swap} s after the simulator started: counter 1234.5 kWh → 0.05 kWh, new serial")
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [("healthy", 1, "eastron-sdm630"), ("replaced", 2, "eastron-sdm630")], broker.port, poll="250ms")
    g = sc.start_gateway()
    wait_until(lambda: not g.running(), swap + opts.meter_seconds / 2, 0.2)
    sc.expect(g.running(), f"the gateway died on the meter swap: {tail(g.log())}")
    sc.stop_gateway()
    sc.account()
    readings = by_meter(sc.stored)
    tally_qualities(sc, readings)
    lo, hi = (started + swap) * 1000, (listening + swap) * 1000
    records = readings.get("replaced", [])
    sc.expect(any(p["end_ms"] < lo for p in records) and any(p["start_ms"] > hi for p in records),
              "the replaced meter has no readings on both sides of the swap")
    for p in records[1:]:
        # The swap loses at most what was drawn since the last poll; never pays the old or new meter's total.
        want = 4000 * span_hours(p) * 1000
        if p["import_mwh"] < 0 or p["import_mwh"] > 1.5 * want + 60:
            sc.fail(f"replaced seq {p['seq']} ({p['quality']}): {p['import_mwh']} mWh over "
                    f"{span_hours(p) * 3600:.2f} s, expected at most {1.5 * want:.0f}")
    at_swap = [p for p in records if p["start_ms"] <= hi and p["end_ms"] >= lo]
    flagged = [p for p in at_swap if p["quality"] != "measured"]
    sc.expect(flagged, f"no reading around the swap is flagged: {[(p['seq'], p['quality']) for p in at_swap]}")
    sc.notes.append("around the swap: " + ", ".join(f"seq {p['seq']} {p['quality']} {p['import_mwh']} mWh" for p in at_swap))
    # The swap is known by the meter's identity (the simulator serves its serial in the Eastron serial register, and
    # a replacement meter has another): the records name the serial that answered, one states the swap, signed.
    old_id, new_id = "eastron:SDM630:2", "eastron:SDM630:500002"
    ids = [p.get("source", {}).get("id") for p in records]
    sc.expect(ids and ids[0] == old_id and ids[-1] == new_id,
              f"the replaced meter's records name {sorted(set(map(str, ids)))}, expected {old_id}, then {new_id}")
    statements = [p for p in records if "replaced" in p]
    sc.expect(len(statements) == 1, f"{len(statements)} records state the replacement, expected one")
    for p in statements:
        st = p["replaced"]
        sc.expect(st["old"] == old_id and st["new"] == new_id, f"the statement names {st['old']} → {st['new']}")
        sc.expect(st["old_import_mwh"] >= 1_234_500_000 and 50_000 <= st["new_import_mwh"] < 1_000_000,
                  f"the counters in the statement: {st}")
        sc.expect(p["quality"] != "measured" and p["start_ms"] <= st["at_ms"] < p["end_ms"],
                  f"the record stating the swap, seq {p['seq']}: {p['quality']}, {p['start_ms']}…{p['end_ms']}, at {st['at_ms']}")
        sc.notes.append(f"seq {p['seq']} states, signed: {st['old']} (import {st['old_import_mwh']} mWh) replaced by "
                        f"{st['new']} (import {st['new_import_mwh']} mWh)")
    sc.expect(any("meter replaced" in l for l in g.log().splitlines()), "the gateway log names no meter replacement")
    sc.expect(any("interval" in l and "meterReplaced" in l for l in g.log().splitlines()),
              "no flagged interval's log line names the meterReplaced event")
    check_energy(sc, "healthy", readings.get("healthy", [])[1:], 3000, 0.4)
    # The energy after the swap is the new meter's own: no more, no less.
    after = [p for p in records if p["start_ms"] > hi]
    check_energy(sc, "replaced", after, 4000, 0.4)


def log_fields(line):
    """The key=value metadata of one gateway log line."""
    fields = {}
    for part in line.split(" "):
        if "=" in part:
            k, _, v = part.partition("=")
            fields[k] = v.strip('"')
    return fields


def two_meters(sc, **config):
    """Two healthy meters on Modbus TCP, a broker and the subscriber, and the gateway's config; returns the broker."""
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:3000"])
    sc.subscribe(broker)
    sc.config(f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}",
              [("m1", 1, "eastron-sdm630"), ("m2", 2, "eastron-sdm630")], broker.port, **config)
    return broker


def scenario_storage_quota(sc, opts):
    """(d) the outbox byte quota reached while the broker is down, quota_policy drop-oldest: the drops are
    logged (meter, seq range) and counted in metergate_outbox_dropped_total, the accounting shows exactly
    those seqs missing; after the broker returns everything else arrives and verifies."""
    metrics = free_port()
    quota_kb = 8
    broker = two_meters(sc, metrics_port=metrics, extra=f"outbox: {{ quota: {quota_kb}KB, quota_policy: drop-oldest }}")
    broker.stop()   # down from the start: every record stays unsent, so only the policy removes any
    g = sc.start_gateway()
    first = wait_until(lambda: "dropped the oldest unsent" in g.log() or not g.running(), 60, 0.2)
    sc.expect(first and g.running(), f"no drop logged while the broker was down: {tail(g.log())}")
    time.sleep(3)
    gauge = sc.metric(metrics, "metergate_outbox_dropped_total")
    broker.start()
    sc.injected.append(f"broker down from the start, outbox quota {quota_kb} KB with quota_policy drop-oldest; broker "
                       f"back after the first drops")
    sc.expect(wait_until(lambda: sc.unsent() == 0, 60, 0.2), f"the outbox did not drain ({sc.unsent()} left)")
    time.sleep(3)   # a few more intervals: the statement of the last drop goes out on the next record
    sc.expect(g.running(), f"the gateway died: {tail(g.log())}")
    sc.stop_gateway()
    drops = [log_fields(l) for l in g.log().splitlines() if "dropped the oldest unsent" in l]
    dropped = {(d["meter"], s) for d in drops for s in range(int(d["first_seq"]), int(d["last_seq"]) + 1)}
    counted = sum(int(d["count"]) for d in drops)
    sc.expect(counted == len(dropped), f"the log's counts ({counted}) disagree with its seq ranges ({len(dropped)})")
    totals = [int(d["dropped_total"]) for d in drops]
    sc.expect(totals and totals[-1] == counted, f"dropped_total in the log {totals[-1:]} is not the sum {counted}")
    # The gauge is read a moment before the last drops: it must lie between the log's totals then and now.
    sc.expect(gauge is not None and 0 < gauge <= counted, f"metergate_outbox_dropped_total was {gauge}, the log says {counted}")
    listed = ", ".join(f"{d['meter']} {d['first_seq']}…{d['last_seq']}" for d in drops)
    sc.notes.append(f"dropped by policy: {counted} records ({listed}); metergate_outbox_dropped_total read {gauge} "
                    f"before the broker came back")
    # Once delivered, records are pruned by the quota first (by design): what the subscriber holds is their
    # archive, the same signed bytes, checked for forks against the outbox all the same. The drops are not
    # excused here: the gaps they leave must be explained by the records' signed statements (store_lost,
    # cause quota), or they count as breaks.
    sc.account(archive=[sc.received])
    sc.expect(counted > 0 and len(sc.stored) >= 8, f"too little to judge: {len(sc.stored)} kept, {counted} dropped")
    received = sc.read_received()[0]
    sc.expect(not any((m, s) in dropped for (m, _, s) in received), "a record reported dropped was received")
    quota = [st for st in sc.statements if st["cause"] == "quota" and st["received"]]
    stated = {(st["meter"], q) for st in quota for q in range(st["from_seq"], st["to_seq"] + 1)}
    sc.expect(stated == dropped, f"the signed quota statements that arrived ({compress_pairs(stated)}) are not the "
                                 f"seqs the log says were dropped ({compress_pairs(dropped)})")
    sc.notes.append(f"{len(quota)} received records state the drops, signed (store_lost, cause quota); the intervals "
                    f"they leave out count as covered")


def scenario_storage_quota_keep(sc, opts):
    """(d) the outbox byte quota reached while the broker is down, quota_policy keep: nothing unsent is
    dropped; the alarm is logged and /health says unhealthy naming the quota; after the broker returns
    everything arrives and verifies, and /health is back to 200."""
    metrics = free_port()
    quota_kb = 8
    broker = two_meters(sc, metrics_port=metrics, extra=f"outbox: {{ quota: {quota_kb}KB, quota_policy: keep }}")
    broker.stop()
    g = sc.start_gateway()
    alarmed = wait_until(lambda: "keeping every one" in g.log() or not g.running(), 60, 0.2)
    sc.expect(alarmed and g.running(), f"no quota alarm logged while the broker was down: {tail(g.log())}")
    over = wait_until(lambda: "exceed the outbox quota" in (sc.health(metrics)[1] or ""), 15, 0.5)
    status, body = sc.health(metrics)
    sc.expect(over and status == 503, f"/health did not report the quota: {status} {body}")
    time.sleep(3)
    backlog = sc.unsent()
    broker.start()
    sc.injected.append(f"broker down from the start, outbox quota {quota_kb} KB with quota_policy keep; broker back "
                       f"with {backlog} unsent records over the quota")
    sc.expect(wait_until(lambda: sc.unsent() == 0, 60, 0.2), f"the outbox did not drain ({sc.unsent()} left)")
    healthy = wait_until(lambda: sc.health(metrics)[0] == 200, 20, 0.5)
    sc.expect(healthy, f"/health did not return to 200 after the drain: {sc.health(metrics)}")
    sc.expect(g.running(), f"the gateway died: {tail(g.log())}")
    sc.stop_gateway()
    sc.expect("dropped the oldest unsent" not in g.log(), "the keep policy dropped records")
    sc.notes.append(f"quota alarm while {backlog} records waited (over the {quota_kb} KB quota), none dropped; /health "
                    f"{status} then 200 after the drain")
    sc.account(archive=[sc.received])
    sc.expect(len(sc.stored) >= 8, f"too little to judge: {len(sc.stored)} stored")


def scenario_storage_full(sc, opts):
    """(d) the disk really fills (the data directory on a small tmpfs, filled up) while the broker is down: the
    gateway logs SQLITE_FULL naming the outbox, keeps polling, /health says unhealthy, loses nothing it had
    committed, and commits again once space is freed; the full period is kept or gapped, never silently lost."""
    state = os.path.join(sc.work, "state")
    os.makedirs(state, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", state], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"cannot mount a tmpfs for the data directory (mount exited {r.returncode}: {r.stderr.strip()})")
    sc.mounts = [state]
    metrics = free_port()
    broker = two_meters(sc, metrics_port=metrics)
    g = sc.start_gateway()
    sc.expect(wait_until(lambda: len(sc.read_received()[0]) >= 6, 40), f"no readings before the fault: {tail(g.log())}")
    broker.stop()
    time.sleep(2)
    committed = set(sc.outbox_states())
    filler = os.path.join(state, "filler")
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:   # unbuffered: the write that finds the disk full raises here, not at a later close
            written += os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    full_at = time.time()
    reported = wait_until(lambda: "SQLITE_FULL" in g.log() or not g.running(), 30, 0.2)
    sc.injected.append(f"broker down, then the 3 MB tmpfs data directory filled ({written // 1024} KB filler) "
                       f"with {len(committed)} records committed")
    sc.expect(reported and g.running(), f"no SQLITE_FULL logged, or the gateway stopped: {tail(g.log())}")
    time.sleep(6)
    lines = [l for l in g.log().splitlines() if "SQLITE_FULL" in l]
    sc.expect(any(sc.db in l for l in lines), f"no SQLITE_FULL log line names {sc.db}: {lines[:2]}")
    status, body = sc.health(metrics)
    sc.notes.append(f"/health while full: {status} {body.strip()[:200]}")
    sc.expect(status == 503 and "outbox" in body, f"/health while the disk is full: {status} {body[:200]}")
    sc.expect("no meter answered" not in body, f"the sources stopped being polled while the disk was full: {body[:200]}")
    os.remove(filler)
    freed = time.time()
    before = len(sc.outbox_states())
    sc.expect(wait_until(lambda: len(sc.outbox_states()) > before + 2, 30, 0.2),
              f"no new records committed after the space was freed: {tail(g.log())}")
    sc.notes.append(f"disk full for {freed - full_at:.0f} s; {len(lines)} SQLITE_FULL log lines")
    sc.expect(wait_until(lambda: sc.health(metrics)[0] == 200, 30, 0.5),
              f"/health did not recover after the space was freed: {sc.health(metrics)}")
    broker.start()
    sc.expect(wait_until(lambda: sc.unsent() == 0, 60, 0.2), f"the outbox did not drain ({sc.unsent()} left)")
    sc.expect(g.running(), f"the gateway died: {tail(g.log())}")
    sc.stop_gateway()
    sc.account()
    kept = {(m, s) for (m, _, s) in sc.stored}
    sc.expect(committed <= kept, f"records committed before the disk filled are gone: {sorted(committed - kept)[:5]}")
    during = [p for p in sc.stored.values() if p["end_ms"] > full_at * 1000 and p["start_ms"] < freed * 1000]
    gaps = sum(1 for p in during if p["quality"] == "gap")
    sc.notes.append(f"{len(during)} readings of the full period kept (stored once space was freed), {gaps} of them gaps")
    sc.expect(len(during) >= 2 * len(sc.meter_ids), f"only {len(during)} readings cover the full period")


def bad_key_files(sc):
    """(what, path, words): unusable signing keys, and words (any one) the refusal must contain beside the path."""
    with open(sc.key, "rb") as f:
        good = f.read()
    cases = []

    def write(name, data, mode=0o600):
        path = os.path.join(sc.work, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    cases.append(("mode 0644", write("open.key", good, 0o644), ["644", "others"]))
    cases.append(("mode 0640", write("group.key", good, 0o640), ["640", "group"]))
    cases.append(("truncated PEM", write("truncated.key", good[:len(good) // 2]), ["pem", "truncated", "key"]))
    cases.append(("garbage", write("garbage.key", random.Random(7).randbytes(300)), ["pem", "not a", "key"]))
    cases.append(("empty file", write("empty.key", b""), ["empty", "pem", "key"]))
    cases.append(("missing file", os.path.join(sc.work, "missing.key"), ["no such file", "does not exist", "missing"]))
    directory = os.path.join(sc.work, "directory.key")
    os.makedirs(directory, exist_ok=True)
    cases.append(("a directory", directory, ["directory"]))
    return cases


def scenario_bad_keys(sc, opts):
    """(e) an unusable signing key (readable by others, truncated, garbage, empty, missing, a directory):
    `metergate check` and `metergate run` exit non-zero naming the key file and what is wrong, before
    anything is published or signed; then the good key publishes (the watch on the broker works)."""
    sc.keygen()
    broker = sc.broker()
    port = sc.simulator(["1=eastron-sdm630:3000"])
    everything = sc.spawn([tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-v", "-t", "#"], "everything.txt")
    time.sleep(0.5)
    bus = f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}"
    meters = [("m1", 1, "eastron-sdm630")]
    cases = bad_key_files(sc)
    refused, well = 0, 0
    for what, path, words in cases:
        sc.config(bus, meters, broker.port, key=path)
        for command in (["check", "--config", sc.config_path, "--boards", os.path.join(REPO, "boards"),
                         "--profiles", os.path.join(REPO, "profiles")], sc.gateway_args()):
            try:
                r = sc.run(command, timeout=30)
            except subprocess.TimeoutExpired:
                sc.fail(f"{what}: metergate {command[0]} was still running after 30 s")
                continue
            said = (r.stdout + r.stderr).strip()
            if r.returncode == 0 or r.returncode < 0 or "Fatal error" in said:
                sc.fail(f"{what}: metergate {command[0]} exited {r.returncode}: {said[-300:]}")
                continue
            refused += 1
            if path in said and any(w in said.lower() for w in words):
                well += 1
            else:
                sc.fail(f"{what}: metergate {command[0]} does not name {path} and what is wrong ({' / '.join(words)}): {said[-300:]}")
    sc.injected.append(f"{len(cases)} unusable signing keys ({', '.join(c[0] for c in cases)}), each tried with check and run")
    published = everything.log().strip()
    sc.expect(not published, f"published with an unusable key: {published[:300]}")
    sc.expect(not sc.outbox_states(), f"{len(sc.outbox_states())} records signed with an unusable key")
    # The control: the good key runs and publishes, so the watch above would have seen a publication.
    sc.config(bus, meters, broker.port)
    g = sc.start_gateway()
    sc.expect(wait_until(lambda: "/reading" in everything.log() or not g.running(), 40, 0.2),
              f"the good key published no reading: {tail(g.log())}")
    sc.stop_gateway()
    sc.expect(refused == 2 * len(cases), f"only {refused} of {2 * len(cases)} runs with an unusable key were refused")
    # Nothing may be signed with an unusable key, and the control's readings are not what is judged: the reading
    # columns do not apply.
    sc.rows = dict(expected=2 * len(cases), received=refused, verified=well, **NO_READINGS)
    sc.columns = ("runs", "refused", "well reported")


def make_pki(sc):
    """With openssl: a CA that signs the broker's certificate (for 127.0.0.1), and another CA that does not."""
    pki = os.path.join(sc.work, "pki")
    os.makedirs(pki, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        r = subprocess.run([tool("openssl")] + list(args), capture_output=True, text=True, cwd=pki, timeout=60)
        if r.returncode != 0:
            raise SuiteError(f"openssl {' '.join(args[:2])} exited {r.returncode}: {r.stderr.strip()[-300:]}")

    for ca in ("right", "other"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}-ca.key", "-out", f"{ca}-ca.pem", "-days", "2",
                "-subj", f"/CN=MeterGate fault suite {ca} CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(pki, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "right-ca.pem", "-CAkey", "right-ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    for name in os.listdir(pki):
        os.chmod(os.path.join(pki, name), 0o644)   # test material; mosquitto may read it as another user
    return {k: os.path.join(pki, v) for k, v in
            (("ca", "right-ca.pem"), ("cert", "server.pem"), ("key", "server.key"), ("other", "other-ca.pem"))}


def scenario_tls_wrong_ca(sc, opts):
    """(b) a TLS broker and a gateway configured with a different CA: a clear TLS verification error naming the
    broker, readings kept in the outbox; with the right CA (a restart: the mqtt section needs one) everything
    is delivered and verifies."""
    pki = make_pki(sc)
    sc.keygen()
    broker = sc.broker(tls=pki)
    port = sc.simulator(["1=eastron-sdm630:3000", "2=eastron-sdm630:3000"])
    sc.subscribe(broker)
    bus = f"{{ id: b, tcp: {{ host: 127.0.0.1, port: {port} }}, timeout: 500ms }}"
    meters = [("m1", 1, "eastron-sdm630"), ("m2", 2, "eastron-sdm630")]
    sc.config(bus, meters, broker.port, mqtt_extra=f", ca_file: {pki['other']}")
    sc.injected.append("mosquitto with TLS (server certificate of a test CA); the gateway given another CA's file")
    g = sc.start_gateway()

    def tls_error():
        return [l for l in g.log().splitlines() if "certificate verify failed" in l.lower() or
                ("tls" in l.lower() and "verif" in l.lower())]

    sc.expect(wait_until(lambda: tls_error() or not g.running(), 30, 0.2) and g.running(),
              f"no TLS verification error logged (or the gateway stopped): {tail(g.log())}")
    errors = tls_error()
    sc.notes.append(f"logged: {errors[0][:240]}" if errors else "no TLS error logged")
    sc.expect(any(f"127.0.0.1:{broker.port}" in l or (str(broker.port) in l and "127.0.0.1" in l) for l in errors),
              f"the TLS error does not name the broker 127.0.0.1:{broker.port}")
    sc.expect(wait_until(lambda: sc.unsent() >= 6, 30, 0.2), f"readings are not kept in the outbox ({sc.unsent()} unsent)")
    time.sleep(2)
    sc.expect(not sc.read_received()[0], "readings arrived through a broker the gateway could not verify")
    backlog = sc.unsent()
    sc.stop_gateway()
    sc.config(bus, meters, broker.port, mqtt_extra=f", ca_file: {pki['ca']}")
    sc.injected.append(f"config fixed (the right CA) and the gateway restarted with {backlog} records unsent")
    g = sc.start_gateway()
    sc.expect(wait_until(lambda: sc.unsent() == 0 and len(sc.read_received()[0]) >= backlog, 60, 0.2),
              f"the backlog was not delivered with the right CA ({sc.unsent()} unsent): {tail(g.log())}")
    sc.stop_gateway()
    rows = sc.account()
    sc.expect(rows["received"] >= backlog, f"only {rows['received']} received, {backlog} were waiting")


SCENARIOS = [
    ("sigkill", scenario_sigkill),
    ("broker", scenario_broker),
    ("meters", meter_variant("faults", scenario_meters.__doc__)),
    ("counter-reset", meter_variant("reset", "(c) a counter reset (meter replaced) beside a healthy meter on one RTU bus, no rated_power.")),
    ("counter-rollover", meter_variant("rollover", "(c) a u64 energy register that wraps at 100 kWh (display-style), no rated_power.")),
    ("counter-rated", meter_variant("rated", "(c) counter reset and wrap again, with rated_power set for both meters.")),
    ("corrupt-frames", scenario_corrupt_frames),
    ("storage-structure", scenario_storage_structure),
    ("storage-content", scenario_storage_content),
    ("storage-wal", scenario_storage_wal),
    ("config-corpus", scenario_config_corpus),
    ("clock", scenario_clock),
    ("meter-slow", scenario_meter_slow),
    ("meter-replaced", scenario_meter_replaced),
    ("storage-quota", scenario_storage_quota),
    ("storage-quota-keep", scenario_storage_quota_keep),
    ("storage-full", scenario_storage_full),
    ("bad-keys", scenario_bad_keys),
    ("tls-wrong-ca", scenario_tls_wrong_ca),
]

# The reading columns of a scenario that signs no reading to judge (its own checks decide it).
NO_READINGS = dict.fromkeys(("lost", "duplicated", "breaks", "gaps", "replayed", "unsent"), "n/a")

# Scenarios that find a real bug stay in the suite as expected failures until the owner fixes it:
# name → the reason. A scenario listed here that passes is reported as XPASS (and fails the run, so the
# entry gets removed).
EXPECTED_FAILURES = {}


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------

class Suite:
    def __init__(self, opts):
        self.opts = opts
        self.bin = opts.bin
        self.work = tempfile.mkdtemp(prefix="metergate-faults-")


def run_scenario(suite, name, fn, opts):
    """Runs one scenario and prints what it injected, noted and found; returns its result row."""
    sc = Scenario(suite, name)
    t0 = time.monotonic()
    print(f"\n== {name}: {fn.__doc__.strip().splitlines()[0]}", flush=True)
    try:
        fn(sc, opts)
    except Skip as e:
        sc.skipped = str(e)
    except Exception as e:
        sc.fail(f"scenario error: {e}" + ("\n" + traceback.format_exc() if not isinstance(e, SuiteError) else ""))
    finally:
        sc.cleanup()
    seconds = time.monotonic() - t0
    verdict = "PASS" if not sc.failures else "FAIL"
    if getattr(sc, "skipped", None) and not sc.failures:
        verdict = "SKIP"
        sc.notes.append(f"skipped: {sc.skipped}")
    if name in EXPECTED_FAILURES:
        verdict = "XFAIL" if sc.failures else "XPASS"
    for i in sc.injected:
        print(f"   injected: {i}")
    for note in sc.notes:
        print(f"   note: {note}")
    for f in sc.failures:
        print(f"   failure: {f}")
    if name in EXPECTED_FAILURES:
        print(f"   expected failure: {EXPECTED_FAILURES[name]}")
    print(f"   {verdict} in {seconds:.0f} s", flush=True)
    return (name, verdict, seconds, sc.rows or {})


COLUMNS = ("expected", "received", "verified", "lost", "duplicated", "breaks", "gaps", "replayed", "unsent")
LEGEND = (
    "expected: intervals that must exist, all meters (wall-clock span and interval length; config-corpus: files, "
    "bad-keys: runs); received: distinct readings the subscriber got (config-corpus, bad-keys: refused); verified: "
    "of those, accepted by docs/test-vectors/peer_verify.py, signature and chain link (config-corpus, bad-keys: well "
    "reported); lost: intervals that must exist and are neither received and verified nor covered by a signed gap "
    "or loss statement, and readings stored but never received or still unsent; dup: further deliveries; breaks: "
    "chain breaks by the peer verifier (bad links, forks, seqs missing unstated); gaps: signed gap-quality readings "
    "received; replayed: missed by the subscriber, sent again with metergate replay; unsent: still in the outbox at "
    "the end of a declared outage (else they are lost); n/a: the scenario signs no reading to judge")


def table(opts, results, interrupted=None):
    """The results table with the seed: printed, and written to --report, on a pass, a failure or an interruption."""
    widths = (8, 8, 8, 5, 5, 6, 5, 8, 6)
    names = ("expected", "received", "verified", "lost", "dup", "breaks", "gaps", "replayed", "unsent")
    lines = ["", f"fault suite ({opts.mode}), seed {opts.seed}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
             f"{'scenario':<18} " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths)) + f" {'time':>6}  result"]
    for (name, verdict, seconds, r) in results:
        cells = " ".join(f"{str(r.get(k, '-')):>{w}}" for k, w in zip(COLUMNS, widths))
        lines.append(f"{name:<18} {cells} {seconds:>5.0f}s  {verdict}")
    lines.append(LEGEND)
    bad = [n for (n, v, *_) in results if v in ("FAIL", "XPASS")]
    if interrupted:
        lines.append(f"result: INTERRUPTED ({interrupted}) after {len(results)} scenarios"
                     + (f"; FAIL: {', '.join(bad)}" if bad else ""))
    else:
        lines.append(f"result: {'FAIL: ' + ', '.join(bad) if bad else 'PASS'} ({len(results)} scenarios)")
    text = "\n".join(lines)
    print(text, flush=True)
    if opts.report:
        with open(opts.report, "w") as f:
            f.write(text + "\n")
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="the metergate binary under test (required unless --list)")
    ap.add_argument("--list", action="store_true", help="print every scenario's name, one a line, and exit")
    ap.add_argument("--mode", choices=["ci", "full"], default="ci")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    ap.add_argument("--kills", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--outage", type=int)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--report", help="also write the table to this file")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    if opts.list:
        print("\n".join(n for n, _ in SCENARIOS))
        return 0
    if not opts.bin:
        ap.error("--bin is required")
    # SIGTERM (a CI timeout) ends the run through the normal path, so every child process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    full = opts.mode == "full"
    opts.kills = opts.kills if opts.kills is not None else (1000 if full else 3)
    opts.seed = opts.seed if opts.seed is not None else int(time.time())
    opts.outage = opts.outage if opts.outage is not None else (120 if full else 12)
    opts.kill_meters = 20 if full else 8
    opts.broker_meters = 50 if full else 4
    opts.kill_min, opts.kill_max = 0.5, 4.0
    opts.meter_seconds = 40 if full else 16
    opts.corpus_random = 300 if full else 40
    opts.meter_variant = "faults"
    chosen = [(n, f) for (n, f) in SCENARIOS if not opts.only or n in opts.only]
    if opts.only and len(chosen) != len(set(opts.only)):
        print(f"unknown scenario in {opts.only}; known: {', '.join(n for n, _ in SCENARIOS)}", file=sys.stderr)
        return 2
    suite = Suite(opts)
    suite.peer_python = find_peer_python()
    if not suite.peer_python:
        print("no Python with jwcrypto and cryptography for docs/test-vectors/peer_verify.py: run bash scripts/setup.sh "
              "(it fills .venv) or set METERGATE_PEER_PYTHON", file=sys.stderr)
        return 2
    print(f"fault suite ({opts.mode}): binary {opts.bin}, seed {opts.seed}, peer verifier on {suite.peer_python}, "
          f"work {suite.work}", flush=True)
    results, interrupted = [], None
    try:
        for name, fn in chosen:
            results.append(run_scenario(suite, name, fn, opts))
    except (KeyboardInterrupt, SystemExit) as e:
        interrupted = type(e).__name__
    bad = table(opts, results, interrupted)
    if not opts.keep and not bad and not interrupted:
        shutil.rmtree(suite.work, ignore_errors=True)
    elif bad or interrupted:
        print(f"working files kept in {suite.work}")
    return 124 if interrupted else 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
