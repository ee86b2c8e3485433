"""The login gate: every page and callback refuses an unauthenticated request, sessions end, logins are throttled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.app import create_app
from dashboard.auth import COOKIE_NAME, CSRF_COOKIE, UsersError, UsersFile, safe_next
from dashboard.services import Services, check_settings
from dashboard.throttle import PAIR_FREE_FAILURES
from vitals.settings import FixedSettings

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    users = UsersFile(path)
    users.add("nurse.kim", "nurse", PASSWORD)
    users.add("admin.lee", "admin", PASSWORD)
    return path


@pytest.fixture
def services(users_file: Path) -> Services:
    return Services(FixedSettings(mqtt_url=None, store_url=None, dashboard_users_file=users_file,
                                  data_dir=users_file.parent))


@pytest.fixture
def client(services: Services):  # type: ignore[no-untyped-def]
    app = create_app(services)
    return app.server.test_client()


def login(client, name: str = "nurse.kim", password: str = PASSWORD):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    token = page.get_data(as_text=True).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client.post("/login", data={"username": name, "password": password, "csrf": token, "next": "/alarms"})


def sample_path(rule) -> str:  # type: ignore[no-untyped-def]
    path = rule.rule
    for arg in rule.arguments:
        path = path.replace(f"<path:{arg}>", "x/y").replace(f"<{arg}>", "north" if arg == "site" else "c-01")
        path = path.replace(f"<string:{arg}>", "x")
    return path


def test_every_route_refuses_without_a_session(client) -> None:  # type: ignore[no-untyped-def]
    public_seen = set()
    checked = 0
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = sample_path(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={} if method == "POST" else None)
            checked += 1
            if path in ("/login", "/logout", "/favicon.ico") or path.startswith(("/assets/", "/_dash-component-suites/",
                                                                               "/_favicon")):
                public_seen.add(path)
                continue
            if path == "/healthz":  # public on purpose: link state only, checked below
                assert set(response.get_json()) == {"healthy", "mqtt_connected", "store_ok"}
                continue
            body = response.get_data(as_text=True)
            if method == "GET" and not path.startswith(("/_dash-", "/_reload", "/export", "/_push")):
                assert response.status_code == 302, (method, path, response.status_code)
                assert response.headers["Location"].startswith("/login?next=")
            else:
                assert response.status_code == 401, (method, path, response.status_code)
                assert body.strip() == '{"error":"login required"}'
    assert checked > 8
    for path in ("/_dash-layout", "/_dash-dependencies", "/_dash-update-component", "/", "/alarms",
                 "/chair/north/c-01", "/export/north/c-01.csv"):
        response = client.post(path, json={}) if path == "/_dash-update-component" else client.get(path)
        assert response.status_code in (302, 401), path


def test_login_then_pages_and_callbacks_answer(client) -> None:  # type: ignore[no-untyped-def]
    response = login(client)
    assert response.status_code == 303 and response.headers["Location"] == "/alarms"
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and "nurse.kim (nurse)" in layout.get_data(as_text=True)
    assert client.get("/_dash-dependencies").status_code == 200


def test_callbacks_need_the_csrf_header(client) -> None:  # type: ignore[no-untyped-def]
    login(client)
    body = {"output": "page.children", "outputs": {"id": "page", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
            "state": [{"id": "url", "property": "search", "value": ""}], "changedPropIds": ["url.pathname"]}
    assert client.post("/_dash-update-component", json=body).status_code == 403
    token = client.get_cookie(CSRF_COOKIE).value
    response = client.post("/_dash-update-component", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 200 and "overview" in response.get_data(as_text=True)


def test_wrong_password_is_refused_and_slowed_down(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(PAIR_FREE_FAILURES):
        assert login(client, password="wrong password").status_code == 401
    slowed = login(client)  # even the right password waits out the delay from this address
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert "try again in" in slowed.get_data(as_text=True)
    assert client.get_cookie(COOKIE_NAME) is None
    assert login(client, "admin.lee").status_code == 303  # another user from the same address is not slowed
    elsewhere = client.application.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert login(elsewhere).status_code == 303  # nor the same user from another address


def test_unknown_user_is_refused_like_a_wrong_password(client) -> None:  # type: ignore[no-untyped-def]
    response = login(client, name="nobody")
    assert response.status_code == 401 and "Wrong user or password" in response.get_data(as_text=True)


def test_login_form_needs_its_csrf_token(client) -> None:  # type: ignore[no-untyped-def]
    client.get("/login")
    response = client.post("/login", data={"username": "nurse.kim", "password": PASSWORD, "csrf": "forged"})
    assert response.status_code == 400


def test_cookie_flags_over_https(services: Services) -> None:
    client = create_app(services).server.test_client()
    page = client.get("/login", base_url="https://station.local")
    token = page.get_data(as_text=True).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = client.post("/login", base_url="https://station.local",
                           data={"username": "nurse.kim", "password": PASSWORD, "csrf": token})
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE_NAME + "=")]
    assert len(cookies) == 1
    flags = cookies[0].lower()
    assert "httponly" in flags and "samesite=strict" in flags and "secure" in flags and "max-age=" in flags
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]


def test_security_headers_on_every_response(client) -> None:  # type: ignore[no-untyped-def]
    for response in (client.get("/login"), client.get("/"), client.get("/_dash-layout")):
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-eval'" not in csp
        assert "script-src 'self' 'sha256-" in csp
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"


def test_session_expires(client, services: Services) -> None:  # type: ignore[no-untyped-def]
    login(client)
    assert client.get("/_dash-layout").status_code == 200
    real = services.gate.sessions.clock
    services.gate.sessions.clock = lambda: real() + services.gate.sessions.lifetime_s + 1
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/").status_code == 302


def test_logout_ends_the_session_server_side(client) -> None:  # type: ignore[no-untyped-def]
    login(client)
    sid = client.get_cookie(COOKIE_NAME).value
    assert client.post("/logout", data={"csrf": client.get_cookie(CSRF_COOKIE).value}).status_code == 303
    client.set_cookie(COOKIE_NAME, sid)  # a copied cookie is worthless after logout
    assert client.get("/_dash-layout").status_code == 401


def test_removed_user_is_logged_out(client, users_file: Path) -> None:  # type: ignore[no-untyped-def]
    login(client)
    assert client.get("/_dash-layout").status_code == 200
    UsersFile(users_file).remove("nurse.kim")
    assert client.get("/_dash-layout").status_code == 401


def test_no_login_only_on_loopback_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_settings(FixedSettings(dashboard_host="0.0.0.0", dashboard_no_login=True))
    with pytest.raises(ValueError, match="users file is needed"):
        check_settings(FixedSettings(dashboard_host="127.0.0.1", dashboard_users_file=None))
    with pytest.raises(ValueError, match="does not exist; add a user"):
        check_settings(FixedSettings(dashboard_users_file=tmp_path / "none.json"))
    check_settings(FixedSettings(dashboard_host="::1", dashboard_no_login=True))
    services = Services(FixedSettings(mqtt_url=None, store_url=None, dashboard_no_login=True))
    client = create_app(services).server.test_client()
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert "LOGIN DISABLED" in layout


def test_users_file_hashes_and_rules(tmp_path: Path) -> None:
    users = UsersFile(tmp_path / "u.json")
    users.add("kim", "nurse", PASSWORD)
    text = (tmp_path / "u.json").read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert oct((tmp_path / "u.json").stat().st_mode & 0o777) == "0o600"
    assert users.verify("kim", PASSWORD) is not None and users.verify("kim", "nope") is None
    with pytest.raises(UsersError, match="exists"):
        users.add("kim", "admin", PASSWORD)
    with pytest.raises(UsersError, match="role"):
        users.add("lee", "root", PASSWORD)
    with pytest.raises(UsersError, match="at least"):
        users.add("lee", "nurse", "short")
    with pytest.raises(UsersError, match="user name"):
        users.add("kim/../x", "nurse", PASSWORD)


def test_safe_next_keeps_redirects_local() -> None:
    assert safe_next("/chair/a/b") == "/chair/a/b"
    assert safe_next("/chair/a/b?range=4h") == "/chair/a/b?range=4h"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", None, "", "/\t/evil.example", "/%09/evil.example",
                "/%0A", "/%0d/x", "/x\ny", "/%2F%2Fevil.example", "/%252F%252Fevil.example", "/%5Cevil", "https:/x",
                "javascript:alert(1)", "/ok/" + "a" * 3000, "/caf\u00e9"):
        assert safe_next(bad) == "/", bad


def test_user_add_command_reads_the_password_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "infusion_monitor", "user", "add", "nurse.kim", "--role", "nurse",
                          "--users-file", str(path)], input=PASSWORD + "\n", capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert UsersFile(path).verify("nurse.kim", PASSWORD).role == "nurse"  # type: ignore[union-attr]
    again = subprocess.run([sys.executable, "-m", "infusion_monitor", "user", "add", "nurse.kim", "--role", "admin",
                            "--users-file", str(path)], input=PASSWORD + "\n", capture_output=True, text=True, env=env,
                           cwd=REPO, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr
    assert json.loads(path.read_text())["users"]["nurse.kim"]["role"] == "nurse"


def test_healthz_needs_no_login_and_tells_only_link_state(services: Services, client) -> None:  # type: ignore[no-untyped-def]
    services.state.set_broker(False)
    down = client.get("/healthz")
    assert down.status_code == 503 and down.get_json()["healthy"] is False
    services.state.set_broker(True)
    assert client.get("/healthz").status_code == 200
