"""The notifier against a real local HTTP receiver (apprise json://): targets, content, retries, failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ingest.alarms.notifier import Notice, Notifier, message
from tests.alarms.helpers import T0
from tests.alarms.receiver import Receiver
from vitals.records import AlarmEvent
from vitals.settings import NotifySettings


def event(event: str = "raised", priority: str = "high", vital: str = "spo2", kind: str = "physiological") -> AlarmEvent:
    """Return an alarm event of chair c-07."""
    return AlarmEvent(f"north.c-07.{vital}.low.{T0}", "north", "c-07", vital, kind, priority, event,
                      83.0 if kind == "physiological" else None, 85.0 if kind == "physiological" else None, T0,
                      text="SpO2 83 % < 85 %" if kind == "physiological" else None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver answering 200."""
    server = Receiver()
    yield server
    server.close()


class Outcomes:
    """Collect the notifier's callbacks."""

    def __init__(self) -> None:
        self.failed: list[AlarmEvent] = []
        self.delivered: list[AlarmEvent] = []
        self.done = threading.Event()

    def fail(self, e: AlarmEvent) -> None:
        self.failed.append(e)
        self.done.set()

    def ok(self, e: AlarmEvent) -> None:
        self.delivered.append(e)


def start(settings: NotifySettings, outcomes: Outcomes) -> Notifier:
    """Start a notifier reporting to ``outcomes``."""
    notifier = Notifier(settings, on_failed=outcomes.fail, on_delivered=outcomes.ok)
    notifier.start()
    return notifier


def test_raise_reaches_the_urls_with_every_fact(receiver: Receiver) -> None:
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[receiver.url("staff")], escalation_urls=[receiver.url("charge")]), outcomes)
    try:
        notifier.submit(Notice(event(), session_elapsed_s=1394.0, patient_ref="P-7F3A2C"))
        [got] = receiver.wait_for(1)
    finally:
        notifier.stop()
    assert got["path"] == "/staff"
    text = got["title"] + "\n" + got["message"]
    for fact in ("north", "c-07", "SpO2", "83 %", "85 %", "HIGH", "2026-11-25T01:00:00", "23 min 14 s", "P-7F3A2C"):
        assert fact in text, fact
    assert got["type"] == "failure"
    assert outcomes.delivered and not outcomes.failed


def test_escalation_goes_to_the_second_list_and_low_to_no_one(receiver: Receiver) -> None:
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[receiver.url("staff")], escalation_urls=[receiver.url("charge")]), outcomes)
    try:
        notifier.submit(Notice(event("raised", "low", "nibp_overdue", "technical")))
        notifier.submit(Notice(event("acknowledged")))
        notifier.submit(Notice(event("cleared")))
        notifier.submit(Notice(event("escalated", "medium")))
        got = receiver.wait_for(1)
        time.sleep(0.5)  # anything wrongly sent would arrive by now
    finally:
        notifier.stop()
    assert [g["path"] for g in receiver.received] == ["/charge"]
    assert "UNACKNOWLEDGED" in got[0]["title"]


def test_notify_low_setting_sends_low(receiver: Receiver) -> None:
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[receiver.url()], notify_low=True), outcomes)
    try:
        notifier.submit(Notice(event("raised", "low", "nibp_overdue", "technical")))
        assert len(receiver.wait_for(1)) == 1
    finally:
        notifier.stop()


def test_failures_are_retried_with_backoff_then_reported() -> None:
    broken = Receiver(status=500)
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[broken.url()], retries=3, retry_backoff_s=0.2), outcomes)
    try:
        began = time.monotonic()
        notifier.submit(Notice(event()))
        assert outcomes.done.wait(30)
        took = time.monotonic() - began
    finally:
        notifier.stop()
        broken.close()
    assert broken.attempts == 3
    assert [e.alarm_id for e in outcomes.failed] == [event().alarm_id]
    assert took >= 0.2 + 0.4  # two backoffs: 0.2 s then 0.4 s
    assert notifier.failed == 1 and notifier.delivered == 0


def test_an_unreachable_target_does_not_hold_up_a_working_one(receiver: Receiver) -> None:
    outcomes = Outcomes()
    dead = "json://127.0.0.1:9/nothing-listens"
    notifier = start(NotifySettings(urls=[dead, receiver.url()], retries=2, retry_backoff_s=5.0), outcomes)
    try:
        notifier.submit(Notice(event()))
        assert len(receiver.wait_for(1, timeout=5)) == 1  # long before the dead URL's retry is due
    finally:
        notifier.stop(timeout=0.5)


def test_submit_never_blocks(receiver: Receiver) -> None:
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[receiver.url()]), outcomes)
    try:
        began = time.monotonic()
        for _ in range(200):
            notifier.submit(Notice(event()))
        assert time.monotonic() - began < 1.0  # generous: the point is that submit does not deliver
        assert len(receiver.wait_for(200, timeout=60)) == 200
    finally:
        notifier.stop()


def test_notify_failed_goes_to_both_lists(receiver: Receiver) -> None:
    outcomes = Outcomes()
    notifier = start(NotifySettings(urls=[receiver.url("staff")], escalation_urls=[receiver.url("charge")]), outcomes)
    try:
        notifier.submit(Notice(event("raised", "high", "notify_failed", "technical")))
        got = receiver.wait_for(2)
    finally:
        notifier.stop()
    assert sorted(g["path"] for g in got) == ["/charge", "/staff"]


def test_message_carries_only_pseudonymous_fields() -> None:
    _title, body = message(Notice(event(), session_elapsed_s=None, patient_ref=None))
    assert "Patient ref" not in body and "Session elapsed" not in body
    assert "north.c-07.spo2.low" in body
