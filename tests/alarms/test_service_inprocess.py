"""AlarmService in-process: what it publishes and records, state across a restart, notify_failed, the ticker.

Its outputs go to plain recording callables (the ingest passes its MQTT client's publish and the writer);
notifications go to a real local HTTP receiver. The broker round trip is in test_service.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ingest.alarms.service import AlarmService
from tests.alarms.helpers import CHAIR, SITE, series, session
from tests.alarms.receiver import Receiver
from vitals.records import AckCommand, AlarmEvent, AuditRecord
from vitals.settings import Settings
from vitals.topics import Topics

TOPICS = Topics()


class Outputs:
    """Everything the service published and recorded."""

    def __init__(self, durable: bool = True) -> None:
        self.durable = durable  # False: the store writer never confirms (the process dies before it writes)
        self.published: list[tuple[str, Any, int, bool]] = []
        self.events: list[AlarmEvent] = []
        self.audit: list[AuditRecord] = []
        self.lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self.lock:
            self.published.append((topic, json.loads(payload), qos, retain))

    def record(self, events: list[AlarmEvent], audit: list[AuditRecord], on_durable: Any = None) -> None:
        with self.lock:
            self.events += events
            self.audit += audit
        if on_durable is not None and self.durable:
            on_durable()

    def on(self, topic: str) -> list[Any]:
        with self.lock:
            return [p for t, p, _, _ in self.published if t == topic]

    def wait(self, predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())


def make(tmp_path: Path, durable: bool = True, **settings: Any) -> tuple[AlarmService, Outputs]:
    """Return a started service writing its state under tmp_path."""
    out = Outputs(durable)
    service = AlarmService(Settings(data_dir=tmp_path / "data", **settings), TOPICS, publish=out.publish, record=out.record)
    service.start()
    return service, out


def test_desaturation_is_published_recorded_and_shown_retained(tmp_path: Path) -> None:
    service, out = make(tmp_path)
    try:
        service.on_readings(series("spo2", [83.0] * 6))
    finally:
        service.stop()
    [raised] = out.on(TOPICS.alarm_events(SITE))
    assert raised["event"] == "raised" and raised["priority"] == "high" and raised["vital"] == "spo2"
    assert "user" not in raised
    retained = [(p, q, r) for t, p, q, r in out.published if t == TOPICS.alarms(SITE, CHAIR)]
    assert retained[-1][1:] == (1, True)
    assert [a["alarm_id"] for a in retained[-1][0]] == [raised["alarm_id"]]
    assert [e.alarm_id for e in out.events] == [raised["alarm_id"]]


def test_ack_is_published_recorded_and_audited(tmp_path: Path) -> None:
    service, out = make(tmp_path)
    try:
        service.on_readings(series("spo2", [83.0] * 6))
        alarm_id = out.events[0].alarm_id
        service.on_command(AckCommand(SITE, CHAIR, alarm_id, "nurse.kim", "acknowledge"))
        service.on_command(AckCommand(SITE, CHAIR, "north.c-07.hr.high.1", "nurse.kim", "acknowledge"))
        service.on_command(AckCommand(SITE, CHAIR, None, "nurse.lee", "pause_audio"))
    finally:
        service.stop()
    events = out.on(TOPICS.alarm_events(SITE))
    assert [(e["event"], e.get("user")) for e in events] == [("raised", None), ("acknowledged", "nurse.kim")]
    assert [(a.action, a.user, a.alarm_id, a.detail) for a in out.audit][:2] == [
        ("acknowledge", "nurse.kim", alarm_id, "acknowledged"),
        ("acknowledge", "nurse.kim", "north.c-07.hr.high.1", "no standing unacknowledged alarm with this id"),
    ]
    assert out.audit[2].action == "pause_audio" and (out.audit[2].detail or "").startswith("audio paused until ")
    shown = out.on(TOPICS.alarms(SITE, CHAIR))[-1]
    assert shown[0]["acknowledged"] is True and shown[0]["audio_paused_until"] is not None


def test_restart_restores_alarms_and_does_not_re_raise(tmp_path: Path) -> None:
    service, _out = make(tmp_path)
    service.on_session(session())
    service.on_readings(series("spo2", [88.0] * 16))
    service.stop()
    assert (tmp_path / "data" / "alarm_state.json").exists()

    again, out2 = make(tmp_path)
    try:
        assert [a["vital"] for a in out2.on(TOPICS.alarms(SITE, CHAIR))[-1]] == ["spo2"]  # republished at start
        again.on_readings(series("spo2", [88.0] * 16))  # the broker redelivers what was not acknowledged
        again.on_readings(series("spo2", [87.0] * 3, start_s=16))
    finally:
        again.stop()
    assert out2.on(TOPICS.alarm_events(SITE)) == []


def test_events_not_yet_durable_at_a_crash_are_recorded_and_published_again(tmp_path: Path) -> None:
    service, out = make(tmp_path, durable=False)
    service.on_readings(series("spo2", [83.0] * 6))
    service.checkpoint()  # the writer saves before acknowledging; then the process dies, the event unwritten
    [lost] = out.events
    service._stop.set()  # a SIGKILL: no stop(), no final save

    again, out2 = make(tmp_path)
    try:
        assert [e.alarm_id for e in out2.events] == [lost.alarm_id]  # recorded again (idempotent in the store)
        assert [p["alarm_id"] for p in out2.on(TOPICS.alarm_events(SITE))] == [lost.alarm_id]
        again.on_readings(series("spo2", [83.0] * 6))  # redelivered readings: seen already, nothing new
        again.checkpoint()
    finally:
        again.stop()
    assert len(out2.events) == 1
    third, out3 = make(tmp_path)  # durable now: nothing is sent a third time
    third.stop()
    assert out3.events == [] and out3.on(TOPICS.alarm_events(SITE)) == []


def test_unreadable_state_is_set_aside_and_the_service_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "alarm_state.json").write_text("{not json")
    service, _out = make(tmp_path)
    service.stop()
    assert (tmp_path / "data" / "alarm_state.bad").read_text() == "{not json"
    assert json.loads((tmp_path / "data" / "alarm_state.json").read_text())["engine"]["chairs"] == []


def test_failed_notification_raises_notify_failed(tmp_path: Path) -> None:
    broken = Receiver(status=500)
    service, out = make(tmp_path, notify={"urls": [broken.url()], "retries": 2, "retry_backoff_s": 0.1})
    try:
        service.on_readings(series("spo2", [83.0] * 6))
        assert out.wait(lambda: any(e["vital"] == "notify_failed" for e in out.on(TOPICS.alarm_events(SITE))))
    finally:
        service.stop()
        broken.close()
    failed = [e for e in out.on(TOPICS.alarm_events(SITE)) if e["vital"] == "notify_failed"]
    assert failed[0]["event"] == "raised" and failed[0]["priority"] == "high" and failed[0]["kind"] == "technical"
    assert broken.attempts >= 2


def test_raise_is_notified_once(tmp_path: Path) -> None:
    receiver = Receiver()
    service, _out = make(tmp_path, notify={"urls": [receiver.url()]})
    try:
        service.on_session(session())
        service.on_readings(series("spo2", [83.0] * 30))
        got = receiver.wait_for(1)
        time.sleep(0.5)
    finally:
        service.stop()
        receiver.close()
    assert len(got) == 1 and len(receiver.received) == 1
    assert "P-7F3A2C" in got[0]["message"] and "Session elapsed: 0 min 5 s" in got[0]["message"]


def test_ticker_raises_no_data_on_the_wall_clock(tmp_path: Path) -> None:
    service, out = make(tmp_path, no_data_s=2.0)
    try:
        service.on_session(session())
        assert out.wait(lambda: any(e["vital"] == "no_data" for e in out.on(TOPICS.alarm_events(SITE))), timeout=10)
    finally:
        service.stop()


def test_a_chairs_limits_from_the_dashboard_change_its_alarms_and_bad_ones_are_refused(tmp_path: Path) -> None:
    import pytest

    from ingest.alarms.rules import RulesError
    from vitals.limits import AdminEdit

    service, out = make(tmp_path)
    try:
        payload = AdminEdit({"hr": {"high_medium": 130.0}}, "admin.ana", 0).to_payload().encode()
        service.on_limits(SITE, CHAIR, payload)
        service.on_readings(series("hr", [125.0] * 20))  # above the default 120, below this chair's 130
        assert out.on(TOPICS.alarm_events(SITE)) == []
        service.on_readings(series("hr", [135.0] * 20, start_s=20))
        [raised] = out.on(TOPICS.alarm_events(SITE))
        assert (raised["event"], raised["vital"], raised["limit"]) == ("raised", "hr", 130.0)
        with pytest.raises(RulesError, match="no rule with id"):
            service.on_limits(SITE, CHAIR, b'{"rules": {"hr-sideways": {"limit": 1}}}')
        with pytest.raises(RulesError, match="rules"):
            service.on_limits(SITE, CHAIR, b'{"limits": {}}')
        service.on_limits(SITE, "c-other", b"")  # a cleared retained topic: back to the site's rules
    finally:
        service.stop()
