"""Synthetic load: QoS 1 publishers (backlog or paced at 1 Hz per chair) and persistent-session set-up.

Publishers run in their own processes (``python -m benchmarks.load``), because one Python publisher is
slower than the broker and would otherwise share the measuring process's interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vitals.mqtt import MqttTarget, connect, make_client, wait_connected
from vitals.topics import Topics

REPO = Path(__file__).resolve().parents[1]
# Unacknowledged QoS 1 publishes a publisher keeps in flight (the broker allows 1000 per client here).
PUBLISH_INFLIGHT = 1000
# Session expiry of the pre-created consumer sessions: long enough for any benchmark round.
SESSION_EXPIRY_S = 3600


def chair_id(i: int) -> str:
    """Return the id of load chair ``i``."""
    return f"c{i:04d}"


def reading(ts_ms: int, seq: int, chair_index: int) -> dict:
    """Return one ordinary reading (no alarm limit crossed) as a contract object."""
    return {"ts": ts_ms, "seq": seq, "hr": 60 + (seq + chair_index) % 30, "spo2": 97, "rr": 14}


def payload(ts_ms: int, seq: int, chair_index: int, count: int = 1) -> bytes:
    """Return one reading, or an array of ``count`` readings a second apart (a gateway's batch), as a payload."""
    if count == 1:
        return json.dumps(reading(ts_ms, seq, chair_index)).encode()
    return json.dumps([reading(ts_ms + j * 1000, seq + j, chair_index) for j in range(count)]).encode()


def _connected_publisher(url: str, client_id: str) -> paho.Client:
    client, target = make_client(url, client_id)
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    client.max_queued_messages_set(0)
    connect(client, target)
    client.loop_start()
    if not wait_connected(client, 15):
        raise TimeoutError(f"publisher could not connect to {url}")
    return client


class _Acks:
    """Count PUBACKs so a publisher can wait until the broker holds every message."""

    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()
        self.expect = -1

    def on_publish(self, client, userdata, mid, reason_code=None, properties=None):  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count == self.expect:
            self.done.set()


def backlog(url: str, prefix: str, site: str, chairs: list[int], per_chair: int, start_ts: int,
            per_message: int = 1) -> tuple[bool, int, float]:
    """Publish ``per_chair`` readings for each chair at QoS 1 (``per_message`` in each message: a divisor of it);
    return (all acknowledged, PUBACKs, seconds)."""
    topics = Topics(prefix)
    client = _connected_publisher(url, "")
    acks = _Acks()
    client.on_publish = acks.on_publish
    names = [(i, topics.vitals(site, chair_id(i))) for i in chairs]
    acks.expect = len(names) * (per_chair // per_message)
    started = time.monotonic()
    for k in range(0, per_chair, per_message):
        for i, topic in names:
            client.publish(topic, payload(start_ts + k * 1000, k, i, per_message), qos=1)
    ok = acks.done.wait(300) if acks.expect else True
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return ok, acks.count, elapsed


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.load", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"publisher failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def publish_backlog(url: str, site: str, chairs: int, per_chair: int, start_ts: int, *, procs: int = 2,
                    prefix: str = "clinic", first_chair: int = 0, per_message: int = 1) -> dict[str, float]:
    """Publish ``chairs * per_chair`` readings at QoS 1 from ``procs`` processes; return when all are acknowledged."""
    started = time.monotonic()
    workers = [
        _spawn(["backlog", "--mqtt-url", url, "--prefix", prefix, "--site", site, "--first-chair", str(first_chair + p),
                "--chairs", str(len(range(first_chair + p, first_chair + chairs, procs))), "--step", str(procs),
                "--per-chair", str(per_chair), "--start-ts", str(start_ts), "--per-message", str(per_message)])
        for p in range(procs)
    ]
    results = [_result(w, 600) for w in workers]
    elapsed = time.monotonic() - started
    total = sum(r["acked"] for r in results)
    if not all(r["ok"] for r in results):
        raise RuntimeError(f"publishers got only {total} of {chairs * per_chair // per_message} PUBACKs")
    return {"messages": total, "seconds": elapsed, "rate": total / max(elapsed, 1e-9)}


def start_paced(url: str, site: str, chairs: int, duration_s: float, rate_hz: float = 1.0) -> subprocess.Popen:
    """Start a paced publisher subprocess (every chair at ``rate_hz``, ts = now) for ``duration_s``."""
    return _spawn(["paced", "--mqtt-url", url, "--site", site, "--chairs", str(chairs), "--duration", str(duration_s),
                   "--rate-hz", str(rate_hz)])


def precreate_session(url: str, client_id: str, filters: list[str]) -> None:
    """Create (or reset) a persistent MQTT v5 session subscribed at QoS 1, then disconnect, so the broker queues."""
    target = MqttTarget.parse(url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a, **_k: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect(target.host, target.port, clean_start=True, properties=props)
    client.loop_start()
    if not wait_connected(client, 15):
        raise TimeoutError(f"could not connect to {url}")
    client.subscribe([(f, 1) for f in filters])
    if not subscribed.wait(10):
        raise TimeoutError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def run_paced(url: str, site: str, chairs: int, duration_s: float, *, prefix: str = "clinic", rate_hz: float = 1.0,
              stop: threading.Event | None = None) -> int:
    """Publish every chair at ``rate_hz`` (spread evenly over each period) with ts = now; return the count."""
    topics = Topics(prefix)
    client = _connected_publisher(url, "")
    names = [topics.vitals(site, chair_id(i)) for i in range(chairs)]
    period = 1.0 / rate_hz
    slots = 50  # publish in 50 slices per period, so the load is smooth rather than one burst a second
    per_slot = [names[j::slots] for j in range(slots)]
    sent = 0
    seq = 0
    started = time.monotonic()
    while time.monotonic() - started < duration_s and not (stop and stop.is_set()):
        period_start = started + seq * period
        for j, group in enumerate(per_slot):
            target = period_start + j * period / slots
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time_ns() // 1_000_000
            for topic in group:
                client.publish(topic, payload(now, seq, sent % 97), qos=1)
                sent += 1
        seq += 1
    client.disconnect()
    client.loop_stop()
    return sent


def main(argv: list[str] | None = None) -> int:
    """Run a publisher: ``backlog`` (as fast as acknowledged) or ``paced`` (every chair at a fixed rate)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("mode", choices=["backlog", "paced"])
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--prefix", default="clinic")
    parser.add_argument("--site", required=True)
    parser.add_argument("--chairs", type=int, required=True)
    parser.add_argument("--first-chair", type=int, default=0)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--per-chair", type=int, default=1)
    parser.add_argument("--start-ts", type=int, default=0)
    parser.add_argument("--per-message", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate-hz", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.mode == "backlog":
        chairs = [args.first_chair + k * args.step for k in range(args.chairs)]
        ok, acked, elapsed = backlog(args.mqtt_url, args.prefix, args.site, chairs, args.per_chair, args.start_ts,
                                     args.per_message)
        print(json.dumps({"ok": ok, "acked": acked, "seconds": elapsed}), flush=True)
    else:
        sent = run_paced(args.mqtt_url, args.site, args.chairs, args.duration, prefix=args.prefix, rate_hz=args.rate_hz)
        print(json.dumps({"sent": sent}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
