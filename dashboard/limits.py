"""A chair's alarm limits as the dashboard draws and an admin edits them (docs/dashboard.md, "Alarm limits").

The alarm engine in the ingest is the authority on alarms; these limits are what the trends draw and what
an admin's edit publishes, retained, on ``{prefix}/{site}/chair/{chair}/limits`` and records in the audit
trail (action ``alarm_limits``); the ingest's alarm service applies them as per-chair rule overrides. Defaults
are read from the alarm engine's shipped rule table (ingest/alarms/default_rules.toml).
"""

from __future__ import annotations

import json
import math
from typing import Any

from vitals.topics import CHAIR_KINDS, Topics, check_id

# vital -> limit name -> value. "low_high": below this is a high-priority alarm; "high_medium": above this
# (or at it, for the cuff) is a medium-priority alarm; and so on.
LIMIT_NAMES: tuple[str, ...] = ("low_high", "low_medium", "high_medium", "high_high")


def _shipped_limits() -> dict[str, dict[str, float]]:
    """Return the absolute limits of the alarm engine's shipped rule table (the one place they live)."""
    from ingest.alarms.rules import load_rules

    found: dict[str, dict[str, float]] = {}
    for rule in load_rules().rules:
        if rule.limit is not None and f"{rule.direction}_{rule.priority}" in LIMIT_NAMES:
            found.setdefault(rule.vital, {})[f"{rule.direction}_{rule.priority}"] = rule.limit
    # The form's order: vitals as on a tile, limits from the lowest to the highest.
    order = [v for v in ("hr", "spo2", "rr", "sys", "dia") if v in found]
    return {v: {n: found[v][n] for n in LIMIT_NAMES if n in found[v]} for v in order}


DEFAULT_LIMITS: dict[str, dict[str, float]] = _shipped_limits()
EDITABLE: tuple[str, ...] = tuple(DEFAULT_LIMITS)
# An edit outside these bounds is a typo, not a clinical choice (they match the plausible reading ranges).
BOUNDS: dict[str, tuple[float, float]] = {
    "hr": (20, 300), "spo2": (50, 100), "rr": (0, 80), "sys": (40, 300), "dia": (20, 200),
}


class LimitsError(ValueError):
    """An alarm-limit edit that cannot be right; the message names the value."""


def limits_topic(topics: Topics, site: str, chair: str) -> str:
    """Return the retained topic carrying a chair's alarm limits."""
    if "limits" in CHAIR_KINDS:
        return topics.chair(site, chair, "limits")
    return f"{topics.prefix}/{check_id(site, 'site id')}/chair/{check_id(chair, 'chair id')}/limits"


def effective(overrides: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]]:
    """Return the default limits with a chair's overrides applied."""
    out = {vital: dict(values) for vital, values in DEFAULT_LIMITS.items()}
    for vital, values in (overrides or {}).items():
        if vital in out:
            out[vital].update(values)
    return out


def validate(limits: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Return checked limits (vital -> name -> number), or raise LimitsError naming the bad value."""
    if not isinstance(limits, dict):
        raise LimitsError("limits must be an object of vitals")
    out: dict[str, dict[str, float]] = {}
    for vital, values in limits.items():
        if vital not in BOUNDS:
            raise LimitsError(f"unknown vital {str(vital)[:20]!r}")
        if not isinstance(values, dict):
            raise LimitsError(f"{vital}: limits must be an object")
        lo, hi = BOUNDS[vital]
        checked: dict[str, float] = {}
        for name, value in values.items():
            if name not in LIMIT_NAMES:
                raise LimitsError(f"{vital}: unknown limit {str(name)[:20]!r}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise LimitsError(f"{vital} {name}: {value!r} is not a number")
            if not lo <= value <= hi:
                raise LimitsError(f"{vital} {name}: {value:g} is outside {lo:g}-{hi:g}")
            checked[name] = float(value)
        order = [checked[n] for n in LIMIT_NAMES if n in checked]
        if order != sorted(order):
            raise LimitsError(f"{vital}: limits must rise from low_high to high_high")
        out[vital] = checked
    return out


def parse_payload(payload: bytes | str) -> dict[str, dict[str, float]]:
    """Parse a retained limits payload, raising LimitsError when it is not valid."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise LimitsError("limits payload is not JSON") from None
    return validate(doc.get("limits") if isinstance(doc, dict) else None)  # type: ignore[arg-type]


def rule_id(vital: str, name: str) -> str:
    """Return the alarm engine's rule id for a limit ('hr', 'low_high' -> 'hr-low-high')."""
    side, priority = name.split("_")
    return f"{vital}-{side}-{priority}"


def rule_overrides(limits: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Return the limits as alarm-engine rule overrides ({rule id: {"limit": value}})."""
    return {rule_id(vital, name): {"limit": value} for vital, values in limits.items() for name, value in values.items()}


def to_payload(limits: dict[str, dict[str, float]], user: str, ts_ms: int) -> str:
    """Return the retained limits payload: the limits, the same as rule overrides, who set them and when."""
    return json.dumps({"limits": limits, "rules": rule_overrides(limits), "user": user, "ts": ts_ms}, sort_keys=True)
