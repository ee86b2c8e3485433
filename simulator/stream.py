"""The simulated stream: every message every device would publish, in order, as pure data.

``generate(...)`` yields ``Message(sim_ms, topic, payload, qos, retain)`` in publish order. It has no clock, no
network and no randomness but seeded ``random.Random`` instances, so the same scenario, site, chairs, seed and
start give a byte-identical stream; the publisher (publisher.py) only paces it and sends it.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
from collections.abc import Iterator
from random import Random
from typing import Any, NamedTuple

from simulator.physiology import SessionModel, draw, draw_patient, plan_episodes
from simulator.scenario import Scenario
from vitals.reading import MAX_READINGS_PER_MESSAGE, Reading
from vitals.records import Session
from vitals.topics import DEFAULT_PREFIX, Topics

ONLINE, OFFLINE = b"online", b"offline"


class Message(NamedTuple):
    """One MQTT message of the stream, published at simulated time ``sim_ms`` (Unix epoch ms)."""

    sim_ms: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


def chair_ids(chairs: int) -> list[str]:
    """Return the chair ids of a simulated site: '01', '02', ... (zero-padded to a common width)."""
    width = max(2, len(str(chairs)))
    return [f"{i:0{width}d}" for i in range(1, chairs + 1)]


def _whole(value: Any) -> Any:
    """Return whole floats as ints (a device sends ``"hr":78``, not ``78.0``), containers converted inside."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def dumps(obj: Any) -> bytes:
    """Return compact, deterministic JSON bytes (whole numbers without a decimal point)."""
    return json.dumps(_whole(obj), separators=(",", ":"), ensure_ascii=False).encode()


def session_plan(scenario: Scenario, rng: Random, chair_index: int, chairs: int) -> list[tuple[float, float]]:
    """Return a chair's sessions as (start_s, end_s) from the simulation start."""
    clinic, drug = scenario.params["clinic"], scenario.params["drug"]
    length = (float(drug["infusion_min"]) + float(drug["observe_min"])) * 60.0
    step = float(clinic["stagger_min"])
    if chairs > 1:
        step = min(step, float(clinic["stagger_span_min"]) / (chairs - 1))
    phase = chair_index / chairs if clinic["phase_spread"] else 0.0
    start = (float(clinic["first_start_min"]) + chair_index * step) * 60.0
    out = []
    for _ in range(int(clinic["sessions_per_chair"])):
        start = float(round(start))
        out.append((start + phase, start + phase + length))
        start += length + draw(rng, clinic["turnover_min"]) * 60.0
    return out


def _applies(event: dict[str, Any], chair_no: int, session_no: int) -> bool:
    chairs, sessions = event["chairs"], event["sessions"]
    return (chairs == "all" or chair_no in chairs) and (sessions == "all" or session_no in sessions)


def _chair_stream(scenario: Scenario, topics: Topics, site: str, chair: str, index: int, chairs: int, seed: int,
                  start_ms: int, end_s: float | None) -> Iterator[tuple[int, int, int, int, str, bytes, int, bool]]:
    """Yield one chair's messages in publish order as sortable tuples."""
    params = scenario.params
    key = f"{seed}/{site}/{chair}"
    plan_rng, delivery_rng = Random(f"{key}/plan"), Random(f"{key}/delivery")
    sessions = session_plan(scenario, plan_rng, index, chairs)
    if end_s is None:
        end_s = sessions[-1][1] + float(params["clinic"]["idle_after_min"]) * 60.0 if sessions else 0.0
    t_vitals, t_status, t_session = topics.vitals(site, chair), topics.status(site, chair), topics.session(site, chair)
    dlv = params["delivery"]
    interval = float(params["timing"]["vitals_interval_s"])
    heap: list[tuple[int, int, int, int, str, bytes, int, bool]] = []
    counter = itertools.count()

    def ms(t_s: float) -> int:
        return start_ms + round(t_s * 1000)

    def push(publish_ms: int, topic: str, payload: bytes, *, retain: bool = False, sub: int = 0) -> None:
        heapq.heappush(heap, (publish_ms, index, sub, next(counter), topic, payload, 1, retain))

    def flush(before_ms: int | None) -> Iterator[tuple[int, int, int, int, str, bytes, int, bool]]:
        while heap and (before_ms is None or heap[0][0] < before_ms):
            yield heapq.heappop(heap)

    def deliver(ts_ms: int, payload: bytes) -> None:
        """Publish a reading on time, or with the scenario's delivery faults."""
        roll = delivery_rng.random()
        late, dup, reorder = float(dlv["late_fraction"]), float(dlv["duplicate_fraction"]), float(dlv["reorder_fraction"])
        if roll < late:
            push(ts_ms + round(draw(delivery_rng, dlv["late_s"]) * 1000), t_vitals, payload, sub=1)
        elif roll < late + reorder:
            push(ts_ms + round(interval * 1000), t_vitals, payload, sub=1)  # after the next reading
        else:
            push(ts_ms, t_vitals, payload)
        if delivery_rng.random() < dup:
            push(ts_ms + round(draw(delivery_rng, dlv["duplicate_after_ms"])), t_vitals, payload, sub=2)

    push(start_ms, t_status, ONLINE, retain=True)
    seq = 0
    drug = params["drug"]
    for number, (s0, s1) in enumerate(sessions, 1):
        if s0 >= end_s:
            break
        rng = Random(f"{key}/session{number}")
        length = s1 - s0
        patient = draw_patient(rng, params)
        episodes = plan_episodes(rng, [e for e in scenario.events if _applies(e, index + 1, number)], length)
        model = SessionModel(rng, params, patient, episodes)
        session = Session(site=site, chair=chair, session_id=f"S-{rng.getrandbits(48):012x}", state="active",
                          started_at=ms(s0), drug=str(drug["name"]), dose_mg_per_kg=float(drug["dose_mg_per_kg"]),
                          duration_min=float(drug["infusion_min"]), patient_ref=f"P-{rng.getrandbits(32):08x}")
        nurse = params["nurse"]
        if nurse["enabled"]:
            nurse_rng = Random(f"{key}/nurse{number}")  # its own generator: the vitals stay as they were
            session = nurse_session(session, nurse, nurse_rng, patient.sys, patient.dia)
        yield from flush(ms(s0))
        push(ms(s0), t_session, dumps(session.to_json_obj()), retain=True)
        if nurse["enabled"]:
            t_record = topics.record(site, chair)
            for at_s, record in nurse_records(session, nurse, nurse_rng, float(drug["infusion_min"]), length):
                if s0 + at_s < end_s:
                    push(ms(s0 + at_s), t_record, dumps(record))
        cuffs = model.cuff_times(length)
        gaps = [ep for ep in episodes if ep.kind == "disconnect"]
        buffered: list[dict[str, Any]] = []
        in_gap = False
        t = 0.0
        while t < length and s0 + t < end_s:
            now = ms(s0 + t)
            yield from flush(now)
            gap = next((ep for ep in gaps if ep.start_s <= t < ep.end_s), None)
            if gap is not None and not in_gap:
                push(now, t_status, OFFLINE, retain=True)
            elif gap is None and in_gap:
                _reconnect(push, now, t_status, t_vitals, buffered)
            in_gap = gap is not None
            values = model.vitals(t)
            cuff = next((c for c in cuffs if t <= c < t + interval), None)
            if cuff is not None:
                values["sys"], values["dia"], values["map"] = model.cuff(t)
            obj = Reading(site=site, chair=chair, ts_ms=now, seq=seq, **values).to_json_obj()  # type: ignore[arg-type]
            seq += 1
            if gap is None:
                deliver(now, dumps(obj))
            elif gap.values.get("buffer"):
                buffered.append(obj)
            t += interval
        if in_gap:
            _reconnect(push, ms(s0 + t), t_status, t_vitals, buffered)
        if s1 <= end_s:
            yield from flush(ms(s1))
            ended = dataclasses.replace(session, state="ended", ended_at=ms(s1))
            push(ms(s1), t_session, dumps(ended.to_json_obj()), retain=True)
    push(max(ms(end_s), start_ms), t_status, OFFLINE, retain=True, sub=9)
    yield from flush(None)


def nurse_session(session: Session, nurse: dict[str, Any], rng: Random, sys: float, dia: float) -> Session:
    """Return the session as a nurse starts it: weight, total dose, the baseline BP from the cuff, who started it."""
    weight = round(draw(rng, nurse["weight_kg"]))
    total = round(weight * float(session.dose_mg_per_kg or 0), 1)
    return dataclasses.replace(session, weight_kg=float(weight), total_mg=total, baseline_sys=float(round(sys)),
                               baseline_dia=float(round(dia)), baseline_source="cuff", started_by=str(nurse["staff"]))


def nurse_records(session: Session, nurse: dict[str, Any], rng: Random, infusion_min: float,
                  length_s: float) -> list[tuple[float, dict[str, Any]]]:
    """Return what the nurse records in a session, as (seconds from its start, record payload), in time order.

    Plausible, not clinical data: CADSS-6 low before and higher at the end of the infusion, MOAA/S 4-5, RASS 0 to -1,
    pain NRS, an Aldrete of 8 or 9 fifteen minutes after the stop, 9-10 (and a PADSS) before the discharge.
    """
    base = {"session_id": session.session_id, "author": str(nurse["staff"])}
    out: list[tuple[float, dict[str, Any]]] = []

    def add(at_s: float, type_: str, **extra: Any) -> None:
        out.append((at_s, {"type": type_, "ts": session.started_at + round(at_s * 1000), **base, **extra}))

    start = float(nurse["start_delay_s"])
    rate = round(float(session.total_mg or 0) / (infusion_min / 60.0), 1)
    cadss6 = ("1", "2", "6", "7", "15", "22")
    add(start, "infusion_start", rate=rate, rate_unit="mg/h")
    add(start + 60, "assessment", scale="cadss6", items={i: int(rng.random() < 0.15) for i in cadss6})
    add(start + 300, "assessment", scale="nrs", score=rng.randint(0, 3))
    add(start + 600, "assessment", scale="moaas", score=5)
    paused = 0.0
    if rng.random() < float(nurse["pause_fraction"]):
        paused = round(draw(rng, nurse["pause_min"]) * 60.0)
        add(start + 900, "pause", reason="patient request")
        add(start + 900 + paused, "resume")
    if rng.random() < float(nurse["rate_change_fraction"]):
        add(start + 1200 + paused, "rate_change", rate=round(rate * 0.75, 1), rate_unit="mg/h", reason="dissociation")
    if rng.random() < float(nurse["nausea_fraction"]):
        add(start + 1500 + paused, "adverse_event", kind="nausea", treatment="ondansetron", dose="4 mg IV")
    end = start + infusion_min * 60.0 + paused
    add(end - 120, "assessment", scale="cadss6", items={i: rng.randint(0, 3) for i in cadss6})
    add(end - 110, "assessment", scale="moaas", score=rng.choice((4, 5)))
    add(end - 100, "assessment", scale="rass", score=rng.choice((0, -1)))
    add(end, "infusion_stop")
    first = {"activity": 2, "respiration": 2, "circulation": 2, "consciousness": 2, "spo2": 2}
    if rng.random() < float(nurse["aldrete_8_fraction"]):
        first.update(consciousness=1, spo2=1)
    else:
        first.update(consciousness=1)
    add(end + 900, "assessment", scale="aldrete", items=first)
    leave = length_s - float(nurse["discharge_before_end_min"]) * 60.0
    add(leave - 120, "assessment", scale="aldrete", items={**first, "consciousness": 2, "spo2": 2})
    add(leave - 110, "assessment", scale="padss", items={"vital_signs": 2, "activity": 2, "nausea_vomiting": 2,
                                                         "pain": 2, "bleeding": 2})
    add(leave, "discharge")
    return sorted((o for o in out if o[0] < length_s), key=lambda o: o[0])


def _reconnect(push: Any, now: int, t_status: str, t_vitals: str, buffered: list[dict[str, Any]]) -> None:
    """Publish 'online' again, then the readings held during the gap as arrays (store and forward)."""
    push(now, t_status, ONLINE, retain=True)
    for i in range(0, len(buffered), MAX_READINGS_PER_MESSAGE):
        push(now, t_vitals, dumps(buffered[i : i + MAX_READINGS_PER_MESSAGE]))
    buffered.clear()


def generate(scenario: Scenario, *, site: str, chairs: int, seed: int, start_ms: int,
             duration_s: float | None = None, prefix: str = DEFAULT_PREFIX) -> Iterator[Message]:
    """Yield the whole simulated stream of a site in publish order (pure and deterministic)."""
    topics = Topics(prefix)
    if duration_s is None:
        duration_s = scenario.duration_s
    streams = [_chair_stream(scenario, topics, site, chair, i, chairs, seed, start_ms, duration_s)
               for i, chair in enumerate(chair_ids(chairs))]
    for item in heapq.merge(*streams):
        yield Message(item[0], item[4], item[5], item[6], item[7])


def readings_of(messages: list[Message] | Iterator[Message]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (topic, reading object) for every reading in a stream (arrays flattened)."""
    for msg in messages:
        if msg.topic.endswith("/vitals"):
            doc = json.loads(msg.payload)
            for obj in doc if isinstance(doc, list) else [doc]:
                yield msg.topic, obj
