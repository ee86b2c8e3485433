"""The nurse's session record on the dashboard side: what it publishes and what it shows (docs/dashboard.md).

The dashboard never decides: it publishes what the nurse entered, with the signed-in user as author, on the
contract's topics (a nurse-started session on ``.../session``, infusion events, assessments and discharges on
``.../record``), and shows what the ingest published back: the retained per-chair session-record state
(elapsed and remaining time, what is due, recovery, discharge readiness) and its refusals on the rejected topic.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any

# Roles that may record (start sessions, record events and assessments, discharge). Others only see.
RECORDING_ROLES = frozenset({"nurse", "admin"})
# Readings arriving more than this after their own time come from the past (a fast demo, a replay).
LIVE_SKEW_MS = 60_000
# A refusal of one of this chair's records is shown this long.
REFUSAL_SHOWN_MS = 10 * 60_000


def new_session_id() -> str:
    """Return a fresh session id (random: it says nothing about the patient)."""
    return "S-" + secrets.token_hex(6)


def total_mg(weight_kg: Any, dose_mg_per_kg: Any) -> float | None:
    """Return the total dose in mg (weight x dose, to 0.1 mg), or None while either is missing or not positive."""
    try:
        weight, dose = float(weight_kg), float(dose_mg_per_kg)
    except (TypeError, ValueError):
        return None
    if not (weight > 0 and dose > 0):
        return None
    return round(weight * dose, 1)


def number_or_none(value: Any) -> float | None:
    """Return a form value as a float, or None when empty or not a number."""
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The ingest refused one of a chair's records: when, why, and which record type."""

    ts: int
    reason: str
    type: str


class RecordCache:
    """Per chair: the retained session-record state the ingest publishes, and the last refusal of its records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], Any] = {}
        self._refusals: dict[tuple[str, str], Refusal] = {}

    def apply_state(self, site: str, chair: str, payload: bytes) -> None:
        """Take a retained session-record state payload (empty clears it); an unreadable one clears it too."""
        try:
            state = json.loads(payload) if payload.strip() else None
        except ValueError:
            state = None
        with self._lock:
            self._states[(site, chair)] = state

    def state(self, site: str, chair: str) -> Any:
        """Return a chair's last published session-record state (None when none)."""
        with self._lock:
            return self._states.get((site, chair))

    def apply_refusal(self, site: str, chair: str, report: dict[str, Any]) -> None:
        """Take a rejected-topic report about one of a chair's records."""
        kind = ""
        echoed = report.get("payload")
        if isinstance(echoed, str):
            try:
                kind = str(json.loads(echoed).get("type", ""))[:32]
            except (ValueError, AttributeError):
                kind = ""
        ts = report.get("ts") if isinstance(report.get("ts"), int) else 0
        with self._lock:
            self._refusals[(site, chair)] = Refusal(ts, str(report.get("reason", ""))[:300], kind)

    def refusal(self, site: str, chair: str, now: int) -> Refusal | None:
        """Return a chair's last refusal if it is recent."""
        with self._lock:
            found = self._refusals.get((site, chair))
        return found if found is not None and now - found.ts <= REFUSAL_SHOWN_MS else None


def _clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = max(0, int(ms) // 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def chair_clock(newest: tuple[int, Any, int] | None, now: int) -> int:
    """Return the chair's clock for advancing a published state's clocks: the wall clock for a live device (its
    readings' times match their arrival), else the newest reading's own time (a fast demo or a replay of the past,
    whose record state is judged on that replayed time). ``newest`` is (reading ts, value, arrival ms)."""
    if newest is None or newest[2] - newest[0] < LIVE_SKEW_MS:
        return now
    return newest[0]


def tile_line(session_id: str | None, state: Any, now: int) -> tuple[str, str] | None:
    """Return the overview tile's session-record line and its class: phase, infusion elapsed and remaining
    (following pauses), recovery time, what is due or overdue and discharge readiness, as the ingest published them.
    None when the chair's published state is not about its current session. ``now`` is the chair's clock."""
    from vitals.session_record import progress

    if session_id is None or not isinstance(state, dict) or state.get("session_id") != session_id:
        return None
    phase = str(state.get("phase") or "none")
    clocks = progress(state, max(now, int(state.get("ts") or 0)))
    remaining = f" · {_clock(clocks['remaining_ms'])} left" if clocks["remaining_ms"] is not None else ""
    text = {"pre": "before infusion", "none": "no infusion", "discharged": "discharged",
            "infusing": f"infusing {_clock(clocks['elapsed_ms'])}{remaining}",
            "paused": f"PAUSED at {_clock(clocks['elapsed_ms'])}{remaining}"}.get(phase, "")
    cls = f"rec-tile-{phase}"
    if phase == "recovery":
        readiness = state.get("readiness")
        ready = isinstance(readiness, dict) and bool(readiness.get("ready"))
        text = f"recovery {_clock(clocks['recovery_ms'])} · {'READY' if ready else 'not ready'}"
        cls += " rec-tile-ready" if ready else ""
    due = [i for i in state.get("due") or [] if isinstance(i, dict) and (i.get("due") or i.get("overdue"))]
    overdue = [i for i in due if i.get("overdue")]
    if overdue:
        text += " · OVERDUE: " + ", ".join(str(i.get("label", i.get("id"))) for i in overdue[:2])
        cls += " rec-tile-overdue"
    elif due:
        text += " · due: " + ", ".join(str(i.get("label", i.get("id"))) for i in due[:2])
    return text, cls
