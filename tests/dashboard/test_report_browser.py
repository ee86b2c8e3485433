"""Actionability at acknowledgement, end to end in a real Chromium: a real ingest raises an SpO2 alarm, the nurse
acknowledges it as "not actionable" with a reason in one click, and the alarm report page shows it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.dashboard.test_browser import screenshot_dir, sign_in, start_dashboard
from tests.servers import IngestProcess, Mosquitto, mosquitto_pub_lines, wait_until
from vitals.store.sqlite import SQLiteStore
from vitals.topics import Topics

pytestmark = [pytest.mark.browser, pytest.mark.integration]
TOPICS = Topics()


def test_acknowledged_as_not_actionable_shows_on_the_report(browser, mosquitto: Mosquitto, site: str,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    db = tmp_path / "vitals.db"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, f"sqlite:///{db}", "--site", site)
    ingest.start()
    dashboard = start_dashboard(mosquitto, site, tmp_path, f"sqlite:///{db}")
    store = SQLiteStore(db)
    try:
        time.sleep(0.5)  # the ingest subscribes right after connecting
        t0 = int(time.time() * 1000) - 25_000
        lines = [json.dumps({"ts": t0 + s * 1000, "seq": s, "spo2": 88, "hr": 80}) for s in range(20)]
        mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-05"), lines)
        page = sign_in(browser, dashboard)
        page.click("#nav-alarms")
        row = page.locator(".alarm-row[data-chair='c-05']")
        row.wait_for(timeout=15_000)
        page.fill("#ack-reason", "probe slipped")
        screens = screenshot_dir(tmp_path)
        page.screenshot(path=str(screens / "alarms-ack-tags.png"))
        row.locator(".btn-tag-not_actionable").click()
        try:
            page.wait_for_function("() => document.querySelector('#alarms-feedback').innerText.includes('not actionable')",
                                   timeout=20_000)
        except Exception:
            raise AssertionError(f"feedback: {page.locator('#alarms-feedback').inner_text()!r}, errors {page.errors}") from None
        assert "probe slipped" in page.locator("#alarms-feedback").inner_text()
        assert page.locator("#ack-reason").input_value() == ""  # never sent again with the next acknowledgement
        assert wait_until(lambda: any(e.event == "acknowledged" for e in store.alarm_events(site)), 20), \
            ingest.log()[-3000:]
        [acked] = [e for e in store.alarm_events(site) if e.event == "acknowledged"]
        assert (acked.actionable, acked.reason, acked.user) == ("not_actionable", "probe slipped", "nurse.kim")

        page.click("#nav-report")
        cell = page.locator("#report-summary td[data-figure='Tagged not actionable']")
        cell.wait_for(timeout=15_000)
        assert cell.inner_text() == "1"
        assert page.locator("#report-summary td[data-figure='Alarms']").inner_text() == "1"
        assert page.locator("#report-summary td[data-figure='Tagged actionable (of tagged)']").inner_text() == "0 %"
        page.wait_for_selector("#report-page .js-plotly-plot", timeout=10_000)
        page.screenshot(path=str(screens / "alarm-report.png"), full_page=True)
    finally:
        store.close()
        dashboard.stop()
        ingest.stop()
