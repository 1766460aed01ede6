#!/usr/bin/env python3
"""The per-reading benchmark's Python reference: the job `metergate run` does, as a competent Python script would do it.

Every second, for every meter, the gateway's own requests (pymodbus sync client, one connection per server); the
interval closed at once (interval 1 s, one sample each), as the gateway does: energy totals and deltas in mWh, power
average and peak in mW, the record chained to its stream's previous one by SHA-256; the payload as canonical JSON
(sorted keys, no spaces: what RFC 8785 gives for these integers and ASCII strings); a JWS compact with Ed25519
(`cryptography`), verified again when --self-check is on; all records of the interval in one SQLite transaction (WAL,
synchronous=FULL), then each published with paho-mqtt at QoS 1 (at most 20 in flight), the acknowledged ones marked
delivered once a second (synchronous=NORMAL, as the gateway marks them).

Prints, for the window after the warm-up, the process's CPU seconds (getrusage, every thread, paho's network thread
included) and the readings acknowledged:

    python python_pipeline.py --ports P[,P...] --units N --requests FC:ADDR:COUNT,... --broker PORT --db FILE
                              [--self-check on|off] [--warmup 15] [--seconds 60]
"""
import argparse
import base64
import hashlib
import json
import resource
import sqlite3
import struct
import threading
import time

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymodbus.client import ModbusTcpClient


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def float32(words, offset):
    """An SDM630 float: two registers, high word first."""
    return struct.unpack(">f", struct.pack(">HH", words[offset], words[offset + 1]))[0]


class Publisher:
    """paho-mqtt at QoS 1 with a window of 20; collects the record ids whose PUBACK came. The callback runs on paho's
    network thread and takes only this object's lock, never while the main thread is inside paho (that order
    deadlocks against paho's own locks)."""

    def __init__(self, port):
        self.lock = threading.Lock()
        self.by_mid = {}          # main thread only
        self.acked_mids = []
        self.acked_total = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="python-reference", clean_session=False)
        self.client.max_inflight_messages_set(20)
        self.client.on_publish = self.on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.acked_mids.append(mid)
            self.acked_total += 1

    def publish(self, topic, payload, record_id):
        self.by_mid[self.client.publish(topic, payload, qos=1).mid] = record_id

    def take_acked(self):
        """The record ids acknowledged since the last call (their publish has returned: same thread)."""
        with self.lock:
            mids, self.acked_mids = self.acked_mids, []
        return [self.by_mid.pop(mid) for mid in mids if mid in self.by_mid]

    def acknowledged(self):
        with self.lock:
            return self.acked_total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--units", type=int, required=True, help="units per server port")
    ap.add_argument("--requests", required=True, help="the gateway's plan: FC:ADDRESS:COUNT,...")
    ap.add_argument("--broker", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--self-check", choices=["on", "off"], default="on")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=60)
    o = ap.parse_args()
    requests = [tuple(int(x) for x in spec.split(":")) for spec in o.requests.split(",")]
    ports = [int(p) for p in o.ports.split(",")]

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = b64url(hashlib.sha256(json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(raw_public).decode()},
                                           sort_keys=True, separators=(",", ":")).encode()).digest()).decode()
    header = b64url(json.dumps({"alg": "EdDSA", "kid": kid, "typ": "metergate-reading+jws"}, separators=(",", ":")).encode())

    db = sqlite3.connect(o.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("""CREATE TABLE records(id INTEGER PRIMARY KEY, meter TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
                  appended_at INTEGER NOT NULL, hash BLOB NOT NULL, bytes BLOB NOT NULL, UNIQUE(meter, seq))""")
    db.execute("CREATE TABLE streams(meter TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL) WITHOUT ROWID")

    clients = [ModbusTcpClient("127.0.0.1", port=port) for port in ports]
    for client in clients:
        if not client.connect():
            raise SystemExit(f"python reference: no connection to the Modbus server on {client.comm_params.port}")
    meters = [(f"m{i}-{u}", client, u) for i, client in enumerate(clients) for u in range(1, o.units + 1)]
    streams = {meter: {"seq": 0, "prev": bytes(32), "import": None, "export": None} for meter, _, _ in meters}
    publisher = Publisher(o.broker)
    epoch = "python-reference"

    start = time.time()
    window = None
    tick = int(start) + 1
    while True:
        time.sleep(max(0.0, tick - time.time()))
        end_ms = tick * 1000
        rows = []
        for meter, client, unit in meters:
            words = []
            ok = True
            for fc, address, count in requests:
                read = client.read_input_registers if fc == 4 else client.read_holding_registers
                answer = read(address, count=count, device_id=unit)
                if answer.isError():
                    ok = False
                    break
                words.extend(answer.registers)
            if not ok:
                continue
            # The plan reads power (52, 2 registers) and the import and export totals (72, 4 registers).
            watts, import_kwh, export_kwh = float32(words, 0), float32(words, 2), float32(words, 4)
            stream = streams[meter]
            import_total, export_total = round(import_kwh * 1e6), round(export_kwh * 1e6)
            import_delta = max(0, import_total - stream["import"]) if stream["import"] is not None else 0
            export_delta = max(0, export_total - stream["export"]) if stream["export"] is not None else 0
            stream["seq"] += 1
            payload = json.dumps({
                "v": 1, "gateway": "python-gw", "meter": meter, "source": {"kind": "modbus", "id": f"unit-{unit}"},
                "epoch": epoch, "seq": stream["seq"], "start_ms": end_ms - 1000, "end_ms": end_ms,
                "import_total_mwh": import_total, "export_total_mwh": export_total, "import_mwh": import_delta,
                "export_mwh": export_delta, "avg_mw": round(watts * 1000), "peak_mw": round(watts * 1000), "samples": 1,
                "quality": "measured", "prev": stream["prev"].hex(), "kid": kid,
            }, sort_keys=True, separators=(",", ":")).encode()
            signing_input = header + b"." + b64url(payload)
            signature = key.sign(signing_input)
            if o.self_check == "on":
                public.verify(signature, signing_input)  # raises on a damaged signature: nothing leaves
            compact = signing_input + b"." + b64url(signature)
            digest = hashlib.sha256(payload).digest()
            stream.update(prev=digest, **{"import": import_total, "export": export_total})
            rows.append((meter, stream["seq"], end_ms, digest, compact))
        # One transaction for the interval's records and their streams' heads.
        db.execute("BEGIN IMMEDIATE")
        ids = []
        for meter, seq, at, digest, compact in rows:
            cursor = db.execute("INSERT INTO records(meter, seq, state, appended_at, hash, bytes) VALUES(?, ?, 0, ?, ?, ?)",
                                (meter, seq, at, digest, compact))
            ids.append(cursor.lastrowid)
        db.executemany("INSERT INTO streams(meter, last_seq, last_hash) VALUES(?, ?, ?) ON CONFLICT(meter) DO UPDATE SET "
                       "last_seq = excluded.last_seq, last_hash = excluded.last_hash", [(m, s, d) for m, s, _, d, _ in rows])
        db.execute("COMMIT")
        for (meter, _, _, _, compact), record_id in zip(rows, ids):
            publisher.publish(f"metergate/python-gw/{meter}/reading", compact, record_id)
        acked = publisher.take_acked()
        if acked:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE records SET state = 2 WHERE id = ?", [(i,) for i in acked])
            db.execute("COMMIT")
            db.execute("PRAGMA synchronous=FULL")
        now = time.time()
        if window is None and now - start >= o.warmup:
            window = (cpu_seconds(), publisher.acknowledged(), time.monotonic())
        elif window is not None and time.monotonic() - window[2] >= o.seconds:
            cpu, acked_total, t1 = cpu_seconds(), publisher.acknowledged(), time.monotonic()
            print(f"cpu_seconds {cpu - window[0]:.4f}\nacknowledged {acked_total - window[1]}\nwall_seconds {t1 - window[2]:.3f}\n"
                  f"meters {len(meters)}", flush=True)
            break
        tick += 1
        if tick <= time.time():  # a tick missed: the machine could not keep up; go on at the next whole second
            tick = int(time.time()) + 1
    publisher.client.loop_stop()
    publisher.client.disconnect()


if __name__ == "__main__":
    main()
