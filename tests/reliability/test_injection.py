"""Injection: hostile ids are refused at the edge; hostile free text is bounded, then stored intact or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability.test_fuzz import json_values
from tests.servers import Influxd
from vitals.records import AckCommand, AuditRecord, RecordError, Session, clean_text
from vitals.topics import TopicError, Topics

# Printable but dangerous in line protocol, InfluxQL, SQL or HTML: these must survive a store round trip intact.
HOSTILE_TEXT = [
    "it's", 'say "hi"', "a,b", "a b", "a=b", "a\\b", "a\\", "<script>alert(1)</script>", "'; DROP TABLE sessions;--",
    '" OR 1=1 --', "x,tag=evil value=1", "drug=ketamine,patient_ref=X", "caf\u00e9 \u65e5\u672c",
    "$(rm -rf /)", "{{7*7}}", "%s%n", "-", "x" * 128,
]
# Control characters and over-long text are refused with a reason, never stored.
REFUSED_TEXT = ["a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "\u2028", "\u202eevil", "x" * 129]
START = "2026-11-25T02:00:00Z"


def session_payload(**fields: object) -> bytes:
    """Return a session payload with hostile fields overriding a valid one."""
    doc: dict[str, object] = {"session_id": "s-1", "state": "active", "started_at": START, "drug": "ketamine",
                              "dose_mg_per_kg": 0.5, "duration_min": 40, "patient_ref": "P-0001"}
    doc.update(fields)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_printable_hostile_text_passes_validation_unchanged(text: str) -> None:
    session = Session.from_payload("site-1", "chair-1", session_payload(session_id=text, drug=text, patient_ref=text))
    assert (session.session_id, session.drug, session.patient_ref) == (text, text, text)
    if len(text) <= 64:
        assert AckCommand.from_payload("site-1", "chair-1", json.dumps({"alarm_id": "a-1", "user": text})).user == text


@pytest.mark.parametrize("text", REFUSED_TEXT)
def test_control_characters_and_long_text_are_refused_with_a_reason(text: str) -> None:
    for field in ("session_id", "drug", "patient_ref"):
        with pytest.raises(RecordError, match=field):
            Session.from_payload("site-1", "chair-1", session_payload(**{field: text}))
    with pytest.raises(RecordError, match="user"):
        AckCommand.from_payload("site-1", "chair-1", json.dumps({"alarm_id": "a-1", "user": text + "y" * 64}))


@pytest.mark.parametrize("chair", ["a b", "a,b", "a=b", 'a"b', "<script>", "x" * 65, "a\nb", "", "+", "#"])
def test_hostile_ids_are_refused_before_any_record_is_built(chair: str) -> None:
    with pytest.raises(TopicError):
        Session.from_payload("site-1", chair, session_payload())
    with pytest.raises(TopicError):
        AckCommand.from_payload(chair, "chair-1", json.dumps({"alarm_id": "a-1", "user": "u"}))
    with pytest.raises(TopicError):
        Topics().vitals("site-1", chair)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.sampled_from(["session_id", "state", "started_at", "ended_at", "drug", "dose_mg_per_kg",
                                        "duration_min", "patient_ref", "baseline_sys", "alarm_id", "user", "action"]),
                       json_values | st.text(max_size=200), max_size=12) | json_values)
def test_session_and_ack_parsers_raise_only_record_errors(doc: object) -> None:
    payload = json.dumps(doc, allow_nan=True)
    for parse in (Session.from_payload, AckCommand.from_payload):
        try:
            record = parse("site-1", "chair-1", payload)
        except RecordError as exc:
            assert str(exc).strip()
            continue
        for value in vars(record).values() if hasattr(record, "__dict__") else [
                getattr(record, f) for f in record.__slots__]:  # type: ignore[attr-defined]
            if isinstance(value, str):
                assert value == clean_text(value, "x", max_len=128)


# -- round trip through the real stores (once they land) -----------------------------------------------------

def round_trip(store_url: str) -> None:
    """Write hostile sessions and audit records to a store and read them back intact."""
    from vitals.store import open_store

    store = open_store(store_url)
    sessions = []
    for i, text in enumerate(HOSTILE_TEXT):
        started = f"2026-11-25T02:{i:02d}:00Z"
        sessions.append(Session.from_payload("site-inj", f"chair-{i}", session_payload(
            session_id=text, drug=text, patient_ref=text, started_at=started)))
    store.write_sessions(sessions)
    audit = [AuditRecord(ts=1_764_036_000_000 + i, action="acknowledge", user=text[:64], site="site-inj",
                         chair=f"chair-{i}", alarm_id=text, detail=text) for i, text in enumerate(HOSTILE_TEXT)]
    store.write_audit(audit)
    got = sorted(store.sessions(site="site-inj"), key=lambda s: s.chair)
    assert sorted(sessions, key=lambda s: s.chair) == got
    assert store.audit(site="site-inj") == audit
    assert store.count_readings(site="site-inj") == 0  # no hostile string turned into a point or a row of readings


def test_hostile_text_round_trips_through_sqlite(tmp_path: Path) -> None:
    round_trip(f"sqlite:///{tmp_path}/inj.db")


@pytest.mark.integration
def test_hostile_text_round_trips_through_influxdb(influxd: Influxd) -> None:
    round_trip(influxd.store_url("injection"))
