"""The push channel in a real headless Chromium: values arrive by push with the poll off; when pushes stop
(the dashboard server gone) the tile still turns NO DATA on time; when the push channel is refused, the
one-second poll carries the tiles.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dashboard.auth import UsersFile
from dashboard.server import RunningDashboard, serve
from tests.dashboard.scene import TOPICS, now_ms
from tests.dashboard.test_browser import PASSWORD, sign_in, tile
from tests.servers import Mosquitto, free_port
from vitals.settings import FixedSettings

pytestmark = [pytest.mark.browser, pytest.mark.integration]

NO_DATA_S = 3  # short, so the test waits seconds, not the clinical 15 s; the rule is the same


def serve_short(mosquitto: Mosquitto, site: str, tmp_path: Path, **extra: object) -> RunningDashboard:
    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD, replace=True)
    return serve(FixedSettings(mqtt_url=mosquitto.url, store_url=f"sqlite:///{tmp_path / 'vitals.db'}",
                               dashboard_port=free_port(), site=site, dashboard_users_file=users, data_dir=tmp_path,
                               no_data_s=NO_DATA_S, **extra))


def poll_requests(page) -> list[float]:  # type: ignore[no-untyped-def]
    """Record when the page asks for the overview's fallback poll."""
    seen: list[float] = []
    page.on("request", lambda r: seen.append(time.time()) if "overview-poll" in (r.post_data or "") else None)
    return seen


def show(page, site: str, chair: str, hr: int, publisher) -> None:  # type: ignore[no-untyped-def]
    publisher.publish(TOPICS.vitals(site, chair), json.dumps({"ts": now_ms(), "hr": hr, "spo2": 96}), qos=1)
    page.wait_for_function("([sel, v]) => document.querySelector(sel)?.innerText === v",
                           arg=[f"#tile-{site}--{chair} .num-hr .num-value", str(hr)], timeout=10_000)


def test_pushed_tile_turns_no_data_on_time_when_pushes_stop(browser, mosquitto, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dashboard = serve_short(mosquitto, site, tmp_path)
    try:
        page = sign_in(browser, dashboard)
        polls = poll_requests(page)
        show(page, site, "c-01", 101, publisher)
        page.wait_for_selector("body[data-updates='push']", timeout=10_000)
        opened = time.time()
        show(page, site, "c-01", 117, publisher)
        page.wait_for_timeout(1500)
        assert not [t for t in polls if t > opened + 0.5], "the poll ran while the push channel delivered"
        show(page, site, "c-01", 118, publisher)
        published = time.time()
    finally:
        dashboard.stop()  # no more pushes, no poll answers: only the page's own deadline is left
    page.wait_for_selector(f"#tile-{site}--c-01[data-mode='nodata']", timeout=(NO_DATA_S + 3) * 1000)
    turned = time.time() - published
    assert NO_DATA_S - 0.5 <= turned <= NO_DATA_S + 2, turned  # not before its deadline, and on time
    assert tile(page, site, "c-01").locator(".badge").inner_text().startswith("NO DATA")
    grey = page.eval_on_selector(f"#tile-{site}--c-01 .num-hr .num-value", "el => getComputedStyle(el).color")
    assert grey == "rgb(107, 115, 123)"  # the stale grey of the server-drawn NO DATA tile


def test_refused_push_channel_leaves_the_poll_in_charge(browser, mosquitto, publisher, site, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dashboard = serve_short(mosquitto, site, tmp_path, dashboard_threads=4)  # no thread to spare for a stream
    try:
        page = sign_in(browser, dashboard)
        polls = poll_requests(page)
        show(page, site, "c-02", 88, publisher)
        show(page, site, "c-02", 93, publisher)
        assert polls, "the values came without the poll"
        assert page.evaluate("() => document.body.getAttribute('data-updates')") != "push"
        page.wait_for_selector(f"#tile-{site}--c-02[data-mode='nodata']", timeout=(NO_DATA_S + 3) * 1000)
    finally:
        dashboard.stop()
