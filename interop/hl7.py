"""HL7 v2.6 IHE PCD-01 ``ORU^R01`` messages and their acknowledgements: build, read, acknowledge (pure, no I/O).

Outbound: ``cuff_message`` (one cuff cycle: sys/dia/map), ``numerics_message`` (one interval of numerics: the
median of each of hr/spo2/rr over the interval) and ``session_messages`` (a whole stored session, the same
messages the live exporter sends). Only the pseudonymous patient ref leaves (PID-3), unless the site configured
a lookup (``PatientLookup``, off by default) that adds its own identifier; never a name.
Inbound: ``read_oru`` turns a PCD-01 message into contract readings, or raises ``Hl7Refusal`` with a code and
a reason that the gateway answers with (AE/AR). docs/interoperability.md is the reference; tests/interop
validates every kind of message with hl7apy (strict, HL7 v2.6) and reads it back with python-hl7.
"""

from __future__ import annotations

import statistics
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from interop.hl7_mdc import INBOUND, MDS, OUTBOUND, VMDS
from vitals.reading import CUFF_VITALS, VITALS, Reading
from vitals.records import Session

SENDING_APP = "INFUSION-MONITOR"
# The IHE PCD-01 message profile identifier (MSH-21).
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
# The pseudonymous ref's assigning authority in PID-3.
REF_AUTHORITY = "INFUSION-MONITOR"
NUMERIC_VITALS: tuple[str, ...] = ("hr", "spo2", "rr")
SEGMENT_END = "\r"


def hl7_ts(ts_ms: int) -> str:
    """Return an epoch-milliseconds time as an HL7 DTM in UTC (``YYYYMMDDHHMMSS.SSS+0000``)."""
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f".{moment.microsecond // 1000:03d}+0000"


def parse_hl7_ts(text: str) -> int:
    """Return an HL7 DTM as epoch milliseconds; a time without an offset is refused (it would be a guess)."""
    text = text.strip()
    offset: timezone | None = None
    for sign in "+-":
        if sign in text[8:]:
            head, _, tail = text.rpartition(sign)
            if len(tail) != 4 or not tail.isdigit():
                raise ValueError(f"time {text!r} has a malformed UTC offset")
            minutes = int(tail[:2]) * 60 + int(tail[2:])
            offset = timezone(timedelta(minutes=minutes if sign == "+" else -minutes))
            text = head
            break
    if offset is None:
        raise ValueError(f"time {text!r} has no UTC offset (+0000)")
    whole, _, fraction = text.partition(".")
    if len(whole) < 12 or len(whole) > 14 or not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"time {text!r} is not an HL7 date-time (YYYYMMDDHHMM[SS[.S...]])")
    whole = whole.ljust(14, "0")
    try:
        moment = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=offset)
    except ValueError:
        raise ValueError(f"time {text!r} is not a valid date-time") from None
    millis = int((fraction + "000")[:3]) if fraction else 0
    return int(moment.timestamp()) * 1000 + millis


def escape(text: str) -> str:
    """Escape HL7 delimiters in free text (``\\F\\`` etc.)."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


# -- the patient identity ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PatientLookup:
    """A site's map from pseudonymous refs to its own patient identifiers (off by default; docs/interoperability.md).

    File (TOML): ``authority = "HOSP"`` and ``[refs]`` with ``"ref" = "MRN"``. Only the identifier is added to
    PID-3 beside the ref; names and dates of birth are never sent, whatever the file holds.
    """

    authority: str
    refs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> PatientLookup | None:
        """Read a lookup file; None when no file is configured."""
        if path is None:
            return None
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        authority, refs = doc.get("authority"), doc.get("refs", {})
        if not isinstance(authority, str) or not authority or not isinstance(refs, dict) or set(doc) - {"authority", "refs"}:
            raise ValueError(f"{path}: a patient lookup has 'authority' (text) and a [refs] table, nothing else")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in refs.items()):
            raise ValueError(f"{path}: every [refs] entry maps a ref to an identifier (text)")
        return cls(authority, dict(refs))


def pid_segment(session: Session, lookup: PatientLookup | None) -> str:
    """Return the PID segment: the pseudonymous ref (and a mapped identifier when a lookup has it), no name."""
    ids = []
    if session.patient_ref:
        ids.append(f"{escape(session.patient_ref)}^^^{REF_AUTHORITY}^PI")
        if lookup is not None and session.patient_ref in lookup.refs:
            ids.append(f"{escape(lookup.refs[session.patient_ref])}^^^{escape(lookup.authority)}^MR")
    return f"PID|||{'~'.join(ids)}||^^^^^^S"  # PID-5 name type S: a coded pseudo-name, no name


# -- outbound messages -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: ``key`` identifies it for the outbox (the same input makes the same key)."""

    key: str
    site: str
    chair: str
    text: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who sends and who receives (MSH-3..6)."""

    sending_facility: str = "CLINIC"
    receiving_application: str = "EHR"
    receiving_facility: str = "EHR"
    device_id: str = SENDING_APP  # OBX-18 when a reading carries no device id of its own


def _msh(control_id: str, sent_ms: int, endpoint: Endpoint, site: str) -> str:
    return (f"MSH|^~\\&|{SENDING_APP}|{escape(endpoint.sending_facility)}^{escape(site)}|"
            f"{escape(endpoint.receiving_application)}|{escape(endpoint.receiving_facility)}|{hl7_ts(sent_ms)}||"
            f"ORU^R01^ORU_R01|{escape(control_id)}|P|2.6|||NE|AL||UNICODE UTF-8|||{PCD01_PROFILE}")


def _obx(set_id: int, vital: str, value: float, ts_ms: int, device: str) -> str:
    c = OUTBOUND[vital]
    shown = f"{value:.1f}".rstrip("0").rstrip(".")
    return (f"OBX|{set_id}|NM|{c.code}^{c.ref_id}^MDC|1.{c.vmd}.1.{c.metric}|{shown}|"
            f"{c.unit_code}^{c.unit_ref_id}^MDC|||||R|||{hl7_ts(ts_ms)}||||{escape(device)}")


def _message(key: str, session: Session, start_ms: int, end_ms: int, obx: list[tuple[str, float, int]],
             endpoint: Endpoint, lookup: PatientLookup | None) -> Outgoing:
    control_id = f"{session.site}.{session.chair}.{key}"[:199]
    vmds = sorted({OUTBOUND[vital].vmd for vital, _, _ in obx})
    segments = [
        _msh(control_id, end_ms, endpoint, session.site),
        pid_segment(session, lookup),
        f"PV1||O|^^{escape(session.chair)}^{escape(session.site)}",
        f"OBR|1|{escape(session.session_id)}^{SENDING_APP}|{escape(control_id)}^{SENDING_APP}|"
        f"182777000^monitoring of patient^SCT|||{hl7_ts(start_ms)}|{hl7_ts(end_ms)}",
    ]
    set_id = 1
    # The device hierarchy rows (MDS, then each VMD) name what the metrics come from, as PCD-01 shows them.
    segments.append(f"OBX|{set_id}||{MDS[0]}^{MDS[1]}^MDC|1.0.0.0|||||||X|||||||{escape(endpoint.device_id)}")
    for vmd in vmds:
        set_id += 1
        code, ref = VMDS[vmd]
        segments.append(f"OBX|{set_id}||{code}^{ref}^MDC|1.{vmd}.0.0|||||||X|||||||{escape(endpoint.device_id)}")
    for vital, value, ts_ms in obx:
        set_id += 1
        segments.append(_obx(set_id, vital, value, ts_ms, endpoint.device_id))
    return Outgoing(key, session.site, session.chair, SEGMENT_END.join(segments) + SEGMENT_END)




def cuff_message(session: Session, reading: Reading, endpoint: Endpoint = Endpoint(),
                 lookup: PatientLookup | None = None) -> Outgoing | None:
    """Return the message of one cuff cycle (its sys, dia and map), or None when the reading has none."""
    obx = [(v, getattr(reading, v), reading.ts_ms) for v in CUFF_VITALS if getattr(reading, v) is not None]
    if not obx:
        return None
    return _message(f"cuff.{reading.ts_ms}", session, reading.ts_ms, reading.ts_ms, obx, endpoint, lookup)


def numerics_message(session: Session, start_ms: int, interval_ms: int, readings: Sequence[Reading],
                     endpoint: Endpoint = Endpoint(), lookup: PatientLookup | None = None) -> Outgoing | None:
    """Return the message of one interval of numerics: each vital's median, timed at the interval's start.

    ``readings`` are those of [start_ms, start_ms + interval_ms); the key names the interval and its first
    reading, so readings arriving after their interval was sent go out as a second message, never lost.
    """
    obx = []
    for vital in NUMERIC_VITALS:
        values = [getattr(r, vital) for r in readings if getattr(r, vital) is not None]
        if values:
            obx.append((vital, float(statistics.median(values)), start_ms))
    if not obx:
        return None
    first = min(r.ts_ms for r in readings)
    key = f"num.{start_ms}" if first == start_ms else f"num.{start_ms}.{first}"
    return _message(key, session, start_ms, start_ms + interval_ms, obx, endpoint, lookup)


def bucket_start(ts_ms: int, interval_ms: int) -> int:
    """Return the start of the numerics interval a reading belongs to (intervals aligned to the epoch)."""
    return ts_ms - ts_ms % interval_ms


def session_messages(session: Session, readings: Iterable[Reading], interval_ms: int,
                     endpoint: Endpoint = Endpoint(), lookup: PatientLookup | None = None) -> list[Outgoing]:
    """Return every message of a session, oldest first: one per cuff cycle and one per interval of numerics."""
    end = session.ended_at if session.ended_at is not None else None
    inside = [r for r in readings if r.ts_ms >= session.started_at and (end is None or r.ts_ms <= end)]
    out: list[tuple[int, Outgoing]] = []
    buckets: dict[int, list[Reading]] = {}
    for reading in sorted(inside, key=lambda r: r.ts_ms):
        cuff = cuff_message(session, reading, endpoint, lookup)
        if cuff is not None:
            out.append((reading.ts_ms, cuff))
        if interval_ms > 0 and any(getattr(reading, v) is not None for v in NUMERIC_VITALS):
            buckets.setdefault(bucket_start(reading.ts_ms, interval_ms), []).append(reading)
    for start, group in buckets.items():
        message = numerics_message(session, start, interval_ms, group, endpoint, lookup)
        if message is not None:
            out.append((start + interval_ms, message))
    return [m for _, m in sorted(out, key=lambda pair: pair[0])]


# -- acknowledgements ------------------------------------------------------------------------------------

ACK_CODES: tuple[str, ...] = ("AA", "AE", "AR", "CA", "CE", "CR")


def fields_of(message: str, segment: str) -> list[str] | None:
    """Return the fields of the first ``segment`` of an ER7 message (index = HL7 field number), or None."""
    for line in message.replace("\n", "\r").split("\r"):
        if line.startswith(segment + "|"):
            parts = line.split("|")
            # MSH-1 is the field separator itself: shift so that parts[n] is MSH-n.
            return ["MSH", "|", *parts[1:]] if segment == "MSH" else parts
    return None


def make_ack(incoming: str | None, code: str, reason: str = "", error_code: str = "207") -> str:
    """Return an ``ACK^R01`` (MSA-1 ``code``) answering ``incoming``; a refusal carries its reason in MSA-3 and ERR."""
    msh = fields_of(incoming or "", "MSH") or []

    def field_(n: int) -> str:
        return msh[n] if len(msh) > n else ""

    control = field_(10)
    now = int(datetime.now(UTC).timestamp() * 1000)
    segments = [
        f"MSH|^~\\&|{SENDING_APP}-GATEWAY||{field_(3)}|{field_(4)}|{hl7_ts(now)}||ACK^R01^ACK|{escape(control)}.ack|P|2.6",
        f"MSA|{code}|{control}" + (f"|{escape(reason)[:200]}" if reason else ""),
    ]
    if code != "AA":
        segments.append(f"ERR||||E|{error_code}^{'Application error' if code == 'AE' else 'Rejected'}^HL70357|||"
                        f"{escape(reason)[:200]}")
    return SEGMENT_END.join(segments) + SEGMENT_END


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement read back: ``code`` AA/AE/AR (or CA/CE/CR), the control id it answers, any reason."""

    code: str
    control_id: str
    reason: str


def read_ack(text: str) -> Ack:
    """Read an acknowledgement, raising ValueError when it is not one."""
    msa = fields_of(text, "MSA")
    if msa is None or len(msa) < 3 or msa[1] not in ACK_CODES:
        raise ValueError(f"not an HL7 acknowledgement: {text[:80]!r}")
    err = fields_of(text, "ERR")
    reason = msa[3] if len(msa) > 3 and msa[3] else (err[8] if err and len(err) > 8 else "")
    return Ack(msa[1], msa[2], reason)


# -- inbound: a PCD-01 message to contract readings ------------------------------------------------------

# Refusal codes of the gateway, and the acknowledgement each gets: AR when the message itself is unusable (a
# sender must not resend it unchanged), AE when it is well-formed but cannot be taken now or here.
REFUSALS: Mapping[str, str] = {
    "not_hl7": "AR",          # not an ER7 message with an MSH segment
    "not_oru_r01": "AR",      # another message type
    "no_control_id": "AR",    # MSH-10 empty: an acknowledgement could not name it
    "unmapped_device": "AE",  # neither the device (OBX-18 / MSH-3) nor the bed (PV1-3) is in the mapping file
    "no_observation": "AE",   # no OBX with a numeric value and an MDC code of the table
    "bad_unit": "AE",         # an OBX of a known code in a unit other than the table's
    "bad_time": "AE",         # no usable observation time (OBX-14, else OBR-7) with a UTC offset
    "bad_value": "AE",        # a value the contract refuses (not a number, implausible, sys not above dia)
    "broker_unavailable": "AE",  # the broker did not accept the publish in time: resend later
}


class Hl7Refusal(ValueError):
    """A message the gateway cannot take: ``code`` (a key of REFUSALS) and a reason for the sender."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    @property
    def ack_code(self) -> str:
        """Return AE or AR."""
        return REFUSALS[self.code]


@dataclass(frozen=True, slots=True)
class Observation:
    """One numeric OBX read from a message."""

    vital: str
    value: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Inbound:
    """What a PCD-01 message says: who (device ids, bed) and which observations."""

    control_id: str
    device_ids: tuple[str, ...]
    bed: tuple[str, str] | None  # (facility, bed) from PV1-3
    observations: tuple[Observation, ...]


def _component(value: str, n: int) -> str:
    parts = value.split("^")
    return parts[n - 1] if len(parts) >= n else ""


def read_oru(text: str) -> Inbound:
    """Read a PCD-01 ``ORU^R01`` (ER7), raising Hl7Refusal naming what makes it unusable."""
    lines = [line for line in text.replace("\n", "\r").split("\r") if line.strip()]
    if not lines or not lines[0].startswith("MSH|"):
        raise Hl7Refusal("not_hl7", "message does not start with an MSH segment")
    msh = fields_of(text, "MSH") or []
    kind = msh[9] if len(msh) > 9 else ""
    if kind.split("^")[:2] != ["ORU", "R01"]:
        raise Hl7Refusal("not_oru_r01", f"message type {kind or 'missing'!r} is not ORU^R01 (IHE PCD-01)")
    control = msh[10] if len(msh) > 10 else ""
    if not control:
        raise Hl7Refusal("no_control_id", "MSH-10 (message control id) is empty")
    devices = [_component(msh[3], 2)] if len(msh) > 3 and _component(msh[3], 2) else []
    bed = None
    obr_time: int | None = None
    obr_time_error = ""
    observations: list[Observation] = []
    for line in lines:
        parts = line.split("|")
        if parts[0] == "PV1" and len(parts) > 3 and parts[3]:
            bed = (_component(parts[3], 4), _component(parts[3], 3))
        elif parts[0] == "OBR" and len(parts) > 7 and parts[7]:
            try:
                obr_time = parse_hl7_ts(parts[7])
            except ValueError as exc:
                obr_time_error = str(exc)
        elif parts[0] == "OBX":
            parts += [""] * (19 - len(parts))
            if parts[18]:
                device = _component(parts[18], 1)
                if device and device not in devices:
                    devices.insert(0, device)
            code = _component(parts[3], 1)
            mdc = INBOUND.get(code)
            if mdc is None or parts[2] not in ("NM", ""):
                continue
            unit = _component(parts[6], 1)
            if unit != mdc.unit_code and unit not in (mdc.unit_ref_id, mdc.unit_text):
                raise Hl7Refusal("bad_unit", f"OBX-3 {code} ({mdc.ref_id}) in unit {parts[6] or 'none'!r}; "
                                             f"expected {mdc.unit_code} ({mdc.unit_ref_id})")
            if parts[14]:
                try:
                    ts_ms = parse_hl7_ts(parts[14])
                except ValueError as exc:
                    raise Hl7Refusal("bad_time", f"OBX {parts[1]} ({mdc.ref_id}): {exc}") from None
            elif obr_time is not None:
                ts_ms = obr_time
            else:
                raise Hl7Refusal("bad_time", f"OBX {parts[1]} ({mdc.ref_id}) has no OBX-14 and the OBR has no "
                                             f"usable OBR-7 {obr_time_error}".rstrip())
            observations.append(Observation(mdc.vital, parts[5], ts_ms))
    if not observations:
        known = ", ".join(sorted(INBOUND))
        raise Hl7Refusal("no_observation", f"no numeric OBX with an MDC code this gateway maps ({known})")
    return Inbound(control, tuple(devices), bed, tuple(observations))


def reading_objects(inbound: Inbound) -> list[dict[str, object]]:
    """Group observations by time into contract reading objects (``{"ts": ..., "hr": ...}``), oldest first."""
    by_time: dict[int, dict[str, object]] = {}
    for obs in inbound.observations:
        try:
            value: object = float(obs.value)
        except ValueError:
            raise Hl7Refusal("bad_value", f"{obs.vital} value {obs.value[:20]!r} is not a number") from None
        slot = by_time.setdefault(obs.ts_ms, {"ts": obs.ts_ms})
        if obs.vital in slot and slot[obs.vital] != value:
            raise Hl7Refusal("bad_value", f"two different {obs.vital} values at the same time")
        slot[obs.vital] = value
    return [by_time[t] for t in sorted(by_time)]


assert set(OUTBOUND) == set(VITALS)
