"""The session report (dashboard/report.py, `infusion-monitor report`): built from a real SQLite store, rendered to
PDF with ReportLab and read back with pdftotext, as a person printing it would see it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dashboard.report import ReportError, collect, render, render_html
from infusion_monitor.cli import main
from vitals.care import CareRecord
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store import open_store

SITE, CHAIR = "north", "c-07"
T0 = 1_785_000_000_000  # a fixed session start (2026-07-25 UTC)


def pdf_text(path: Path) -> str:
    """Return a PDF's text as pdftotext extracts it (layout kept, so table rows stay on one line)."""
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'vitals.db'}"
    store = open_store(url)
    store.write_sessions([Session(SITE, CHAIR, "S-older", "ended", T0 - 86400_000, T0 - 86400_000 + 3600_000,
                                  "ketamine", 0.5, 40, "P-0001"),
                          Session(SITE, CHAIR, "S-1234", "ended", T0, T0 + 100 * 60_000, "ketamine", 0.5, 40,
                                  "P-4711", 121, weight_kg=72.4, total_mg=36.2, baseline_dia=78, baseline_source="cuff",
                                  started_by="nurse.kim")])
    aldrete = {"activity": 2, "respiration": 2, "circulation": 2, "consciousness": 1, "spo2": 1}
    store.write_care_records([CareRecord(SITE, CHAIR, "S-1234", T0 + minute * 60_000, kind, "nurse.kim", data)
                              for minute, kind, data in [
        (1, "infusion_start", {"rate": 52.5, "rate_unit": "mg/h"}),
        (12, "rate_change", {"rate": 40.0, "rate_unit": "mg/h", "reason": "nausea"}),
        (13, "adverse_event", {"kind": "nausea", "treatment": "ondansetron", "dose": "4 mg IV"}),
        (20, "pause", {}), (23, "resume", {}),
        (30, "assessment", {"scale": "moaas", "items": {"responsiveness": 5}, "total": 5}),
        (44, "infusion_stop", {}),
        (80, "assessment", {"scale": "aldrete", "items": aldrete, "total": 8}),
        (95, "assessment", {"scale": "aldrete", "items": {**aldrete, "consciousness": 2}, "total": 9}),
        (96, "discharge", {"criteria": [{"id": "score", "met": True, "detail": "Modified Aldrete 9 >= 9"},
                                        {"id": "observation", "met": True, "detail": "observed 52 of 30 min"}],
                           "accepted": "criteria"}),
    ]])
    readings = [Reading(SITE, CHAIR, T0 - 300_000 + i * 10_000, hr=72 + i % 5, spo2=97, rr=14) for i in range(700)]
    for minute, (sys_, dia) in zip(range(0, 100, 10), [(121, 78), (128, 80), (134, 84), (139, 88), (142, 90),
                                                       (136, 86), (130, 82), (126, 80), (123, 79), (122, 78)],
                                   strict=True):
        readings.append(Reading(SITE, CHAIR, T0 + minute * 60_000 + 5_000, sys=sys_, dia=dia, map=round((sys_ + 2 * dia) / 3)))
    store.write_readings(readings)
    alarm_id = f"{SITE}.{CHAIR}.sys.{T0 + 2_400_000}"
    store.write_alarm_events([
        AlarmEvent(alarm_id, SITE, CHAIR, "sys", "physiological", "medium", "raised", 142, 140, T0 + 2_400_000,
                   text="Systolic <b>142</b> > 140"),
        AlarmEvent(alarm_id, SITE, CHAIR, "sys", "physiological", "medium", "acknowledged", None, None, T0 + 2_460_000,
                   user="nurse.kim"),
        AlarmEvent(alarm_id, SITE, CHAIR, "sys", "physiological", "medium", "cleared", 136, 140, T0 + 3_000_000),
    ])
    store.write_audit([AuditRecord(T0 + 2_460_000, "acknowledge", "nurse.kim", SITE, CHAIR, alarm_id)])
    store.close()
    return url


def test_the_pdf_holds_the_session_facts_cuff_readings_and_who_acknowledged(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    assert main(["report", "--store-url", store_url, "--site", SITE, "--chair", CHAIR, "--session", "S-1234",
                 "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    text = pdf_text(out)
    for fact in ("Infusion session report", "P-4711", "S-1234", "ketamine", "0.5 mg/kg", "40 min", "72.4 kg", "36.2 mg",
                 "121/78 mmHg (last cuff reading)", "infusion start 52.5 mg/h", "rate change 40 mg/h: nausea",
                 "adverse event nausea (ondansetron, 4 mg IV)", "pause", "resume", "infusion stop", "MOAA/S total 5",
                 "Modified Aldrete total 8", "Modified Aldrete total 9", "discharge (criteria met)",
                 "Modified Aldrete 9 >= 9", "Criterion: observation",
                 "Vitals trend", "Cuff blood pressure", "Event timeline", "session started", "session ended",
                 "not a certified medical device"):
        assert fact in text, fact
    assert "P-0001" not in text  # only the asked-for session
    cuff_rows = [line.split() for line in text.splitlines() if line.strip().startswith(("17:", "18:"))]
    assert [row[1:3] for row in cuff_rows if len(row) >= 4 and row[1].isdigit()][:3] == [["121", "78"], ["128", "80"],
                                                                                        ["134", "84"]]
    alarm_line = [line for line in text.splitlines() if "Systolic" in line][-1]  # the alarms table, after the timeline
    assert "nurse.kim at" in alarm_line and "medium" in alarm_line


def test_last_picks_the_newest_session_and_html_escapes_what_came_from_the_wire(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--store-url", store_url, "--site", SITE, "--chair", CHAIR, "--last", "--out", str(out)]) == 0
    page = out.read_text("utf-8")
    assert "P-4711" in page and "<svg" in page and "nurse.kim" in page
    assert "Systolic &lt;b&gt;142&lt;/b&gt; &gt; 140" in page and "<b>142" not in page


def test_refusals_name_what_is_wrong(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["report", "--store-url", store_url, "--site", SITE, "--chair", CHAIR]
    assert main([*base, "--session", "S-nope", "--out", str(tmp_path / "x.pdf")]) == 1
    assert "no session 'S-nope'" in capsys.readouterr().err
    assert main([*base, "--last", "--out", str(tmp_path / "x.docx")]) == 2
    assert "must end in .pdf or .html" in capsys.readouterr().err
    assert main(["report", "--store-url", store_url, "--site", SITE, "--chair", "c-99", "--last",
                 "--out", str(tmp_path / "x.pdf")]) == 1
    assert not (tmp_path / "x.pdf").exists()
    store = open_store(store_url)
    with pytest.raises(ReportError):
        collect(store, SITE, "c-99")
    report = collect(store, SITE, CHAIR, "S-older")
    store.close()
    assert "no cuff reading stored" in render_html(report)
    with pytest.raises(ValueError, match="pdf or html"):
        render(report, "docx")


@pytest.mark.integration
def test_report_on_a_session_the_simulated_nurse_recorded(mosquitto, publisher, site: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A demo-like run: the clinic-day simulator (device and nurse) through mosquitto into the real ingest, then
    `infusion-monitor report --last` as a user runs it; the PDF's text holds the facts of the issue."""
    import sys
    import time

    from simulator.scenario import load_scenario
    from simulator.stream import generate
    from tests.servers import IngestProcess, wait_until

    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--site", site, "--chair-rate-kib-s", "0")
    ingest.start()
    start = int(time.time() * 1000) - 3 * 3600_000  # the simulated morning, in the past like a fast demo run
    try:
        for msg in generate(load_scenario("clinic-day"), site=site, chairs=1, seed=1, start_ms=start,
                            duration_s=1.8 * 3600):
            publisher.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        store = open_store(store_url)
        try:
            assert wait_until(lambda: any(r.type == "discharge" for r in store.care_records(site)), 60, step=0.5)
            session = store.sessions(site)[0]
            chair = session.chair
        finally:
            store.close()
    finally:
        ingest.stop()
    out = tmp_path / "demo-session.pdf"
    done = subprocess.run([sys.executable, "-m", "infusion_monitor", "report", "--store-url", store_url, "--site", site,
                           "--chair", chair, "--session", session.session_id, "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = pdf_text(out)
    assert session.patient_ref and session.weight_kg and session.total_mg
    for fact in (session.patient_ref, f"{session.weight_kg:g} kg", session.drug or "ketamine",
                 f"{session.dose_mg_per_kg:g} mg/kg", f"{session.total_mg:g} mg", "infusion start", "infusion stop",
                 "Modified Aldrete total", "discharge (criteria met)", "nurse.sim", "Cuff blood pressure",
                 "Criterion: score", "Criterion: observation", "Vitals trend"):
        assert fact in text, fact
    cuff_times = [line.split()[0] for line in text.split("Cuff blood pressure", 1)[1].splitlines()
                  if line.strip()[:2].isdigit() and line.strip()[2] == ":"]
    assert len(cuff_times) >= 8  # every 10 min over the infusion, every 15 min in recovery
