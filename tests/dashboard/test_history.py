"""History through a real SQLite store: seeding, sparkline backfill, the chair view's callback, CSV export, audit."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from dashboard.app import create_app
from dashboard.bench import overview_refresh
from dashboard.history import History, HistoryUnavailable
from dashboard.live import LiveState
from dashboard.services import Services
from tests.dashboard.scene import chair_trend_request, now_ms, seed_store
from vitals.settings import FixedSettings
from vitals.store import open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def store_url(tmp_path: Path, site: str) -> str:
    url = f"sqlite:///{tmp_path / 'vitals.db'}"
    seed_store(url, site, chairs=4, minutes=20, end_ago_s=60)
    return url


@pytest.fixture
def services(store_url: str, site: str) -> Services:
    services = Services(FixedSettings(mqtt_url=None, store_url=store_url, dashboard_no_login=True, site=site))
    assert services.history.check()
    return services


def test_seed_shows_stored_chairs_as_no_data_with_their_age(services: Services, site: str) -> None:
    services.history.seed()
    views = services.state.tiles(site)
    assert [v.chair for v in views] == ["c-01", "c-02", "c-03", "c-04"]
    assert all(v.mode == "nodata" and v.age == "1 min ago" for v in views)  # a minute-old stored value is not live
    assert views[0].cuff_text.startswith("1") and "min ago" in views[0].cuff_age


def test_backfill_fills_the_sparkline(services: Services, site: str) -> None:
    points = services.history.spark_points(site, "c-01")
    assert 150 <= len(points) <= 181 and all(hr is not None for _, hr, _ in points[:-2])
    services.state.backfill(site, "c-01", points)
    hr, spo2 = services.state.spark_points(site, "c-01")
    assert len(hr) >= 150 and len(spo2) >= 150


def test_chair_view_callback_draws_trends_events_and_history(services: Services, site: str) -> None:
    client = create_app(services).server.test_client()
    response = client.post("/_dash-update-component", json=chair_trend_request(site, "c-02"))
    assert response.status_code == 200
    out = json.loads(response.data)["response"]
    traces = out["chair-trend"]["figure"]["data"]
    names = [t.get("name") for t in traces]
    assert {"HR", "SPO2", "RR", "SYS", "DIA", "MAP"} <= set(names)
    markers = [t for t in traces if t.get("mode") == "markers"]
    assert any("by nurse.kim" in text for m in markers for text in m["text"])
    history = json.dumps(out["chair-alarm-history"]["children"])
    assert "nurse.kim" in history and "upgraded" in history and "acknowledged" in history
    assert "S-c-02" in json.dumps(out["chair-session"]["children"])
    export = out["chair-export"]["href"]
    csv_response = client.get(export)
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True))))
    assert len(rows) >= 20 * 60 - 5 and rows[0]["chair"] == "c-02" and rows[0]["hr"]
    assert [r.action for r in open_store(services.config.store_url).audit(site)] == ["export_csv"]  # type: ignore[arg-type]


def test_export_refuses_bad_ranges(services: Services, site: str) -> None:
    client = create_app(services).server.test_client()
    now = now_ms()
    assert client.get(f"/export/{site}/c-01.csv?start={now}&end={now - 1}").status_code == 400
    assert client.get(f"/export/{site}/c-01.csv?start={now - 3 * 86400_000}&end={now}").status_code == 400
    assert client.get(f"/export/{site}/c-01.csv?start=x").status_code == 400
    assert client.get("/export/bad%20site/c-01.csv?start=0&end=1").status_code in (400, 404)


def test_store_down_fails_fast_and_says_why(site: str) -> None:
    state = LiveState()
    history = History(FixedSettings(store_url="influxdb://127.0.0.1:9/vitals", site=site), state)
    assert not history.check()
    links = state.links()
    assert not links.store_available and links.store_down_since is not None and links.store_reason
    with pytest.raises(HistoryUnavailable):
        history.series(site, "c-01", 0, 1)


def test_bench_hook_runs_one_overview_refresh(store_url: str, site: str) -> None:
    refresh = overview_refresh(store_url, site, 4)
    assert refresh() > 1000


def test_logins_and_failures_are_audited(store_url: str, site: str, tmp_path: Path) -> None:
    from dashboard.auth import UsersFile

    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", "audit password 1")
    services = Services(FixedSettings(mqtt_url=None, store_url=store_url, dashboard_users_file=users, site=site,
                                      data_dir=tmp_path))
    assert services.history.check()
    client = create_app(services).server.test_client()
    for password in ("wrong password", "audit password 1"):
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/login", data={"username": "nurse.kim", "password": password, "csrf": token})
    client.post("/logout", data={"csrf": client.get_cookie("_csrf_token").value})
    store = open_store(store_url)
    deadline = now_ms() + 10_000
    while now_ms() < deadline and len(store.audit(site)) < 3:
        time.sleep(0.05)
    records = store.audit(site)
    assert sorted((r.action, r.user) for r in records) == [("login", "nurse.kim"), ("login_failed", "nurse.kim"),
                                                           ("logout", "nurse.kim")]
    assert "audit password" not in json.dumps([r.detail for r in records])
