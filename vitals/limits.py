"""Alarm limits in the contract's terms (docs/mqtt-contract.md, "Alarm limits" and "Effective limits").

Two retained chair topics carry them:

- ``{prefix}/{site}/chair/{chair}/limits``: an admin's edit, published by the dashboard (``AdminEdit``);
- ``{prefix}/{site}/chair/{chair}/effective_limits``: what the alarm engine enforces for the chair after every
  layer (rules file, site, chair, session, admin edit), published by the ingest (``EffectiveLimits``).

Screens draw only the effective limits: a process never recomputes the engine's decision from a copy of its
inputs. Both shapes name a limit as ``vital -> limit name -> value``; a limit name is the side and tier of
the alarm engine's rule it stands for (``spo2``, ``low_medium`` is rule ``spo2-low-medium``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vitals.reading import PLAUSIBLE
from vitals.records import PRIORITIES
from vitals.topics import TopicError, check_id

# "low_high": below this is a high-priority alarm; "high_medium": above this (or at it, for the cuff) a
# medium-priority one; and so on. Ordered from the lowest limit to the highest.
LIMIT_NAMES: tuple[str, ...] = ("low_high", "low_medium", "high_medium", "high_high")
# Vitals with limits, in the order a tile and the admin's form show them.
LIMIT_VITALS: tuple[str, ...] = ("hr", "spo2", "rr", "sys", "dia")
# Where a rule's value came from, from the weakest layer to the strongest (docs/alarm-rules.md, "Overrides").
LAYERS: tuple[str, ...] = ("default", "file", "site", "chair", "admin", "session")
# An edit outside a vital's plausible reading range is a typo, not a clinical choice.
BOUNDS: Mapping[str, tuple[float, float]] = {vital: PLAUSIBLE[vital] for vital in LIMIT_VITALS}
MAX_USER = 64


class LimitsError(ValueError):
    """Alarm limits that cannot be right; the message names the value."""


def rule_id(vital: str, name: str) -> str:
    """Return the alarm engine's rule id for a limit ('hr', 'low_high' -> 'hr-low-high')."""
    side, priority = name.split("_")
    return f"{vital}-{side}-{priority}"


def limit_name(rule: str, vital: str) -> str | None:
    """Return the limit name a rule id stands for ('spo2-low-medium', 'spo2' -> 'low_medium'), or None."""
    for name in LIMIT_NAMES:
        if rule == rule_id(vital, name):
            return name
    return None


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LimitsError(f"{where}: {value!r} is not a number")
    return float(value)


def _limits(limits: object, *, edit: bool) -> dict[str, dict[str, float]]:
    """Return checked limits; an edit must also lie within the bounds and rise from low_high to high_high."""
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
            if value is None and edit:
                continue
            number = _number(value, f"{vital} {name}")
            if not lo <= number <= hi:
                raise LimitsError(f"{vital} {name}: {number:g} is outside {lo:g}-{hi:g}")
            checked[name] = number
        if edit:
            order = [checked[n] for n in LIMIT_NAMES if n in checked]
            if order != sorted(order):
                raise LimitsError(f"{vital}: limits must rise from low_high to high_high")
        out[vital] = {n: checked[n] for n in LIMIT_NAMES if n in checked}
    return {v: out[v] for v in LIMIT_VITALS if v in out}


def validate(limits: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Return an admin's checked limits (vital -> name -> number), or raise LimitsError naming the bad value."""
    return _limits(limits, edit=True)


def _json_object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise LimitsError(f"{what} payload is not JSON") from None
    if not isinstance(doc, dict):
        raise LimitsError(f"{what} payload must be a JSON object")
    return doc


def _user(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= MAX_USER:
        raise LimitsError(f"user must be 1-{MAX_USER} printable characters")
    return value


def _ts(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LimitsError(f"{where} must be epoch milliseconds, not {str(value)[:30]!r}")
    return value


@dataclass(frozen=True, slots=True)
class AdminEdit:
    """An admin's edit of a chair's limits as published on ``.../limits`` (who, when, which limits)."""

    limits: Mapping[str, Mapping[str, float]]
    user: str | None = None
    ts: int | None = None

    def rules(self) -> dict[str, dict[str, float]]:
        """Return the edit as alarm-engine rule overrides ({rule id: {"limit": value}})."""
        return {rule_id(vital, name): {"limit": value} for vital, values in self.limits.items()
                for name, value in values.items()}

    def to_payload(self) -> str:
        """Return the retained payload: the limits, the same as rule overrides, who set them and when."""
        limits = {vital: dict(values) for vital, values in self.limits.items()}
        return json.dumps({"limits": limits, "rules": self.rules(), "user": self.user, "ts": self.ts}, sort_keys=True)

    @classmethod
    def from_payload(cls, payload: bytes | str) -> AdminEdit:
        """Parse a ``.../limits`` payload, raising LimitsError when it is not valid."""
        doc = _json_object(payload, "limits")
        return cls(validate(doc.get("limits")), _user(doc.get("user")), _ts(doc.get("ts"), "ts"))  # type: ignore[arg-type]


def edit_meta(doc: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """Return who made an admin edit and when (a ``.../limits`` document), None for what it does not say well."""
    try:
        user = _user(doc.get("user"))
    except LimitsError:
        user = None
    try:
        ts = _ts(doc.get("ts"), "ts")
    except LimitsError:
        ts = None
    return user, ts


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """What the alarm engine enforces for one chair, as it publishes it on ``.../effective_limits``.

    ``limits`` holds only limits of enabled rules (vital -> limit name -> value); ``rules`` says for each enabled
    rule with a limit its ``vital``, ``limit`` (null for a baseline rule without a baseline yet), ``priority``,
    ``delay_s`` and ``source`` (the layer its limit came from); ``admin`` names the admin edit the engine last
    took (``user``, ``ts``, ``status`` applied or refused, ``reason``), None when there is none.
    """

    site: str
    chair: str
    ts: int
    limits: Mapping[str, Mapping[str, float]]
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    session_id: str | None = None
    admin: Mapping[str, Any] | None = None

    @property
    def admin_ts(self) -> int | None:
        """Return the ts of the admin edit these limits reflect (applied or refused), None when none."""
        return None if self.admin is None else self.admin.get("ts")

    def priority(self, vital: str, name: str) -> str:
        """Return the priority the engine gives a limit (a rule's priority may be overridden)."""
        found = self.rules.get(rule_id(vital, name), {}).get("priority")
        return found if found in PRIORITIES else name.split("_")[1]

    def source(self, vital: str, name: str) -> str | None:
        """Return the layer a limit came from (one of LAYERS), when the engine said."""
        found = self.rules.get(rule_id(vital, name), {}).get("source")
        return found if found in LAYERS else None

    def to_json_obj(self) -> dict[str, Any]:
        """Return the contract's JSON object."""
        return {"site": self.site, "chair": self.chair, "ts": self.ts,
                "limits": {v: dict(values) for v, values in self.limits.items()},
                "rules": {rid: dict(fields) for rid, fields in self.rules.items()},
                "session_id": self.session_id, "admin": None if self.admin is None else dict(self.admin)}

    def to_payload(self) -> bytes:
        """Return the retained payload."""
        return json.dumps(self.to_json_obj(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_payload(cls, site: str, chair: str, payload: bytes | str) -> EffectiveLimits:
        """Parse an ``.../effective_limits`` payload of a chair, raising LimitsError when it is not valid."""
        doc = _json_object(payload, "effective limits")
        if doc.get("site") != site or doc.get("chair") != chair:
            raise LimitsError(f"effective limits name {str(doc.get('site'))[:70]}/{str(doc.get('chair'))[:70]}, "
                              f"not the topic's {site}/{chair}")
        try:
            check_id(site, "site id")
            check_id(chair, "chair id")
        except TopicError as exc:
            raise LimitsError(str(exc)) from None
        ts = _ts(doc.get("ts"), "ts")
        if ts is None:
            raise LimitsError("ts is missing")
        limits = _limits(doc.get("limits"), edit=False)
        rules = doc.get("rules", {})
        if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
            raise LimitsError("rules must be an object of rule objects")
        session_id = doc.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise LimitsError("session_id must be a string or null")
        admin = doc.get("admin")
        if admin is not None:
            if not isinstance(admin, dict):
                raise LimitsError("admin must be an object or null")
            _ts(admin.get("ts"), "admin.ts")
        return cls(site, chair, ts, limits, rules, session_id, admin)
