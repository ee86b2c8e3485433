"""Issue 17 in a real headless Chromium: another origin cannot sign the station out, a login that ended says so
on the station's screen, `next` never leaves the dashboard, hover labels show markup as text.

Screenshots (login page, signed-out station) go to $DASHBOARD_SCREENSHOTS, else the test's tmp dir.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.dashboard.scene import TOPICS, now_ms
from tests.dashboard.test_browser import PASSWORD, SCREENS, screenshot_dir, sign_in, start_dashboard
from tests.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def attacker_site() -> Iterator[dict[str, str]]:
    """Serve pages on another origin (another loopback port); a test puts the HTML under a path."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?", 1)[0], "not here").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pages["base"] = f"http://127.0.0.1:{port}"
    pages["cross-site"] = f"http://localhost:{port}"
    yield pages
    server.shutdown()
    server.server_close()


def attack_page(target: str) -> str:
    """Return a page that tries every way a page of another origin has to sign a station out."""
    return f"""<!doctype html><html><body>
<img src="{target}/logout">
<iframe src="{target}/logout"></iframe>
<form id="post" method="post" action="{target}/logout"><input name="csrf" value="guessed"></form>
<script>
fetch("{target}/logout", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "application/x-www-form-urlencoded"}}, body: "csrf=guessed"}});
fetch("{target}/logout", {{mode: "no-cors", credentials: "include"}});
setTimeout(function () {{ document.getElementById("post").submit(); }}, 1500);
</script></body></html>"""


def test_another_origin_cannot_sign_the_station_out(browser, dashboard, publisher, attacker_site, site,  # type: ignore[no-untyped-def]
                                                    tmp_path) -> None:
    station = sign_in(browser, dashboard)
    session_cookie = [c for c in station.context.cookies() if c["name"] == "infusion_session"]
    assert session_cookie
    attacker_site["/evil"] = attack_page(dashboard.url)
    for origin in (attacker_site["base"], attacker_site["cross-site"]):  # same site other port; another site
        evil = station.context.new_page()
        evil.goto(origin + "/evil")
        evil.wait_for_url(dashboard.url + "/logout", timeout=15_000)  # the form post landed, and was refused
        assert "sign-out refused" in evil.content()
        evil.goto(dashboard.url + "/logout")  # a top-level GET, as a link elsewhere would do
        assert "Sign out button" in evil.content()
        evil.close()
    assert [c for c in station.context.cookies() if c["name"] == "infusion_session"] == session_cookie
    # The station is still signed in, on its page, and live.
    publisher.publish(TOPICS.vitals(site, "c-07"), json.dumps({"ts": now_ms(), "hr": 77}), qos=1)
    station.wait_for_function("([sel]) => document.querySelector(sel)?.innerText === '77'",
                              arg=[f"#tile-{site}--c-07 .num-hr .num-value"], timeout=10_000)
    assert urlsplit(station.url).path == "/" and not station.locator("#session-ended-note").is_visible()
    station.screenshot(path=str(screenshot_dir(tmp_path) / "station-after-attack.png"))


def test_a_station_signed_out_elsewhere_says_so_loudly(browser, dashboard, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = screenshot_dir(tmp_path)
    login_page = browser.new_page(viewport=SCREENS["desktop"])
    login_page.goto(dashboard.url + "/")
    login_page.wait_for_selector("#login-submit")
    login_page.screenshot(path=str(out / "login.png"))
    login_page.close()
    station = sign_in(browser, dashboard)
    publisher.publish(TOPICS.vitals(site, "c-01"), json.dumps({"ts": now_ms(), "hr": 88, "spo2": 96}), qos=1)
    station.wait_for_selector(f"#tile-{site}--c-01[data-mode='live']", timeout=10_000)
    other_tab = station.context.new_page()
    other_tab.goto(dashboard.url + "/alarms")
    other_tab.click("#logout")  # the Sign out button posts the form with the session's token
    other_tab.wait_for_url(dashboard.url + "/login", timeout=10_000)
    note = station.locator("#session-ended-note")
    note.wait_for(state="visible", timeout=15_000)
    assert "SIGNED OUT: THIS STATION SHOWS NO ALARMS" in note.inner_text() and "login ended" in note.inner_text()
    assert not station.locator(f"#tile-{site}--c-01").is_visible()  # no last picture left looking current
    assert urlsplit(station.url).path == "/"  # it stayed, and says so, instead of leaving silently
    assert "session-ended" in station.evaluate("() => document.body.className")
    assert not station.locator("#server-lost-note").is_visible()
    assert station.locator("#session-ended-signin").get_attribute("href") == "/login?next=%2F"
    station.screenshot(path=str(out / "session-ended.png"))


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0A", "/%0D", "//evil.example", "/\\\\evil.example",
                                    "https://evil.example/"])
def test_next_values_land_on_the_overview(browser, dashboard, target) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=SCREENS["desktop"])
    page.goto(f"{dashboard.url}/login?next={target}")
    page.fill("#username", "nurse.kim")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#overview", timeout=20_000)
    assert page.url == dashboard.url + "/"


def test_a_hover_label_shows_a_users_markup_as_text(browser, mosquitto, site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vitals.reading import Reading
    from vitals.records import AlarmEvent
    from vitals.store import open_store

    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    now = now_ms()
    store = open_store(store_url)
    store.write_readings([Reading(site, "c-01", now - k * 5000, hr=72 + k % 5, spo2=97) for k in range(240)])
    raised = now - 8 * 60_000
    alarm_id = f"{site}.c-01.hr.{raised}"
    store.write_alarm_events([
        AlarmEvent(alarm_id, site, "c-01", "hr", "physiological", "medium", "raised", 125.0, 120.0, raised,
                   text="HR <b>125</b> > 120 /min"),
        AlarmEvent(alarm_id, site, "c-01", "hr", "physiological", "medium", "acknowledged", None, None,
                   raised + 120_000, user="<a href=x>n</a>"),
    ])
    store.close()
    running = start_dashboard(mosquitto, site, tmp_path, store_url)
    try:
        page = sign_in(browser, running)
        page.goto(running.url + f"/chair/{site}/c-01")
        points = page.locator("#chair-trend .scatterlayer .trace .points path.point")
        points.nth(1).wait_for(timeout=20_000)
        for index, expected in ((1, "acknowledged medium: hr by <a href=x>n</a>"), (0, "raised medium: HR <b>125</b> > 120")):
            box = points.nth(index).bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_function("t => (document.querySelector('#chair-trend .hoverlayer')?.textContent || '')"
                                   ".includes(t)", arg=expected, timeout=10_000)
            assert page.locator("#chair-trend .hoverlayer a").count() == 0  # no link
            assert page.locator("#chair-trend .hoverlayer text[style*='bold'], #chair-trend .hoverlayer tspan"
                                "[style*='bold']").count() == 0  # nothing made bold
    finally:
        running.stop()


def test_a_south_dashboard_answers_404_for_north_pages_and_exports(browser, dashboard) -> None:  # type: ignore[no-untyped-def]
    page = sign_in(browser, dashboard)
    for path in ("/chair/north/c-01", "/export/north/c-01.csv"):
        response = page.goto(dashboard.url + path)
        assert response is not None and response.status == 404, path
