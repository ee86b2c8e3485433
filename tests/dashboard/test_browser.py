"""End to end in a real headless Chromium (system /usr/bin/chromium through Playwright) against a real mosquitto.

Log in, watch a tile follow published readings, see NO DATA when they stop, see a retained alarm in its colour,
acknowledge it and find the ack command on MQTT, and see the live view carry on while the store is down.
Screenshots go to $DASHBOARD_SCREENSHOTS (docs/screenshots when making the docs), else the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.auth import UsersFile
from dashboard.server import RunningDashboard, serve
from tests.dashboard.scene import TOPICS, alarm, now_ms, publish_live, publish_scene, seed_store
from tests.dashboard.scene import session as session_payload
from tests.servers import Mosquitto, MqttCollector, free_port
from vitals.mqtt import connect, make_client, wait_connected
from vitals.settings import FixedSettings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PASSWORD = "station password 1"
SCREENS = {"desktop": {"width": 1920, "height": 1080}, "tablet": {"width": 1024, "height": 768}}


def screenshot_dir(tmp_path: Path) -> Path:
    """Return where screenshots go."""
    target = Path(os.environ.get("DASHBOARD_SCREENSHOTS", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator:  # type: ignore[type-arg]
    client, target = make_client(mosquitto.url)
    connect(client, target)
    client.loop_start()
    assert wait_connected(client, 10)
    yield client
    client.disconnect()
    client.loop_stop()


def start_dashboard(mosquitto: Mosquitto, site: str, tmp_path: Path, store_url: str) -> RunningDashboard:
    """Serve a dashboard with one nurse user on a free port."""
    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD, replace=True)
    return serve(FixedSettings(mqtt_url=mosquitto.url, store_url=store_url, dashboard_port=free_port(), site=site,
                                 dashboard_users_file=users, data_dir=tmp_path))


@pytest.fixture
def dashboard(mosquitto: Mosquitto, site: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningDashboard]:
    store_url = getattr(request, "param", None) or f"sqlite:///{tmp_path / 'vitals.db'}"
    running = start_dashboard(mosquitto, site, tmp_path, store_url)
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def sign_in(browser, dashboard: RunningDashboard, viewport: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    """Open the dashboard, get sent to the login page, sign in; return the page on the overview."""
    page = browser.new_context(viewport=viewport or SCREENS["desktop"]).new_page()  # a context that may open tabs
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(dashboard.url + "/")
    assert "/login" in page.url
    page.fill("#username", "nurse.kim")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#overview", timeout=20_000)
    return page


def tile(page, site: str, chair: str):  # type: ignore[no-untyped-def]
    return page.locator(f"#tile-{site}--{chair}")


def test_tile_follows_readings_then_shows_no_data(browser, dashboard, publisher, site) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, dashboard)
    for hr in (101, 117):
        publisher.publish(TOPICS.vitals(site, "c-01"), json.dumps({"ts": now_ms(), "hr": hr, "spo2": 96, "rr": 15}), qos=1)
        hr_value = tile(page, site, "c-01").locator(".num-hr .num-value")
        page.wait_for_function("([sel, v]) => document.querySelector(sel)?.innerText === v",
                               arg=[f"#tile-{site}--c-01 .num-hr .num-value", str(hr)], timeout=10_000)
        assert tile(page, site, "c-01").get_attribute("data-mode") == "live"
    assert hr_value.inner_text() == "117"
    # Stop publishing: within 15 s (plus a refresh) the tile says NO DATA, greyed, with the age of its values.
    page.wait_for_selector(f"#tile-{site}--c-01[data-mode='nodata']", timeout=25_000)
    badge = tile(page, site, "c-01").locator(".badge").inner_text()
    assert badge.startswith("NO DATA") and "s ago" in badge
    grey = page.eval_on_selector(f"#tile-{site}--c-01 .num-hr .num-value", "el => getComputedStyle(el).color")
    assert grey == "rgb(107, 115, 123)"
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors


def test_offline_device_shows_offline(browser, dashboard, publisher, site) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, dashboard)
    publisher.publish(TOPICS.vitals(site, "c-03"), json.dumps({"ts": now_ms(), "hr": 88}), qos=1)
    publisher.publish(TOPICS.status(site, "c-03"), "offline", qos=1, retain=True)
    page.wait_for_selector(f"#tile-{site}--c-03[data-mode='offline']", timeout=10_000)
    assert tile(page, site, "c-03").locator(".badge").inner_text().startswith("OFFLINE")
    publisher.publish(TOPICS.status(site, "c-03"), "", qos=1, retain=True)


def test_retained_alarm_shows_in_colour_and_ack_is_published(browser, dashboard, publisher, mosquitto, site) -> None:  # type: ignore[no-untyped-def]
    since = now_ms() - 20_000
    high = alarm(site, "c-02", "spo2", "high", "SpO2 83 % < 85 %", since, 83, 85)
    medium = alarm(site, "c-04", "hr", "medium", "HR 124 > 120 /min", since, 124, 120)
    publisher.publish(TOPICS.alarms(site, "c-02"), json.dumps([high]), qos=1, retain=True)
    publisher.publish(TOPICS.alarms(site, "c-04"), json.dumps([medium]), qos=1, retain=True)
    collector = MqttCollector(mosquitto.url, f"{TOPICS.prefix}/{site}/chair/+/ack")
    try:
        page = sign_in(browser, dashboard)
        page.wait_for_selector(f"#tile-{site}--c-02[data-alarm='high']", timeout=10_000)
        bar = tile(page, site, "c-02").locator(".tile-alarm")
        assert "SpO2 83 % < 85 %" in bar.inner_text()
        style = page.eval_on_selector(f"#tile-{site}--c-02 .tile-alarm",
                                      "el => [getComputedStyle(el).animationName, getComputedStyle(el).animationDuration]")
        assert style == ["flash-high", "0.5s"]  # red flashing at 2 Hz (IEC 60601-1-8: 1.4-2.8 Hz)
        medium_style = page.eval_on_selector(f"#tile-{site}--c-04 .tile-alarm", "el => getComputedStyle(el).animationName")
        assert medium_style == "flash-medium"
        assert page.locator("#nav-alarm-count").inner_text() == "2"
        # Sound is off until the user enables it; then the unacknowledged high alarm sounds.
        assert "sound off" in page.locator("#sound-indicator").inner_text()
        page.click("#sound-toggle")
        page.wait_for_function("() => document.querySelector('#sound-toggle').innerText === 'Sound on'", timeout=5_000)
        page.wait_for_function("() => document.querySelector('#sound-indicator').innerText.includes('1 high alarm(s) sounding')",
                               timeout=5_000)

        page.click("#nav-alarms")
        row = page.locator(f".alarm-row[data-alarm-id='{high['alarm_id']}']")
        row.wait_for(timeout=10_000)
        rows = page.locator(".alarm-row").evaluate_all("els => els.map(e => e.dataset.chair)")
        assert rows == ["c-02", "c-04"]  # high before medium
        row.locator(".btn-ack").click()
        page.wait_for_function("() => document.querySelector('#alarms-feedback').innerText.includes('sent')",
                               timeout=10_000)
        assert collector.wait_for(lambda c: c.payloads("/c-02/ack"), timeout=10)
        command = json.loads(collector.payloads("/c-02/ack")[0])
        assert command == {"alarm_id": high["alarm_id"], "user": "nurse.kim", "action": "acknowledge"}

        # The ingest would republish the state; the acknowledged alarm stops flashing and names who acknowledged.
        acked = {**high, "acknowledged": True, "acknowledged_by": "nurse.kim"}
        publisher.publish(TOPICS.alarms(site, "c-02"), json.dumps([acked]), qos=1, retain=True)
        page.wait_for_function("() => document.querySelector('#alarms-list').innerText.includes('acknowledged by nurse.kim')",
                               timeout=10_000)
        page.click("#nav-overview")
        page.wait_for_function(
            "sel => { const el = document.querySelector(sel); return el && getComputedStyle(el).animationName === 'none'; }",
            arg=f"#tile-{site}--c-02 .tile-alarm", timeout=10_000)  # acknowledged: steady, no longer flashing
        assert tile(page, site, "c-02").locator(".alarm-tag").first.inner_text() == "ACK"
        assert "sounding" not in page.locator("#sound-indicator").inner_text()
        page.click("#nav-alarms")
        row.wait_for(timeout=10_000)
        row.locator(".btn-pause").click()
        assert collector.wait_for(lambda c: len(c.payloads("/c-02/ack")) >= 2, timeout=10)
        assert json.loads(collector.payloads("/c-02/ack")[1])["action"] == "pause_audio"
    finally:
        collector.close()
        for chair in ("c-02", "c-04"):
            publisher.publish(TOPICS.alarms(site, chair), "", qos=1, retain=True)


@pytest.mark.parametrize("dashboard", ["influxdb://127.0.0.1:9/vitals"], indirect=True)
def test_live_view_carries_on_while_the_store_is_down(browser, dashboard, publisher, site) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, dashboard)
    page.wait_for_selector("#store-banner", timeout=20_000)
    assert "History unavailable" in page.locator("#store-banner").inner_text()
    publisher.publish(TOPICS.vitals(site, "c-05"), json.dumps({"ts": now_ms(), "hr": 93}), qos=1)
    page.wait_for_function("([sel]) => document.querySelector(sel)?.innerText === '93'",
                           arg=[f"#tile-{site}--c-05 .num-hr .num-value"], timeout=10_000)
    page.goto(dashboard.url + f"/chair/{site}/c-05")
    page.wait_for_selector("#chair-history-note .banner", timeout=20_000)
    assert "History unavailable" in page.locator("#chair-history-note").inner_text()


def test_screenshots(browser, mosquitto, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Take the overview, chair view and alarm panel at 1920x1080 and tablet size (for the docs)."""
    chairs = 12
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    seed_store(store_url, site, chairs)  # 40 minutes of history: sparklines and trends have something to show
    dashboard = start_dashboard(mosquitto, site, tmp_path, store_url)
    publish_scene(publisher, site, chairs, history_s=0)
    # c-02's session began with the stored history, so its chair view shows the whole session.
    publisher.publish(TOPICS.session(site, "c-02"), session_payload("c-02", now_ms() - 39 * 60_000), qos=1, retain=True)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            publish_live(publisher, site, chairs, skip=("c-04", "c-08"))
            stop.wait(1.0)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    publisher.publish(TOPICS.status(site, "c-08"), "offline", qos=1, retain=True)
    out = screenshot_dir(tmp_path)
    try:
        for name, viewport in SCREENS.items():
            page = sign_in(browser, dashboard, viewport)
            page.wait_for_selector(f"#tile-{site}--c-04[data-mode='nodata']", timeout=30_000)
            page.wait_for_selector(f"#tile-{site}--c-12[data-mode='live']", timeout=10_000)
            page.screenshot(path=str(out / f"overview-{name}.png"))
            page.goto(dashboard.url + f"/chair/{site}/c-02")
            page.wait_for_selector("#chair-trend .scatterlayer .trace", timeout=20_000)
            time.sleep(1.0)
            page.screenshot(path=str(out / f"chair-{name}.png"), full_page=name == "desktop")
            page.goto(dashboard.url + "/alarms")
            page.wait_for_selector(".alarm-row", timeout=10_000)
            page.screenshot(path=str(out / f"alarms-{name}.png"))
            page.close()
    finally:
        stop.set()
        thread.join(5)
        dashboard.stop()
        for i in range(chairs):
            chair = f"c-{i + 1:02d}"
            for topic in (TOPICS.alarms(site, chair), TOPICS.session(site, chair), TOPICS.status(site, chair),
                          TOPICS.effective_limits(site, chair)):
                publisher.publish(topic, "", qos=1, retain=True)
    assert (out / "overview-desktop.png").stat().st_size > 10_000


def test_page_says_so_when_the_dashboard_server_stops(browser, mosquitto, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dashboard = start_dashboard(mosquitto, site, tmp_path, f"sqlite:///{tmp_path / 'vitals.db'}")
    try:
        page = sign_in(browser, dashboard)
        publisher.publish(TOPICS.vitals(site, "c-06"), json.dumps({"ts": now_ms(), "hr": 66}), qos=1)
        page.wait_for_selector(f"#tile-{site}--c-06[data-mode='live']", timeout=10_000)
        assert not page.locator("#server-lost-note").is_visible()
    finally:
        dashboard.stop()
    # The last values stay in the DOM, so the page must grey them out and say they are not current.
    page.wait_for_selector("#server-lost-note", state="visible", timeout=15_000)
    assert "NOT current" in page.locator("#server-lost-note").inner_text()
    assert "server-lost" in page.evaluate("() => document.body.className")


def test_expired_session_says_so_on_the_station(browser, dashboard) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, dashboard)
    sessions = dashboard.services.gate.sessions
    real = sessions.clock
    sessions.clock = lambda: real() + sessions.lifetime_s + 1  # the shift is over
    page.wait_for_selector("#session-ended-note", state="visible", timeout=15_000)
    assert "SIGNED OUT" in page.locator("#session-ended-note").inner_text()
    page.click("#session-ended-signin")
    page.wait_for_selector("#login-submit", timeout=15_000)
    assert "/login?next=" in page.url


SPO2_LIMITS_JS = """() => {
    const plot = document.querySelector('#chair-trend .js-plotly-plot');
    if (!plot || !plot.layout) return null;
    const lines = (plot.layout.shapes || []).filter(s => s.yref === 'y2' && s.y0 === s.y1).map(s => s.y0);
    const labels = (plot.layout.annotations || []).filter(a => a.yref === 'y2').map(a => a.text);
    return {lines: lines.sort((a, b) => a - b), labels: labels.sort()};
}"""


def spo2_limits(page, wanted: list[float], timeout: float = 40.0) -> dict:  # type: ignore[no-untyped-def]
    """Wait until the SpO2 panel of the chair view's Plotly figure draws ``wanted``; return its lines and labels."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = page.evaluate(SPO2_LIMITS_JS)
        if found and found["lines"] == wanted:
            return found
        time.sleep(0.25)
    raise AssertionError(f"the SpO2 panel draws {found}, not {wanted}")


def test_the_chair_view_draws_the_limits_the_engine_enforces(browser, mosquitto, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real ingest with a rules file setting SpO2 low-medium to 88: the chart draws 88, never the shipped 90;
    an admin's edit in the form is drawn once the engine has applied and published it."""
    from tests.servers import IngestProcess

    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.spo2-low-medium]\nlimit = 88\n")
    users = tmp_path / "users.json"
    UsersFile(users).add("admin.lee", "admin", PASSWORD)
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--site", site,
                           env={"INFUSION_ALARM_RULES_FILE": str(rules)})
    ingest.start()
    dashboard = serve(FixedSettings(mqtt_url=mosquitto.url, store_url=store_url, dashboard_port=free_port(), site=site,
                                    dashboard_users_file=users, data_dir=tmp_path))
    try:
        time.sleep(0.5)  # the ingest subscribes right after connecting
        now = now_ms()
        publisher.publish(TOPICS.session(site, "c-01"), session_payload("c-01", now - 10 * 60_000), qos=1, retain=True)
        for k in range(120, 0, -1):
            publisher.publish(TOPICS.vitals(site, "c-01"), json.dumps(
                {"ts": now - k * 1000, "hr": 74 + k % 5, "spo2": 91 - (k // 40), "rr": 14}), qos=1)
        page = browser.new_page(viewport=SCREENS["desktop"])
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(dashboard.url + f"/chair/{site}/c-01")
        page.fill("#username", "admin.lee")
        page.fill("#password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_selector("#chair-trend .js-plotly-plot", timeout=20_000)
        drawn = spo2_limits(page, [85, 88])
        assert drawn["labels"] == ["85", "88"]  # the rules file's 88, not the shipped 90
        page.wait_for_selector("#limits-published", timeout=20_000)
        time.sleep(1.0)
        page.screenshot(path=str(screenshot_dir(tmp_path) / "chair-limits-88.png"), full_page=True)

        # The admin's form holds the engine's values, with where each came from.
        page.reload()
        field = page.locator('#limits-panel input[id*="spo2"][id*="low_medium"]')
        field.wait_for(timeout=20_000)
        assert field.input_value() == "88"
        assert "file" in field.locator("xpath=ancestor::td").inner_text()
        field.fill("87")
        field.press("Enter")
        page.click("#limits-save")  # first the what-if of the edit, from the ingest; the second click applies it
        page.wait_for_selector("#whatif-box #whatif-current", timeout=20_000)
        page.screenshot(path=str(screenshot_dir(tmp_path) / "chair-limits-whatif.png"), full_page=True)
        page.click("#limits-save")
        page.wait_for_function("() => document.querySelector('#limits-feedback').innerText.includes('Saved')",
                               timeout=10_000)
        drawn = spo2_limits(page, [85, 87])  # drawn once the engine applied it and published it
        assert drawn["labels"] == ["85", "87"]
        assert not page.locator("#limits-pending").count()
        # The form is refilled from what the engine published: the value is now the admin's, without a reload.
        page.wait_for_function("() => [...document.querySelectorAll('#limits-form td')].some("
                               "td => td.querySelector('input[id*=\"low_medium\"][id*=\"spo2\"]') "
                               "&& td.innerText.includes('admin'))", timeout=10_000)

        # With the engine away, an edit is shown as pending and the chart keeps what the engine enforces.
        ingest.stop()
        page.reload()
        field.wait_for(timeout=20_000)
        field.fill("86")
        field.press("Enter")
        page.click("#limits-save")  # no ingest to ask: said at once, and the edit may still be applied
        page.wait_for_function("() => document.querySelector('#limits-feedback').innerText.includes('What-if unavailable')",
                               timeout=10_000)
        page.click("#limits-save")
        page.wait_for_selector("#limits-pending", timeout=10_000)
        assert "not yet applied by the alarm engine" in page.locator("#limits-pending").inner_text()
        assert spo2_limits(page, [85, 87])["labels"] == ["85", "87"]
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "chair-limits-pending.png"))
        ingest.start()  # restored, it applies the retained edit and publishes it: now it is drawn
        assert spo2_limits(page, [85, 86])["labels"] == ["85", "86"]
        page.wait_for_selector("#limits-pending", state="detached", timeout=10_000)
        from vitals.store import open_store

        records = open_store(store_url).audit(site)
        assert [(r.action, r.chair) for r in records if r.action == "alarm_limits"] == [("alarm_limits", "c-01")] * 2

        # A chair the engine has not published limits for: no line, and the view says why.
        page.goto(dashboard.url + f"/chair/{site}/c-09")
        page.wait_for_selector("#limits-not-published", timeout=20_000)
        assert "not yet published by the alarm engine" in page.locator("#limits-not-published").inner_text()
        page.wait_for_selector("#chair-trend .js-plotly-plot", timeout=20_000)
        assert page.evaluate(SPO2_LIMITS_JS)["lines"] == []
        assert "form opens when it has" in page.locator("#limits-form").inner_text()
        assert page.locator("#limits-save").is_disabled()
        assert errors == []
    finally:
        dashboard.stop()
        ingest.stop()
        for topic in (f"clinic/{site}/chair/c-01/limits", TOPICS.session(site, "c-01"),
                      f"clinic/{site}/chair/c-01/effective_limits", TOPICS.alarms(site, "c-01")):
            publisher.publish(topic, "", qos=1, retain=True)
