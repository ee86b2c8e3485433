"""Topic names, id rules, records and settings precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitals.records import AckCommand, AlarmEvent, RecordError, Session, device_status
from vitals.settings import load_settings
from vitals.topics import TopicError, Topics, check_id


def test_topic_names() -> None:
    t = Topics()
    assert t.vitals("north", "c-01") == "clinic/north/chair/c-01/vitals"
    assert t.session("north", "c-01").endswith("/session") and t.status("n", "c").endswith("/status")
    assert t.alarms("n", "c") == "clinic/n/chair/c/alarms" and t.ack("n", "c") == "clinic/n/chair/c/ack"
    assert t.alarm_events("n") == "clinic/n/alarms/events"
    assert t.rejected == "clinic/ingest/rejected"
    assert t.chair_filter("vitals") == "clinic/+/chair/+/vitals"
    assert Topics("acme/clinic").chair_filter("vitals", "s1") == "acme/clinic/s1/chair/+/vitals"


@pytest.mark.parametrize("bad", ["", "a" * 65, "a b", "a/b", "a+b", "a#", "é", "chair,1", "x=y", 'q"', "<script>", None, 5])
def test_ids_refused(bad: object) -> None:
    with pytest.raises(TopicError, match="1-64 characters"):
        check_id(bad)


def test_ids_accepted() -> None:
    for good in ("a", "A-z_09", "x" * 64):
        assert check_id(good) == good


@pytest.mark.parametrize(("topic", "words"), [
    ("other/s/chair/c/vitals", "start"),
    ("clinic/s/chair/c", "form"),
    ("clinic/s/bed/c/vitals", "form"),
    ("clinic/s/chair/c/vitals/extra", "form"),
    ("clinic/s p/chair/c/vitals", "site id"),
    ("clinic/s/chair/" + "c" * 65 + "/vitals", "chair id"),
    ("clinic/s/chair/c/heart", "kind"),
])
def test_parse_chair_refusals(topic: str, words: str) -> None:
    with pytest.raises(TopicError, match=words):
        Topics().parse_chair(topic)


def test_parse_chair() -> None:
    parsed = Topics().parse_chair("clinic/north/chair/c-01/vitals")
    assert (parsed.site, parsed.chair, parsed.kind) == ("north", "c-01", "vitals")


def test_bad_prefix_refused() -> None:
    with pytest.raises(TopicError):
        Topics("clinic/+")


def test_session_round_trip_and_refusals() -> None:
    payload = json.dumps({"session_id": "S1", "state": "active", "started_at": "2026-11-25T01:00:00Z", "ended_at": None,
                          "drug": "ketamine", "dose_mg_per_kg": 0.5, "duration_min": 40, "patient_ref": "P-7F3A"})
    session = Session.from_payload("n", "c1", payload)
    assert session.started_at == 1_795_568_400_000 and session.patient_ref == "P-7F3A"
    again = Session.from_payload("n", "c1", json.dumps(session.to_json_obj()))
    assert again == session
    for bad, words in ((b"[]", "object"), (b'{"state":"active"}', "started_at"), (b'{"state":"paused"}', "state"),
                       (b'{"state":"active","started_at":"2026-11-25T01:00:00Z","session_id":"a\\nb"}', "control")):
        with pytest.raises(RecordError, match=words):
            Session.from_payload("n", "c1", bad)


def test_ack_command_and_status() -> None:
    cmd = AckCommand.from_payload("n", "c", b'{"alarm_id": "a1", "user": "nurse1", "action": "acknowledge"}')
    assert (cmd.alarm_id, cmd.user, cmd.action) == ("a1", "nurse1", "acknowledge")
    with pytest.raises(RecordError, match="user"):
        AckCommand.from_payload("n", "c", b'{"alarm_id": "a1"}')
    with pytest.raises(RecordError, match="action"):
        AckCommand.from_payload("n", "c", b'{"alarm_id": "a1", "user": "u", "action": "silence_forever"}')
    assert device_status(b"offline") == "offline" and device_status(b'"online"') == "online"
    with pytest.raises(RecordError):
        device_status(b"maybe")


def test_an_acknowledgement_may_say_whether_it_was_actionable_and_why() -> None:
    cmd = AckCommand.from_payload("n", "c", b'{"alarm_id": "a1", "user": "u", "actionable": "unsure", "reason": " probe "}')
    assert (cmd.actionable, cmd.reason) == ("unsure", "probe")
    assert cmd.to_json_obj() == {"alarm_id": "a1", "user": "u", "action": "acknowledge", "actionable": "unsure",
                                 "reason": "probe"}
    plain = AckCommand.from_payload("n", "c", b'{"alarm_id": "a1", "user": "u"}')
    assert (plain.actionable, plain.reason) == (None, None) and "actionable" not in plain.to_json_obj()
    for bad, reason in ((b'{"alarm_id": "a1", "user": "u", "actionable": "yes"}', "actionable must be one of"),
                        (b'{"user": "u", "action": "pause_audio", "actionable": "unsure"}', "acknowledge only"),
                        (b'{"user": "u", "action": "pause_audio", "reason": "x"}', "reason belongs"),
                        (b'{"alarm_id": "a1", "user": "u", "reason": "' + b"x" * 201 + b'"}', "longer than 200")):
        with pytest.raises(RecordError, match=reason):
            AckCommand.from_payload("n", "c", bad)
    t = Topics()
    assert t.whatif_request("n") == "clinic/n/whatif/request" and t.whatif_request_filter() == "clinic/+/whatif/request"
    assert t.whatif_response("n", "abc12345") == "clinic/n/whatif/response/abc12345"
    with pytest.raises(TopicError):
        t.whatif_response("n", "a/#")


def test_alarm_event_checks_its_vocabulary() -> None:
    with pytest.raises(RecordError, match="priority"):
        AlarmEvent("a", "s", "c", "hr", "physiological", "urgent", "raised", 150.0, 140.0, 1)


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('mqtt_url = "mqtt://file:1883"\nstore_url = "sqlite:///f.db"\nsite = "filesite"\n'
                      '[notify]\nurls = ["json://127.0.0.1:9/x"]\n')
    s = load_settings(config)
    assert (s.mqtt_url, s.store_url, s.site, s.notify.urls) == ("mqtt://file:1883", "sqlite:///f.db", "filesite",
                                                                ["json://127.0.0.1:9/x"])
    monkeypatch.setenv("INFUSION_MQTT_URL", "mqtt://env:1883")
    monkeypatch.setenv("INFUSION_NOTIFY__ESCALATE_HIGH_S", "30")
    s = load_settings(config)
    assert s.mqtt_url == "mqtt://env:1883" and s.notify.escalate_high_s == 30 and s.notify.urls == ["json://127.0.0.1:9/x"]
    s = load_settings(config, mqtt_url="mqtt://flag:1883", site=None)
    assert s.mqtt_url == "mqtt://flag:1883" and s.site == "filesite"


def test_settings_refuse_typos_and_bad_ids(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('mqtt_ulr = "x"\n')
    with pytest.raises(ValueError, match="mqtt_ulr"):
        load_settings(config)
    with pytest.raises(ValueError, match="site id"):
        load_settings(None, site="bad site")
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
