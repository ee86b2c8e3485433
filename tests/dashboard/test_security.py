"""Issue 17 in process: POST-only logout, `next`, request size, favicon, malformed callbacks, the site scope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.auth import COOKIE_NAME, CSRF_COOKIE, UsersError, UsersFile
from dashboard.guards import named_sites
from dashboard.services import Services
from tests.dashboard.scene import alarm, now_ms
from vitals.settings import FixedSettings

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
NORTH, SOUTH = "north", "south"


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.json"
    users = UsersFile(path)
    users.add("nurse.kim", "nurse", PASSWORD)
    users.add("admin.lee", "admin", PASSWORD)
    users.add("nurse.south", "nurse", PASSWORD, sites=(SOUTH,))
    return path


def make_client(users_file: Path, **config: Any):  # type: ignore[no-untyped-def]
    services = Services(FixedSettings(**{"mqtt_url": None, "store_url": None, "dashboard_users_file": users_file,
                                         "data_dir": users_file.parent, **config}))
    now = now_ms()
    for site in (NORTH, SOUTH):  # both sites in the live cache: whatever leaks would show
        services.state.apply_payload(site, "c-01", json.dumps({"ts": now, "hr": 71, "spo2": 97}).encode())
        services.state.apply_alarms(site, "c-01", json.dumps(
            [alarm(site, "c-01", "hr", "high", f"HR high at {site}", now - 5000, 150, 140)]).encode())
    client = create_app(services).server.test_client()
    client.services = services
    return client


def login(client, name: str = "nurse.kim", next_path: str = "/"):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    token = page.get_data(as_text=True).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client.post("/login", data={"username": name, "password": PASSWORD, "csrf": token, "next": next_path})


def callback(client, body: Any, raw: bytes | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-CSRFToken": client.get_cookie(CSRF_COOKIE).value}
    return client.post("/_dash-update-component", data=raw if raw is not None else json.dumps(body),
                       headers=headers, content_type="application/json")


def crafted(spec: dict[str, str], site: str) -> Any:
    """Return a callback input or state naming a chair of ``site`` wherever one can be named."""
    ident, prop = spec["id"], spec["property"]
    if ident.startswith("{"):  # a pattern-matching id: one matching component, of the other site
        pattern = json.loads(ident)
        concrete = {key: (value if not isinstance(value, list) else {"site": site, "chair": "c-01", "vital": "hr",
                                                                        "name": "low_high"}.get(key, "a-1"))
                    for key, value in pattern.items()}
        return [{"id": concrete, "property": prop, "value": 1}]
    value: Any = 1
    if ident == "chair-key":
        value = {"site": site, "chair": "c-01"}
    elif (ident, prop) == ("url", "pathname"):
        value = f"/chair/{site}/c-01"
    elif (ident, prop) == ("url", "search"):
        value = ""
    return {"id": ident, "property": prop, "value": value}


def changed(item: Any) -> str:
    """Return the changedPropIds entry of an input (a pattern-matching one is a list of matches)."""
    first = item[0] if isinstance(item, list) else item
    ident = first["id"] if isinstance(first["id"], str) else json.dumps(first["id"], sort_keys=True, separators=(",", ":"))
    return f"{ident}.{first['property']}"


def bodies(client, site: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Return a request body for every server-side callback of the app, naming ``site`` wherever possible."""
    out = []
    for cb in client.get("/_dash-dependencies").get_json():
        if cb.get("clientside_function"):
            continue
        names = cb["output"][2:-2].split("...") if cb["output"].startswith("..") else [cb["output"]]
        outputs = [{"id": n.rsplit(".", 1)[0], "property": n.rsplit(".", 1)[1]} for n in names]
        inputs = [crafted(i, site) for i in cb["inputs"]]
        out.append({"output": cb["output"], "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": inputs,
                    "state": [crafted(s, site) for s in cb["state"]],
                    "changedPropIds": [changed(inputs[0])]})
    return out


@pytest.mark.parametrize("config, user", [({"site": SOUTH}, "admin.lee"), ({}, "nurse.south")],
                         ids=["dashboard-site-south", "user-limited-to-south"])
def test_a_south_dashboard_serves_nothing_of_north(users_file: Path, config: dict[str, Any], user: str) -> None:
    client = make_client(users_file, **config)
    assert login(client, user).status_code == 303
    for path in ("/chair/north/c-01", "/chair/north/c-01/", "/export/north/c-01.csv",
                 "/export/north/c-01.csv?start=0&end=1000", "/report/north/c-01/S-1.pdf", "/report/north/c-01/S-1.html"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"c-01" not in response.data and b"<html" not in response.data.lower()
    assert client.get("/chair/south/c-01").status_code == 200
    north = bodies(client, NORTH)
    assert len(north) == 17  # every server-side callback of the app
    naming = [b for b in north if NORTH in named_sites(b)]
    assert {b["output"] for b in naming} >= {"page.children", "chair-live.children",
                                             "..alarms-feedback.children...ack-reason.value..",
                                             "..limits-feedback.children...limits-whatif-for.data..",
                                             "rec-feedback.children", "rec-items.children", "rec-status.children",
                                             "..rec-log.children...rec-report-links.children...rec-log-key.data.."}
    for body in north:
        response = callback(client, body)
        if body in naming:
            assert response.status_code == 403, body["output"]
        else:  # the ticks of the shell, overview and alarm panel, the report range, the dose sum: no word of north
            assert response.status_code == 200, body["output"]
            assert "north" not in response.get_data(as_text=True), body["output"]
            assert ("south" in response.get_data(as_text=True) or body["output"].startswith("..banners")
                    or body["output"] == "rec-total.children"), body["output"]
    # Only the ticks of the shell, overview and alarm panel, the alarm report's range and the dose sum name no site.
    assert len(naming) == len(north) - 5, [b["output"] for b in north if b not in naming]
    for body in bodies(client, SOUTH):  # the same callbacks for the dashboard's own site answer
        assert callback(client, body).status_code in (200, 204), body["output"]
    shell = next(b for b in north if b["output"].startswith("..banners"))
    assert json.loads(callback(client, shell).data)["response"]["nav-alarm-count"]["children"] == "1"


def test_the_alarm_report_counts_only_the_users_sites(users_file: Path, tmp_path: Path) -> None:
    from vitals.records import AlarmEvent
    from vitals.store.sqlite import SQLiteStore

    db = tmp_path / "vitals.db"
    store = SQLiteStore(db)
    now = now_ms()
    store.write_alarm_events([AlarmEvent(f"{site}.c-0{i}.hr.high.{now - i}", site, f"c-0{i}", "hr", "physiological",
                                         "medium", "raised", 130.0, 120.0, now - 60_000 - i, rule="hr-high-medium")
                              for site, n in ((NORTH, 3), (SOUTH, 2)) for i in range(n)])
    store.close()
    client = make_client(users_file, store_url=f"sqlite:///{db}")
    assert client.services.history.check()  # what the history thread does first
    assert login(client, "nurse.south").status_code == 303
    body = {"output": "report-body.children", "outputs": {"id": "report-body", "property": "children"},
            "inputs": [{"id": "report-range", "property": "value", "value": "24h"}], "changedPropIds": ["report-range.value"]}
    text = callback(client, body).get_data(as_text=True)
    assert "north" not in text and "south" in text
    assert '"children":"2","data-figure":"Alarms"' in text.replace(" ", "")


def find(node: Any, kind: str) -> Any:
    """Return the first component of a type in a Dash layout."""
    if isinstance(node, dict):
        if node.get("type") == kind:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = find(item, kind)
            if found is not None:
                return found
    return None


def test_a_user_limited_to_other_sites_is_told_so_at_sign_in(users_file: Path) -> None:
    client = make_client(users_file, site=NORTH)
    response = login(client, "nurse.south")
    assert response.status_code == 403 and "may not see site north" in response.get_data(as_text=True)
    assert client.get_cookie(COOKIE_NAME) is None


def test_logout_only_by_post_with_the_sessions_token(users_file: Path) -> None:
    client = make_client(users_file)
    login(client)
    sid = client.get_cookie(COOKIE_NAME).value
    assert client.get("/logout").status_code == 405
    for data in ({}, {"csrf": ""}, {"csrf": "guessed"}):
        refused = client.post("/logout", data=data)
        assert refused.status_code == 403
        assert not refused.headers.getlist("Set-Cookie")  # the cookies stay: nothing to drop
    assert client.get("/_dash-layout").status_code == 200 and client.get_cookie(COOKIE_NAME).value == sid
    form = find(client.get("/_dash-layout").get_json(), "Form")
    button = form["props"]["children"]["props"]
    assert (form["props"]["action"], form["props"]["method"]) == ("/logout", "post")
    assert (button["type"], button["name"], button["value"]) == ("submit", "csrf", client.get_cookie(CSRF_COOKIE).value)
    done = client.post("/logout", data={"csrf": client.get_cookie(CSRF_COOKIE).value})
    assert done.status_code == 303 and done.headers["Location"] == "/login"
    client.set_cookie(COOKIE_NAME, sid)
    assert client.get("/_dash-layout").status_code == 401


@pytest.mark.parametrize("target", ["/\t/evil.example", "/%09/evil.example", "/\n", "/%0A", "/\r", "/%0D",
                                    "//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example/",
                                    "https:evil.example", "/%2F/evil.example"])
def test_next_lands_on_the_overview_unless_a_local_path(users_file: Path, target: str) -> None:
    client = make_client(users_file)
    form = client.get("/login", query_string={"next": target})
    assert form.status_code == 200 and 'name="next" value="/"' in form.get_data(as_text=True)
    response = login(client, next_path=target)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_a_local_next_is_kept(users_file: Path) -> None:
    client = make_client(users_file)
    assert login(client, next_path="/chair/north/c-01").headers["Location"] == "/chair/north/c-01"


def test_request_bodies_over_the_limit_get_413(users_file: Path) -> None:
    client = make_client(users_file)
    login(client)
    big = b'{"output": "page.children", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert callback(client, None, raw=big).status_code == 413
    small = make_client(users_file, dashboard_max_request_kb=4)
    page = small.get("/login")
    token = page.get_data(as_text=True).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = small.post("/login", data={"username": "nurse.kim", "password": "x" * 8000, "csrf": token})
    assert response.status_code == 413


def test_favicon_is_the_shipped_file_never_the_dash_page(users_file: Path) -> None:
    response = make_client(users_file).get("/favicon.ico")  # no session needed: it holds no patient data
    assert response.status_code == 200 and response.mimetype == "image/x-icon"
    assert response.data == (Path(__file__).parents[2] / "dashboard" / "assets" / "favicon.ico").read_bytes()
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file, not Dash's catch-all page


def test_favicon_is_404_when_no_file_is_shipped(users_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.app

    monkeypatch.setattr(dashboard.app, "ASSETS", tmp_path)  # an assets folder without the icon
    response = make_client(users_file).get("/favicon.ico")
    assert response.status_code == 404
    assert b"dash" not in response.data.lower() and b"<html" not in response.data.lower()


@pytest.mark.parametrize("raw", [b"{", b"[]", b"{}", b'"x"', b'{"output": 1, "inputs": []}',
                                 b'{"output": "nowhere.children", "outputs": {"id": "nowhere", "property": "children"},'
                                 b' "inputs": [], "changedPropIds": []}',
                                 b'{"output": "chair-live.children", "outputs": {"id": "chair-live", "property": '
                                 b'"children"}, "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}], '
                                 b'"state": [{"id": "chair-key", "property": "data", "value": "x"}], '
                                 b'"changedPropIds": ["tick.n_intervals"]}'])
def test_malformed_callbacks_get_400(users_file: Path, raw: bytes) -> None:
    client = make_client(users_file)
    login(client)
    assert callback(client, None, raw=raw).status_code == 400


def test_users_may_be_limited_to_sites(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "infusion_monitor", "user", "add", "nurse.kim", "--role", "nurse",
                          "--sites", "south,east", "--users-file", str(path)], input=PASSWORD + "\n",
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(path.read_text())["users"]["nurse.kim"]["sites"] == ["south", "east"]
    assert UsersFile(path).get("nurse.kim").sites == ("south", "east")  # type: ignore[union-attr]
    with pytest.raises(UsersError, match="site id"):
        UsersFile(path).add("lee", "nurse", PASSWORD, sites=("no/slash",))
    doc = json.loads(path.read_text())
    doc["users"]["nurse.kim"]["sites"] = "south"  # a hand edit gone wrong: that user is refused, nobody else
    doc["users"]["lee"] = {"role": "nurse", "hash": doc["users"]["nurse.kim"]["hash"]}
    path.write_text(json.dumps(doc))
    assert UsersFile(path).get("nurse.kim") is None and UsersFile(path).get("lee") is not None
