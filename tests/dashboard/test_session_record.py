"""Issue 13 in a real browser, against a real mosquitto, the real ingest (subprocess) and its SQLite store.

A nurse starts a session (baseline BP pre-filled from the chair's cuff, total mg computed live), records the
infusion start, a rate change, a pause and a MOAA/S, stops the infusion, enters an Aldrete of 8 and is refused
discharge by the ingest (the reason shows), enters 9 once the (short, configured) minimum observation has passed and
discharges. Every step is then found in the store, in the audit trail with the nurse as author, in the session log,
and in the session report the dashboard serves (its PDF read with pdftotext).
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.dashboard.scene import TOPICS, now_ms
from tests.dashboard.test_browser import (  # noqa: F401 - fixtures
    browser,
    publisher,
    screenshot_dir,
    sign_in,
    start_dashboard,
)
from tests.servers import IngestProcess, Mosquitto, wait_until
from vitals.store import open_store

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHAIR = "c-01"
# Observation after the stop shortened from 60 min to 12 s so the test can wait it out.
CARE_PLAN = """
[discharge]
min_observation_min = 0.2
"""


def pdf_text(data: bytes, tmp_path: Path) -> str:
    """Return a PDF's text as pdftotext reads it."""
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def choose(page, scale: str) -> None:  # type: ignore[no-untyped-def]
    """Choose the scale of the assessment form."""
    page.locator(f"#rec-scale input[value='{scale}']").check()


def score(page, scale: str, item: str, value: int) -> None:  # type: ignore[no-untyped-def]
    """Tick one item's score of the assessment form."""
    ident = json.dumps({"item": item, "scale": scale, "type": "rec-item"}, separators=(",", ":"))
    page.locator(f"[id='{ident}'] input[value='{value}']").check()


def wait_text(page, selector: str, text: str, timeout: float = 20_000) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("([sel, t]) => (document.querySelector(sel)?.innerText || '').includes(t)",
                           arg=[selector, text], timeout=timeout)


def test_a_nurse_records_a_session_from_start_to_discharge(browser, publisher, mosquitto: Mosquitto, site: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    plan = tmp_path / "careplan.toml"
    plan.write_text(CARE_PLAN)
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--site", site, "--care-plan-file", str(plan))
    ingest.start()
    dashboard = start_dashboard(mosquitto, site, tmp_path, store_url)
    stop = threading.Event()

    def device() -> None:  # the chair's monitor: HR and SpO2 every second
        while not stop.is_set():
            publisher.publish(TOPICS.vitals(site, CHAIR), json.dumps({"ts": now_ms(), "hr": 76, "spo2": 97}), qos=1)
            stop.wait(1.0)

    def cuff(sys_: int, dia: int) -> None:
        publisher.publish(TOPICS.vitals(site, CHAIR), json.dumps({"ts": now_ms(), "sys": sys_, "dia": dia}), qos=1)

    thread = threading.Thread(target=device, daemon=True)
    thread.start()

    def cuff_seen() -> bool:  # the dashboard may subscribe after a first publication: send until it has it
        state = dashboard.services.state.chair_state(site, CHAIR)
        if state is None or state.cuff is None:
            cuff(124, 78)
            return False
        return True

    assert wait_until(cuff_seen, 20, step=0.5)
    try:
        page = sign_in(browser, dashboard)
        page.wait_for_selector(f"#tile-{site}--{CHAIR}", timeout=20_000)
        page.goto(dashboard.url + f"/chair/{site}/{CHAIR}")
        page.wait_for_selector("#rec-start-form", timeout=20_000)
        assert page.input_value("#rec-bsys") == "124" and page.input_value("#rec-bdia") == "78"  # from the cuff
        page.fill("#rec-ref", "P-9C41E7")
        page.fill("#rec-weight", "72.4")
        wait_text(page, "#rec-total", "36.2 mg")
        page.click("#rec-start")
        wait_text(page, "#rec-feedback", "started by nurse.kim")
        wait_text(page, "#rec-phase", "before the infusion")  # the ingest's record state for the new session

        page.get_by_role("button", name="Start infusion").click()
        wait_text(page, "#rec-phase", "infusing")
        page.fill("#rec-rate", "40")
        page.get_by_role("button", name="Record rate change").click()
        wait_text(page, "#rec-log", "rate_change 40 ml/h")
        page.get_by_role("button", name="Pause").click()
        wait_text(page, "#rec-phase", "PAUSED")
        elapsed = page.inner_text("#rec-elapsed")
        choose(page, "moaas")
        score(page, "moaas", "responsiveness", 5)
        page.click("#rec-assess")
        wait_text(page, "#rec-log", "assessment moaas total 5")
        assert page.inner_text("#rec-elapsed") == elapsed  # paused: the infusion clock stands still
        page.get_by_role("button", name="Stop infusion").click()
        wait_text(page, "#rec-phase", "recovery")
        cuff(128, 80)  # back within the band of the baseline

        choose(page, "aldrete")
        ident = json.dumps({"item": "circulation", "scale": "aldrete", "type": "rec-item"}, separators=(",", ":"))
        page.wait_for_selector(f"[id='{ident}'] input[value='2']:checked", timeout=10_000)  # pre-filled from the cuff
        for item, value in (("activity", 2), ("respiration", 1), ("consciousness", 1), ("spo2", 2)):
            score(page, "aldrete", item, value)
        page.click("#rec-assess")
        wait_text(page, "#rec-log", "assessment aldrete total 8")
        page.click("#rec-discharge")
        wait_text(page, "#rec-refusal", "discharge refused")
        refusal = page.inner_text("#rec-refusal")
        assert "8" in refusal and "9" in refusal, refusal
        assert "NOT met: score" in page.inner_text("#rec-readiness")
        shots = screenshot_dir(tmp_path)
        page.locator("#record-panel").screenshot(path=str(shots / "session-record-panel.png"))

        page.wait_for_function("() => document.querySelector('#rec-readiness')?.innerText.includes('met: observation')"
                               " && !document.querySelector('#rec-readiness').innerText.includes('NOT met: observation')",
                               timeout=40_000)
        score(page, "aldrete", "consciousness", 2)
        page.click("#rec-assess")
        wait_text(page, "#rec-ready", "ready for discharge")
        page.click("#rec-discharge")
        wait_text(page, "#rec-phase", "discharged")
        wait_text(page, "#rec-log", "discharge (criteria met)")
        page.locator("#rec-log").screenshot(path=str(shots / "session-log.png"))
        href = page.get_attribute("#rec-report-pdf", "href")
        page.click("#nav-overview")
        wait_text(page, f"#tile-{site}--{CHAIR} .tile-record", "discharged")

        # Stored, with the nurse as author, and audited.
        store = open_store(store_url)
        try:
            session = store.sessions(site, CHAIR)[-1]
            records = store.care_records(site, CHAIR, session.session_id)
            audit = store.audit(site)
        finally:
            store.close()
        assert (session.patient_ref, session.weight_kg, session.total_mg, session.started_by,
                session.baseline_sys, session.baseline_source) == ("P-9C41E7", 72.4, 36.2, "nurse.kim", 124, "cuff")
        kinds = [r.type for r in records]
        assert kinds == ["infusion_start", "rate_change", "pause", "assessment", "infusion_stop", "assessment",
                         "assessment", "discharge"], kinds
        assert {r.author for r in records} == {"nurse.kim"}
        assert [r.data["total"] for r in records if r.type == "assessment"] == [5, 8, 9]
        assert records[-1].ts - records[4].ts >= 12_000  # discharged after the minimum observation
        assert records[-1].data["accepted"] == "criteria"
        audited = [a.action for a in audit if a.user == "nurse.kim" and a.chair == CHAIR]
        for action in ("record.infusion_start", "record.rate_change", "record.pause", "record.assessment",
                       "record.infusion_stop", "discharge_refused", "record.discharge"):
            assert action in audited, (action, audited)

        # The session report from the dashboard's link.
        response = page.request.get(dashboard.url + href)
        assert response.status == 200 and response.headers["content-type"] == "application/pdf"
        text = pdf_text(response.body(), tmp_path)
        for fact in ("P-9C41E7", "72.4 kg", "ketamine", "0.5 mg/kg", "36.2 mg", "124/78 mmHg (last cuff reading)",
                     "infusion start", "rate change 40 ml/h", "pause", "MOAA/S total 5", "infusion stop",
                     "Modified Aldrete total 8", "Modified Aldrete total 9", "discharge (criteria met)", "nurse.kim",
                     "Criterion: score", "128", "Cuff blood pressure"):
            assert fact in text, fact
        page_html = page.request.get(dashboard.url + href.replace(".pdf", ".html"))
        assert page_html.status == 200 and "P-9C41E7" in page_html.text() and "<svg" in page_html.text()
        assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors
    except Exception:
        page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
        raise
    finally:
        stop.set()
        thread.join(5)
        dashboard.stop()
        ingest.stop()
        for topic in (TOPICS.session(site, CHAIR), TOPICS.record_state(site, CHAIR), TOPICS.alarms(site, CHAIR)):
            publisher.publish(topic, "", qos=1, retain=True)
