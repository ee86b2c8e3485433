"""The two references, each run as its own process (``python -m benchmarks.consumers``).

- ``count``: the broker-only limit. A bare paho-mqtt 2 subscriber (MQTT v5, QoS 1, automatic PUBACK)
  that only counts messages.
- ``count-fast``: the same subscriber on the product's client (``vitals.mqtt.FastClient``: buffered reads,
  PUBLISH properties decoded with shared tables), whose receive path costs about a third less than stock paho's.
- ``naive-influx``: a tutorial-style ingest. Each message is decoded and written with its own HTTP request
  (InfluxDB 1.x ``/write``, one point per request, on a kept-alive connection: the naive ingest at its best).
- ``naive-sqlite``: the same with SQLite, one INSERT and one commit per reading (WAL, as our store uses).

Each resumes a persistent session created beforehand (``load.precreate_session``), so it drains a backlog the
broker queued while it was away; it prints one JSON line with the wall times of its first and last message.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import sys
import threading
import time
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vitals.mqtt import FastClient, MqttTarget
from vitals.topics import Topics


class Counter:
    """Count messages, remembering when the first and the last arrived."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def tick(self) -> None:
        """Record one message."""
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.expect:
            self.done.set()


def naive_influx_writer(url: str):  # type: ignore[no-untyped-def]
    """Return a function writing one reading per HTTP request to InfluxDB 1.x."""
    parts = urlsplit(url)
    db = parts.path.strip("/")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/query", body=f"q=CREATE DATABASE {db}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    conn.getresponse().read()
    path = f"/write?db={db}&precision=ms"

    def write(site: str, chair: str, obj: dict) -> None:
        fields = ",".join(f"{k}={float(v)}" for k, v in obj.items() if k in ("hr", "spo2", "rr", "sys", "dia", "map"))
        line = f"vitals,site={site},chair={chair} {fields},seq={int(obj.get('seq', 0))}i {int(obj['ts'])}"
        conn.request("POST", path, body=line.encode())
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"InfluxDB answered {resp.status}")

    return write


def naive_sqlite_writer(path: str):  # type: ignore[no-untyped-def]
    """Return a function writing one reading per INSERT and commit to SQLite."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS readings (site TEXT, chair TEXT, ts INTEGER, seq INTEGER, hr REAL, spo2 REAL,"
               " rr REAL, sys REAL, dia REAL, map REAL, PRIMARY KEY (site, chair, ts))")
    db.commit()

    def write(site: str, chair: str, obj: dict) -> None:
        db.execute("INSERT OR REPLACE INTO readings VALUES (?,?,?,?,?,?,?,?,?,?)", (
            site, chair, int(obj["ts"]), obj.get("seq"), obj.get("hr"), obj.get("spo2"), obj.get("rr"),
            obj.get("sys"), obj.get("dia"), obj.get("map"),
        ))
        db.commit()

    return write


def run(mode: str, mqtt_url: str, client_id: str, expect: int, target: str | None, timeout: float) -> dict:
    """Resume the session, consume until ``expect`` messages arrived (or timeout), return the timings."""
    counter = Counter(expect)
    topics = Topics()
    write = None
    if mode == "naive-influx":
        write = naive_influx_writer(target or "")
    elif mode == "naive-sqlite":
        write = naive_sqlite_writer(target or "")
    errors: list[str] = []

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        if write is not None:
            try:
                parsed = topics.parse_chair(msg.topic)
                write(parsed.site, parsed.chair, json.loads(msg.payload))
            except Exception as exc:  # a reference must not die silently either
                errors.append(repr(exc))
                return
        counter.tick()

    mqtt = MqttTarget.parse(mqtt_url)
    # "count-fast": the same bare subscriber on the product's client (vitals.mqtt.FastClient), whose receive path
    # is cheaper than stock paho's: the most a consumer built like the ingest could receive.
    cls = FastClient if mode == "count-fast" else paho.Client
    client = cls(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    client.connect(mqtt.host, mqtt.port, clean_start=False, properties=props)
    client.loop_start()
    finished = counter.done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return {
        "mode": mode, "received": counter.count, "expect": expect, "finished": finished,
        "first": counter.first, "last": counter.last, "errors": errors[:5], "error_count": len(errors),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one reference consumer and print its result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.consumers")
    parser.add_argument("mode", choices=["count", "count-fast", "naive-influx", "naive-sqlite"])
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--target", help="influxdb://host:port/db or a SQLite file path")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    target = args.target
    if target and target.startswith("influxdb://"):
        target = "http://" + target[len("influxdb://"):]
    print(json.dumps(run(args.mode, args.mqtt_url, args.client_id, args.expect, target, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
