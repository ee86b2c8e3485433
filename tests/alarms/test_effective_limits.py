"""Effective limits: what the engine enforces for a chair after every layer, and when the service publishes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.alarms.engine import AlarmEngine
from ingest.alarms.rules import RulesError, effective_limits, load_rules
from tests.alarms.helpers import CHAIR, SITE, T0, kinds, reading, series, session
from tests.alarms.test_service_inprocess import TOPICS, make
from vitals.limits import LAYERS, AdminEdit, EffectiveLimits

LAYERED = """
[rules.spo2-low-medium]
limit = 88
[sites.north.rules.hr-high-medium]
limit = 130
[sites.north.chairs.c-07.rules.rr-high-medium]
enabled = false
[sites.north.chairs.c-07.rules.hr-low-medium]
limit = 45
[sessions."S-1".rules.spo2-low-high]
limit = 86
"""


def rules_file(tmp_path: Path, text: str = LAYERED) -> Path:
    """Write an override file and return its path."""
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_the_shipped_rules_give_the_documented_limits_all_from_the_defaults() -> None:
    found = effective_limits(load_rules(), SITE, CHAIR)
    assert found["limits"] == {
        "hr": {"low_high": 40.0, "low_medium": 50.0, "high_medium": 120.0, "high_high": 140.0},
        "spo2": {"low_high": 85.0, "low_medium": 90.0},
        "rr": {"low_high": 8.0, "high_medium": 30.0},
        "sys": {"low_high": 80.0, "low_medium": 90.0, "high_medium": 160.0, "high_high": 180.0},
        "dia": {"high_medium": 100.0, "high_high": 110.0},
    }
    assert {rule["source"] for rule in found["rules"].values()} == {"default"}
    assert found["rules"]["spo2-low-medium"] == {"vital": "spo2", "limit": 90.0, "priority": "medium", "delay_s": 15.0,
                                                 "source": "default"}
    # The baseline rule is enforced once there is a baseline; until then it has no limit (and is never guessed).
    assert found["rules"]["sys-baseline-medium"]["limit"] is None and found["session_id"] is None


def test_every_layer_is_applied_and_named(tmp_path: Path) -> None:
    book = load_rules(rules_file(tmp_path))
    found = effective_limits(book, "north", "c-07")
    assert found["limits"]["spo2"] == {"low_high": 85.0, "low_medium": 88.0}
    assert found["limits"]["hr"] == {"low_high": 40.0, "low_medium": 45.0, "high_medium": 130.0, "high_high": 140.0}
    assert found["limits"]["rr"] == {"low_high": 8.0}  # the disabled rule is not enforced, so not published
    sources = {rid: rule["source"] for rid, rule in found["rules"].items()}
    assert set(sources.values()) <= set(LAYERS)
    assert (sources["spo2-low-medium"], sources["hr-high-medium"], sources["hr-low-medium"], sources["hr-low-high"]) == \
        ("file", "site", "chair", "default")
    assert "rr-high-medium" not in found["rules"]
    # Another site has only the file layer; a session layer applies only to that session.
    assert effective_limits(book, "south", "c-07")["limits"]["hr"]["high_medium"] == 120.0
    in_session = effective_limits(book, "north", "c-07", "S-1")
    assert in_session["limits"]["spo2"]["low_high"] == 86.0 and in_session["rules"]["spo2-low-high"]["source"] == "session"
    assert in_session["session_id"] == "S-1"


def test_an_admin_edit_layers_on_the_chair_level_and_a_session_still_outranks_it(tmp_path: Path) -> None:
    eng = AlarmEngine(load_rules(rules_file(tmp_path)))
    eng.set_chair_overrides("north", "c-07", {"hr-low-medium": {"limit": 48.0}, "spo2-low-high": {"limit": 84.0}})
    found = eng.effective_limits("north", "c-07")
    assert (found["limits"]["hr"]["low_medium"], found["rules"]["hr-low-medium"]["source"]) == (48.0, "admin")
    eng.on_session(session("S-1", chair="c-07"), T0)
    found = eng.effective_limits("north", "c-07")
    assert (found["limits"]["spo2"]["low_high"], found["rules"]["spo2-low-high"]["source"]) == (86.0, "session")
    eng.set_chair_overrides("north", "c-07", {})  # the edit cleared: back to the file's chair level
    found = eng.effective_limits("north", "c-07")
    assert (found["limits"]["hr"]["low_medium"], found["rules"]["hr-low-medium"]["source"]) == (45.0, "chair")


def test_published_limits_are_the_ones_the_engine_alarms_at(tmp_path: Path) -> None:
    eng = AlarmEngine(load_rules(rules_file(tmp_path, "[rules.spo2-low-medium]\nlimit = 88\npriority = \"high\"\n")))
    eng.on_readings(series("spo2", [89.0] * 20))  # below the shipped 90, above the enforced 88
    found = EffectiveLimits(SITE, CHAIR, T0, **eng.effective_limits(SITE, CHAIR))
    assert found.limits["spo2"]["low_medium"] == 88.0 and found.priority("spo2", "low_medium") == "high"
    assert eng.on_readings(series("spo2", [89.0] * 20, start_s=20)) == []
    events = eng.on_readings(series("spo2", [87.0] * 20, start_s=40))
    assert kinds(events) == [("raised", "spo2", "high")] and events[0].limit == 88.0


def test_the_baseline_rule_gets_its_limit_from_the_sessions_first_cuff_reading() -> None:
    eng = AlarmEngine(load_rules())
    eng.on_session(session(), T0)
    eng.take_limits_changed()
    eng.on_readings([reading(60, sys=120.0, dia=80.0)])
    assert eng.take_limits_changed() == [(SITE, CHAIR)]
    rule = eng.effective_limits(SITE, CHAIR)["rules"]["sys-baseline-medium"]
    assert (rule["limit"], rule["baseline_sys"], rule["baseline_pct"]) == (156.0, 120.0, 30.0)
    eng.on_readings([reading(61, hr=70.0)])
    assert eng.take_limits_changed() == []  # a reading that changes no rule marks nothing


def test_the_service_publishes_retained_once_per_change(tmp_path: Path) -> None:
    rules = rules_file(tmp_path, "[sessions.S-2.rules.spo2-low-medium]\nlimit = 87\n")
    service, out = make(tmp_path, alarm_rules_file=rules)
    topic = TOPICS.effective_limits(SITE, CHAIR)
    try:
        service.on_readings(series("hr", [70.0] * 5))
        service.on_readings(series("hr", [71.0] * 5, start_s=5))
        assert [(q, r) for t, _, q, r in out.published if t == topic] == [(1, True)]  # first known; not again
        [first] = out.on(topic)
        assert (first["site"], first["chair"], first["limits"]["spo2"]["low_medium"], first["admin"]) == \
            (SITE, CHAIR, 90.0, None)
        service.on_session(session("S-1"))  # the same limits, now for session S-1
        service.on_session(session("S-1", baseline_sys=120.0))  # the baseline rule gets a limit
        service.on_session(session("S-1", baseline_sys=120.0))  # nothing changed: nothing published
        assert [(p["session_id"], p["limits"] == first["limits"], p["rules"]["sys-baseline-medium"]["limit"])
                for p in out.on(topic)[1:]] == [("S-1", True, None), ("S-1", True, 156.0)]
        service.on_session(session("S-2"))
        assert out.on(topic)[-1]["limits"]["spo2"]["low_medium"] == 87.0 and out.on(topic)[-1]["session_id"] == "S-2"
        edit = AdminEdit({"hr": {"high_medium": 130.0}}, "admin.lee", 1_795_568_460_000)
        service.on_limits(SITE, CHAIR, edit.to_payload().encode())
        latest = EffectiveLimits.from_payload(SITE, CHAIR, json.dumps(out.on(topic)[-1]))
        assert latest.limits["hr"]["high_medium"] == 130.0 and latest.source("hr", "high_medium") == "admin"
        assert dict(latest.admin or {}) == {"user": "admin.lee", "ts": edit.ts, "status": "applied"}
        with pytest.raises(RulesError):
            service.on_limits(SITE, CHAIR, json.dumps({"rules": {"hr-sideways": {"limit": 1}}, "user": "admin.lee",
                                                       "ts": edit.ts + 1}).encode())
        refused = out.on(topic)[-1]
        assert refused["admin"]["status"] == "refused" and "hr-sideways" in refused["admin"]["reason"]
        assert refused["admin"]["ts"] == edit.ts + 1 and refused["limits"]["hr"]["high_medium"] == 130.0  # kept
        count = len(out.on(topic))
        service.tick()
        assert len(out.on(topic)) == count
    finally:
        service.stop()

    again, out2 = make(tmp_path, alarm_rules_file=rules)  # a restart republishes the restored chair's limits
    try:
        assert out2.on(topic)[-1]["limits"]["spo2"]["low_medium"] == 87.0
    finally:
        again.stop()
