"""A session as a FHIR R4 transaction Bundle (pure: no I/O), its validation, and its POST to a FHIR server.

What goes in (docs/interoperability.md, "FHIR R4"): the Patient by its pseudonymous reference only (an
identifier, never a name), an Encounter for the session, a Device for the chair's monitor, one blood-pressure
panel Observation per cuff reading, one Observation per minute of heart rate, SpO2 and respiratory rate (the
median of that minute's readings), the body weight, the infusion as a MedicationAdministration and the
assessments that have a LOINC code, when the session record carries them. Codes, units and profiles come from
``interop.fhir_codes`` only.

Every entry is a conditional request keyed by an identifier (``ifNoneExist`` or a conditional PUT), so sending
the same session twice creates nothing twice; entry ids are UUIDv5 of those identifiers, so the same session
gives the same Bundle byte for byte.
"""

from __future__ import annotations

import json
import statistics
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from interop.fhir_codes import (
    BP_COMPONENTS,
    BY_KEY,
    MINUTE_VITALS,
    OBSERVATION_CATEGORY,
    UCUM,
    VITAL_SIGNS_PROFILE,
    Code,
)
from vitals.care import CareRecord
from vitals.reading import Reading, format_ts
from vitals.records import PATIENT_REF, Session

MINUTE_MS = 60_000
FHIR_JSON = "application/fhir+json"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NAMESPACE = uuid.UUID("5f1d3c2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f")  # this exporter's UUIDv5 namespace (fixed forever)


class ExportRefused(ValueError):
    """The session cannot be exported as it is (the message says why and never repeats identifying text)."""


class BundleInvalid(ValueError):
    """The Bundle breaks FHIR R4 (fhir.resources' R4B models) or the vital-signs rules this exporter promises."""


class FhirPostError(RuntimeError):
    """The FHIR server could not be reached or refused the transaction."""


@dataclass(frozen=True, slots=True)
class Infusion:
    """The infusion of a session as the session record gives it (interop's own view, filled by the export command)."""

    drug: str
    start_ms: int | None = None  # when the infusion ran: first start event
    end_ms: int | None = None  # its stop event (None: still running, or not recorded)
    status: str = "completed"  # MedicationAdministration.status: in-progress, completed, stopped, on-hold
    dose_mg_per_kg: float | None = None
    total_mg: float | None = None
    total_is_delivered: bool = False  # total_mg is the amount delivered (infusion_stop), not the planned total
    rate: float | None = None  # the rate, when it never changed during the infusion
    rate_unit: str | None = None  # as the record gives it: ml/h, mg/h, mg/kg/h


@dataclass(frozen=True, slots=True)
class Assessment:
    """One scored assessment of the session record: scale id (vitals/scales.toml), total, time."""

    scale: str
    total: int
    ts_ms: int


@dataclass(slots=True)
class ExportInput:
    """Everything one session's Bundle is made of."""

    session: Session
    readings: Sequence[Reading]
    weight_kg: float | None = None
    weight_ts_ms: int | None = None
    infusion: Infusion | None = None
    assessments: Sequence[Assessment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Systems:
    """Identifier systems: the receiver's system for the pseudonymous patient reference, and this exporter's own."""

    patient: str = "urn:infusion-monitor:patient-ref"
    base: str = "urn:infusion-monitor"

    @property
    def encounter(self) -> str:
        """Return the identifier system of sessions (Encounter.identifier)."""
        return f"{self.base}:session"

    @property
    def device(self) -> str:
        """Return the identifier system of chair monitors (Device.identifier: site/chair)."""
        return f"{self.base}:device"

    @property
    def observation(self) -> str:
        """Return the identifier system of exported Observations and administrations."""
        return f"{self.base}:observation"


# -- building --------------------------------------------------------------------------------------------------

def check_patient_ref(ref: str | None) -> str:
    """Return the pseudonymous reference, or refuse one that is missing or looks like a name.

    The reason never repeats the value: if it is a name, it must not reach a log either.
    """
    if ref is None or not ref.strip():
        raise ExportRefused("the session has no patient_ref: a FHIR export needs the pseudonymous patient reference")
    if not PATIENT_REF.fullmatch(ref):
        raise ExportRefused("the session's patient_ref is not of the pseudonymous form (a letter or digit, then "
                            "letters, digits, _ . : - only, at most 64; no spaces), so it may be a name; it is not "
                            "exported (correct the session record)")
    return ref


def _uuid_url(*parts: object) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _quantity(value: float, unit: str) -> dict[str, Any]:
    number: float | int = round(value, 1)
    if float(number).is_integer():
        number = int(number)
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _concept(code: Code) -> dict[str, Any]:
    return {"coding": code.codings, "text": code.display}


def _category(code: Code) -> list[dict[str, Any]]:
    display = {"vital-signs": "Vital Signs", "survey": "Survey"}[code.category]
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code.category, "display": display}],
             "text": display}]


class _Builder:
    """Accumulates the entries of one session's Bundle."""

    def __init__(self, data: ExportInput, systems: Systems) -> None:
        self.data = data
        self.systems = systems
        s = data.session
        self.key = (s.site, s.chair, s.session_id)
        self.entries: list[dict[str, Any]] = []
        ref = check_patient_ref(s.patient_ref)
        self.patient_url = _uuid_url(systems.patient, ref)
        self.encounter_url = _uuid_url(systems.encounter, *self.key)
        self.device_url = _uuid_url(systems.device, s.site, s.chair)
        self._add(self.patient_url, {"resourceType": "Patient", "identifier": [{"system": systems.patient, "value": ref}]},
                  "POST", "Patient", if_none_exist=f"identifier={systems.patient}|{ref}")
        self._add(self.device_url, self._device(), "POST", "Device",
                  if_none_exist=f"identifier={systems.device}|{s.site}/{s.chair}")
        encounter_id = f"{s.site}/{s.chair}/{s.session_id}"
        self._add(self.encounter_url, self._encounter(encounter_id), "PUT",
                  f"Encounter?identifier={systems.encounter}|{encounter_id}")

    def _add(self, full_url: str, resource: dict[str, Any], method: str, url: str, *,
             if_none_exist: str | None = None) -> None:
        request: dict[str, Any] = {"method": method, "url": url}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})

    def _device(self) -> dict[str, Any]:
        s = self.data.session
        return {"resourceType": "Device", "status": "active",
                "identifier": [{"system": self.systems.device, "value": f"{s.site}/{s.chair}"}],
                "deviceName": [{"name": f"infusion-monitor chair {s.chair} at site {s.site}",
                                "type": "user-friendly-name"}]}

    def _encounter(self, encounter_id: str) -> dict[str, Any]:
        s = self.data.session
        period = {"start": format_ts(s.started_at)}
        if s.ended_at is not None:
            period["end"] = format_ts(s.ended_at)
        return {"resourceType": "Encounter", "status": "finished" if s.state == "ended" else "in-progress",
                "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                "identifier": [{"system": self.systems.encounter, "value": encounter_id}],
                "subject": {"reference": self.patient_url}, "period": period}

    def observation(self, code: Code, ident: str, effective: dict[str, Any], value: dict[str, Any],
                    *, note: str | None = None) -> None:
        """Add one Observation of ``code`` (effective[x] and value[x] or component given as FHIR JSON)."""
        identifier = "/".join((*self.key, ident))
        meta = {"meta": {"profile": [VITAL_SIGNS_PROFILE, *([code.profile] if code.profile else [])]}
                } if code.category == "vital-signs" else {}
        resource: dict[str, Any] = {"resourceType": "Observation", **meta, "status": "final",
                                    "identifier": [{"system": self.systems.observation, "value": identifier}],
                                    "category": _category(code), "code": _concept(code),
                                    "subject": {"reference": self.patient_url},
                                    "encounter": {"reference": self.encounter_url}, **effective, **value,
                                    "device": {"reference": self.device_url}}
        if note:
            resource["note"] = [{"text": note}]
        self._add(_uuid_url(self.systems.observation, identifier), resource, "POST", "Observation",
                  if_none_exist=f"identifier={self.systems.observation}|{identifier}")

    def medication(self, infusion: Infusion) -> None:
        """Add the infusion as a MedicationAdministration."""
        identifier = "/".join((*self.key, "infusion"))
        start = infusion.start_ms if infusion.start_ms is not None else self.data.session.started_at
        effective: dict[str, Any] = {"effectivePeriod": {"start": format_ts(start)}}
        if infusion.end_ms is not None:
            effective["effectivePeriod"]["end"] = format_ts(infusion.end_ms)
        dosage: dict[str, Any] = {"route": {"text": "Intravenous"}}
        text = [f"{infusion.dose_mg_per_kg:g} mg/kg" if infusion.dose_mg_per_kg is not None else None,
                "IV infusion",
                f"for {self.data.weight_kg:g} kg" if self.data.weight_kg is not None else None,
                None if infusion.total_mg is None else
                f"({infusion.total_mg:g} mg {'delivered' if infusion.total_is_delivered else 'planned'})"]
        dosage["text"] = " ".join(t for t in text if t)
        if infusion.total_mg is not None:
            dosage["dose"] = _quantity(infusion.total_mg, "mg")
        if infusion.rate is not None and infusion.rate_unit in RATE_UCUM:
            dosage["rateQuantity"] = _quantity(infusion.rate, RATE_UCUM[infusion.rate_unit])
        resource = {"resourceType": "MedicationAdministration", "status": infusion.status,
                    "identifier": [{"system": self.systems.observation, "value": identifier}],
                    "medicationCodeableConcept": {"text": infusion.drug},
                    "subject": {"reference": self.patient_url}, "context": {"reference": self.encounter_url},
                    **effective, "device": [{"reference": self.device_url}], "dosage": dosage}
        # A conditional update, like the Encounter: exported while running, it becomes completed when sent again.
        self._add(_uuid_url(self.systems.observation, identifier), resource, "PUT",
                  f"MedicationAdministration?identifier={self.systems.observation}|{identifier}")


# -- from the session record (vitals.care) --------------------------------------------------------------------

RATE_UCUM = {"ml/h": "mL/h", "mg/h": "mg/h", "mg/kg/h": "mg/kg/h"}


def infusion_of(session: Session, events: Sequence[CareRecord]) -> Infusion | None:
    """Return the infusion a session record shows, or None when it has no ``infusion_start`` (nothing given).

    A device's session names the planned drug and dose, but only the record's events show that it was given.
    Status: ``completed`` after ``infusion_stop``, ``on-hold`` while paused, else ``in-progress``. The dose is the
    ``delivered_mg`` of the stop when recorded, else the session's planned ``total_mg`` (``dosage.text`` says
    which). The rate is sent only when it never changed (a MedicationAdministration holds one rate).
    """
    started = [e for e in events if e.type == "infusion_start"]
    if not started or not session.drug:
        return None
    stop = next((e for e in events if e.type == "infusion_stop"), None)
    pauses = [e for e in events if e.type in ("pause", "resume")]
    status = "completed" if stop else ("on-hold" if pauses and pauses[-1].type == "pause" else "in-progress")
    delivered = stop.data.get("delivered_mg") if stop else None
    total = delivered if delivered is not None else session.total_mg
    rates = [e for e in events if e.type in ("infusion_start", "rate_change") and e.data.get("rate") is not None]
    constant = len(rates) == 1 and not any(e.type == "rate_change" for e in events)
    return Infusion(drug=session.drug, start_ms=started[0].ts, end_ms=stop.ts if stop else None, status=status,
                    dose_mg_per_kg=session.dose_mg_per_kg, total_mg=total, total_is_delivered=delivered is not None,
                    rate=rates[0].data["rate"] if constant else None,
                    rate_unit=rates[0].data.get("rate_unit") if constant else None)


def assessments_of(records: Sequence[CareRecord]) -> list[Assessment]:
    """Return the scored assessments of a session record (scale, total, time); nothing else of them is exported."""
    return [Assessment(r.data["scale"], int(r.data["total"]), r.ts) for r in records
            if r.type == "assessment" and "total" in r.data]


def _bp_panel(builder: _Builder, reading: Reading) -> None:
    components = []
    for name in BP_COMPONENTS:
        code = BY_KEY[name]
        value = getattr(reading, name)
        component: dict[str, Any] = {"code": _concept(code)}
        if value is not None:
            component["valueQuantity"] = _quantity(value, code.unit or "")
        elif name == "map":
            continue  # the mean is an extra component: absent means not sent
        else:  # the bp profile requires systolic and diastolic: say why one is missing
            component["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "not-performed"}]}
        components.append(component)
    builder.observation(BY_KEY["bp"], f"bp/{reading.ts_ms}", {"effectiveDateTime": format_ts(reading.ts_ms)},
                        {"component": components})


def minute_medians(readings: Iterable[Reading], vital: str, *, until_ms: int | None = None
                   ) -> list[tuple[int, float, int]]:
    """Return (minute start ms, median, count) of a vital per clock minute; only minutes ending by ``until_ms``."""
    minutes: dict[int, list[float]] = {}
    for reading in readings:
        value = getattr(reading, vital)
        if value is not None:
            minutes.setdefault(reading.ts_ms - reading.ts_ms % MINUTE_MS, []).append(value)
    return [(start, statistics.median(values), len(values)) for start, values in sorted(minutes.items())
            if until_ms is None or start + MINUTE_MS <= until_ms]


def build_bundle(data: ExportInput, systems: Systems | None = None, *, now_ms: int | None = None) -> dict[str, Any]:
    """Return the session as a FHIR R4 transaction Bundle (a JSON-ready dict).

    ``now_ms`` bounds an active session: only its complete minutes are exported (a later export adds the rest;
    the conditional creates keep what was sent). Raises ExportRefused for a session that must not be exported.
    """
    builder = _Builder(data, systems or Systems())
    session = data.session
    until = None if session.state == "ended" else now_ms
    if data.weight_kg is not None:
        ts = data.weight_ts_ms if data.weight_ts_ms is not None else session.started_at
        builder.observation(BY_KEY["weight"], "weight", {"effectiveDateTime": format_ts(ts)},
                            {"valueQuantity": _quantity(data.weight_kg, "kg")})
    if data.infusion is not None:
        builder.medication(data.infusion)
    for reading in data.readings:
        if reading.has_cuff:
            _bp_panel(builder, reading)
    for vital in MINUTE_VITALS:
        code = BY_KEY[vital]
        for start, median, count in minute_medians(data.readings, vital, until_ms=until):
            builder.observation(code, f"{vital}/{start}",
                                {"effectivePeriod": {"start": format_ts(start), "end": format_ts(start + MINUTE_MS)}},
                                {"valueQuantity": _quantity(median, code.unit or "")},
                                note=f"median of {count} reading{'s' * (count != 1)} in this minute")
    for assessment in data.assessments:
        code = BY_KEY.get(assessment.scale)
        if code is None:
            continue  # no verified LOINC code (interop.fhir_codes.UNCODED_SCALES): not exported
        builder.observation(code, f"{assessment.scale}/{assessment.ts_ms}",
                            {"effectiveDateTime": format_ts(assessment.ts_ms)}, {"valueInteger": assessment.total})
    return {"resourceType": "Bundle", "type": "transaction", "entry": builder.entries}


def sample_bundle() -> dict[str, Any]:
    """Return the documented sample (docs/interoperability.md): an excerpt of a nurse-started session's Bundle.

    The Patient, the Encounter, the infusion, one cuff reading and one minute of heart rate (60 readings).
    """
    start = 1_795_597_200_000  # 2026-11-25T09:00:00Z
    session = Session("north", "07", "S-2026-11-25-c07-1", "ended", start, start + 90 * MINUTE_MS, drug="ketamine",
                      dose_mg_per_kg=0.5, duration_min=40.0, patient_ref="P-7F3A2C", weight_kg=70.0, total_mg=35.0)
    readings = [Reading("north", "07", start + i * 1000, hr=72.0 + i % 5, spo2=98.0, rr=14.0) for i in range(60)]
    readings[0] = Reading("north", "07", start, hr=72.0, spo2=98.0, rr=14.0, sys=124.0, dia=78.0, map=93.0)
    infusion = Infusion("ketamine", start + MINUTE_MS, start + 41 * MINUTE_MS, "completed", 0.5, 34.8, True,
                        52.5, "mg/h")
    bundle = build_bundle(ExportInput(session, readings, weight_kg=70.0, infusion=infusion))
    wanted = ("Patient", "Encounter", "MedicationAdministration", "85354-9", "8867-4")
    kept, seen = [], set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind = resource["resourceType"]
        what = resource["code"]["coding"][0]["code"] if kind == "Observation" else kind
        if what in wanted and what not in seen:
            seen.add(what)
            kept.append(entry)
    return {**bundle, "entry": kept}


# -- validating ----------------------------------------------------------------------------------------------

def _check_vital_signs(resource: dict[str, Any], where: str) -> list[str]:
    """Return where an Observation breaks the R4 vital-signs rules this exporter promises (vs-1..vs-3, UCUM)."""
    problems = []
    if not any(c.get("code") == "vital-signs" for cat in resource.get("category", []) for c in cat.get("coding", [])):
        problems.append(f"{where}: no vital-signs category")
    if "subject" not in resource:
        problems.append(f"{where}: no subject")
    if not ("effectiveDateTime" in resource or "effectivePeriod" in resource):
        problems.append(f"{where}: no effective[x]")
    quantities = [resource["valueQuantity"]] if "valueQuantity" in resource else []
    for component in resource.get("component", []):
        if "valueQuantity" in component:
            quantities.append(component["valueQuantity"])
        elif "dataAbsentReason" not in component:
            problems.append(f"{where}: a component has neither a value nor a dataAbsentReason")
    if not quantities and "dataAbsentReason" not in resource:
        problems.append(f"{where}: no value")
    for quantity in quantities:
        if quantity.get("system") != UCUM or not quantity.get("code"):
            problems.append(f"{where}: a quantity without a UCUM code")
    return problems


def validate_bundle(bundle: dict[str, Any]) -> None:
    """Validate against fhir.resources' R4B models (R4B = R4 for these resources) and the vital-signs rules.

    Raises BundleInvalid naming every problem.
    """
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise BundleInvalid(f"the Bundle is not valid FHIR R4: {exc}") from None
    problems: list[str] = []
    for i, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource", {})
        if VITAL_SIGNS_PROFILE in resource.get("meta", {}).get("profile", []):
            problems += _check_vital_signs(resource, f"entry {i} ({resource.get('resourceType')})")
    if problems:
        raise BundleInvalid("the Bundle breaks the vital-signs profile: " + "; ".join(problems[:10]))


def bundle_json(bundle: dict[str, Any]) -> str:
    """Return the Bundle as indented JSON text, the form written to a file and sent."""
    return json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"


# -- sending ---------------------------------------------------------------------------------------------------

def _outcome_text(body: bytes) -> str:
    """Return the diagnostics of an OperationOutcome body, or the body's start."""
    try:
        doc = json.loads(body)
        issues = doc.get("issue", []) if isinstance(doc, dict) else []
        texts = [str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code")) for i in issues]
        if texts:
            return "; ".join(texts)[:500]
    except ValueError:
        pass
    return body[:300].decode("utf-8", "replace")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_fhir_url(base_url: str, *, with_token: bool) -> str:
    """Return a FHIR base URL fit to POST to, or raise ExportRefused: http(s) only, and a token only over https
    (or to this machine), so the token never crosses a network in clear text."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExportRefused(f"the FHIR base URL must be http(s)://host[:port]/path, not {base_url!r}")
    if with_token and parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ExportRefused(f"the FHIR token is not sent in clear text to {parts.hostname}: use an https:// URL")
    return base_url


def post_bundle(base_url: str, bundle: dict[str, Any], *, token: str | None = None, timeout_s: float = 30.0
                ) -> dict[str, Any]:
    """POST a transaction Bundle to a FHIR server's base URL; return its transaction-response Bundle.

    ``token`` becomes ``Authorization: Bearer <token>``. Raises FhirPostError with the status and the server's
    OperationOutcome when it refuses, or the reason when it cannot be reached.
    """
    headers = {"Content-Type": f"{FHIR_JSON}; charset=utf-8", "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url.rstrip("/") or base_url, data=bundle_json(bundle).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raise FhirPostError(f"the FHIR server refused the Bundle: HTTP {exc.code}: {_outcome_text(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FhirPostError(f"the FHIR server at {base_url} could not be reached: {reason}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise FhirPostError(f"the FHIR server answered HTTP {status} without a JSON Bundle") from None
    if not isinstance(answer, dict) or answer.get("type") != "transaction-response":
        raise FhirPostError(f"the FHIR server answered HTTP {status} but not with a transaction-response Bundle")
    failed = [e.get("response", {}).get("status", "?") for e in answer.get("entry", [])
              if not str(e.get("response", {}).get("status", "")).startswith("2")]
    if failed:
        raise FhirPostError(f"the FHIR server did not accept {len(failed)} entries (statuses {', '.join(failed[:5])})")
    return answer
