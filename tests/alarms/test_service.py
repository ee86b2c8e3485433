"""Alarms end to end: a real Mosquitto, the real ingest process with its SQLite store, a real HTTP receiver.

A desaturation published with mosquitto_pub is raised on the events topic and in the chair's retained list,
notified to the staff URL, acknowledged through the ack topic, and both events and the audit record are stored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.alarms.receiver import Receiver
from tests.servers import IngestProcess, Mosquitto, MqttCollector, mosquitto_pub_lines
from vitals.store.sqlite import SQLiteStore
from vitals.topics import Topics

pytestmark = pytest.mark.integration
TOPICS = Topics()


def _events(collector: MqttCollector, site: str) -> list[dict]:
    return [json.loads(p) for p in collector.payloads(TOPICS.alarm_events(site))]


def _wait_store(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    return check()


def test_desaturation_raised_notified_acknowledged_and_stored(mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    receiver = Receiver()
    db = tmp_path / "vitals.db"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, f"sqlite:///{db}", "--site", site,
                           env={"INFUSION_NOTIFY__URLS": json.dumps([receiver.url("staff")])})
    collector = MqttCollector(mosquitto.url, TOPICS.alarm_events_filter(site), TOPICS.chair_filter("alarms", site))
    store = None
    try:
        ingest.start()
        time.sleep(0.5)  # the ingest subscribes right after connecting
        t0 = int(time.time() * 1000) - 30_000
        lines = [json.dumps({"ts": t0 + i * 1000, "seq": i, "hr": 88, "spo2": 83, "rr": 14}) for i in range(8)]
        mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-07"), lines)

        assert collector.wait_for(lambda c: any(e["event"] == "raised" for e in _events(c, site)), timeout=20), \
            ingest.log()[-3000:]
        [raised] = [e for e in _events(collector, site) if e["event"] == "raised"]
        assert (raised["vital"], raised["priority"], raised["kind"], raised["chair"]) == ("spo2", "high", "physiological", "c-07")
        assert raised["ts"] == t0 + 5000 and raised["value"] == 83.0 and raised["limit"] == 85.0
        retained = [json.loads(p) for p in collector.payloads(TOPICS.alarms(site, "c-07"))]
        assert [a["alarm_id"] for a in retained[-1]] == [raised["alarm_id"]]

        [note] = receiver.wait_for(1)
        assert note["path"] == "/staff" and "c-07" in note["title"] and "83 %" in note["message"]

        ack = json.dumps({"alarm_id": raised["alarm_id"], "user": "nurse.kim", "action": "acknowledge"})
        mosquitto_pub_lines(mosquitto.port, TOPICS.ack(site, "c-07"), [ack])
        assert collector.wait_for(lambda c: any(e["event"] == "acknowledged" for e in _events(c, site)), timeout=20)
        [acked] = [e for e in _events(collector, site) if e["event"] == "acknowledged"]
        assert acked["alarm_id"] == raised["alarm_id"] and acked["user"] == "nurse.kim"
        assert collector.wait_for(
            lambda c: json.loads(c.payloads(TOPICS.alarms(site, "c-07"))[-1])[0]["acknowledged"] is True, timeout=10)

        store = SQLiteStore.from_url(f"sqlite:///{db}")
        stored = _wait_store(lambda: {(e.alarm_id, e.event) for e in store.alarm_events(site)} >= {
            (raised["alarm_id"], "raised"), (raised["alarm_id"], "acknowledged")})
        assert stored, [(e.alarm_id, e.event) for e in store.alarm_events(site)]
        audit = _wait_store(lambda: [a for a in store.audit(site) if a.action == "acknowledge"])
        assert [(a.user, a.chair, a.alarm_id) for a in audit] == [("nurse.kim", "c-07", raised["alarm_id"])]
        assert len(receiver.received) == 1  # an acknowledgement notifies no one
    finally:
        if store is not None:
            store.close()
        collector.close()
        ingest.stop()
        receiver.close()


def test_restart_neither_re_raises_nor_loses_the_alarm(mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    db = tmp_path / "vitals.db"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, f"sqlite:///{db}", "--site", site)
    collector = MqttCollector(mosquitto.url, TOPICS.alarm_events_filter(site))
    try:
        ingest.start()
        time.sleep(0.5)
        t0 = int(time.time() * 1000) - 60_000
        lines = [json.dumps({"ts": t0 + i * 1000, "hr": 150, "spo2": 97}) for i in range(12)]
        mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-01"), lines)
        assert collector.wait_for(lambda c: len(_events(c, site)) >= 1, timeout=20), ingest.log()[-3000:]
        ingest.stop()  # SIGTERM: saves alarm state
        ingest.start()
        # The same readings again (a device re-sending), then the condition clears: one episode, one raise.
        mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-01"), lines)
        more = [json.dumps({"ts": t0 + 12_000 + i * 1000, "hr": 80, "spo2": 97}) for i in range(3)]
        mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-01"), more)
        time.sleep(2.0)  # a wrongly repeated raise would arrive by now
        events = _events(collector, site)
        assert [(e["event"], e["vital"]) for e in events if e["kind"] == "physiological"] == [("raised", "hr")]
    finally:
        collector.close()
        ingest.stop()
