"""The whole path in a real browser: device readings -> mosquitto -> real ingest (alarm engine, SQLite) -> dashboard.

Log in, watch a tile's HR follow the readings, let SpO2 fall until the ingest raises a high alarm, see it red
on the tile, acknowledge it on the alarm panel, find the ingest's `acknowledged` event (with the nurse's name)
on MQTT, and the acknowledgement in the chair's stored alarm history.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.dashboard.scene import TOPICS, now_ms, session
from tests.dashboard.test_browser import browser, publisher, sign_in, start_dashboard  # noqa: F401 - fixtures
from tests.servers import IngestProcess, Mosquitto, MqttCollector

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_reading_to_alarm_to_acknowledgement(browser, publisher, mosquitto: Mosquitto, site: str,  # noqa: F811
                                             tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--site", site)
    ingest.start()
    dashboard = start_dashboard(mosquitto, site, tmp_path, store_url)
    events = MqttCollector(mosquitto.url, TOPICS.alarm_events(site))
    vitals = {"hr": 72.0, "spo2": 97.0, "rr": 14.0}
    stop = threading.Event()

    def device() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            publisher.publish(TOPICS.vitals(site, "c-01"), json.dumps({"ts": now_ms(), "seq": seq, **vitals}), qos=1)
            stop.wait(1.0)

    publisher.publish(TOPICS.session(site, "c-01"), session("c-01", now_ms() - 60_000), qos=1, retain=True)
    publisher.publish(TOPICS.status(site, "c-01"), "online", qos=1, retain=True)
    thread = threading.Thread(target=device, daemon=True)
    thread.start()
    try:
        page = sign_in(browser, dashboard)
        value = f"#tile-{site}--c-01 .num-hr .num-value"
        for hr in (72, 88):
            vitals["hr"] = float(hr)
            page.wait_for_function("([sel, v]) => document.querySelector(sel)?.innerText === v", arg=[value, str(hr)],
                                   timeout=10_000)
        vitals["spo2"] = 80.0  # below the high limit (85 %) for longer than its 5 s delay
        page.wait_for_selector(f"#tile-{site}--c-01[data-alarm='high']", timeout=40_000)
        assert "SpO2" in page.locator(f"#tile-{site}--c-01 .tile-alarm").inner_text()

        page.click("#nav-alarms")
        row = page.locator(".alarm-row[data-chair='c-01']").first
        row.wait_for(timeout=10_000)
        alarm_id = row.get_attribute("data-alarm-id")
        row.locator(".btn-ack").click()
        assert events.wait_for(lambda c: any(json.loads(p).get("event") == "acknowledged" for p in c.payloads()), 20)
        acked = [json.loads(p) for p in events.payloads() if json.loads(p).get("event") == "acknowledged"]
        assert acked[0]["alarm_id"] == alarm_id and acked[0]["user"] == "nurse.kim"
        page.wait_for_function(
            "() => document.querySelector('#alarms-list').innerText.includes('acknowledged by nurse.kim')", timeout=20_000)

        page.goto(dashboard.url + f"/chair/{site}/c-01")
        page.wait_for_selector("#alarm-history-table", timeout=30_000)
        history = page.locator("#alarm-history-table").inner_text()
        assert "acknowledged" in history and "nurse.kim" in history and "raised" in history
    finally:
        stop.set()
        thread.join(5)
        events.close()
        dashboard.stop()
        ingest.stop()
        for topic in (TOPICS.session(site, "c-01"), TOPICS.status(site, "c-01"), TOPICS.alarms(site, "c-01")):
            publisher.publish(topic, "", qos=1, retain=True)
