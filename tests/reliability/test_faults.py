"""Faults with real processes killed for real, while a simulated clinic streams numbered readings.

After InfluxDB is down 30 s, the ingest is SIGKILLed twice and mosquitto restarts (persistence on), every
published reading is stored exactly once (by chair and seq); the longest publish-to-store delay is reported.
A spool filled past its bound holds acks (back-pressure, visible in /metrics and the log) and drains later.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from tests.servers import Influxd, IngestProcess, Mosquitto, MqttCollector, wait_until
from vitals.mqtt import connect, make_client, wait_connected
from vitals.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.faults]
TOPICS = Topics()
T0 = int(time.time() * 1000) - 3_600_000


def require_influx_store() -> None:
    """Skip until the InfluxDB store backend exists (the ingest cannot start without it)."""


class Clinic:
    """Chairs publishing numbered readings (seq per chair) at QoS 1 through a real paho client."""

    def __init__(self, url: str, site: str, chairs: int = 6, rate_hz: float = 10.0) -> None:
        self.site, self.chairs, self.period = site, chairs, 1 / rate_hz
        self.client, target = make_client(url, f"clinic-{site}")
        connect(self.client, target)
        self.client.loop_start()
        assert wait_connected(self.client, 10)
        self.published: dict[tuple[str, int], float] = {}  # (chair, seq) -> wall time of publish
        self.infos: list = []
        # A publish made while the broker restarts reports "not connected" yet stays queued in paho and is
        # resent on reconnect under the same packet id; its PUBACK (on_publish) is the proof it arrived.
        self.acked: set[int] = set()
        self.client.on_publish = lambda client, userdata, mid, reason, props: self.acked.add(mid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for c in range(self.chairs):
                chair = f"chair-{c}"
                payload = json.dumps({"ts": T0 + seq * 100, "seq": seq, "hr": 70 + c, "spo2": 97})
                self.published[(chair, seq)] = time.time()
                # Paho keeps QoS 1 messages while the broker is away and resends them on reconnect.
                self.infos.append(self.client.publish(TOPICS.vitals(self.site, chair), payload, qos=1))
            seq += 1
            time.sleep(self.period)

    def start(self) -> None:
        """Start streaming."""
        self._thread.start()

    def stop(self) -> None:
        """Stop streaming once every publish is acknowledged by the broker."""
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + 60
        while not all(i.mid in self.acked for i in self.infos) and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = sum(i.mid not in self.acked for i in self.infos)
        assert not missing, f"the broker never acknowledged {missing} readings"
        self.client.disconnect()
        self.client.loop_stop()


class StoreWatcher:
    """Polls InfluxDB for stored (chair, seq) pairs and notes when each was first seen."""

    def __init__(self, influxd: Influxd, db: str, site: str) -> None:
        self.influxd, self.db, self.site = influxd, db, site
        self.first_seen: dict[tuple[str, int], float] = {}
        self.rows: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> list[tuple[str, int]]:
        """Return every stored (chair, seq), duplicates included."""
        result = self.influxd.query(f"SELECT seq FROM vitals WHERE site = '{self.site}' GROUP BY chair", self.db)
        out = []
        for series in result["results"][0].get("series", []):
            chair = series["tags"]["chair"]
            out += [(chair, int(row[1])) for row in series["values"]]
        now = time.time()
        for key in out:
            self.first_seen.setdefault(key, now)
        self.rows = out
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(urllib.error.URLError, OSError, KeyError):  # influxd is down on purpose
                self.poll()
            time.sleep(0.5)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(10)


def check_exactly_once(clinic: Clinic, watcher: StoreWatcher, timeout: float) -> float:
    """Assert every published reading is stored exactly once; return the longest delay in seconds."""
    expected = sorted(clinic.published)
    assert wait_until(lambda: sorted(watcher.poll()) == expected, timeout), (
        len(watcher.rows), len(set(watcher.rows)), len(expected))
    delays = [watcher.first_seen[k] - clinic.published[k] for k in expected]
    return max(delays)


def test_influx_outage_two_sigkills_and_a_broker_restart_lose_and_double_nothing(
    own_mosquitto: Mosquitto, own_influxd: Influxd, site: str, tmp_path: Path
) -> None:
    db = "faults"
    ingest = IngestProcess(tmp_path / "ingest", own_mosquitto.url, own_influxd.store_url(db), "--site", site,
                           "--no-alarms")
    ingest.start()
    clinic = Clinic(own_mosquitto.url, site)
    watcher = StoreWatcher(own_influxd, db, site)
    clinic.start()
    watcher.start()
    try:
        time.sleep(3)
        own_influxd.stop()
        time.sleep(30)
        assert ingest.metrics()["ingest_spool_items"] > 0
        own_influxd.start()
        for _ in range(2):
            time.sleep(3)
            ingest.stop(signal.SIGKILL)
            time.sleep(2)  # the broker queues for the ingest's persistent session meanwhile
            ingest.start()
        time.sleep(3)
        own_mosquitto.restart()  # SIGTERM: mosquitto writes its persistence file, then starts on the same port
        assert wait_until(lambda: ingest.metrics()["ingest_mqtt_connected"] == 1, 30)
        time.sleep(3)
        clinic.stop()
        longest = check_exactly_once(clinic, watcher, 90)
        print(f"\nfaults: {len(clinic.published)} readings stored exactly once; longest publish-to-store delay "
              f"{longest:.1f} s")
        assert ingest.proc is not None and ingest.proc.poll() is None
    finally:
        watcher.stop()
        ingest.stop()


def test_a_full_spool_holds_acks_then_drains(own_mosquitto: Mosquitto, own_influxd: Influxd, site: str,
                                             tmp_path: Path) -> None:
    db = "spool"
    ingest = IngestProcess(tmp_path / "ingest", own_mosquitto.url, own_influxd.store_url(db), "--site", site,
                           "--no-alarms", env={"INFUSION_SPOOL_MAX_MB": "0.02"})
    ingest.start()
    clinic = Clinic(own_mosquitto.url, site, chairs=10, rate_hz=20)
    watcher = StoreWatcher(own_influxd, db, site)
    clinic.start()
    try:
        time.sleep(1)
        own_influxd.stop()
        assert wait_until(lambda: ingest.metrics()["ingest_backpressure"] == 1, 60), ingest.log()[-2000:]
        time.sleep(3)  # keep publishing into a full spool: the broker must queue, nothing may be dropped
        metrics = ingest.metrics()
        assert metrics["ingest_backpressure"] == 1
        assert metrics["ingest_spool_bytes"] <= 2 * 0.02 * 1024 * 1024  # the bound, plus at most one batch
        assert "holding" in ingest.log() and "unacknowledged" in ingest.log()
        own_influxd.start()
        clinic.stop()
        watcher.start()
        longest = check_exactly_once(clinic, watcher, 90)
        assert wait_until(lambda: ingest.metrics()["ingest_backpressure"] == 0, 10)
        assert wait_until(lambda: ingest.metrics()["ingest_spool_items"] == 0, 10)
        print(f"\nspool full: {len(clinic.published)} readings stored exactly once; longest delay {longest:.1f} s")
    finally:
        watcher.stop()
        ingest.stop()


def hr_events(collector: MqttCollector) -> list[tuple[str, str]]:
    """Return (alarm_id, event) of every physiological hr event received, duplicates included."""
    events = [json.loads(p) for p in collector.payloads()]
    return [(e["alarm_id"], e["event"]) for e in events if e["vital"] == "hr" and e["kind"] == "physiological"]


def test_alarm_events_survive_kills_and_a_broker_restart_neither_lost_nor_doubled(
    own_mosquitto: Mosquitto, own_influxd: Influxd, site: str, tmp_path: Path
) -> None:
    from ingest.alarms.engine import AlarmEngine, EngineConfig
    from ingest.alarms.rules import load_rules
    from vitals.reading import Reading
    from vitals.store import open_store

    db = "alarm_faults"
    ingest = IngestProcess(tmp_path / "ingest", own_mosquitto.url, own_influxd.store_url(db), "--site", site)
    ingest.start()
    # A persistent session: the broker keeps what the ingest publishes while mosquitto itself restarts.
    events = MqttCollector(own_mosquitto.url, TOPICS.alarm_events(site), persistent_id=f"events-{site}")
    chair = "chair-hr"
    # Event time runs at 1 s per reading, published at 20 a second: 85 s cycles of HR 70 (30 s), 125 (25 s,
    # so the 15 s medium tachycardia rule raises) and 70 again (30 s, clears past the 5/min hysteresis).
    cycle = [70.0] * 30 + [125.0] * 25 + [70.0] * 30
    start = int(time.time() * 1000) - 2 * 3_600_000
    readings = [Reading(site, chair, start + i * 1000, seq=i, hr=cycle[i % len(cycle)]) for i in range(20 * len(cycle))]
    client, target = make_client(own_mosquitto.url, f"device-{site}")
    acked: set[int] = set()
    client.on_publish = lambda c, u, mid, reason, props: acked.add(mid)
    connect(client, target)
    client.loop_start()
    assert wait_connected(client, 10)
    mids = []
    try:
        for i, reading in enumerate(readings):
            mids.append(client.publish(TOPICS.vitals(site, chair), json.dumps(reading.to_json_obj()), qos=1).mid)
            time.sleep(0.05)
            if i in (300, 700):
                ingest.stop(signal.SIGKILL)  # mid-episode or between episodes: the broker queues meanwhile
                time.sleep(1)
                ingest.start()
            elif i == 1000:
                own_mosquitto.restart()
            elif i == 1300:
                own_influxd.stop()
            elif i == 1450:
                own_influxd.start()
        assert wait_until(lambda: all(m in acked for m in mids), 60), "the broker never took some readings"
        store = open_store(own_influxd.store_url(db))
        assert wait_until(lambda: store.count_readings(site=site) == len(readings), 90), store.count_readings(site=site)

        oracle = AlarmEngine(load_rules(), EngineConfig())
        expected = [(e.alarm_id, e.event) for r in readings for e in oracle.on_readings([r])
                    if e.vital == "hr" and e.kind == "physiological"]
        assert len(expected) == 2 * 20 and {e for _, e in expected} == {"raised", "cleared"}

        def stored() -> list[tuple[str, str]]:
            return [(e.alarm_id, e.event) for e in store.alarm_events(site=site, chair=chair)
                    if e.vital == "hr" and e.kind == "physiological"]

        assert wait_until(lambda: sorted(stored()) == sorted(expected), 30), (len(stored()), len(expected))
        assert wait_until(lambda: set(hr_events(events)) >= set(expected), 30)
        wire = hr_events(events)
        doubled = len(wire) - len(set(wire))
        print(f"\nalarm faults: {len(expected)} hr events expected; stored exactly once; on the wire "
              f"{len(set(wire))} distinct, {doubled} sent twice (QoS 1: consumers dedupe on alarm_id + event)")
        assert set(wire) == set(expected)
    finally:
        client.disconnect()
        client.loop_stop()
        events.close()
        ingest.stop()
