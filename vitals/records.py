"""Sessions, alarm events, acknowledgement commands and audit records: the shared typed records.

Their JSON forms are part of the MQTT contract (docs/mqtt-contract.md); their stored forms are in
docs/storage-schema.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from vitals.reading import format_ts, parse_ts
from vitals.topics import check_id

PRIORITIES: tuple[str, ...] = ("high", "medium", "low")
PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1}
ALARM_EVENTS: tuple[str, ...] = ("raised", "upgraded", "acknowledged", "cleared", "escalated")
ALARM_KINDS: tuple[str, ...] = ("physiological", "technical")
ACK_ACTIONS: tuple[str, ...] = ("acknowledge", "pause_audio")
SESSION_STATES: tuple[str, ...] = ("active", "ended")
DEVICE_STATES: tuple[str, ...] = ("online", "offline")

# Free-text fields from the wire (drug names, references, user names) are bounded and printable.
MAX_TEXT = 128


class RecordError(ValueError):
    """A session, command or event payload that breaks the contract."""


def clean_text(value: object, what: str, *, required: bool = False, max_len: int = MAX_TEXT) -> str | None:
    """Return a bounded, printable string from the wire, or raise RecordError naming the field."""
    if value is None:
        if required:
            raise RecordError(f"{what} is missing")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise RecordError(f"{what} is longer than {max_len} characters")
    if any(not ch.isprintable() for ch in value):
        raise RecordError(f"{what} contains control characters")
    if required and not value.strip():
        raise RecordError(f"{what} is empty")
    return value


def _opt_ts(value: object, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise RecordError(f"{what}: {exc}") from None


def _opt_number(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{what} must be a finite number")
    return float(value)


def _load(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"{what} is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{what} must be a JSON object")
    return doc


NURSE_SESSION_FIELDS: tuple[str, ...] = ("weight_kg", "total_mg", "baseline_dia", "baseline_source", "started_by")
BASELINE_SOURCES: tuple[str, ...] = ("cuff", "entered")
# A pseudonymous reference of a nurse-started session: no spaces, so a typed "First Last" name is refused.
PATIENT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
WEIGHT_KG = (20.0, 300.0)
DOSE_MG_PER_KG = (0.01, 5.0)


def _ranged(doc: dict[str, Any], key: str, bounds: tuple[float, float]) -> float | None:
    value = _opt_number(doc.get(key), key)
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise RecordError(f"{key} {value:g} is outside {bounds[0]:g}-{bounds[1]:g}")
    return value


def _nurse_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate the fields of a nurse-started session (all optional for a device's session)."""
    started_by = clean_text(doc.get("started_by"), "started_by", max_len=64)
    if started_by is not None and not started_by.strip():
        raise RecordError("started_by is empty")
    weight = _ranged(doc, "weight_kg", WEIGHT_KG)
    total = _opt_number(doc.get("total_mg"), "total_mg")
    dose = _opt_number(doc.get("dose_mg_per_kg"), "dose_mg_per_kg")
    if weight is not None and dose is not None:
        _ranged(doc, "dose_mg_per_kg", DOSE_MG_PER_KG)
        computed = round(weight * dose, 1)
        if total is not None and abs(total - computed) > 0.05:
            raise RecordError(f"total_mg {total:g} is not weight_kg x dose_mg_per_kg = {computed:g}")
        total = computed
    elif total is not None:
        raise RecordError("total_mg needs weight_kg and dose_mg_per_kg (it is computed from them)")
    baseline_dia = _ranged(doc, "baseline_dia", (20.0, 200.0))
    if doc.get("baseline_sys") is not None:
        _ranged(doc, "baseline_sys", (40.0, 300.0))
    source = doc.get("baseline_source")
    if source is not None and source not in BASELINE_SOURCES:
        raise RecordError(f"baseline_source must be one of {', '.join(BASELINE_SOURCES)}")
    if started_by is not None:
        ref = doc.get("patient_ref")
        if not isinstance(ref, str) or not PATIENT_REF.fullmatch(ref):
            raise RecordError("patient_ref of a nurse-started session must be a pseudonymous reference "
                              "(1-64 of A-Z a-z 0-9 _ . : -, no spaces), never a name")
    return {"weight_kg": weight, "total_mg": total, "baseline_dia": baseline_dia, "baseline_source": source,
            "started_by": started_by}


@dataclass(frozen=True, slots=True)
class Session:
    """An infusion session of one chair. ``patient_ref`` is pseudonymous: never a name."""

    site: str
    chair: str
    session_id: str
    state: str
    started_at: int
    ended_at: int | None = None
    drug: str | None = None
    dose_mg_per_kg: float | None = None
    duration_min: float | None = None
    patient_ref: str | None = None
    baseline_sys: float | None = None
    # A session a nurse starts (issue 13) also carries these; a device's may leave them out.
    weight_kg: float | None = None
    total_mg: float | None = None  # weight_kg x dose_mg_per_kg, computed when both are given
    baseline_dia: float | None = None
    baseline_source: str | None = None  # "cuff" (the chair's last cuff reading) or "entered"
    started_by: str | None = None  # the staff member who started it; absent for a device's session

    def to_json_obj(self) -> dict[str, Any]:
        """Return the session as its retained-topic JSON object (times as RFC 3339)."""
        obj: dict[str, Any] = {
            "session_id": self.session_id,
            "state": self.state,
            "started_at": format_ts(self.started_at),
            "ended_at": format_ts(self.ended_at) if self.ended_at is not None else None,
            "drug": self.drug,
            "dose_mg_per_kg": self.dose_mg_per_kg,
            "duration_min": self.duration_min,
            "patient_ref": self.patient_ref,
        }
        for name in ("baseline_sys", *NURSE_SESSION_FIELDS):
            if getattr(self, name) is not None:
                obj[name] = getattr(self, name)
        return obj

    @classmethod
    def from_payload(cls, site: str, chair: str, payload: bytes | str) -> Session:
        """Parse a session topic payload, raising RecordError with a readable reason."""
        doc = _load(payload, "session")
        state = doc.get("state")
        if state not in SESSION_STATES:
            raise RecordError(f"session state must be one of {', '.join(SESSION_STATES)}")
        started = _opt_ts(doc.get("started_at"), "started_at")
        if started is None:
            raise RecordError("session started_at is missing")
        return cls(
            site=check_id(site, "site id"),
            chair=check_id(chair, "chair id"),
            session_id=clean_text(doc.get("session_id"), "session_id", required=True),  # type: ignore[arg-type]
            state=state,
            started_at=started,
            ended_at=_opt_ts(doc.get("ended_at"), "ended_at"),
            drug=clean_text(doc.get("drug"), "drug"),
            dose_mg_per_kg=_opt_number(doc.get("dose_mg_per_kg"), "dose_mg_per_kg"),
            duration_min=_opt_number(doc.get("duration_min"), "duration_min"),
            patient_ref=clean_text(doc.get("patient_ref"), "patient_ref"),
            baseline_sys=_opt_number(doc.get("baseline_sys"), "baseline_sys"),
            **_nurse_fields(doc),
        )


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One alarm event, as published on ``{prefix}/{site}/alarms/events`` and stored in ``alarms``."""

    alarm_id: str
    site: str
    chair: str
    vital: str
    kind: str
    priority: str
    event: str
    value: float | None
    limit: float | None
    ts: int
    user: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise RecordError(f"alarm priority {self.priority!r} is not one of {PRIORITIES}")
        if self.event not in ALARM_EVENTS:
            raise RecordError(f"alarm event {self.event!r} is not one of {ALARM_EVENTS}")
        if self.kind not in ALARM_KINDS:
            raise RecordError(f"alarm kind {self.kind!r} is not one of {ALARM_KINDS}")

    def to_json_obj(self) -> dict[str, Any]:
        """Return the event as its contract JSON object."""
        obj = asdict(self)
        if obj["user"] is None:
            del obj["user"]
        if obj["text"] is None:
            del obj["text"]
        return obj

    @classmethod
    def from_json_obj(cls, obj: dict[str, Any]) -> AlarmEvent:
        """Build an event from its JSON object, raising RecordError when it breaks the contract."""
        try:
            return cls(
                alarm_id=clean_text(obj.get("alarm_id"), "alarm_id", required=True),  # type: ignore[arg-type]
                site=check_id(obj.get("site"), "site id"),
                chair=check_id(obj.get("chair"), "chair id"),
                vital=clean_text(obj.get("vital"), "vital", required=True),  # type: ignore[arg-type]
                kind=obj.get("kind"),  # type: ignore[arg-type]
                priority=obj.get("priority"),  # type: ignore[arg-type]
                event=obj.get("event"),  # type: ignore[arg-type]
                value=_opt_number(obj.get("value"), "value"),
                limit=_opt_number(obj.get("limit"), "limit"),
                ts=int(obj["ts"]),
                user=clean_text(obj.get("user"), "user"),
                text=clean_text(obj.get("text"), "text", max_len=256),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"alarm event: {exc}") from None


@dataclass(frozen=True, slots=True)
class AckCommand:
    """A command on ``{prefix}/{site}/chair/{chair}/ack``."""

    site: str
    chair: str
    alarm_id: str | None
    user: str
    action: str

    @classmethod
    def from_payload(cls, site: str, chair: str, payload: bytes | str) -> AckCommand:
        """Parse an ack command, raising RecordError with a readable reason."""
        doc = _load(payload, "ack command")
        action = doc.get("action", "acknowledge")
        if action not in ACK_ACTIONS:
            raise RecordError(f"ack action must be one of {', '.join(ACK_ACTIONS)}")
        alarm_id = clean_text(doc.get("alarm_id"), "alarm_id", required=action == "acknowledge")
        return cls(
            site=check_id(site, "site id"),
            chair=check_id(chair, "chair id"),
            alarm_id=alarm_id,
            user=clean_text(doc.get("user"), "user", required=True, max_len=64),  # type: ignore[arg-type]
            action=action,
        )

    def to_json_obj(self) -> dict[str, Any]:
        """Return the command as its contract JSON object."""
        return {"alarm_id": self.alarm_id, "user": self.user, "action": self.action}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what and when: logins, acknowledgements, audio pauses, alarm-limit changes."""

    ts: int
    action: str
    user: str
    site: str | None = None
    chair: str | None = None
    alarm_id: str | None = None
    detail: str | None = None


def device_status(payload: bytes | str) -> str:
    """Return ``online`` or ``offline`` from a status topic payload, or raise RecordError."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.strip().strip('"').lower()
    if text not in DEVICE_STATES:
        raise RecordError("device status must be 'online' or 'offline'")
    return text


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """One entry of a chair's retained ``.../alarms`` array: an alarm standing now (or latched)."""

    alarm_id: str
    vital: str
    kind: str
    priority: str
    since: int  # epoch ms the alarm was raised
    text: str
    value: float | None = None
    limit: float | None = None
    condition_active: bool = True  # False: the condition cleared but a high alarm stays latched until acked
    acknowledged: bool = False
    acknowledged_by: str | None = None
    audio_paused_until: int | None = None  # epoch ms; the chair's audio pause, when one is running

    def to_json_obj(self) -> dict[str, Any]:
        """Return the entry as its contract JSON object."""
        return asdict(self)

    @classmethod
    def from_json_obj(cls, obj: dict[str, Any]) -> ActiveAlarm:
        """Build an entry from its JSON object, raising RecordError when it breaks the contract."""
        try:
            return cls(**{name: obj.get(name) for name in cls.__dataclass_fields__ if name in obj})
        except TypeError as exc:
            raise RecordError(f"active alarm: {exc}") from None
