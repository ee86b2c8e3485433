"""The pure physiology: baselines, autocorrelated noise, the ketamine response over a session (no broker)."""

from __future__ import annotations

import itertools
import math
import statistics
from random import Random

from simulator.physiology import OU, SessionModel, draw_patient
from simulator.scenario import load_scenario
from tests.simulator.helpers import readings_by_chair, stream

PARAMS = load_scenario("normal").params


def lag1(xs: list[float]) -> float:
    """Return the lag-1 autocorrelation of a series."""
    mean = statistics.fmean(xs)
    num = sum((a - mean) * (b - mean) for a, b in itertools.pairwise(xs))
    return num / sum((x - mean) ** 2 for x in xs)


def test_baselines_are_drawn_from_the_issue_ranges_with_a_matching_diastolic() -> None:
    rng = Random(1)
    patients = [draw_patient(rng, PARAMS) for _ in range(3000)]
    for p in patients:
        assert 60 <= p.hr <= 95 and 95 <= p.spo2 <= 99 and 12 <= p.rr <= 18
        assert 105 <= p.sys <= 145 and 60 <= p.dia <= 95 and 25 <= p.sys - p.dia <= 60
    # The draws use their whole range, not one corner of it.
    assert min(p.hr for p in patients) < 63 and max(p.hr for p in patients) > 92
    assert min(p.sys for p in patients) < 110 and max(p.sys for p in patients) > 140
    assert 0.15 <= sum(p.hypertensive for p in patients) / len(patients) <= 0.25


def test_ornstein_uhlenbeck_noise_is_autocorrelated_with_the_requested_spread() -> None:
    proc = OU(Random(3), sd=1.5, tau_s=20)
    xs = [proc.step(1.0) for _ in range(50_000)]
    assert abs(statistics.pstdev(xs) - 1.5) < 0.15
    assert abs(lag1(xs) - math.exp(-1 / 20)) < 0.02
    rng = Random(4)
    white = [rng.gauss(0, 1.5) for _ in range(50_000)]
    assert abs(lag1(white)) < 0.02  # what the simulator must not look like


def test_published_vitals_are_autocorrelated_not_white() -> None:
    for rows in readings_by_chair(stream("normal", chairs=4, seed=21, duration_s=1800)).values():
        for vital in ("hr", "spo2", "rr"):
            xs = [float(r[vital]) for r in rows]
            if statistics.pstdev(xs) > 0:
                assert lag1(xs) > 0.8, vital
        hr = [r["hr"] for r in rows]
        assert statistics.fmean(abs(a - b) for a, b in itertools.pairwise(hr)) < 1.0


def _mean_course(minutes: range, patients: int = 400) -> dict[str, list[float]]:
    """Return the mean change from baseline of SBP, DBP, HR and RR at each minute, over many patients."""
    out: dict[str, list[list[float]]] = {k: [[] for _ in minutes] for k in ("sys", "dia", "hr", "rr")}
    for i in range(patients):
        rng = Random(f"course{i}")
        patient = draw_patient(rng, PARAMS)
        model = SessionModel(rng, PARAMS, patient, [])
        for j, minute in enumerate(minutes):
            t = minute * 60.0
            vitals = model.vitals(t)
            sys, dia, _ = model.cuff(t)
            out["sys"][j].append(sys - patient.sys)
            out["dia"][j].append(dia - patient.dia)
            out["hr"][j].append(vitals["hr"] - patient.hr)  # type: ignore[operator]
            out["rr"][j].append(vitals["rr"] - patient.rr)  # type: ignore[operator]
    return {k: [statistics.fmean(v) for v in cols] for k, cols in out.items()}


def test_ketamine_raises_blood_pressure_to_a_peak_30_to_40_min_in_then_back_by_90() -> None:
    minutes = range(0, 121, 5)
    course = _mean_course(minutes)
    sys = course["sys"]
    peak = max(range(len(sys)), key=sys.__getitem__)
    assert 30 <= minutes[peak] <= 40
    assert 7 <= sys[peak] <= 18  # published mean rises: +7 to +16 mmHg systolic
    assert 0.4 * sys[peak] <= course["dia"][peak] <= 0.9 * sys[peak]
    assert abs(sys[0]) < 1.5  # starts at baseline
    assert sys[minutes.index(20)] < sys[peak] and sys[minutes.index(60)] < 0.6 * sys[peak]
    assert sys[minutes.index(90)] < 0.15 * sys[peak] + 1  # back to baseline within about 90 minutes
    hr = course["hr"]
    assert 2 <= hr[peak] <= 10 and abs(hr[0]) < 1.5  # a small HR rise
    assert all(abs(x) < 1.0 for x in course["rr"])  # respiration preserved


def test_a_minority_of_sessions_reach_165_over_100_at_the_peak() -> None:
    reached = 0
    n = 500
    for i in range(n):
        rng = Random(f"peak{i}")
        patient = draw_patient(rng, PARAMS)
        model = SessionModel(rng, PARAMS, patient, [])
        cuffs = [model.cuff(m * 60.0) for m in range(0, 90, 10)]
        reached += any(s >= 165 and d >= 100 for s, d, _ in cuffs)
    assert 0.02 <= reached / n <= 0.25
