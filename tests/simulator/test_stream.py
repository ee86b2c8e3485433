"""The pure simulator: determinism, physiology ranges and every scenario's defining property (no broker)."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from random import Random

import pytest

from simulator.physiology import draw_patient, response_shape
from simulator.scenario import ScenarioError, builtin_names, load_scenario, parse_duration
from simulator.stream import chair_ids, generate
from tests.simulator.helpers import START_MS, condition_runs, readings_by_chair, stream
from vitals.care import parse_record
from vitals.reading import validate_payload
from vitals.records import Session

# The default alarm rules of issue 4 with a delay: (vital, condition, delay ms).
DELAYED_RULES = [
    ("spo2", lambda v: v < 90, 15_000), ("spo2", lambda v: v < 85, 5_000),
    ("hr", lambda v: v > 120, 15_000), ("hr", lambda v: v > 140, 10_000),
    ("hr", lambda v: v < 50, 15_000), ("hr", lambda v: v < 40, 10_000),
]


def test_same_seed_and_start_give_identical_bytes_and_another_seed_differs() -> None:
    a = stream("clinic-day", chairs=4, seed=7, duration_s=600)
    b = stream("clinic-day", chairs=4, seed=7, duration_s=600)
    c = stream("clinic-day", chairs=4, seed=8, duration_s=600)
    assert len(a) > 2000
    assert a == b
    assert b"".join(m.payload for m in a) == b"".join(m.payload for m in b)
    assert [m.payload for m in a if m.topic.endswith("vitals")] != [m.payload for m in c if m.topic.endswith("vitals")]


def test_start_time_moves_timestamps_and_nothing_else() -> None:
    a = stream("normal", chairs=2, seed=3, duration_s=120)
    b = stream("normal", chairs=2, seed=3, duration_s=120, start_ms=START_MS + 60_000)
    assert [m.sim_ms + 60_000 for m in a] == [m.sim_ms for m in b]
    ra, rb = readings_by_chair(a), readings_by_chair(b)
    for chair in ra:
        assert [{**r, "ts": r["ts"] + 60_000} for r in ra[chair]] == rb[chair]


def test_stream_is_in_publish_order_and_every_message_obeys_the_contract() -> None:
    msgs = stream("clinic-day", chairs=12, seed=2, duration_s=1800)
    assert all(x.sim_ms <= y.sim_ms for x, y in itertools.pairwise(msgs))
    for msg in msgs:
        _, site, _, chair, kind = msg.topic.split("/")
        assert msg.qos == 1
        if kind == "vitals":
            assert not msg.retain
            checked = validate_payload(site, chair, msg.payload, now_ms=msg.sim_ms)
            assert checked.readings and not checked.refusals, (msg, checked.refusals)
        elif kind == "session":
            assert msg.retain
            session = Session.from_payload(site, chair, msg.payload)
            assert re.fullmatch(r"P-[0-9a-f]{8}", session.patient_ref or "")  # pseudonymous, never a name
            assert session.drug == "ketamine" and session.dose_mg_per_kg == 0.5 and session.duration_min == 40
        elif kind == "record":  # the nurse (issue 13): not retained, and valid by the contract
            assert not msg.retain and parse_record(site, chair, msg.payload, msg.sim_ms).author == "nurse.sim"
        else:
            assert kind == "status" and msg.retain and msg.payload in (b"online", b"offline")


def test_normal_scenario_stays_in_physiological_ranges_with_one_reading_a_second_and_cuff_every_10_min() -> None:
    msgs = stream("normal", chairs=6, seed=11)
    by_chair = readings_by_chair(msgs)
    assert sorted(by_chair) == chair_ids(6)
    for rows in by_chair.values():
        assert len(rows) == 90 * 60  # 40 min infusion + 50 min observation, once a second
        assert [r["seq"] for r in rows] == list(range(len(rows)))
        assert all(b["ts"] - a["ts"] == 1000 for a, b in itertools.pairwise(rows))
        for r in rows:
            assert 50 <= r["hr"] <= 120 and 90 <= r["spo2"] <= 100 and 8 <= r["rr"] <= 30
        cuffs = [r for r in rows if "sys" in r]
        assert [(c["ts"] - rows[0]["ts"]) // 60_000 for c in cuffs] == list(range(0, 90, 10))
        for c in cuffs:
            assert 90 <= c["sys"] <= 200 and 50 <= c["dia"] <= 125 and c["dia"] < c["map"] < c["sys"]
        # Autocorrelated, not white: consecutive HR values are close, unlike independent draws.
        hr = [r["hr"] for r in rows]
        assert statistics.mean(abs(a - b) for a, b in itertools.pairwise(hr)) < 1.0
        assert max(hr) - min(hr) >= 4


def test_ketamine_response_peaks_30_to_40_min_and_returns_by_90() -> None:
    params = load_scenario("normal").params
    r = params["response"]
    curve = [response_shape(t, r["peak_min"], r["shape"]) for t in range(0, 121)]
    assert 30 <= curve.index(max(curve)) <= 40
    assert curve[0] == 0 and curve[90] < 0.05
    patients = [draw_patient(Random(i), params) for i in range(2000)]
    mean_rise = statistics.mean(p.sys_rise for p in patients)
    assert 7 <= mean_rise <= 16.5
    old_hyper = [p.sys_rise for p in patients if p.hypertensive and p.age >= 60 and not p.strong]
    young_normo = [p.sys_rise for p in patients if not p.hypertensive and p.age < 40 and not p.strong]
    assert statistics.mean(old_hyper) > 1.5 * statistics.mean(young_normo)
    strong = sum(1 for p in patients if p.sys + p.sys_rise >= 165 and p.dia + p.dia_rise >= 100) / len(patients)
    assert 0.03 <= strong <= 0.2  # a minority reach >= 165/100
    assert all(60 <= p.hr <= 95 and 95 <= p.spo2 <= 99 and 12 <= p.rr <= 18 for p in patients)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_desaturation_stays_at_85_to_88_for_30_to_90_s(seed: int) -> None:
    by_chair = readings_by_chair(stream("desaturation", chairs=4, seed=seed))
    for rows in by_chair.values():
        runs = condition_runs(rows, "spo2", lambda v: v <= 88, max_gap_ms=1000)
        assert len(runs) == 1
        first, last = runs[0]
        assert 30_000 <= last - first + 1000 <= 90_000
        inside = [r["spo2"] for r in rows if first <= r["ts"] <= last]
        assert min(inside) >= 85
        # Long enough for the SpO2 < 90 alarm (15 s), never deep enough for < 85.
        assert any(b - a >= 15_000 for a, b in condition_runs(rows, "spo2", lambda v: v < 90))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hypertensive_response_reaches_sbp_above_180_near_the_peak(seed: int) -> None:
    msgs = stream("hypertensive", chairs=4, seed=seed)
    for rows in readings_by_chair(msgs).values():
        cuffs = [r for r in rows if "sys" in r]
        top = max(cuffs, key=lambda r: r["sys"])
        assert top["sys"] > 180
        assert 25 <= (top["ts"] - rows[0]["ts"]) / 60_000 <= 45
        assert cuffs[0]["sys"] < 160  # it is a response, not a hypertensive baseline


@pytest.mark.parametrize(("scenario", "cond", "lo", "hi"), [
    ("bradycardia", lambda v: v < 50, 40, 49),
    ("tachycardia", lambda v: v > 120, 121, 135),
])
def test_bradycardia_and_tachycardia_hold_long_enough_to_alarm(scenario: str, cond, lo: int, hi: int) -> None:  # type: ignore[no-untyped-def]
    for rows in readings_by_chair(stream(scenario, chairs=4, seed=5)).values():
        runs = condition_runs(rows, "hr", cond)
        assert len(runs) == 1
        first, last = runs[0]
        assert 60_000 <= last - first + 1000 <= 180_000
        assert all(lo <= r["hr"] <= hi for r in rows if first <= r["ts"] <= last)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_artefact_spikes_are_shorter_than_every_alarm_delay_and_dropouts_happen(seed: int) -> None:
    by_chair = readings_by_chair(stream("artefacts", chairs=4, seed=seed))
    spikes = dropouts = 0
    for rows in by_chair.values():
        for vital, cond, delay in DELAYED_RULES:
            for first, last in condition_runs(rows, vital, cond):
                assert last - first + 1000 < delay, (vital, delay, first, last)
                spikes += 1
        dropouts += sum(1 for r in rows if "spo2" not in r)
        assert all("rr" in r for r in rows)  # a probe off never empties a reading
    assert spikes >= 4 * 8 and dropouts >= 4 * 4 * 3


def test_disconnect_goes_offline_and_delivers_the_gap_after_reconnecting() -> None:
    msgs = stream("disconnect", chairs=3, seed=4)
    for chair in chair_ids(3):
        statuses = [m.payload for m in msgs if m.topic.endswith(f"/{chair}/status")]
        assert statuses == [b"online", b"offline", b"online", b"offline"]
        vitals = [json.loads(m.payload) for m in msgs if m.topic.endswith(f"/{chair}/vitals")]
        arrays = [v for v in vitals if isinstance(v, list)]
        assert len(arrays) == 1 and 30 <= len(arrays[0]) <= 120
        seqs = sorted(r["seq"] for v in vitals for r in (v if isinstance(v, list) else [v]))
        assert seqs == list(range(90 * 60))  # nothing lost: store and forward


def test_delivery_faults_publish_late_duplicated_and_out_of_order() -> None:
    msgs = [m for m in stream("delivery-faults", chairs=2, seed=6) if m.topic.endswith("/vitals")]
    late = dup = reordered = 0
    seen: set[bytes] = set()
    last_ts: dict[str, int] = {}
    for m in msgs:
        ts = json.loads(m.payload)["ts"]
        late += m.sim_ms - ts >= 5000
        dup += m.payload in seen
        seen.add(m.payload)
        reordered += ts < last_ts.get(m.topic, 0)
        last_ts[m.topic] = max(ts, last_ts.get(m.topic, 0))
    assert late >= 50 and dup >= 200 and reordered >= 200
    assert len(seen) == 2 * 90 * 60  # every reading exactly once among the copies


def test_clinic_day_has_12_staggered_chairs_several_sessions_and_early_alarm_events_at_8_chairs() -> None:
    sc = load_scenario("clinic-day")
    assert sc.chairs == 12 and sc.duration_s == 9 * 3600
    msgs = list(generate(sc, site="s", chairs=8, seed=1, start_ms=START_MS, duration_s=3 * 3600))
    starts = {}
    for m in msgs:
        if m.topic.endswith("/session") and json.loads(m.payload)["state"] == "active":
            starts.setdefault(m.topic.split("/")[-2], []).append(m.sim_ms)
    assert sorted(starts) == chair_ids(8)
    firsts = sorted(v[0] for v in starts.values())
    assert firsts[0] == START_MS and len(set(firsts)) == 8 and firsts[-1] - firsts[0] <= 20 * 60_000
    assert all(len(v) >= 2 for v in starts.values())
    by_chair = readings_by_chair(msgs)
    # Chair 01: SpO2 <= 88 for 60 s from minute 2, i.e. a medium alarm by minute 3.
    desat = condition_runs(by_chair["01"], "spo2", lambda v: v <= 88)
    assert desat and 2 * 60_000 <= desat[0][0] - START_MS <= 4 * 60_000 and desat[0][1] - desat[0][0] >= 30_000
    # Chair 02: a manual cuff reading >= 180 systolic within the first 4 minutes (high alarm at once).
    early_cuffs = [r for r in by_chair["02"] if "sys" in r and r["ts"] - START_MS <= 4 * 60_000]
    assert any(r["sys"] >= 180 for r in early_cuffs)


def test_every_shipped_scenario_loads_and_generates() -> None:
    names = builtin_names()
    for required in ("normal", "hypertensive", "desaturation", "bradycardia", "tachycardia", "artefacts",
                     "disconnect", "delivery-faults", "clinic-day"):
        assert required in names
    for name in names:
        assert stream(name, chairs=2, duration_s=300)


def test_scenario_files_compose_and_typos_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mine.toml").write_text(
        'include = ["desaturation"]\nduration = "20m"\n[timing]\ncuff_interval_min = 5\n'
        '[[mix]]\nscenario = "tachycardia"\nchairs = [2]\n'
    )
    sc = load_scenario(str(tmp_path / "mine.toml"))
    assert sc.duration_s == 1200 and sc.param("timing", "cuff_interval_min") == 5
    assert [e["kind"] for e in sc.events] == ["desaturation", "tachycardia"] and sc.events[1]["chairs"] == [2]
    rows = readings_by_chair(list(generate(sc, site="s", chairs=1, seed=1, start_ms=START_MS)))["01"]
    assert [(r["ts"] - START_MS) // 60_000 for r in rows if "sys" in r] == [0, 5, 10, 15]
    (tmp_path / "typo.toml").write_text("[timing]\ncuff_interval = 5\n")
    with pytest.raises(ScenarioError, match=r"timing\.cuff_interval"):
        load_scenario(str(tmp_path / "typo.toml"))
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such-scenario")


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90 and parse_duration("45m") == 2700 and parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400 and parse_duration("12") == 12
    with pytest.raises(ValueError):
        parse_duration("ten minutes")


def test_shipped_recordings_are_what_the_simulator_makes_and_are_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from simulator.make_recordings import FOLDER, regenerate
    from simulator.recording import read_lines

    total = 0
    for path in regenerate(tmp_path):
        shipped = FOLDER / path.name
        assert shipped.read_bytes() == path.read_bytes(), f"{shipped} is stale: run python -m simulator.make_recordings"
        total += shipped.stat().st_size
    assert total <= 300_000
    rows = readings_by_chair(list(read_lines((FOLDER / "desaturation.jsonl").read_text().splitlines())))["01"]
    assert any(b - a >= 30_000 for a, b in condition_runs(rows, "spo2", lambda v: v <= 88))


def test_command_line_values_parse() -> None:
    import argparse
    import time

    from simulator.common import parse_speed, parse_time_ms

    assert parse_speed("max") == 0 and parse_speed("0") == 0 and parse_speed("10") == 10 and parse_speed("0.5") == 0.5
    for bad in ("-1", "fast", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_speed(bad)
    assert parse_time_ms("2026-01-05T08:00:00Z") == START_MS == parse_time_ms("2026-01-05T09:00:00+01:00")
    assert parse_time_ms("2026-01-05T08:00:00") == START_MS and parse_time_ms(str(START_MS)) == START_MS
    assert abs(parse_time_ms("now-2h") / 1000 - (time.time() - 7200)) < 2
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time_ms("yesterday")


@pytest.mark.parametrize("name", builtin_names())
def test_every_scenario_publishes_only_what_the_contract_accepts(name: str) -> None:
    for seed in (1, 2, 3):
        msgs = stream(name, chairs=3, seed=seed, duration_s=95 * 60)
        for msg in msgs:
            _, site, _, chair, kind = msg.topic.split("/")
            if kind == "vitals":
                checked = validate_payload(site, chair, msg.payload, now_ms=msg.sim_ms)
                assert checked.readings and not checked.refusals, (name, seed, msg, checked.refusals)
            elif kind == "session":
                Session.from_payload(site, chair, msg.payload)
            elif kind == "record":
                parse_record(site, chair, msg.payload, msg.sim_ms)
            else:
                assert msg.payload in (b"online", b"offline")


def test_clinic_day_nurse_records_are_valid_in_order_and_each_discharge_meets_the_shipped_criteria() -> None:
    from simulator.stream import Message
    from vitals.careplan import load_care_plan
    from vitals.reading import validate_payload
    from vitals.records import Session
    from vitals.session_record import SessionRecord

    msgs = list(generate(load_scenario("clinic-day"), site="s", chairs=3, seed=1, start_ms=START_MS,
                         duration_s=4.2 * 3600))
    plan = load_care_plan()
    records: dict[str, SessionRecord] = {}
    kinds: set[str] = set()
    discharged = overdue_seen = 0
    last_vitals: dict[str, Message] = {}
    for m in msgs:
        chair, kind = m.topic.split("/")[-2:]
        sr = records.setdefault(chair, SessionRecord("s", chair, plan))
        if kind == "session":
            sr.set_session(Session.from_payload("s", chair, m.payload))
        elif kind == "vitals":
            last_vitals[chair] = m  # the newest SpO2 matters only when a record arrives; every cuff reading does
            if b'"sys"' in m.payload:
                sr.note_readings(validate_payload("s", chair, m.payload, m.sim_ms).readings)
        elif kind == "record":
            sr.note_readings(validate_payload("s", chair, last_vitals[chair].payload, m.sim_ms).readings)
            record = parse_record("s", chair, m.payload, m.sim_ms)
            assert record.author == "nurse.sim" and sr.check(record) is False
            overdue_seen += bool(sr.overdue(m.sim_ms))
            if record.type == "discharge":
                assert all(c.met for c in sr.criteria(record.ts)), (chair, sr.criteria(record.ts))
                discharged += 1
            sr.apply(record)
            kinds.add(record.type if record.type != "assessment" else record.data["scale"])
    assert discharged >= 5 and overdue_seen == 0
    assert kinds >= {"infusion_start", "infusion_stop", "pause", "resume", "rate_change", "adverse_event", "discharge", "cadss6",
                     "moaas", "rass", "nrs", "aldrete", "padss"}
