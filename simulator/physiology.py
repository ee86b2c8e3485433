"""The physiology core: patients, autocorrelated noise, the ketamine response and episodes.

Pure: no I/O, no clock; the only randomness is the ``random.Random`` passed in, so a seed fixes everything.
Times are seconds since the session started. Parameters come from a resolved scenario (scenario.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from random import Random
from typing import Any

Params = dict[str, dict[str, Any]]


def draw(rng: Random, value: Any) -> float:
    """Return a number from a scalar (itself) or a [lo, hi] range (uniform)."""
    if isinstance(value, list | tuple):
        lo, hi = float(value[0]), float(value[1])
        return lo if lo == hi else rng.uniform(lo, hi)
    return float(value)


def response_shape(t_min: float, peak_min: float, shape: float) -> float:
    """Return the ketamine response (0..1) t minutes after the infusion starts: rise, peak, return."""
    if t_min <= 0:
        return 0.0
    x = t_min / peak_min
    return x**shape * math.exp(shape * (1.0 - x))


class OU:
    """An Ornstein-Uhlenbeck process (mean 0): autocorrelated noise with standard deviation ``sd``."""

    __slots__ = ("rng", "sd", "tau_s", "x")

    def __init__(self, rng: Random, sd: float, tau_s: float) -> None:
        self.rng = rng
        self.sd = float(sd)
        self.tau_s = max(float(tau_s), 1e-9)
        self.x = rng.gauss(0.0, self.sd) if self.sd > 0 else 0.0

    def step(self, dt_s: float = 1.0) -> float:
        """Advance by ``dt_s`` seconds (exact discretisation) and return the new value."""
        if self.sd <= 0:
            return 0.0
        a = math.exp(-dt_s / self.tau_s)
        self.x = a * self.x + self.sd * math.sqrt(1.0 - a * a) * self.rng.gauss(0.0, 1.0)
        return self.x


@dataclass(frozen=True, slots=True)
class Patient:
    """One patient's baselines and ketamine response amplitudes (no identity: only numbers)."""

    age: float
    hypertensive: bool
    hr: float
    spo2: float
    rr: float
    sys: float
    dia: float
    sys_rise: float
    dia_rise: float
    hr_rise: float
    strong: bool


def draw_patient(rng: Random, params: Params) -> Patient:
    """Draw a patient's baselines and response from the scenario's ranges."""
    b, r = params["baseline"], params["response"]
    age = draw(rng, b["age"])
    hypertensive = rng.random() < float(b["hypertension_fraction"])
    sys = draw(rng, b["hypertensive_sys"] if hypertensive else b["sys"])
    dia = min(max(sys - draw(rng, b["pulse_pressure"]), float(b["dia_range"][0])), float(b["dia_range"][1]))
    factor = 1.0 + float(r["age_factor_per_decade"]) * max(0.0, age - 40.0) / 10.0
    if hypertensive:
        factor *= float(r["hypertension_factor"])
    sys_rise = max(0.0, rng.gauss(float(r["sys_rise_mean"]), float(r["sys_rise_sd"]))) * factor
    dia_rise = sys_rise * float(r["dia_rise_ratio"])
    strong = rng.random() < float(r["strong_fraction"])
    if strong:
        sys_rise += draw(rng, r["strong_sys_extra"])
        dia_rise += draw(rng, r["strong_dia_extra"])
    hr_rise = max(0.0, rng.gauss(float(r["hr_rise_mean"]), float(r["hr_rise_sd"])))
    return Patient(age=round(age), hypertensive=hypertensive, hr=draw(rng, b["hr"]), spo2=draw(rng, b["spo2"]),
                   rr=draw(rng, b["rr"]), sys=sys, dia=dia, sys_rise=sys_rise, dia_rise=dia_rise, hr_rise=hr_rise,
                   strong=strong)


@dataclass(slots=True)
class Episode:
    """A concrete event of one session: kind, span in session seconds and drawn values."""

    kind: str
    start_s: float
    end_s: float
    values: dict[str, float] = field(default_factory=dict)


def plan_episodes(rng: Random, events: list[dict[str, Any]], session_len_s: float) -> list[Episode]:
    """Turn a session's scenario events into concrete episodes (times and values drawn now)."""
    out: list[Episode] = []
    for ev in events:
        if rng.random() >= float(ev["probability"]):
            continue
        kind = ev["kind"]
        start = draw(rng, ev["at_min"]) * 60.0
        if kind in ("desaturation", "bradycardia", "tachycardia"):
            duration = round(draw(rng, ev["duration_s"]))
            spec = ev["nadir"] if kind == "desaturation" else ev["hr"]
            target = draw(rng, spec)
            lo, hi = spec if isinstance(spec, list) else (target, target)
            out.append(Episode(kind, round(start), round(start) + duration,
                               {"target": target, "lo": float(lo), "hi": float(hi), "ramp_s": float(ev["ramp_s"]),
                                "edge": float(ev["edge"])}))
        elif kind == "hypertensive":
            out.append(Episode(kind, 0.0, session_len_s, {"sys_peak": draw(rng, ev["sys_peak"]),
                                                         "dia_peak": draw(rng, ev["dia_peak"])}))
        elif kind == "manual_cuff":
            t = round(start)
            out.append(Episode(kind, t, t + 1, {"sys": round(draw(rng, ev["sys"])), "dia": round(draw(rng, ev["dia"]))}))
        elif kind == "probe_off":
            t = round(start)
            for _ in range(int(ev["count"])):
                out.append(Episode(kind, t, t + round(draw(rng, ev["duration_s"]))))
                t += round(draw(rng, ev["spacing_s"]))
        elif kind == "motion":
            t = round(start)
            for _ in range(int(ev["count"])):
                spo2_len = max(1, round(draw(rng, ev["spo2_spike_s"])))
                hr_len = max(1, round(draw(rng, ev["hr_spike_s"])))
                out.append(Episode(kind, t, t + max(spo2_len, hr_len), {
                    "spo2": float(round(draw(rng, ev["spo2"]))), "spo2_end": t + spo2_len,
                    "hr": float(round(draw(rng, ev["hr"]))), "hr_end": t + hr_len}))
                t += max(spo2_len, hr_len) + round(draw(rng, ev["spacing_s"]))
        elif kind == "disconnect":
            t = round(start)
            out.append(Episode(kind, t, t + round(draw(rng, ev["duration_s"])), {"buffer": float(bool(ev["buffer"]))}))
    return [e for e in out if e.start_s < session_len_s]


class SessionModel:
    """The vitals of one patient through one session, advanced one sample at a time (in time order)."""

    def __init__(self, rng: Random, params: Params, patient: Patient, episodes: list[Episode]) -> None:
        self.rng = rng
        self.p = params
        self.episodes = episodes
        n = params["noise"]
        drift_tau = float(n["drift_tau_min"]) * 60.0
        self.hr_noise, self.hr_drift = OU(rng, n["hr_sd"], n["hr_tau_s"]), OU(rng, n["hr_drift_sd"], drift_tau)
        self.spo2_noise, self.spo2_drift = OU(rng, n["spo2_sd"], n["spo2_tau_s"]), OU(rng, n["spo2_drift_sd"], drift_tau)
        self.rr_noise, self.rr_drift = OU(rng, n["rr_sd"], n["rr_tau_s"]), OU(rng, n["rr_drift_sd"], drift_tau)
        self.bp_drift = OU(rng, n["bp_drift_sd"], drift_tau)
        self.t_s = 0.0
        for ep in episodes:
            if ep.kind == "hypertensive":
                # Scale the response so that its peak lands on the drawn target (the curve peaks at 1.0).
                patient = _with_rise(patient, ep.values["sys_peak"] - patient.sys, ep.values["dia_peak"] - patient.dia)
        self.patient = patient

    def _response(self, t_s: float) -> float:
        r = self.p["response"]
        return response_shape(t_s / 60.0, float(r["peak_min"]), float(r["shape"]))

    def _advance(self, t_s: float) -> None:
        dt = t_s - self.t_s
        if dt > 0:
            for proc in (self.hr_noise, self.hr_drift, self.spo2_noise, self.spo2_drift, self.rr_noise,
                         self.rr_drift, self.bp_drift):
                proc.step(dt)
            self.t_s = t_s

    def vitals(self, t_s: float) -> dict[str, float | None]:
        """Return HR, SpO2 and RR at session second ``t_s`` (None where a probe is off)."""
        self._advance(t_s)
        pt, f, r = self.patient, self._response(t_s), self.p["response"]
        hr = pt.hr + pt.hr_rise * f + self.hr_drift.x + self.hr_noise.x
        spo2 = pt.spo2 + float(r["spo2_change"]) * f + self.spo2_drift.x + self.spo2_noise.x
        rr = pt.rr + float(r["rr_change"]) * f + self.rr_drift.x + self.rr_noise.x
        bounds = self.p["bounds"]
        hr, spo2, rr = _clip(hr, bounds["hr"]), _clip(spo2, bounds["spo2"]), _clip(rr, bounds["rr"])
        out: dict[str, float | None] = {"hr": float(round(hr)), "spo2": float(round(spo2)), "rr": float(round(rr))}
        for ep in self.episodes:
            if not ep.start_s - ep.values.get("ramp_s", 0.0) <= t_s < ep.end_s + ep.values.get("ramp_s", 0.0):
                continue
            if ep.kind == "desaturation":
                out["spo2"] = _episode_value(ep, t_s, out["spo2"], self.spo2_noise.x, low=True)
            elif ep.kind == "bradycardia":
                out["hr"] = _episode_value(ep, t_s, out["hr"], self.hr_noise.x, low=True)
            elif ep.kind == "tachycardia":
                out["hr"] = _episode_value(ep, t_s, out["hr"], self.hr_noise.x, low=False)
            elif ep.kind == "motion":
                if t_s < ep.values["spo2_end"]:
                    out["spo2"] = ep.values["spo2"]
                if t_s < ep.values["hr_end"]:
                    out["hr"] = ep.values["hr"]
            elif ep.kind == "probe_off":
                out["spo2"] = out["hr"] = None
        return out

    def cuff(self, t_s: float) -> tuple[float, float, float]:
        """Return a cuff (NIBP) reading (sys, dia, map) taken at session second ``t_s``."""
        for ep in self.episodes:
            if ep.kind == "manual_cuff" and ep.start_s == t_s:
                sys, dia = ep.values["sys"], ep.values["dia"]
                return float(sys), float(dia), float(round(dia + (sys - dia) / 3.0))
        self._advance(t_s)
        pt, f = self.patient, self._response(t_s)
        noise = self.p["noise"]
        err = self.rng.gauss(0.0, float(noise["cuff_error_sd"]))
        sys = pt.sys + pt.sys_rise * f + self.bp_drift.x + err
        dia = pt.dia + pt.dia_rise * f + float(noise["dia_drift_ratio"]) * (self.bp_drift.x + err)
        sys, dia = round(sys), round(min(dia, sys - float(self.p["baseline"]["min_pulse_pressure"])))
        return float(sys), float(dia), float(round(dia + (sys - dia) / 3.0))

    def cuff_times(self, session_len_s: float) -> list[float]:
        """Return the session seconds at which the cuff measures (start, every interval, manual readings)."""
        step = float(self.p["timing"]["cuff_interval_min"]) * 60.0
        times = {0.0} if session_len_s > 0 else set()
        t = step
        while t < session_len_s and step > 0:  # 0: only the reading at session start
            times.add(float(round(t)))
            t += step
        times.update(float(ep.start_s) for ep in self.episodes if ep.kind == "manual_cuff")
        return sorted(times)


def _clip(value: float, bounds: list[float]) -> float:
    return min(max(value, float(bounds[0])), float(bounds[1]))


def _with_rise(pt: Patient, sys_rise: float, dia_rise: float) -> Patient:
    return Patient(pt.age, pt.hypertensive, pt.hr, pt.spo2, pt.rr, pt.sys, pt.dia, max(0.0, sys_rise),
                   max(0.0, dia_rise), pt.hr_rise, pt.strong)


def _episode_value(ep: Episode, t_s: float, base: float | None, noise: float, *, low: bool) -> float | None:
    """Return a vital during an episode: ramp to the edge of the alarm limit, hold the target span, ramp back.

    Inside [start, end) the value stays within the episode's drawn range [lo, hi]; on the ramps it stays on the
    normal side of the event's ``edge`` (defaults: SpO2 >= 89, brady HR >= 50, tachy HR <= 120), so the
    episode's span is exact.
    """
    if base is None:
        return None
    v = ep.values
    if ep.start_s <= t_s < ep.end_s:
        return float(min(max(round(v["target"] + noise), v["lo"]), v["hi"]))
    edge = v["edge"]
    ramp = max(v["ramp_s"], 1.0)
    frac = (ep.start_s - t_s) / ramp if t_s < ep.start_s else (t_s - ep.end_s + 1.0) / ramp
    value = edge + (base - edge) * min(max(frac, 0.0), 1.0)
    return float(max(round(value), edge) if low else min(round(value), edge))
