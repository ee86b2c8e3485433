"""The dashboard as deployed: `infusion-monitor dashboard` processes behind a real browser, a real broker.

- A nurse's login survives a dashboard restart (the open page keeps updating, a reload stays signed in).
- Two dashboard processes sharing the sessions file (in INFUSION_DATA_DIR) and the users file accept the same
  session cookie, so replicas need no sticky sessions; a logout on one, or removing the user, is refused by both.
- The production server answers (no Werkzeug Server header, no version) and closes idle connections.
- The sessions file keeps only hashes of session ids.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dashboard.auth import COOKIE_NAME, UsersFile
from dashboard.sessions import SESSIONS_FILE_NAME, Sessions, session_key
from tests.dashboard.scene import TOPICS, now_ms
from tests.dashboard.test_browser import ARGS, CHROMIUM, PASSWORD, publisher, sign_in  # noqa: F401 - fixture
from tests.servers import Mosquitto, Server, free_port, wait_port
from vitals.settings import FixedSettings

pytestmark = [pytest.mark.integration]


class DashboardProcess(Server):
    """``infusion-monitor dashboard`` as a subprocess on a fixed port (restartable on the same port)."""

    name = "dashboard"

    def __init__(self, workdir: Path, port: int, *args: str) -> None:
        super().__init__(workdir)
        self.port = port
        self.args = args
        self.url = f"http://127.0.0.1:{port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "infusion_monitor", "dashboard", "--port", str(self.port), *self.args]

    def wait_ready(self) -> None:
        wait_port(self.port, 30, self.proc)


@pytest.fixture
def replicas(mosquitto: Mosquitto, site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Two dashboards on different ports with the same data directory (so the same sessions file) and users file."""
    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD)
    monkeypatch.setenv("INFUSION_DATA_DIR", str(tmp_path / "data"))  # as compose gives the dashboard /data
    args = ("--mqtt-url", mosquitto.url, "--site", site, "--users-file", str(users),
            "--store-url", f"sqlite:///{tmp_path / 'vitals.db'}")
    pair = [DashboardProcess(tmp_path / name, free_port(), *args) for name in ("a", "b")]
    try:
        for dashboard in pair:
            dashboard.start()
        yield pair
    finally:
        for dashboard in pair:
            dashboard.stop()


def status_with_cookie(base: str, path: str, sid: str) -> int:
    """Return the status of a request carrying only the given session cookie (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    request = urllib.request.Request(base + path, headers={"Cookie": f"{COOKIE_NAME}={sid}"})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.browser
def test_login_survives_restart_and_works_on_every_replica(replicas, publisher, site: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    a, b = replicas
    hr = f"#tile-{site}--c-01 .num-hr .num-value"

    def show(page, value: int) -> None:  # type: ignore[no-untyped-def]
        # Published again every 2 s: a dashboard process that has just (re)started may not have subscribed yet,
        # and a live reading is not retained.
        for _ in range(10):
            publisher.publish(TOPICS.vitals(site, "c-01"), json.dumps({"ts": now_ms(), "hr": value, "spo2": 97}), qos=1)
            try:
                page.wait_for_function("([sel, v]) => document.querySelector(sel)?.innerText === v",
                                       arg=[hr, str(value)], timeout=2_000)
                return
            except PlaywrightTimeout:
                continue
        raise AssertionError(f"the tile never showed HR {value}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = sign_in(browser, a)  # a dashboard process: sign_in needs only its url
            context = page.context
            show(page, 101)
            sid = next(c["value"] for c in context.cookies() if c["name"] == COOKIE_NAME)

            # Restart the dashboard the nurse is on: the open page keeps updating, a reload stays signed in.
            a.restart()
            show(page, 117)
            page.reload()
            page.wait_for_selector("#overview", timeout=20_000)
            assert "/login" not in page.url
            show(page, 123)

            # The other replica accepts the same cookie (cookies are per host, not per port): no sign-in there.
            other = context.new_page()
            other.goto(b.url + "/")
            other.wait_for_selector("#overview", timeout=20_000)
            assert "/login" not in other.url
            show(other, 131)
            assert status_with_cookie(b.url, "/_dash-layout", sid) == 200

            # Sign out on B: the session is refused by both, also when its cookie is replayed.
            other.click("#logout")
            other.wait_for_url("**/login**", timeout=20_000)
            for dashboard in (a, b):
                assert status_with_cookie(dashboard.url, "/_dash-layout", sid) == 401
                assert status_with_cookie(dashboard.url, "/", sid) == 302
            page.reload()
            page.wait_for_url("**/login**", timeout=20_000)
        finally:
            browser.close()

    assert (tmp_path / "data" / SESSIONS_FILE_NAME).is_file()  # the default place: <data_dir>/dashboard-sessions.db


def sign_in_http(base: str) -> str:
    """Sign in through the login form over plain HTTP; return the session id."""
    import re
    import urllib.parse
    from http.cookiejar import CookieJar

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/login", timeout=10) as response:
        token = re.search(r'name="csrf" value="([^"]+)"', response.read().decode()).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"csrf": token, "next": "/", "username": "nurse.kim", "password": PASSWORD})
    with opener.open(base + "/login", data=form.encode(), timeout=10):
        pass
    return next(c.value for c in jar if c.name == COOKIE_NAME)


def test_a_removed_user_is_refused_by_every_replica(replicas, tmp_path: Path) -> None:
    a, b = replicas
    sid = sign_in_http(a.url)
    assert [status_with_cookie(d.url, "/_dash-layout", sid) for d in (a, b)] == [200, 200]
    UsersFile(tmp_path / "users.json").remove("nurse.kim")
    assert [status_with_cookie(d.url, "/_dash-layout", sid) for d in (b, a)] == [401, 401]
    # Added again with the same name: the old session stays ended (it was deleted from the shared file).
    UsersFile(tmp_path / "users.json").add("nurse.kim", "nurse", PASSWORD)
    assert [status_with_cookie(d.url, "/_dash-layout", sid) for d in (a, b)] == [401, 401]


def test_a_password_change_ends_the_users_sessions(replicas, tmp_path: Path) -> None:
    a, b = replicas
    sid = sign_in_http(b.url)
    assert status_with_cookie(a.url, "/_dash-layout", sid) == 200
    UsersFile(tmp_path / "users.json").add("nurse.kim", "nurse", "a new password 2", replace=True)
    assert [status_with_cookie(d.url, "/_dash-layout", sid) for d in (a, b)] == [401, 401]


def test_production_server_header_and_idle_timeout(mosquitto: Mosquitto, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFUSION_DASHBOARD_IDLE_TIMEOUT_S", "2")
    monkeypatch.setenv("INFUSION_DATA_DIR", str(tmp_path / "data"))
    dashboard = DashboardProcess(tmp_path / "d", free_port(), "--mqtt-url", mosquitto.url, "--no-login",
                                 "--store-url", f"sqlite:///{tmp_path / 'vitals.db'}")
    dashboard.start()
    try:
        with urllib.request.urlopen(dashboard.url + "/login", timeout=10) as response:  # redirects to /
            server = response.headers.get("Server", "")
        assert server == "infusion-monitor", server  # not Werkzeug's, and no version numbers
        # An idle connection (opened, nothing sent) is closed by the server after its timeout, not held.
        with socket.create_connection(("127.0.0.1", dashboard.port), timeout=15) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # EOF: the server closed it
            waited = time.monotonic() - started
        assert 1.5 <= waited <= 6, waited
        # So is a kept-alive connection after a request.
        with socket.create_connection(("127.0.0.1", dashboard.port), timeout=15) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 ") and b"\r\nServer: infusion-monitor\r\n" in first
            started = time.monotonic()
            while sock.recv(65536):
                pass
            assert 1.5 <= time.monotonic() - started <= 6
        # Quiet access log: a failed request is logged, the routine ones are not.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(dashboard.url + "/assets/no-such-file.css", timeout=10)
        assert missing.value.code == 404
    finally:
        dashboard.stop()
    log = dashboard.log()
    assert '"GET /assets/no-such-file.css" 404' in log and "/healthz" not in log and "Traceback" not in log


def test_a_taken_port_or_an_unusable_sessions_file_is_refused_clearly(tmp_path: Path) -> None:
    import subprocess

    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD)
    base = [sys.executable, "-m", "infusion_monitor", "dashboard", "--users-file", str(users),
            "--mqtt-url", "mqtt://127.0.0.1:9", "--store-url", f"sqlite:///{tmp_path / 'v.db'}"]
    (tmp_path / "not-a-dir").write_text("")
    env = {**os.environ, "INFUSION_DASHBOARD_SESSIONS_FILE": str(tmp_path / "not-a-dir" / "sessions.db")}
    done = subprocess.run([*base, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "sessions file" in done.stderr and "not-a-dir" in done.stderr, done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*base, "--port", str(port)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_sessions_file_holds_hashes_and_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    one, two = Sessions(3600, path), Sessions(3600, path)
    user = UsersFile(tmp_path / "u.json")
    user.add("nurse.kim", "nurse", PASSWORD)
    sid = one.create(user.get("nurse.kim"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    item = two.get(sid)
    assert item is not None and (item.user, item.role) == ("nurse.kim", "nurse")
    keys = [row[0] for row in sqlite3.connect(path).execute("SELECT key FROM sessions")]
    assert keys == [session_key(sid)] and sid not in path.read_bytes().decode("latin-1")
    assert two.get(session_key(sid)) is None  # the stored hash is not a usable cookie
    two.end(sid)
    assert one.get(sid) is None
    # Expiry is stored with the session: a process with a different clock reading sees it expired.
    sid = one.create(user.get("nurse.kim"))
    later = Sessions(3600, path, clock=lambda: time.time() + 3601)
    assert later.get(sid) is None and one.get(sid) is not None
    for s in (one, two, later):
        s.close()


@pytest.mark.parametrize("trust_proxy", [True, False])
def test_forwarded_headers_count_only_with_trust_proxy(tmp_path: Path, trust_proxy: bool) -> None:
    from dashboard.server import serve

    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD)
    running = serve(FixedSettings(mqtt_url=None, store_url=None, dashboard_port=free_port(), dashboard_users_file=users,
                                  data_dir=tmp_path, dashboard_trust_proxy=trust_proxy))
    try:
        request = urllib.request.Request(running.url + "/login", headers={"X-Forwarded-Proto": "https",
                                                                          "X-Forwarded-For": "203.0.113.7"})
        with urllib.request.urlopen(request, timeout=10) as response:
            cookie = response.headers.get("Set-Cookie", "")
            hsts = response.headers.get("Strict-Transport-Security")
    finally:
        running.stop()
    # Through waitress to werkzeug's ProxyFix: the proxy's word that the browser used HTTPS makes cookies Secure.
    assert ("Secure" in cookie) is trust_proxy and (hsts is not None) is trust_proxy, cookie
