"""Alarm limits: validation, and an admin's edit published retained on MQTT (a nurse's refused)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dashboard.app import create_app
from dashboard.auth import CSRF_COOKIE, UsersFile
from dashboard.services import Services
from dashboard.state import pending_edit
from tests.dashboard.scene import chair_trend_request
from tests.servers import Mosquitto, MqttCollector, wait_until
from vitals.limits import AdminEdit, EffectiveLimits, LimitsError, validate
from vitals.settings import FixedSettings
from vitals.topics import Topics

PASSWORD = "limits password 1"


def test_validate_accepts_rising_limits_within_bounds() -> None:
    assert validate({"hr": {"low_high": 35, "high_high": 150}}) == {"hr": {"low_high": 35.0, "high_high": 150.0}}


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
    with pytest.raises(LimitsError, match=message):
        validate(value)  # type: ignore[arg-type]


def test_admin_edit_round_trip_names_the_engines_rules() -> None:
    edit = AdminEdit({"spo2": {"low_high": 88.0}}, "admin.lee", 1)
    assert AdminEdit.from_payload(edit.to_payload()) == edit
    assert json.loads(edit.to_payload())["rules"] == {"spo2-low-high": {"limit": 88.0}}  # the alarm engine's rule ids
    assert Topics().limits("north", "c-01") == "clinic/north/chair/c-01/limits"
    assert Topics().effective_limits("north", "c-01") == "clinic/north/chair/c-01/effective_limits"
    with pytest.raises(LimitsError, match="not JSON"):
        AdminEdit.from_payload(b"{")


def effective(admin: dict | None = None, **limits: dict[str, float]) -> EffectiveLimits:
    """Return effective limits of north/c-01."""
    return EffectiveLimits("north", "c-01", 5, limits, {}, None, admin)


def test_effective_limits_round_trip_and_refusals() -> None:
    doc = effective({"user": "admin.lee", "ts": 4, "status": "applied"}, spo2={"low_high": 85.0, "low_medium": 88.0})
    assert EffectiveLimits.from_payload("north", "c-01", doc.to_payload()) == doc
    # What the engine enforces is drawn as it is, even when a rules file made it odd (not rising).
    odd = effective(spo2={"low_high": 91.0, "low_medium": 88.0})
    assert EffectiveLimits.from_payload("north", "c-01", odd.to_payload()).limits["spo2"]["low_high"] == 91.0
    for payload, message in ((doc.to_payload(), "not the topic's north/c-02"),
                             (b'{"site": "north", "chair": "c-02", "limits": {}}', "ts is missing"),
                             (b'{"site": "north", "chair": "c-02", "ts": 1, "limits": {"hr": {"low_high": "x"}}}',
                              "not a number"),
                             (b"[]", "JSON object")):
        with pytest.raises(LimitsError, match=message):
            EffectiveLimits.from_payload("north", "c-02", payload)


def test_an_edit_is_pending_until_the_engine_publishes_it_taken() -> None:
    edit = AdminEdit({"spo2": {"low_medium": 88.0}}, "admin.lee", 7)
    assert pending_edit(edit, None) is edit
    assert pending_edit(edit, effective(spo2={"low_medium": 90.0})) is edit
    assert pending_edit(edit, effective({"user": "admin.lee", "ts": 6, "status": "applied"})) is edit  # an older one
    assert pending_edit(edit, effective({"user": "admin.lee", "ts": 7, "status": "applied"})) is None
    assert pending_edit(edit, effective({"user": "admin.lee", "ts": 7, "status": "refused"})) is None
    assert pending_edit(None, effective()) is None
    undated = AdminEdit({"spo2": {"low_medium": 88.0}})
    assert pending_edit(undated, effective()) is undated
    assert pending_edit(undated, effective({"user": None, "ts": None, "status": "applied"})) is None


def test_a_saved_form_edits_only_what_changed_and_keeps_the_earlier_admin_values() -> None:
    from dashboard.pages.chair import admin_layer

    enforced = EffectiveLimits("north", "c-01", 5, {"spo2": {"low_high": 85.0, "low_medium": 88.0},
                                                    "hr": {"low_high": 35.0, "high_high": 140.0}},
                               {"spo2-low-medium": {"source": "file"}, "hr-low-high": {"source": "admin"}})
    form = {"spo2": {"low_high": 85.0, "low_medium": 87.0}, "hr": {"low_high": 35.0, "high_high": 140.0}}
    # The file's 88 becomes the admin's 87; the admin's earlier 35 stays theirs; the defaults stay defaults.
    assert admin_layer(form, enforced) == {"spo2": {"low_medium": 87.0}, "hr": {"low_high": 35.0}}
    assert admin_layer(form, None) == form  # nothing published: the whole form is the edit


def test_unreadable_effective_limits_are_dropped_and_said_never_kept() -> None:
    from dashboard.live import LiveState
    from dashboard.pages.chair import limits_note

    state = LiveState()
    state.apply_effective_limits("north", "c-01", effective(spo2={"low_medium": 88.0}).to_payload())
    assert state.chair_state("north", "c-01").effective_limits.limits == {"spo2": {"low_medium": 88.0}}  # type: ignore[union-attr]
    state.apply_effective_limits("north", "c-01", b'{"site": "north", "chair": "c-01", "ts": 6, "limits": []}')
    chair = state.chair_state("north", "c-01")
    assert chair is not None and chair.effective_limits is None and "unreadable" in (chair.limits_error or "")
    note = json.dumps([part.to_plotly_json() for part in limits_note(chair)], default=str)
    assert "not yet published by the alarm engine" in note and "unreadable" in note


def save_request(site: str, chair: str, values: dict[tuple[str, str], float], seen: str | None = None) -> dict:
    """Return the save button's callback body; ``seen`` is the edit whose what-if the admin was shown."""
    states = [{"id": {"type": "limit", "vital": v, "name": n}, "property": "value", "value": value}
              for (v, n), value in values.items()]
    return {"output": "..limits-feedback.children...limits-whatif-for.data..",
            "outputs": [{"id": "limits-feedback", "property": "children"}, {"id": "limits-whatif-for", "property": "data"}],
            "inputs": [{"id": "limits-save", "property": "n_clicks", "value": 1}],
            "state": [states, {"id": "chair-key", "property": "data", "value": {"site": site, "chair": chair}},
                      {"id": "limits-whatif-for", "property": "data", "value": seen}],
            "changedPropIds": ["limits-save.n_clicks"]}


def apply_edit(client, headers: dict, site: str, chair: str, values: dict[tuple[str, str], float]) -> str:  # type: ignore[no-untyped-def]
    """Click Save twice, as an admin does: the first shows the what-if, the second applies; return the answer."""
    first = client.post("/_dash-update-component", json=save_request(site, chair, values), headers=headers).get_json()
    seen = first["response"]["limits-whatif-for"]["data"]
    body = save_request(site, chair, values, seen)
    return client.post("/_dash-update-component", json=body, headers=headers).get_data(as_text=True)


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
        assert services.feed is not None and wait_until(lambda: services.state.links().broker_connected)
        nurse, nurse_headers = signed_in(app, "nurse.kim")
        body = save_request(site, "c-01", {("spo2", "low_high"): 88, ("spo2", "low_medium"): 92})
        answer = nurse.post("/_dash-update-component", json=body, headers=nurse_headers).get_data(as_text=True)
        assert "Only an admin" in answer

        admin, admin_headers = signed_in(app, "admin.lee")
        bad = save_request(site, "c-01", {("spo2", "low_high"): 95, ("spo2", "low_medium"): 92})
        assert "Not saved" in admin.post("/_dash-update-component", json=bad, headers=admin_headers).get_data(as_text=True)
        # First click: the what-if before anything is applied (no ingest here: said at once, never blocking).
        first = admin.post("/_dash-update-component", json=body, headers=admin_headers).get_json()["response"]
        assert "What-if unavailable: no ingest is answering" in json.dumps(first["limits-feedback"])
        assert not collector.wait_for(lambda c: c.payloads("/c-01/limits"), timeout=0.5)  # nothing applied yet
        seen = first["limits-whatif-for"]["data"]
        body = save_request(site, "c-01", {("spo2", "low_high"): 88, ("spo2", "low_medium"): 92}, seen)
        answer = admin.post("/_dash-update-component", json=body, headers=admin_headers).get_data(as_text=True)
        assert "Published" in answer or "Saved" in answer
        assert collector.wait_for(lambda c: c.payloads("/c-01/limits"), timeout=10)
        topic, payload, _ = collector.messages[0]
        doc = json.loads(payload)
        assert topic == f"clinic/{site}/chair/c-01/limits"
        assert doc["limits"] == {"spo2": {"low_high": 88.0, "low_medium": 92.0}} and doc["user"] == "admin.lee"
        # Retained: the dashboard's own feed reads it back as a pending edit; with no engine, nothing is drawn.
        assert wait_until(lambda: getattr(services.state.chair_state(site, "c-01"), "limits_edit", None) is not None)
        state = services.state.chair_state(site, "c-01")
        assert state is not None and state.effective_limits is None
        assert pending_edit(state.limits_edit, None) == AdminEdit({"spo2": {"low_high": 88.0, "low_medium": 92.0}},
                                                                  "admin.lee", doc["ts"])
    finally:
        collector.close()
        services.feed.client.publish(f"clinic/{site}/chair/c-01/limits", "", qos=1, retain=True).wait_for_publish(5)  # type: ignore[union-attr]
        services.stop()


RULES_88 = "[rules.spo2-low-medium]\nlimit = 88\n"

def chair_view(client, headers: dict, site: str, chair: str) -> tuple[list[float], str]:  # type: ignore[no-untyped-def]
    """Ask the chair view's trend callback, as the page does; return the SpO2 panel's limit lines and the note."""
    answer = client.post("/_dash-update-component", json=chair_trend_request(site, chair), headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    response = answer.get_json()["response"]
    figure = response["chair-trend"]["figure"]
    spo2 = sorted(s["y0"] for s in figure["layout"].get("shapes", []) if s.get("yref") == "y2" and s["y0"] == s["y1"])
    return spo2, json.dumps(response["chair-limits-note"]["children"])


@pytest.mark.integration
def test_an_admin_edit_is_drawn_only_once_the_engine_has_applied_and_published_it(
        mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    from tests.servers import IngestProcess, mosquitto_pub_lines

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_88)
    users = tmp_path / "users.json"
    UsersFile(users).add("admin.lee", "admin", PASSWORD)
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--site", site,
                           env={"INFUSION_ALARM_RULES_FILE": str(rules)})
    services = Services(FixedSettings(mqtt_url=mosquitto.url, store_url=store_url, dashboard_users_file=users, site=site,
                                      data_dir=tmp_path))
    app = create_app(services)
    services.start()
    collector = MqttCollector(mosquitto.url, Topics().chair_filter("effective_limits", site))
    topic = Topics().effective_limits(site, "c-01")
    try:
        admin, headers = signed_in(app, "admin.lee")
        lines, note = chair_view(admin, headers, site, "c-01")
        assert lines == [] and "not yet published by the alarm engine" in note  # nothing known: nothing drawn

        ingest.start()
        time.sleep(0.5)  # the ingest subscribes right after connecting
        mosquitto_pub_lines(mosquitto.port, Topics().vitals(site, "c-01"),
                            [json.dumps({"ts": int(time.time() * 1000), "hr": 72, "spo2": 97})])
        assert wait_until(lambda: getattr(services.state.chair_state(site, "c-01"), "effective_limits", None) is not None)
        assert chair_view(admin, headers, site, "c-01")[0] == [85.0, 88.0]  # the rules file's 88, never the shipped 90

        ingest.stop()  # the engine is away: an edit now cannot be applied
        assert "Saved" in apply_edit(admin, headers, site, "c-01", {("spo2", "low_high"): 84, ("spo2", "low_medium"): 87})
        assert wait_until(lambda: getattr(services.state.chair_state(site, "c-01"), "limits_edit", None) is not None)
        lines, note = chair_view(admin, headers, site, "c-01")
        assert lines == [85.0, 88.0] and "Pending" in note and "admin.lee" in note

        ingest.start()  # restored, it publishes the chair's limits, then applies the retained edit and publishes that
        edit = services.state.chair_state(site, "c-01").limits_edit  # type: ignore[union-attr]
        assert wait_until(lambda: services.state.chair_state(site, "c-01").effective_limits.admin_ts == edit.ts)  # type: ignore[union-attr]
        lines, note = chair_view(admin, headers, site, "c-01")
        assert lines == [84.0, 87.0] and "Pending" not in note
        published = EffectiveLimits.from_payload(site, "c-01", collector.payloads(topic)[-1])
        assert published.source("spo2", "low_medium") == "admin" and published.admin["user"] == "admin.lee"  # type: ignore[index]
        late = MqttCollector(mosquitto.url, topic)  # retained: a screen that connects later gets them at once
        try:
            assert late.wait_for(lambda c: c.messages, timeout=10) and late.messages[-1][2] is True
            assert EffectiveLimits.from_payload(site, "c-01", late.messages[-1][1]) == published
        finally:
            late.close()
    finally:
        collector.close()
        ingest.stop()
        services.feed.client.publish(Topics().limits(site, "c-01"), "", qos=1, retain=True).wait_for_publish(5)  # type: ignore[union-attr]
        services.stop()
