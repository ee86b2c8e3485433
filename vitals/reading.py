"""Readings: the payload contract and its validation (pure: no I/O, the clock is passed in).

The rules here are the ones docs/mqtt-contract.md states; that document and this module change together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

# Payload limits. 256 KiB holds 1,000 full readings with room to spare (about 130 bytes each).
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 1000
# A device clock may run a little ahead; more than this is a wrong clock, not skew.
MAX_FUTURE_MS = 5 * 60 * 1000
# Before this a device clock was never set (it booted at 1970 or at a firmware default).
MIN_TS_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
# How much of a refused payload is echoed on the rejected topic.
ECHO_BYTES = 512

# Refusal classes: the metrics label set, so a dashboard can alert on any of them.
REFUSAL_CODES: tuple[str, ...] = (
    "bad_topic", "too_large", "not_utf8", "not_json", "not_reading", "empty_array", "too_many_readings",
    "ts_missing", "ts_invalid", "ts_future", "ts_too_old", "no_vitals", "vital_invalid", "vital_range",
    "sys_not_above_dia", "seq_invalid",
    # session, status and ack topics, and a bug while handling a message (reported, never fatal)
    "bad_session", "bad_status", "bad_command", "bad_limits", "internal",
    # the export health topic (hl7-export -> ingest)
    "bad_export",
    # a chair over its payload budget (ingest/fairness.py)
    "rate_limited",
    # the session-record topic (vitals/care.py RECORD_REFUSAL_CODES)
    "bad_record", "score_invalid", "no_session", "bad_sequence", "discharge_refused",
)

# Vitals in contract order, and the plausible range of each (inclusive). A value outside its range is a
# sensor or transcription fault, not a patient state, and is dropped with a reason.
VITALS: tuple[str, ...] = ("hr", "spo2", "rr", "sys", "dia", "map")
PLAUSIBLE: Mapping[str, tuple[float, float]] = {
    "hr": (20.0, 300.0),
    "spo2": (50.0, 100.0),
    "rr": (0.0, 80.0),
    "sys": (40.0, 300.0),
    "dia": (20.0, 200.0),
    "map": (30.0, 250.0),
}
UNITS: Mapping[str, str] = {
    "hr": "/min",
    "spo2": "%",
    "rr": "/min",
    "sys": "mmHg",
    "dia": "mmHg",
    "map": "mmHg",
}
LABELS: Mapping[str, str] = {
    "hr": "HR",
    "spo2": "SpO2",
    "rr": "RR",
    "sys": "NIBP sys",
    "dia": "NIBP dia",
    "map": "NIBP map",
}
CUFF_VITALS: tuple[str, ...] = ("sys", "dia", "map")


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One validated reading of one chair at one instant (``ts_ms``: Unix epoch milliseconds).

    A frozen msgspec Struct rather than a frozen dataclass: the same fields, equality, hash and repr, made ten
    times faster (a frozen dataclass sets each field through ``object.__setattr__``); the ingest makes one per
    reading received.
    """

    site: str
    chair: str
    ts_ms: int
    seq: int | None = None
    hr: float | None = None
    spo2: float | None = None
    rr: float | None = None
    sys: float | None = None
    dia: float | None = None
    map: float | None = None

    def values(self) -> dict[str, float]:
        """Return the vitals present in this reading."""
        out = {}
        for name in VITALS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def has_cuff(self) -> bool:
        """Return whether this reading carries a cuff (NIBP) measurement."""
        return self.sys is not None or self.dia is not None or self.map is not None

    def to_json_obj(self) -> dict[str, Any]:
        """Return this reading as a contract payload object (without site and chair, which are the topic)."""
        obj: dict[str, Any] = {"ts": self.ts_ms}
        if self.seq is not None:
            obj["seq"] = self.seq
        obj.update(self.values())
        return obj


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why something was refused. ``scope`` is ``message``, ``reading`` or ``vital``."""

    scope: str
    reason: str
    index: int | None = None  # position of the reading in an array payload
    vital: str | None = None
    code: str = "invalid"  # stable machine-readable class, used as a metrics label (see REFUSAL_CODES)


@dataclass(slots=True)
class Validated:
    """The outcome of validating one MQTT message: accepted readings and every refusal, in order."""

    readings: list[Reading] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def refused_whole(self) -> bool:
        """Return whether the whole message was refused."""
        return any(r.scope == "message" for r in self.refusals)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_ts(value: object) -> int:
    """Return a reading timestamp as epoch milliseconds, or raise ValueError saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError("ts must be epoch milliseconds or an RFC 3339 string, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"ts {value!r} is not an integer number of milliseconds")
        return int(value)
    if isinstance(value, str):
        if len(value) > 40:
            raise ValueError("ts string is too long to be an RFC 3339 time")
        text = value.strip()
        # RFC 3339 allows 'T' or ' ' and a lower-case 'z'; Python's parser wants 'T' and '+00:00'.
        norm = text.replace("z", "Z")
        if len(norm) > 10 and norm[10] in " t":
            norm = norm[:10] + "T" + norm[11:]
        if norm.endswith("Z"):
            norm = norm[:-1] + "+00:00"
        if len(norm) < 19 or norm[10] != "T":
            raise ValueError(f"ts {text!r} is not an RFC 3339 date-time")
        try:
            parsed = datetime.fromisoformat(norm)
        except ValueError:
            raise ValueError(f"ts {text!r} is not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {text!r} has no UTC offset (add 'Z' or '+01:00')")
        return int(parsed.timestamp() * 1000) if parsed.microsecond % 1000 == 0 else round(
            parsed.timestamp() * 1000
        )
    raise ValueError(f"ts must be epoch milliseconds or an RFC 3339 string, not {type(value).__name__}")


def _check_vital(name: str, value: object) -> tuple[float | None, str | None, str]:
    """Return (value, None, "") for a usable vital or (None, reason, code) for one to drop."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = type(value).__name__ if value is not None else "null"
        return None, f"{name} must be a number, got {shown}", "vital_invalid"
    number = float(value)
    if not math.isfinite(number):
        return None, f"{name} is not a finite number", "vital_invalid"
    low, high = PLAUSIBLE[name]
    if not low <= number <= high:
        return None, f"{name} {number:g} is outside its plausible range {low:g}-{high:g} {UNITS[name]}", "vital_range"
    return number, None, ""


def validate_reading(site: str, chair: str, obj: Mapping[str, Any], now_ms: int, index: int | None = None
                     ) -> tuple[Reading | None, list[Refusal]]:
    """Validate one reading object; return the reading (or None when refused whole) and its refusals."""
    refusals: list[Refusal] = []
    if "ts" not in obj:
        return None, [Refusal("reading", "ts is missing", index, code="ts_missing")]
    try:
        ts_ms = parse_ts(obj["ts"])
    except ValueError as exc:
        return None, [Refusal("reading", str(exc), index, code="ts_invalid")]
    if ts_ms > now_ms + MAX_FUTURE_MS:
        ahead = (ts_ms - now_ms) / 1000
        return None, [Refusal("reading", f"ts is {ahead:.0f} s in the future (device clock wrong?)", index, code="ts_future")]
    if ts_ms < MIN_TS_MS:
        return None, [Refusal("reading", "ts is before 2000-01-01 (device clock never set?)", index, code="ts_too_old")]

    seq = obj.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2**63):
        refusals.append(Refusal("vital", f"seq {seq!r} is not a non-negative integer; ignored", index, "seq", "seq_invalid"))
        seq = None

    values: dict[str, float] = {}
    for name in VITALS:
        if name not in obj:
            continue
        number, reason, code = _check_vital(name, obj[name])
        if reason is not None:
            refusals.append(Refusal("vital", reason, index, name, code))
        else:
            values[name] = number  # type: ignore[assignment]
    if "sys" in values and "dia" in values and values["sys"] <= values["dia"]:
        refusals.append(Refusal(
            "vital", f"sys {values['sys']:g} must exceed dia {values['dia']:g}; both dropped", index, "sys",
            "sys_not_above_dia",
        ))
        del values["sys"], values["dia"]
    if not values:
        present = [name for name in VITALS if name in obj]
        why = "no vital left after dropping invalid ones" if present else "no vital present (hr, spo2, rr, sys, dia, map)"
        refusals.append(Refusal("reading", why, index, code="no_vitals"))
        return None, refusals
    return Reading(site, chair, ts_ms, seq, **values), refusals


class _Plain(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A reading as well-behaved devices send it: only contract fields, each of the right type and in range.

    The fast path decodes into this type in C; anything it does not take (an unknown field, a null vital, a
    string time, a value out of range, bad JSON...) goes to the full validation below, which alone words the
    refusals, so every refusal reason stays exactly as the contract tests pin it.
    """

    ts: int
    seq: Annotated[int, msgspec.Meta(ge=0)] | None = None
    hr: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["hr"][0], le=PLAUSIBLE["hr"][1])] = None  # type: ignore[assignment]
    spo2: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["spo2"][0], le=PLAUSIBLE["spo2"][1])] = None  # type: ignore[assignment]
    rr: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["rr"][0], le=PLAUSIBLE["rr"][1])] = None  # type: ignore[assignment]
    sys: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["sys"][0], le=PLAUSIBLE["sys"][1])] = None  # type: ignore[assignment]
    dia: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["dia"][0], le=PLAUSIBLE["dia"][1])] = None  # type: ignore[assignment]
    map: Annotated[float, msgspec.Meta(ge=PLAUSIBLE["map"][0], le=PLAUSIBLE["map"][1])] = None  # type: ignore[assignment]


_PLAIN = msgspec.json.Decoder(_Plain | list[_Plain])
_astuple = msgspec.structs.astuple


def fast_readings(site: str, chair: str, payload: bytes, now_ms: int) -> list[Reading] | None:
    """Return the readings of a payload that ``validate_payload`` would accept whole without a single refusal.

    Return None for anything else (the caller then runs ``validate_payload``): this is an optimisation only,
    and a payload it declines is never judged here. About 10x cheaper per reading than the full validation.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = _PLAIN.decode(payload)
    except msgspec.DecodeError:
        return None
    items = [doc] if type(doc) is _Plain else doc
    if not items or len(items) > MAX_READINGS_PER_MESSAGE:  # type: ignore[arg-type]
        return None
    newest = now_ms + MAX_FUTURE_MS
    out = []
    for item in items:  # type: ignore[union-attr]
        ts, seq, hr, spo2, rr, sys_, dia, map_ = _astuple(item)
        if not MIN_TS_MS <= ts <= newest or (seq is not None and seq >= 2**63):
            return None
        if sys_ is not None and dia is not None and sys_ <= dia:
            return None
        if hr is None and spo2 is None and rr is None and sys_ is None and dia is None and map_ is None:
            return None
        out.append(Reading(site, chair, ts, seq, hr, spo2, rr, sys_, dia, map_))
    return out


def validate_payload(site: str, chair: str, payload: bytes, now_ms: int) -> Validated:
    """Validate a whole message payload for a chair; never raises on bad input."""
    readings = fast_readings(site, chair, payload, now_ms)
    if readings is not None:
        return Validated(readings)
    return validate_payload_fully(site, chair, payload, now_ms)


def validate_payload_fully(site: str, chair: str, payload: bytes, now_ms: int) -> Validated:
    """Validate a payload field by field in Python, wording every refusal (the reference ``fast_readings`` follows)."""
    out = Validated()
    if len(payload) > MAX_PAYLOAD_BYTES:
        out.refusals.append(Refusal("message", f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte limit",
                                    code="too_large"))
        return out
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.refusals.append(Refusal("message", f"payload is not UTF-8 (byte {exc.start})", code="not_utf8"))
        return out
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        out.refusals.append(Refusal("message", f"payload is not valid JSON: {str(exc)[:120]}", code="not_json"))
        return out
    if isinstance(doc, dict):
        items, single = [doc], True
    elif isinstance(doc, list):
        if not doc:
            out.refusals.append(Refusal("message", "payload is an empty array", code="empty_array"))
            return out
        if len(doc) > MAX_READINGS_PER_MESSAGE:
            out.refusals.append(Refusal(
                "message", f"array of {len(doc)} readings is over the limit of {MAX_READINGS_PER_MESSAGE}",
                code="too_many_readings",
            ))
            return out
        if not all(isinstance(item, dict) for item in doc):
            out.refusals.append(Refusal("message", "array must contain only reading objects", code="not_reading"))
            return out
        items, single = doc, False
    else:
        out.refusals.append(Refusal("message", f"payload must be a reading object or an array of them, not {type(doc).__name__}",
                                    code="not_reading"))
        return out
    for i, obj in enumerate(items):
        reading, refusals = validate_reading(site, chair, obj, now_ms, None if single else i)
        out.refusals.extend(refusals)
        if reading is not None:
            out.readings.append(reading)
    return out


def echo_payload(payload: bytes) -> str:
    """Return the first bytes of a payload as text, for a refusal report."""
    return payload[:ECHO_BYTES].decode("utf-8", errors="replace")


def refusal_report(topic: str, refusal: Refusal, payload: bytes, now_ms: int) -> dict[str, Any]:
    """Return the JSON object published on the rejected topic for one refusal."""
    return {"topic": topic[:512], "reason": _reason(refusal), "payload": echo_payload(payload), "ts": now_ms}


def _reason(refusal: Refusal) -> str:
    """Return a refusal's reason for people, naming the reading of an array it concerns."""
    return refusal.reason if refusal.index is None else f"reading [{refusal.index}]: {refusal.reason}"


# A refused message is reported once, naming at most this many of its refusals: a 1,000-reading array with
# two bad vitals each must not become 2,000 reports echoing the same payload (docs/reliability.md).
REPORT_REASONS = 5


def refusals_report(topic: str, refusals: list[Refusal], payload: bytes, now_ms: int) -> dict[str, Any]:
    """Return the one JSON object published on the rejected topic for all the refusals of one message."""
    reasons = [_reason(r) for r in refusals[:REPORT_REASONS]]
    if len(refusals) > REPORT_REASONS:
        reasons.append(f"and {len(refusals) - REPORT_REASONS} more")
    return {"topic": topic[:512], "reason": "; ".join(reasons), "payload": echo_payload(payload), "ts": now_ms}


def format_ts(ts_ms: int) -> str:
    """Return an epoch-milliseconds time as RFC 3339 UTC text."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
