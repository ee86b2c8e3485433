"""Small builders shared by the alarm tests."""

from __future__ import annotations

from ingest.alarms.engine import AlarmEngine, EngineConfig
from ingest.alarms.rules import load_rules
from vitals.reading import Reading
from vitals.records import AlarmEvent, Session

T0 = 1_795_568_400_000  # 2026-11-25T01:00:00Z
SITE = "north"
CHAIR = "c-07"


def engine(**config: object) -> AlarmEngine:
    """Return an engine with the shipped rules."""
    return AlarmEngine(load_rules(), EngineConfig(**config))  # type: ignore[arg-type]


def reading(t_s: float, chair: str = CHAIR, **vitals: float) -> Reading:
    """Return a reading ``t_s`` seconds after T0."""
    return Reading(SITE, chair, T0 + round(t_s * 1000), **vitals)  # type: ignore[arg-type]


def series(vital: str, values: list[float], start_s: float = 0.0, step_s: float = 1.0, chair: str = CHAIR) -> list[Reading]:
    """Return one reading per value, ``step_s`` apart."""
    return [reading(start_s + i * step_s, chair, **{vital: v}) for i, v in enumerate(values)]


def session(session_id: str = "S-1", state: str = "active", baseline_sys: float | None = None,
            chair: str = CHAIR, started_s: float = 0.0) -> Session:
    """Return a session of the test chair."""
    return Session(SITE, chair, session_id, state, T0 + round(started_s * 1000),
                   ended_at=None if state == "active" else T0 + 3_600_000, patient_ref="P-7F3A2C",
                   baseline_sys=baseline_sys)


def kinds(events: list[AlarmEvent]) -> list[tuple[str, str, str]]:
    """Return (event, vital, priority) of each event."""
    return [(e.event, e.vital, e.priority) for e in events]
