"""Alarm limits: validation, and an admin's edit published retained on MQTT (a nurse's refused)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dashboard import limits
from dashboard.app import create_app
from dashboard.auth import CSRF_COOKIE, UsersFile
from dashboard.services import Services
from tests.servers import Mosquitto, MqttCollector
from vitals.settings import FixedSettings
from vitals.topics import Topics

PASSWORD = "limits password 1"


def test_validate_accepts_rising_limits_within_bounds() -> None:
    assert limits.validate({"hr": {"low_high": 35, "high_high": 150}}) == {"hr": {"low_high": 35.0, "high_high": 150.0}}


@pytest.mark.parametrize(("value", "message"), [
    ({"hr": {"low_high": 60, "low_medium": 50}}, "rise"),
    ({"hr": {"high_high": 400}}, "outside"),
    ({"hr": {"high_high": "140"}}, "not a number"),
    ({"hr": {"high_high": float("nan")}}, "not a number"),
    ({"hr": {"high_high": True}}, "not a number"),
    ({"temp": {"high_high": 39}}, "unknown vital"),
    ({"hr": {"extreme": 1}}, "unknown limit"),
    ([], "object"),
])
def test_validate_refuses_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(limits.LimitsError, match=message):
        limits.validate(value)  # type: ignore[arg-type]


def test_payload_round_trip_and_effective_defaults() -> None:
    payload = limits.to_payload({"spo2": {"low_high": 88.0}}, "admin.lee", 1)
    parsed = limits.parse_payload(payload)
    assert parsed == {"spo2": {"low_high": 88.0}}
    merged = limits.effective(parsed)
    assert merged["spo2"] == {"low_high": 88.0, "low_medium": 90} and merged["hr"] == limits.DEFAULT_LIMITS["hr"]
    assert limits.limits_topic(Topics(), "north", "c-01") == "clinic/north/chair/c-01/limits"
    assert json.loads(payload)["rules"] == {"spo2-low-high": {"limit": 88.0}}  # the alarm engine's rule ids


def save_request(site: str, chair: str, values: dict[tuple[str, str], float]) -> dict:
    states = [{"id": {"type": "limit", "vital": v, "name": n}, "property": "value", "value": value}
              for (v, n), value in values.items()]
    return {"output": "limits-feedback.children", "outputs": {"id": "limits-feedback", "property": "children"},
            "inputs": [{"id": "limits-save", "property": "n_clicks", "value": 1}],
            "state": [states, {"id": "chair-key", "property": "data", "value": {"site": site, "chair": chair}}],
            "changedPropIds": ["limits-save.n_clicks"]}


def signed_in(app, name: str):  # type: ignore[no-untyped-def]
    client = app.server.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf": token}).status_code == 303
    return client, {"X-CSRFToken": client.get_cookie(CSRF_COOKIE).value}


@pytest.mark.integration
def test_admin_saves_limits_retained_nurse_is_refused(mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    UsersFile(users).add("admin.lee", "admin", PASSWORD)
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD)
    services = Services(FixedSettings(mqtt_url=mosquitto.url, store_url=None, dashboard_users_file=users, site=site,
                                      data_dir=tmp_path))
    app = create_app(services)
    services.start()
    collector = MqttCollector(mosquitto.url, f"clinic/{site}/chair/+/limits")
    try:
        assert services.feed is not None and _wait(lambda: services.state.links().broker_connected)
        nurse, nurse_headers = signed_in(app, "nurse.kim")
        body = save_request(site, "c-01", {("spo2", "low_high"): 88, ("spo2", "low_medium"): 92})
        answer = nurse.post("/_dash-update-component", json=body, headers=nurse_headers).get_data(as_text=True)
        assert "Only an admin" in answer

        admin, admin_headers = signed_in(app, "admin.lee")
        bad = save_request(site, "c-01", {("spo2", "low_high"): 95, ("spo2", "low_medium"): 92})
        assert "Not saved" in admin.post("/_dash-update-component", json=bad, headers=admin_headers).get_data(as_text=True)
        answer = admin.post("/_dash-update-component", json=body, headers=admin_headers).get_data(as_text=True)
        assert "Published" in answer or "Saved" in answer
        assert collector.wait_for(lambda c: c.payloads("/c-01/limits"), timeout=10)
        topic, payload, _ = collector.messages[0]
        doc = json.loads(payload)
        assert topic == f"clinic/{site}/chair/c-01/limits"
        assert doc["limits"] == {"spo2": {"low_high": 88.0, "low_medium": 92.0}} and doc["user"] == "admin.lee"
        # Retained: the dashboard's own feed reads it back and draws it.
        assert _wait(lambda: getattr(services.state.chair_state(site, "c-01"), "limits", None) is not None)
        assert limits.effective(services.state.chair_state(site, "c-01").limits)["spo2"]["low_high"] == 88.0  # type: ignore[union-attr]
    finally:
        collector.close()
        services.feed.client.publish(f"clinic/{site}/chair/c-01/limits", "", qos=1, retain=True).wait_for_publish(5)  # type: ignore[union-attr]
        services.stop()


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
