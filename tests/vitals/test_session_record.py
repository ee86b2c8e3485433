"""The session record's pure cores: record validation (vitals/care.py), nurse sessions (vitals/records.py), the care
plan (vitals/careplan.py) and the state the ingest publishes (vitals/session_record.py), without servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitals.care import CareRefusal, parse_record
from vitals.careplan import SHIPPED_TEXT, CarePlan, CarePlanError, DischargeCriteria, Schedule, load_care_plan
from vitals.reading import REFUSAL_CODES, Reading
from vitals.records import RecordError, Session
from vitals.session_record import SessionRecord, progress

T0 = 1_795_568_400_000
MIN = 60_000
SID = "S-1"


def rec(type_: str, ts: int, **extra: object) -> bytes:
    return json.dumps({"type": type_, "ts": ts, "session_id": SID, "author": "nurse.kim", **extra}).encode()


def parse(payload: bytes, now: int = T0 + 300 * MIN):
    return parse_record("north", "c-07", payload, now)


def test_nurse_session_computes_total_and_refuses_names_and_wrong_totals() -> None:
    doc = {"session_id": SID, "state": "active", "started_at": T0, "drug": "ketamine", "dose_mg_per_kg": 0.5,
           "duration_min": 40, "patient_ref": "P-7F3A2C", "weight_kg": 70, "baseline_sys": 124, "baseline_dia": 78,
           "baseline_source": "cuff", "started_by": "nurse.kim"}
    session = Session.from_payload("north", "c-07", json.dumps(doc))
    assert session.total_mg == 35.0 and session.started_by == "nurse.kim"
    assert Session.from_payload("north", "c-07", json.dumps(session.to_json_obj())) == session
    for bad, reason in (({"total_mg": 40}, "is not weight_kg x dose_mg_per_kg"), ({"patient_ref": "Jane Doe"}, "never a name"),
                        ({"weight_kg": 900}, "weight_kg 900 is outside"), ({"baseline_source": "guess"}, "baseline_source"),
                        ({"started_by": ""}, "started_by is empty")):
        with pytest.raises(RecordError, match=reason):
            Session.from_payload("north", "c-07", json.dumps({**doc, **bad}))
    device = {"session_id": "D-1", "state": "active", "started_at": T0, "patient_ref": "any ref kept as before"}
    assert Session.from_payload("north", "c-07", json.dumps(device)).started_by is None


def test_every_record_kind_parses() -> None:
    kinds = [rec("infusion_start", T0, rate=52.5, rate_unit="mg/h"), rec("rate_change", T0 + 1, rate=40, rate_unit="mg/h"),
             rec("pause", T0 + 2, reason="nausea"), rec("resume", T0 + 3), rec("infusion_stop", T0 + 4, delivered_mg=35),
             rec("adverse_event", T0 + 5, kind="nausea", treatment="ondansetron", dose="4 mg IV"),
             rec("note", T0 + 6, text="patient comfortable"), rec("assessment", T0 + 7, scale="moaas", score=5),
             rec("assessment", T0 + 8, scale="cadss6", items={i: 1 for i in ("1", "2", "6", "7", "15", "22")}, total=6),
             rec("discharge", T0 + 9, override_reason="transfer to ED")]
    parsed = [parse(p) for p in kinds]
    assert [p.type for p in parsed][:5] == ["infusion_start", "rate_change", "pause", "resume", "infusion_stop"]
    assert parsed[7].data == {"scale": "moaas", "items": {"responsiveness": 5}, "total": 5}
    assert parsed[8].data["total"] == 6 and parsed[8].summary() == "assessment cadss6 total 6"


BAD = [
    (b"not json", "bad_record", "not valid JSON"),
    (b"[1]", "bad_record", "must be a JSON object"),
    (rec("bolus", T0), "bad_record", "record type 'bolus'"),
    (rec("note", T0), "bad_record", "text is missing"),
    (json.dumps({"type": "note", "session_id": SID, "author": "a", "text": "x"}).encode(), "bad_record", "ts is missing"),
    (rec("note", T0 + 400 * MIN, text="x"), "bad_record", "in the future"),
    (json.dumps({"type": "note", "ts": T0, "author": "a", "text": "x"}).encode(), "bad_record", "session_id is missing"),
    (json.dumps({"type": "note", "ts": T0, "session_id": SID, "text": "x"}).encode(), "bad_record", "author is missing"),
    (rec("pause", T0, colour="red"), "bad_record", "has no field 'colour'"),
    (rec("rate_change", T0), "bad_record", "rate is missing"),
    (rec("rate_change", T0, rate=40, rate_unit="drops/min"), "bad_record", "rate_unit must be"),
    (rec("rate_change", T0, rate=-1, rate_unit="mg/h"), "bad_record", "outside"),
    (rec("adverse_event", T0, kind="sneezing"), "bad_record", "adverse event kind 'sneezing'"),
    (rec("adverse_event", T0, kind="nausea", dose="4 mg"), "bad_record", "dose given without treatment"),
    (rec("assessment", T0, scale="gcs", score=15), "score_invalid", "unknown scale 'gcs'"),
    (rec("assessment", T0, scale="moaas", score=6), "score_invalid", "out of range"),
    (rec("assessment", T0, scale="rass", score=-6), "score_invalid", "out of range"),
    (rec("assessment", T0, scale="aldrete", score=9), "score_invalid", "send items, not score"),
    (rec("assessment", T0, scale="aldrete", items={"activity": 2}), "score_invalid", "missing"),
    (rec("assessment", T0, scale="nrs", score=4, total=5), "score_invalid", "does not match"),
    (rec("discharge", T0, override_reason="  "), "bad_record", "override_reason is empty"),
]


@pytest.mark.parametrize(("payload", "code", "reason"), BAD)
def test_malformed_records_are_refused_with_a_specific_reason(payload: bytes, code: str, reason: str) -> None:
    with pytest.raises(CareRefusal, match=reason) as info:
        parse(payload)
    assert info.value.code == code and code in REFUSAL_CODES


def test_care_plan_shipped_values_site_overrides_and_refusals(tmp_path: Path) -> None:
    plan = load_care_plan()
    assert plan.schedule.bp_infusion_min == 10 and plan.schedule.bp_recovery_min == 15
    assert plan.schedule.cadss_at_min == (0, 40, 120) and plan.discharge.threshold("aldrete") == 9
    path = tmp_path / "plan.toml"
    path.write_text('[discharge]\nmin_observation_min = 120\n[aldrete]\ncirculation = "percent"\n'
                    '[sites.north.schedule]\nbp_recovery_min = 5\n')
    assert load_care_plan(path).discharge.min_observation_min == 120
    assert load_care_plan(path, "north").schedule.bp_recovery_min == 5
    assert load_care_plan(path, "south").schedule.bp_recovery_min == 15 and load_care_plan(path).circulation == "percent"
    for text, reason in (("[schedule]\nbp_infusion_min = 0\n", "more than 0"), ("[schedule]\nevery = 3\n", "unknown key"),
                         ('[discharge]\nscales = ["moaas"]\n', "non-empty list"), ("[dosing]\nx = 1\n", "unknown table")):
        path.write_text(text)
        with pytest.raises(CarePlanError, match=reason):
            load_care_plan(path)


def test_docs_care_plan_md_embeds_the_shipped_file() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "care-plan.md").read_text(encoding="utf-8")
    assert SHIPPED_TEXT in doc, "docs/care-plan.md must embed vitals/careplan.toml verbatim"


def _record(plan: CarePlan | None = None) -> SessionRecord:
    sr = SessionRecord("north", "c-07", plan or CarePlan())
    sr.set_session(Session("north", "c-07", SID, "active", T0, duration_min=40, baseline_sys=120, baseline_dia=80))
    return sr


def _take(sr: SessionRecord, payload: bytes) -> None:
    record = parse(payload)
    assert sr.check(record) is False
    sr.apply(record)


def test_infusion_clock_follows_pauses_and_the_order_is_enforced() -> None:
    sr = _record()
    with pytest.raises(CareRefusal, match="not possible while the infusion is not started") as info:
        sr.check(parse(rec("pause", T0 + MIN)))
    assert info.value.code == "bad_sequence"
    _take(sr, rec("infusion_start", T0 + MIN, rate=52.5, rate_unit="mg/h"))
    _take(sr, rec("pause", T0 + 11 * MIN))
    doc = sr.snapshot(T0 + 16 * MIN)
    assert doc["phase"] == "paused" and doc["infusion"]["elapsed_ms"] == 10 * MIN
    assert doc["infusion"]["remaining_ms"] == 30 * MIN
    assert progress(doc, T0 + 20 * MIN)["elapsed_ms"] == 10 * MIN  # no running time while paused
    with pytest.raises(CareRefusal, match="paused"):
        sr.check(parse(rec("pause", T0 + 17 * MIN)))
    _take(sr, rec("resume", T0 + 21 * MIN))
    doc = sr.snapshot(T0 + 31 * MIN)
    assert doc["infusion"]["elapsed_ms"] == 20 * MIN and doc["infusion"]["paused_ms"] == 10 * MIN
    assert progress(doc, T0 + 36 * MIN) == {"elapsed_ms": 25 * MIN, "remaining_ms": 15 * MIN, "recovery_ms": None}
    with pytest.raises(CareRefusal, match="older than the infusion's previous event"):
        sr.check(parse(rec("rate_change", T0 + 20 * MIN, rate=1, rate_unit="mg/h")))
    with pytest.raises(CareRefusal, match="not the chair's current session") as info:
        sr.check(parse(rec("note", T0 + 22 * MIN, text="x").replace(b'"S-1"', b'"S-2"')))
    assert info.value.code == "no_session"
    repeat = parse(rec("resume", T0 + 21 * MIN))
    assert sr.check(repeat) is True  # a re-sent record is no order violation


def test_schedule_due_items_and_overdue_after_grace() -> None:
    sr = _record()
    assert sr.due(T0) == []  # nothing before the infusion starts
    _take(sr, rec("infusion_start", T0))
    due = {i.id: i for i in sr.due(T0)}
    assert set(due) == {"bp", "cadss@0", "cadss@40", "cadss@120"}
    assert due["bp"].due_at == T0 + 10 * MIN and due["bp"].overdue_at == T0 + 12 * MIN
    _take(sr, rec("assessment", T0 + MIN, scale="cadss6", items={i: 0 for i in ("1", "2", "6", "7", "15", "22")}))
    assert "cadss@0" not in {i.id for i in sr.due(T0 + MIN)}
    assert [i.id for i in sr.overdue(T0 + 12 * MIN - 1)] == []
    assert [i.id for i in sr.overdue(T0 + 12 * MIN)] == ["bp"]
    sr.note_readings([Reading("north", "c-07", T0 + 12 * MIN, sys=130, dia=82)])
    assert sr.overdue(T0 + 12 * MIN) == [] and sr.next_change_ms(T0 + 12 * MIN) == T0 + 22 * MIN
    _take(sr, rec("infusion_stop", T0 + 40 * MIN))
    bp = next(i for i in sr.due(T0 + 40 * MIN) if i.id == "bp")
    assert bp.due_at == T0 + 27 * MIN  # recovery: 15 min after the last cuff reading


def test_discharge_criteria_score_observation_and_vitals_band() -> None:
    sr = _record(CarePlan(Schedule(), DischargeCriteria(min_observation_min=60)))
    _take(sr, rec("infusion_start", T0))
    _take(sr, rec("infusion_stop", T0 + 40 * MIN))
    aldrete = {"activity": 2, "respiration": 2, "circulation": 2, "consciousness": 1, "spo2": 1}
    _take(sr, rec("assessment", T0 + 50 * MIN, scale="aldrete", items=aldrete))
    sr.note_readings([Reading("north", "c-07", T0 + 55 * MIN, sys=150, dia=85, spo2=97)])
    at = T0 + 60 * MIN
    crit = {c.id: c for c in sr.criteria(at)}
    assert not crit["score"].met and crit["score"].detail == "Modified Aldrete 8 < 9"
    assert not crit["observation"].met and crit["observation"].detail == "observed 20 of 60 min"
    assert not crit["vitals"].met and "sys 150 is 25 % from baseline 120" in crit["vitals"].detail
    assert crit["infusion_stopped"].met
    _take(sr, rec("assessment", T0 + 101 * MIN, scale="aldrete", items={**aldrete, "spo2": 2}))
    sr.note_readings([Reading("north", "c-07", T0 + 100 * MIN, sys=128, dia=82),
                      Reading("north", "c-07", T0 + 100 * MIN + 1, spo2=96)])
    ready = sr.criteria(T0 + 100 * MIN + 30_000)
    assert all(c.met for c in ready), ready
    assert {c.id for c in ready} == {"infusion_stopped", "score", "observation", "vitals"}
    assert sr.snapshot(T0 + 100 * MIN + 30_000)["readiness"]["ready"] is True
    assert not {c.id: c for c in sr.criteria(T0 + 102 * MIN)}["vitals"].met  # the SpO2 is no longer current
