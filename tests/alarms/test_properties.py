"""Property tests (hypothesis) of the engine's invariants, checked against an independent oracle."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.alarms.engine import AlarmEngine, EngineConfig
from ingest.alarms.rules import RULE_VITALS, holds, load_rules
from tests.alarms.helpers import CHAIR, SITE, T0, session
from vitals.reading import Reading
from vitals.records import AckCommand, AlarmEvent

BOOK = load_rules()
# Values around every limit and its hysteresis band, so rules start, hold, break and clear often.
VALUES = {
    "spo2": [99.0, 93.0, 91.0, 89.0, 86.0, 84.0, 78.0],
    "hr": [35.0, 42.0, 48.0, 53.0, 75.0, 118.0, 125.0, 138.0, 145.0],
    "rr": [5.0, 9.0, 14.0, 29.0, 33.0],
}
CUFF = st.tuples(st.sampled_from([75.0, 85.0, 93.0, 120.0, 150.0, 158.0, 165.0, 178.0, 185.0]),
                 st.sampled_from([60.0, 70.0, 96.0, 102.0, 112.0]))


@dataclass(frozen=True)
class Step:
    """One input: a reading after ``dt_ms``, a command, a tick, or a session change."""

    what: str
    dt_ms: int = 0
    vitals: tuple[tuple[str, float], ...] = ()
    pick: int = 0


def _reading_step() -> st.SearchStrategy[Step]:
    dt = st.one_of(st.just(1000), st.just(1000), st.just(1000), st.integers(200, 8000))
    continuous = st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3, unique=True).flatmap(
        lambda names: st.tuples(*[st.sampled_from(VALUES[n]).map(lambda v, n=n: (n, v)) for n in names])
    )
    cuff = CUFF.map(lambda sd: (("sys", sd[0]), ("dia", sd[1])) if sd[0] > sd[1] else (("sys", sd[0]),))
    repeat = st.one_of(st.just(1), st.integers(1, 25))  # runs of one value, so delays are met (and broken) often
    return st.builds(lambda d, v, n: Step("reading", dt_ms=d, vitals=tuple(v), pick=n), dt,
                     st.one_of(continuous, continuous, cuff), repeat)


STEPS = st.lists(
    st.one_of(
        _reading_step(), _reading_step(), _reading_step(), _reading_step(), _reading_step(), _reading_step(),
        st.builds(lambda p: Step("ack", pick=p), st.integers(0, 5)),
        st.builds(lambda d: Step("tick", dt_ms=d), st.integers(500, 90_000)),
        st.just(Step("pause")),
        st.sampled_from([Step("session", pick=1), Step("session", pick=2), Step("end")]),
        st.just(Step("offline")), st.just(Step("online")),
    ),
    max_size=120,
)


def run(steps: list[Step], after_step: Callable[[AlarmEngine], None] | None = None,
        ) -> tuple[AlarmEngine, list[AlarmEvent], list[Reading]]:
    """Play steps into a fresh engine (calling after_step after each); return it, every event, every reading."""
    eng = AlarmEngine(BOOK, EngineConfig(cuff_interval_min=1.0))
    events: list[AlarmEvent] = []
    readings: list[Reading] = []
    ts, wall = T0, 50_000_000
    for step in steps:
        if step.what == "reading":
            for _ in range(max(1, step.pick)):
                ts += step.dt_ms
                wall += step.dt_ms
                r = Reading(SITE, CHAIR, ts, **dict(step.vitals))  # type: ignore[arg-type]
                readings.append(r)
                events += eng.on_readings([r])
        elif step.what == "tick":
            wall += step.dt_ms
            events += eng.tick(wall)
        elif step.what == "ack":
            active = eng.active(SITE, CHAIR)
            alarm_id = active[step.pick % len(active)].alarm_id if active else "north.c-07.none.0"
            events += eng.on_command(AckCommand(SITE, CHAIR, alarm_id, "nurse.kim", "acknowledge"), wall)
        elif step.what == "pause":
            events += eng.on_command(AckCommand(SITE, CHAIR, None, "nurse.kim", "pause_audio"), wall)
        elif step.what == "session":
            events += eng.on_session(session(f"S-{step.pick}", started_s=(ts - T0) / 1000), wall)
        elif step.what == "end":
            events += eng.on_session(session("S-1", state="ended"), wall)
        else:
            events += eng.on_status(SITE, CHAIR, step.what, wall)
        if after_step is not None:
            after_step(eng)
    return eng, events, readings


def _by_alarm(events: list[AlarmEvent]) -> dict[str, list[AlarmEvent]]:
    out: dict[str, list[AlarmEvent]] = {}
    for e in events:
        out.setdefault(e.alarm_id, []).append(e)
    return out


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(STEPS)
def test_one_raised_per_episode_and_nothing_after_cleared(steps: list[Step]) -> None:
    eng, events, _ = run(steps)
    standing = set()
    for alarm_id, seq in _by_alarm(events).items():
        assert seq[0].event == "raised", f"{alarm_id} starts with {seq[0].event}"
        assert [e.event for e in seq].count("raised") == 1
        assert [e.event for e in seq].count("cleared") <= 1
        if "cleared" in [e.event for e in seq]:
            assert seq[-1].event == "cleared", f"{alarm_id}: {[e.event for e in seq]}"
        else:
            standing.add(alarm_id)
    # The active list is exactly the alarms raised and not cleared; one per chair, vital and direction.
    active = eng.active(SITE, CHAIR)
    assert {a.alarm_id for a in active} == standing
    keys = [a.alarm_id.rsplit(".", 1)[0] for a in active]
    assert len(keys) == len(set(keys))


@PROPS
@given(STEPS)
def test_priorities_only_from_the_rule_table(steps: list[Step]) -> None:
    _, events, _ = run(steps)
    for e in events:
        if e.kind == "technical":
            assert e.priority == BOOK.technical[e.vital]
        else:
            key = e.alarm_id.split(".")[2] + "." + e.alarm_id.split(".")[3]
            assert e.priority in BOOK.priorities(key), e


@PROPS
@given(STEPS)
def test_nothing_raised_for_a_condition_shorter_than_its_delay(steps: list[Step]) -> None:
    _, events, readings = run(steps)
    for e in events:
        if e.kind != "physiological" or e.event not in ("raised", "upgraded"):
            continue
        key = ".".join(e.alarm_id.split(".")[2:4])
        assert e.vital in RULE_VITALS and e.limit is not None
        rules = [r for r in BOOK.rules if r.key == key and r.priority == e.priority]
        assert rules, e
        # Walk back from the raising reading over readings of the vital while the condition held and gaps stayed
        # within the restart gap: the condition must have held at least one rule's delay.
        mine = [r for r in readings if r.ts_ms <= e.ts and getattr(r, e.vital) is not None]
        assert mine and mine[-1].ts_ms == e.ts

        def held_ms(op: str, limit: float, mine: list[Reading] = mine, e: AlarmEvent = e) -> int:
            start = None
            prev = None
            for r in reversed(mine):
                if not holds(getattr(r, e.vital), op, limit) or (prev is not None and prev - r.ts_ms > BOOK.gap_ms):
                    break
                start = prev = r.ts_ms
            return -1 if start is None else e.ts - start

        assert any(held_ms(r.op, e.limit) >= r.delay_ms for r in rules), e


@PROPS
@given(STEPS)
def test_same_input_same_events(steps: list[Step]) -> None:
    assert run(steps)[1] == run(steps)[1]


@PROPS
@given(STEPS, st.integers(1, 7))
def test_incremental_state_text_always_equals_the_full_state(steps: list[Step], every: int) -> None:
    count = [0]

    def check(eng: AlarmEngine) -> None:
        count[0] += 1
        if count[0] % every == 0:  # saved now and then, as the writer does, with changes in between
            assert json.loads(eng.to_state_text()) == eng.to_state()

    eng, _, _ = run(steps, check)
    assert json.loads(eng.to_state_text()) == eng.to_state()
    restored = AlarmEngine(BOOK, EngineConfig(cuff_interval_min=1.0))
    restored.load_state(json.loads(eng.to_state_text()))
    assert restored.to_state() == eng.to_state()
