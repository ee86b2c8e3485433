"""``export fhir``: a simulated session in a real SQLite store, out as a FHIR R4 transaction Bundle.

The store holds the first sessions of the demo's clinic day: the simulator's stream of scenario clinic-day
(simulator/stream.py: what the bedside devices publish, and the nurse's session record on the record topic)
validated by the contract's own validation (vitals.reading, vitals.records, vitals.care) and written through
the Store interface, as the ingest does. The Bundle is validated with fhir.resources' R4B models, and POSTed to a
real HTTP server that answers as a FHIR server (tests/interop/fhir_server.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from infusion_monitor.cli import main
from interop.fhir import (
    MINUTE_MS,
    BundleInvalid,
    ExportInput,
    ExportRefused,
    Systems,
    build_bundle,
    infusion_of,
    minute_medians,
    sample_bundle,
    validate_bundle,
)
from interop.fhir_codes import (
    BY_KEY,
    CODES,
    DOC_PATH,
    code_table_markdown,
    documented_sample,
    documented_table,
    sample_markdown,
)
from simulator.scenario import load_scenario
from simulator.stream import generate
from tests.interop.fhir_server import FhirServer
from tests.servers import Influxd
from vitals.care import CareRecord, parse_record
from vitals.reading import Reading, format_ts, validate_payload
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store import Store, open_store
from vitals.store.sqlite import SQLiteStore
from vitals.topics import Topics

START_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z
SITE = "fhirlab"
NAME = "Marguerite Okonkwo-Lindqvist"  # a name that must never reach a Bundle, a file, stdout or stderr
# Records added to chair 02's simulated session: (minutes after its start, record), all by NAME or about NAME.
NAMED_RECORDS: list[tuple[float, dict[str, Any]]] = [
    (7, {"type": "assessment", "scale": "nrs", "score": 2}),
    (16, {"type": "adverse_event", "kind": "nausea", "treatment": "ondansetron", "dose": "4 mg IV",
          "text": f"{NAME} felt sick"}),
    (31, {"type": "note", "text": f"husband of {NAME} called"}),
    (103.5, {"type": "discharge", "override_reason": f"{NAME} insisted"}),
]


def fill_store(store: Store, chairs: int = 2, seed: int = 11) -> None:
    """Write the first sessions of the demo's clinic day (scenario clinic-day: the simulator plays the nurse on the
    record topic) as the ingest validates them. Chair 02's session then gets staff and free text naming NAME.
    """
    topics = Topics()
    readings: list[Reading] = []
    sessions: list[Session] = []
    records: list[CareRecord] = []
    for msg in generate(load_scenario("clinic-day"), site=SITE, chairs=chairs, seed=seed, start_ms=START_MS,
                        duration_s=110 * 60):
        chair = topics.parse_chair(msg.topic)
        if chair.kind == "vitals":
            readings += validate_payload(chair.site, chair.chair, msg.payload, msg.sim_ms).readings
        elif chair.kind == "session":
            sessions.append(Session.from_payload(chair.site, chair.chair, msg.payload))
        elif chair.kind == "record":
            records.append(parse_record(chair.site, chair.chair, msg.payload, msg.sim_ms))
    store.write_readings(readings)
    store.write_sessions(sessions)
    store.write_care_records(records)
    if chairs < 2:
        return
    named = store.sessions(site=SITE, chair="02")[-1]
    store.write_sessions([dataclasses.replace(named, started_by=NAME)])
    store.write_care_records([parse_record(SITE, "02", json.dumps({
        "session_id": named.session_id, "author": NAME, "ts": named.started_at + minutes * MINUTE_MS, **record}),
        named.started_at + 200 * MINUTE_MS) for minutes, record in NAMED_RECORDS])
    # Staff names where the store has free text: alarm events and audit records. None may be exported.
    store.write_alarm_events([AlarmEvent("a-1", SITE, "02", "spo2", "physiological", "high", "acknowledged", 88.0,
                                         90.0, named.started_at + 60_000, user=NAME, text=f"acked by {NAME}")])
    store.write_audit([AuditRecord(named.started_at + 60_000, "acknowledge", NAME, SITE, "02", "a-1", NAME)])


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite store filled by ``fill_store``."""
    path = tmp_path_factory.mktemp("fhir") / "vitals.db"
    store = SQLiteStore(path)
    fill_store(store)
    store.close()
    yield f"sqlite:///{path}"


def export(store_url: str, *args: str) -> int:
    return main(["export", "fhir", "--site", SITE, "--store-url", store_url, *args])


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def coded(bundle: dict[str, Any], loinc: str) -> list[dict[str, Any]]:
    return [r for r in resources(bundle, "Observation") if r["code"]["coding"][0]["code"] == loinc]


def test_demo_session_bundle_validates_and_carries_the_loinc_codes(store_url: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle.json"
    assert export(store_url, "--chair", "01", "--last", "--out", str(out)) == 0
    assert "wrote session S-" in capsys.readouterr().out
    bundle = json.loads(out.read_text())
    parsed = Bundle.model_validate(bundle)  # fhir.resources R4B: the whole Bundle, every resource in it
    assert parsed.type == "transaction"
    validate_bundle(bundle)

    store = SQLiteStore(store_url.removeprefix("sqlite:///"))
    session = store.sessions(site=SITE, chair="01")[-1]
    readings = store.readings(SITE, "01", session.started_at, session.ended_at + 1)
    events = store.infusion_events(SITE, "01", session.session_id)
    assessments = store.assessments(SITE, "01", session.session_id)
    store.close()
    assert session.state == "ended" and len(readings) > 6000 and session.started_by == "nurse.sim"

    # One Patient, by the pseudonymous reference only; one Encounter for the session; one Device.
    (patient,) = resources(bundle, "Patient")
    assert patient == {"resourceType": "Patient", "identifier": [
        {"system": "urn:infusion-monitor:patient-ref", "value": session.patient_ref}]}
    (encounter,) = resources(bundle, "Encounter")
    assert encounter["status"] == "finished" and encounter["identifier"][0]["value"].endswith(session.session_id)
    assert encounter["period"] == {"start": format_ts(session.started_at), "end": format_ts(session.ended_at)}
    assert len(resources(bundle, "Device")) == 1

    # One blood-pressure panel per cuff reading, with systolic, diastolic and mean components in mm[Hg].
    cuffs = [r for r in readings if r.has_cuff]
    panels = coded(bundle, "85354-9")
    assert len(cuffs) >= 9 and len(panels) == len(cuffs)
    for panel, cuff in zip(panels, cuffs, strict=True):
        components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in panel["component"]}
        assert components["8480-6"]["value"] == pytest.approx(cuff.sys, abs=0.05)
        assert components["8462-4"]["value"] == pytest.approx(cuff.dia, abs=0.05)
        assert components["8478-0"]["value"] == pytest.approx(cuff.map, abs=0.05)
        assert {q["code"] for q in components.values()} == {"mm[Hg]"}
        assert panel["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/vitalsigns",
                                            "http://hl7.org/fhir/StructureDefinition/bp"]

    # One Observation per minute of heart rate, SpO2 and respiratory rate: the minute's median, in UCUM units.
    minutes = {r.ts_ms - r.ts_ms % MINUTE_MS for r in readings}
    for vital, loinc, unit, profile in (("hr", "8867-4", "/min", "heartrate"), ("rr", "9279-1", "/min", "resprate"),
                                        ("spo2", "2708-6", "%", "oxygensat")):
        observations = coded(bundle, loinc)
        assert len(observations) == len(minutes) == 105  # 40 min infusion + 65 min observation
        first = observations[0]
        assert first["valueQuantity"]["code"] == unit and first["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert first["meta"]["profile"][-1] == f"http://hl7.org/fhir/StructureDefinition/{profile}"
        assert first["category"][0]["coding"][0]["code"] == "vital-signs"
        in_minute = sorted(getattr(r, vital) for r in readings if r.ts_ms < session.started_at + MINUTE_MS)
        assert first["valueQuantity"]["value"] == pytest.approx(in_minute[len(in_minute) // 2], abs=0.51)
        assert first["effectivePeriod"] == {"start": "2026-01-05T08:00:00.000Z", "end": "2026-01-05T08:01:00.000Z"}
    spo2 = coded(bundle, "2708-6")[0]
    assert [c["code"] for c in spo2["code"]["coding"]] == ["2708-6", "59408-5"]

    # From the session record: the weight, the infusion, and the assessments with a LOINC code (pain NRS).
    (weight,) = coded(bundle, "29463-7")
    assert weight["valueQuantity"] == {"value": int(session.weight_kg), "unit": "kg",
                                       "system": "http://unitsofmeasure.org", "code": "kg"}
    assert weight["meta"]["profile"][-1] == "http://hl7.org/fhir/StructureDefinition/bodyweight"
    (given,) = resources(bundle, "MedicationAdministration")
    start = next(e for e in events if e.type == "infusion_start")
    stop = next(e for e in events if e.type == "infusion_stop")
    assert given["status"] == "completed" and given["medicationCodeableConcept"] == {"text": "ketamine"}
    assert given["effectivePeriod"] == {"start": format_ts(start.ts), "end": format_ts(stop.ts)}
    assert given["dosage"]["dose"]["value"] == pytest.approx(session.total_mg) and given["dosage"]["dose"]["code"] == "mg"
    assert given["dosage"]["text"] == f"0.5 mg/kg IV infusion for {session.weight_kg:g} kg ({session.total_mg:g} mg planned)"
    if any(e.type == "rate_change" for e in events):
        assert "rateQuantity" not in given["dosage"]
    else:
        assert given["dosage"]["rateQuantity"] == {"value": start.data["rate"], "unit": "mg/h",
                                                   "system": "http://unitsofmeasure.org", "code": "mg/h"}
    pains = [a for a in assessments if a.data["scale"] == "nrs"]
    assert len(pains) >= 1 and {a.data["scale"] for a in assessments} >= {"cadss6", "moaas", "rass", "aldrete", "nrs"}
    assert [(p["effectiveDateTime"], p["valueInteger"]) for p in coded(bundle, "72514-3")] == [
        (format_ts(a.ts), a.data["total"]) for a in pains]
    assert coded(bundle, "72514-3")[0]["category"][0]["coding"][0]["code"] == "survey"
    # MOAA/S, RASS, CADSS-6, Aldrete, PADSS: no verified LOINC code, not exported
    assert len([r for r in resources(bundle, "Observation") if "valueInteger" in r]) == len(pains)

    # Every reference points at an entry of the Bundle.
    urls = {e["fullUrl"] for e in bundle["entry"]}
    for obs in resources(bundle, "Observation"):
        assert {obs["subject"]["reference"], obs["encounter"]["reference"], obs["device"]["reference"]} <= urls


def test_no_name_ever_leaves(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Chair 02's session: NAME started it, wrote its records, is in a note, an adverse event, the discharge
    # override, an alarm acknowledgement and the audit trail.
    out = tmp_path / "bundle.json"
    assert export(store_url, "--chair", "02", "--last", "--out", str(out)) == 0
    text = out.read_text() + "".join(capsys.readouterr())
    assert len(coded(json.loads(out.read_text()), "72514-3")) >= 2  # NAME's own NRS went out, without NAME
    for part in NAME.replace("-", " ").split():
        assert part not in text

    # A session whose patient_ref holds a name is refused, and the refusal does not repeat it.
    path = tmp_path / "named.db"
    store = SQLiteStore(path)
    store.write_sessions([Session(SITE, "07", "S-named", "ended", START_MS, START_MS + 3_600_000,
                                  drug="ketamine", patient_ref=NAME)])
    store.write_readings([Reading(SITE, "07", START_MS + 1000, hr=70.0, spo2=98.0, sys=120.0, dia=80.0)])
    store.close()
    assert export(f"sqlite:///{path}", "--chair", "07", "--last", "--out", str(tmp_path / "named.json")) == 2
    err = capsys.readouterr().err
    assert "may be a name" in err and "Marguerite" not in err and "Okonkwo" not in err
    assert not (tmp_path / "named.json").exists()


def test_post_to_a_fhir_server_with_the_token_from_the_settings(store_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    server = FhirServer(token="s3cret-token").start()
    try:
        out = tmp_path / "bundle.json"
        assert export(store_url, "--chair", "02", "--last", "--out", str(out)) == 0
        # Without the token the server refuses: exit 1, its OperationOutcome shown.
        assert export(store_url, "--chair", "02", "--last", "--fhir-url", server.base_url) == 1
        assert "HTTP 401: a valid bearer token is required" in capsys.readouterr().err

        monkeypatch.setenv("INFUSION_FHIR_TOKEN", "s3cret-token")
        assert export(store_url, "--chair", "02", "--last", "--fhir-url", server.base_url) == 0
        assert "all 2xx" in capsys.readouterr().out
        request = server.requests[-1]
        assert request.method == "POST" and request.path == "/fhir"
        assert request.headers["Content-Type"].startswith("application/fhir+json")
        assert request.headers["Authorization"] == "Bearer s3cret-token"
        assert json.loads(request.body) == json.loads(out.read_text())  # exactly the Bundle --out writes
        sent = json.loads(out.read_text())
        observations = server.count("Observation")
        assert observations == len(resources(sent, "Observation")) > 300
        assert server.count("Patient") == server.count("Encounter") == server.count("MedicationAdministration") == 1

        # Sent again (a retry after a lost answer), nothing is created twice.
        assert export(store_url, "--chair", "02", "--last", "--fhir-url", server.base_url) == 0
        assert server.count("Observation") == observations and server.count("Patient") == 1
    finally:
        server.close()


def test_server_refusals_and_unreachable_servers_fail_with_the_reason(store_url: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    server = FhirServer().start()
    try:
        assert export(store_url, "--chair", "01", "--last", "--fhir-url", server.base_url + "/wrong") == 1
        assert "HTTP 404: no endpoint /fhir/wrong" in capsys.readouterr().err
        port = server.http.port if server.http else 0
    finally:
        server.close()
    assert export(store_url, "--chair", "01", "--last", "--fhir-url", f"http://127.0.0.1:{port}/fhir") == 1
    assert "could not be reached" in capsys.readouterr().err


def test_command_line_refusals(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "b.json")
    assert export(store_url, "--chair", "01", "--last", "--out", out, "--fhir-url", "http://127.0.0.1:1/fhir") == 2
    assert "not both" in capsys.readouterr().err
    assert export(store_url, "--chair", "01", "--last") == 2
    assert "give --out FILE" in capsys.readouterr().err
    assert export(store_url, "--chair", "01", "--session", "S-nope", "--out", out) == 2
    assert "no session 'S-nope'" in capsys.readouterr().err
    assert export(store_url, "--chair", "09", "--last", "--out", out) == 2
    assert "the store has no session of site 'fhirlab' chair '09'" in capsys.readouterr().err
    assert export(store_url, "--chair", "01", "--last", "--fhir-url", "ftp://ehr.example/fhir") == 2
    assert "must be http(s)" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as env:  # a token never travels in clear text beyond this machine
        env.setenv("INFUSION_FHIR_TOKEN", "t")
        assert export(store_url, "--chair", "01", "--last", "--fhir-url", "http://ehr.example/fhir") == 2
        assert "use an https:// URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --session and --last exclude each other
        export(store_url, "--chair", "01", "--last", "--session", "S-1", "--out", out)
    capsys.readouterr()
    assert "--fhir-token" not in _help()


def _help() -> str:
    import argparse

    from interop.fhir_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.format_help()


def session_of(state: str = "ended", **fields: Any) -> Session:
    return Session(SITE, "03", "S-unit", state, START_MS, START_MS + 600_000 if state == "ended" else None,
                   drug="ketamine", dose_mg_per_kg=0.5, duration_min=40.0, patient_ref="P-0001", **fields)


def test_active_session_exports_complete_minutes_and_a_missing_diastolic_says_so() -> None:
    readings = [Reading(SITE, "03", START_MS + i * 1000, hr=60.0 + i % 7, spo2=97.0, rr=14.0) for i in range(150)]
    readings.append(Reading(SITE, "03", START_MS + 150_000, hr=70.0, sys=130.0))  # a cuff reading without dia
    bundle = build_bundle(ExportInput(session_of("active"), readings), now_ms=START_MS + 151_000)
    validate_bundle(bundle)
    assert len(coded(bundle, "8867-4")) == 2  # minutes 0 and 1 are complete; minute 2 is still running
    (panel,) = coded(bundle, "85354-9")
    dia = next(c for c in panel["component"] if c["code"]["coding"][0]["code"] == "8462-4")
    assert "valueQuantity" not in dia and dia["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert len(panel["component"]) == 2  # no mean: an extra component is left out, not sent empty
    assert resources(bundle, "Encounter")[0]["status"] == "in-progress"
    assert minute_medians(readings, "hr", until_ms=START_MS + 120_000)[0] == (START_MS, 63.0, 60)
    # The same session gives the same Bundle, byte for byte (UUIDv5 entry ids).
    assert bundle == build_bundle(ExportInput(session_of("active"), readings), now_ms=START_MS + 151_000)


def test_refusals_of_the_builder_and_the_validator() -> None:
    with pytest.raises(ExportRefused, match="no patient_ref"):
        build_bundle(ExportInput(Session(SITE, "03", "S-x", "ended", START_MS, START_MS + 1, patient_ref=None), []))
    bundle = build_bundle(ExportInput(session_of(), [Reading(SITE, "03", START_MS, hr=61.0)]))
    obs = coded(bundle, "8867-4")[0]
    del obs["valueQuantity"]["system"]
    with pytest.raises(BundleInvalid, match="UCUM"):
        validate_bundle(bundle)
    obs["valueQuantity"]["value"] = "sixty"
    with pytest.raises(BundleInvalid, match="not valid FHIR R4"):
        validate_bundle(bundle)


def test_identifier_systems_come_from_the_settings(tmp_path: Path, store_url: str) -> None:
    out = tmp_path / "b.json"
    assert main(["export", "fhir", "--site", SITE, "--chair", "01", "--last", "--store-url", store_url, "--out", str(out),
                 "--fhir-patient-system", "https://clinic.example/pseudonyms",
                 "--fhir-identifier-system", "https://clinic.example/infusion"]) == 0
    bundle = json.loads(out.read_text())
    assert resources(bundle, "Patient")[0]["identifier"][0]["system"] == "https://clinic.example/pseudonyms"
    assert resources(bundle, "Encounter")[0]["identifier"][0]["system"] == "https://clinic.example/infusion:session"
    assert Systems().observation == "urn:infusion-monitor:observation"


def test_the_code_table_is_documented_once_and_the_sample_validates() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    assert documented_table(doc) == code_table_markdown(), "run: python -m interop.fhir_codes --write-docs"
    assert {c.loinc for c in CODES} >= {"85354-9", "8480-6", "8462-4", "8478-0", "8867-4", "9279-1", "2708-6", "72514-3"}
    assert BY_KEY["spo2"].extra[0][0] == "59408-5"
    # The sample bundle excerpt in the document is what the exporter makes, and a valid R4 Bundle.
    assert documented_sample(doc) == sample_markdown(), "run: python -m interop.fhir_codes --write-docs"
    sample = sample_bundle()
    Bundle.model_validate(sample)
    validate_bundle(sample)
    assert [e["resource"]["resourceType"] for e in sample["entry"]] == [
        "Patient", "Encounter", "MedicationAdministration", "Observation", "Observation"]


def test_infusion_from_the_session_record() -> None:
    session = Session(SITE, "03", "S-r", "active", START_MS, drug="ketamine", dose_mg_per_kg=0.5, patient_ref="P-1",
                      weight_kg=80.0, total_mg=40.0)

    def rec(minute: int, kind: str, **data: Any) -> CareRecord:
        return CareRecord(SITE, "03", "S-r", START_MS + minute * MINUTE_MS, kind, "nurse.kim", data)

    assert infusion_of(session, [rec(1, "note", text="x")]) is None  # planned is not given: no start, nothing sent
    paused = infusion_of(session, [rec(1, "infusion_start", rate=60.0, rate_unit="mg/h"), rec(5, "pause")])
    assert paused is not None and (paused.status, paused.end_ms, paused.rate) == ("on-hold", None, 60.0)
    assert (paused.total_mg, paused.total_is_delivered) == (40.0, False)  # the planned total, said so in the text
    changed = infusion_of(session, [rec(1, "infusion_start", rate=60.0, rate_unit="mg/h"),
                                    rec(5, "rate_change", rate=40.0, rate_unit="mg/h"), rec(40, "infusion_stop")])
    assert changed is not None and (changed.status, changed.rate, changed.end_ms) == (
        "completed", None, START_MS + 40 * MINUTE_MS)
    bundle = build_bundle(ExportInput(session, [], weight_kg=80.0, infusion=paused))
    validate_bundle(bundle)
    (given,) = resources(bundle, "MedicationAdministration")
    assert given["status"] == "on-hold" and given["dosage"]["text"].endswith("(40 mg planned)")
    request = next(e["request"] for e in bundle["entry"] if e["resource"] is given)
    assert request == {"method": "PUT", "url": "MedicationAdministration?identifier=urn:infusion-monitor:observation|"
                                               f"{SITE}/03/S-r/infusion"}  # updated when the infusion completes
    assert "end" not in given["effectivePeriod"]


@pytest.mark.integration
def test_an_influxdb_store_gives_the_same_bundle(influxd: Influxd, store_url: str, tmp_path: Path) -> None:
    url = influxd.store_url("fhir_export")
    store = open_store(url)
    fill_store(store, chairs=1)
    store.close()
    for name, source in (("sqlite", store_url), ("influx", url)):
        assert export(source, "--chair", "01", "--last", "--out", str(tmp_path / f"{name}.json")) == 0
    assert (tmp_path / "influx.json").read_text() == (tmp_path / "sqlite.json").read_text()
