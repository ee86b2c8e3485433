"""The session record: what a nurse (or a pump, or an EHR gateway) records on ``{prefix}/{site}/chair/{chair}/record``.

Pure: no I/O, the clock is passed in. ``parse_record(site, chair, payload, now_ms)`` returns a ``CareRecord`` or
raises ``CareRefusal`` with a stable ``code`` (one of ``RECORD_REFUSAL_CODES``) and a reason for people, as readings
are refused (docs/mqtt-contract.md, "Session record"). Whether a record fits the chair's session (its id, the
infusion's order, discharge criteria) is the ingest's judgement with ``vitals.session_record``.

Record types (``type``):

- infusion events: ``infusion_start``, ``rate_change``, ``pause``, ``resume``, ``infusion_stop``,
  ``adverse_event`` (``kind``, ``treatment``, ``dose``), ``note`` (``text``);
- ``assessment`` (``scale`` and ``items``, or ``score`` for a one-item scale; the total is computed);
- ``discharge`` (``override_reason`` when discharging past unmet criteria; the ingest adds ``criteria``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vitals.reading import MAX_FUTURE_MS, MIN_TS_MS, parse_ts
from vitals.records import RecordError, clean_text
from vitals.scales import ScoreError, get_scale, score
from vitals.topics import check_id

INFUSION_EVENTS: tuple[str, ...] = ("infusion_start", "rate_change", "pause", "resume", "infusion_stop")
EVENT_TYPES: tuple[str, ...] = (*INFUSION_EVENTS, "adverse_event", "note")
RECORD_TYPES: tuple[str, ...] = (*EVENT_TYPES, "assessment", "discharge")
RATE_UNITS: tuple[str, ...] = ("ml/h", "mg/h", "mg/kg/h")
MAX_RATE = 2000.0  # any unit: more is a typo
# Adverse event kinds: a closed list so they can be counted; "other" with a note for the rest.
ADVERSE_KINDS: tuple[str, ...] = (
    "nausea", "vomiting", "emergence_reaction", "dissociation", "anxiety", "hypertension", "hypotension",
    "tachycardia", "bradycardia", "desaturation", "headache", "dizziness", "sedation", "other",
)
MAX_NOTE = 500
MAX_PAYLOAD = 16 * 1024
# Refusal codes of the record topic and of nurse sessions (metrics labels; also in vitals.reading.REFUSAL_CODES).
RECORD_REFUSAL_CODES: tuple[str, ...] = ("bad_record", "score_invalid", "no_session", "bad_sequence",
                                         "discharge_refused")
# Keys each type may carry besides the common ones (type, ts, session_id, author).
_TYPE_KEYS: Mapping[str, frozenset[str]] = {
    "infusion_start": frozenset({"rate", "rate_unit"}),
    "rate_change": frozenset({"rate", "rate_unit", "reason"}),
    "pause": frozenset({"reason"}),
    "resume": frozenset(),
    "infusion_stop": frozenset({"reason", "delivered_mg"}),
    "adverse_event": frozenset({"kind", "treatment", "dose", "text"}),
    "note": frozenset({"text"}),
    "assessment": frozenset({"scale", "items", "score", "total"}),
    "discharge": frozenset({"override_reason"}),
}
_COMMON = frozenset({"type", "ts", "session_id", "author"})


class CareRefusal(ValueError):
    """A record refused, with its stable ``code`` (RECORD_REFUSAL_CODES) and a reason for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CareRecord:
    """One accepted record of a chair's session. ``data`` holds the type's fields (and, for an assessment, its
    ``total``; for a discharge, the ingest's ``criteria`` and ``accepted_by`` ``criteria`` or ``override``).

    Keyed in the store by (site, chair, ts, type): the same record sent twice is stored once.
    """

    site: str
    chair: str
    session_id: str
    ts: int
    type: str
    author: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int, str]:
        """Return the store key: (site, chair, ts, type)."""
        return (self.site, self.chair, self.ts, self.type)

    def to_json_obj(self) -> dict[str, Any]:
        """Return the record as its topic payload object (plus what the ingest added)."""
        return {"type": self.type, "ts": self.ts, "session_id": self.session_id, "author": self.author,
                **dict(self.data)}

    def data_json(self) -> str:
        """Return ``data`` as compact JSON text (its stored form)."""
        return json.dumps(dict(self.data), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_stored(cls, site: str, chair: str, session_id: str, ts: int, type: str, author: str,
                    data: str | Mapping[str, Any]) -> CareRecord:
        """Rebuild a record from its stored columns."""
        return cls(site, chair, session_id, int(ts), type, author, json.loads(data) if isinstance(data, str) else data)

    def summary(self) -> str:
        """Return a one-line description for the audit trail and a session log (no patient data in it)."""
        d = self.data
        if self.type in ("infusion_start", "rate_change") and d.get("rate") is not None:
            return f"{self.type} {d['rate']:g} {d.get('rate_unit', '')}".strip()
        if self.type == "adverse_event":
            extra = ", ".join(str(d[k]) for k in ("treatment", "dose") if d.get(k))
            return f"adverse_event {d['kind']}" + (f" ({extra})" if extra else "")
        if self.type == "assessment":
            return f"assessment {d['scale']} total {d['total']}"
        if self.type == "discharge":
            how = "override: " + str(d.get("override_reason")) if d.get("override_reason") else "criteria met"
            return f"discharge ({how})"
        return self.type


def _refuse(reason: str, code: str = "bad_record") -> CareRefusal:
    return CareRefusal(code, reason)


def _number(doc: Mapping[str, Any], key: str, low: float, high: float, *, required: bool = False) -> float | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise _refuse(f"{key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refuse(f"{key} must be a finite number")
    if not low <= value <= high:
        raise _refuse(f"{key} {value:g} is outside {low:g}-{high:g}")
    return float(value)


def _text(doc: Mapping[str, Any], key: str, *, required: bool = False, max_len: int = 128) -> str | None:
    try:
        return clean_text(doc.get(key), key, required=required, max_len=max_len)
    except RecordError as exc:
        raise _refuse(str(exc)) from None


def parse_record(site: str, chair: str, payload: bytes | str, now_ms: int) -> CareRecord:
    """Validate one record payload of a chair; return it or raise CareRefusal (never anything else on bad input)."""
    if len(payload) > MAX_PAYLOAD:
        raise _refuse(f"record payload is {len(payload)} bytes, over the {MAX_PAYLOAD} byte limit")
    try:
        doc = json.loads(payload, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise _refuse(f"record is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise _refuse(f"record must be a JSON object, not {type(doc).__name__}")
    kind = doc.get("type")
    if kind not in RECORD_TYPES:
        raise _refuse(f"record type {kind!r} is not one of {', '.join(RECORD_TYPES)}")
    unknown = sorted(set(doc) - _COMMON - _TYPE_KEYS[kind])
    if unknown:
        raise _refuse(f"{kind} has no field {unknown[0]!r}")
    if "ts" not in doc:
        raise _refuse("ts is missing")
    try:
        ts = parse_ts(doc["ts"])
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    if ts > now_ms + MAX_FUTURE_MS:
        raise _refuse(f"ts is {(ts - now_ms) / 1000:.0f} s in the future (clock wrong?)")
    if ts < MIN_TS_MS:
        raise _refuse("ts is before 2000-01-01 (clock never set?)")
    session_id = _text(doc, "session_id", required=True)
    author = _text(doc, "author", required=True, max_len=64)
    data: dict[str, Any] = {}
    if kind in ("infusion_start", "rate_change"):
        rate = _number(doc, "rate", 0.0, MAX_RATE, required=kind == "rate_change")
        if rate is not None:
            unit = doc.get("rate_unit")
            if unit not in RATE_UNITS:
                raise _refuse(f"rate_unit must be one of {', '.join(RATE_UNITS)}")
            data.update(rate=rate, rate_unit=unit)
        elif "rate_unit" in doc:
            raise _refuse("rate_unit given without rate")
    if kind in ("rate_change", "pause", "infusion_stop"):
        reason = _text(doc, "reason")
        if reason is not None:
            data["reason"] = reason
    if kind == "infusion_stop":
        delivered = _number(doc, "delivered_mg", 0.0, 5000.0)
        if delivered is not None:
            data["delivered_mg"] = delivered
    if kind == "adverse_event":
        adverse = doc.get("kind")
        if adverse not in ADVERSE_KINDS:
            raise _refuse(f"adverse event kind {adverse!r} is not one of {', '.join(ADVERSE_KINDS)}")
        data["kind"] = adverse
        for key in ("treatment", "dose"):
            value = _text(doc, key, max_len=64)
            if value is not None:
                data[key] = value
        if data.get("dose") and not data.get("treatment"):
            raise _refuse("dose given without treatment")
        note = _text(doc, "text", max_len=MAX_NOTE)
        if note is not None:
            data["text"] = note
    if kind == "note":
        data["text"] = _text(doc, "text", required=True, max_len=MAX_NOTE)
    if kind == "assessment":
        data.update(_assessment(doc))
    if kind == "discharge":
        override = _text(doc, "override_reason", max_len=MAX_NOTE)
        if override is not None:
            if not override.strip():
                raise _refuse("override_reason is empty")
            data["override_reason"] = override
    return CareRecord(check_id(site, "site id"), check_id(chair, "chair id"), session_id,  # type: ignore[arg-type]
                      ts, kind, author, data)  # type: ignore[arg-type]


def _assessment(doc: Mapping[str, Any]) -> dict[str, Any]:
    try:
        scale = get_scale(doc.get("scale"))
    except ScoreError as exc:
        raise CareRefusal("score_invalid", str(exc)) from None
    items = doc.get("items")
    if "score" in doc:
        if items is not None:
            raise _refuse("give either score or items, not both")
        if not scale.single:
            raise CareRefusal("score_invalid", f"{scale.name} has {len(scale.items)} items: send items, not score")
        items = {scale.items[0].id: doc["score"]}
    if not isinstance(items, dict):
        raise _refuse("assessment needs items (an object of item id -> score) or, for a one-item scale, score")
    try:
        total = score(scale.id, items)
    except ScoreError as exc:
        raise CareRefusal("score_invalid", str(exc)) from None
    claimed = doc.get("total")
    if claimed is not None and claimed != total:
        raise CareRefusal("score_invalid", f"total {claimed!r} does not match the item scores ({total})")
    return {"scale": scale.id, "items": {k: int(v) for k, v in items.items()}, "total": total}
