"""``python -m benchmarks.server [--chairs 48] [--repeats 200]``: the dashboard as served over HTTP, at clinic size.

Written to compare web servers (Werkzeug's development server before, waitress after) in one session. Each
figure gets a fresh dashboard on a fresh InfluxDB database holding ``--chairs`` chairs of 10 minutes of history:

- ``overview_inproc``: the overview's per-second callback through Dash in process, no HTTP (``dashboard.bench``);
- ``overview_http_login`` / ``overview_http_nologin``: the same callback over one keep-alive HTTP connection
  through ``dashboard.server.serve``, signed in as a nurse (the session lookup counts) and with login off;
- ``publish_to_screen``: publish -> value on the page in headless Chromium, the dashboard CLI as a subprocess
  under a 1 Hz load of ``--chairs`` chairs (``benchmarks.browser.measure``).

The before figures (benchmarks/results/server-2026-12-02/) were taken with this file's previous version, which
built a ``DashboardConfig``; the settings model has replaced that since.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from benchmarks import browser, queries
from benchmarks.harness import Context, Sizes, percentiles
from tests.servers import free_port
from vitals.store import open_store

PASSWORD = "benchmark password 1"


class Client:
    """One keep-alive HTTP connection with a cookie jar."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
        """Send one request on the kept-alive connection; return status and body."""
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=sent)
        response = self.conn.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for key, morsel in jar.items():
                if morsel.value:
                    self.cookies[key] = morsel.value
                else:
                    self.cookies.pop(key, None)
        return response.status, data

    def sign_in(self, user: str, password: str) -> None:
        """Sign in through the login form."""
        _, page = self.request("GET", "/login")
        token = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert token is not None, "no CSRF field on the login form"
        form = urllib.parse.urlencode({"csrf": token.group(1).decode(), "next": "/", "username": user,
                                       "password": password}).encode()
        status, _ = self.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 303 or "infusion_session" not in self.cookies:
            raise RuntimeError(f"sign-in answered {status}")


def fill_store(ctx: Context, chairs: int) -> tuple[str, str]:
    """Return (store URL, site) of a fresh database with ``chairs`` chairs of 10 minutes of 1 Hz history."""
    site = ctx.unique("srv")
    url = ctx.store_url("influxdb", f"bench_{site}")
    store = open_store(url)
    now = time.time_ns() // 1_000_000
    try:
        for c in range(chairs):
            store.write_readings(queries.history(site, f"c{c:02d}", now - 600_000, 600))
    finally:
        store.close()
    return url, site


def overview_http(ctx: Context, chairs: int, repeats: int, login: bool) -> dict[str, Any]:
    """Time the overview callback over HTTP through serve(), signed in or with login off."""
    from dashboard.auth import UsersFile
    from dashboard.bench import OVERVIEW_CALLBACK
    from dashboard.server import serve
    from vitals.settings import FixedSettings

    url, site = fill_store(ctx, chairs)
    users = ctx.workdir / f"users-{site}.json"
    UsersFile(users).add("nurse.bench", "nurse", PASSWORD, replace=True)
    extra: dict[str, Any] = {"dashboard_users_file": users} if login else {"dashboard_no_login": True}
    running = serve(FixedSettings(mqtt_url=None, store_url=url, site=site, dashboard_port=free_port(),
                                  data_dir=ctx.workdir / site, **extra))
    try:
        client = Client(int(running.url.rsplit(":", 1)[1]))
        headers = {"Content-Type": "application/json"}
        if login:
            client.sign_in("nurse.bench", PASSWORD)
            headers["X-CSRFToken"] = client.cookies["_csrf_token"]
        body = json.dumps(OVERVIEW_CALLBACK).encode()
        deadline = time.monotonic() + 60
        sizes: list[int] = []
        while time.monotonic() < deadline:  # until every chair is seeded and its sparkline backfilled
            status, data = client.request("POST", "/_dash-update-component", body, headers)
            if status != 200:
                raise RuntimeError(f"overview refresh answered {status}: {data[:200]!r}")
            sizes = [*sizes[-3:], len(data)] if len(running.services.state.chairs()) >= chairs else []
            if len(sizes) == 4 and len(set(sizes)) == 1 and running.services.history._queue.empty():
                break
            time.sleep(0.5)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            status, data = client.request("POST", "/_dash-update-component", body, headers)
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        return {"chairs": chairs, "login": login, "bytes": len(data), "ms": percentiles(times)}
    finally:
        running.stop()


def overview_inproc(ctx: Context, chairs: int, repeats: int) -> dict[str, Any]:
    """Time the overview callback in process (no HTTP), as benchmarks/queries.py does."""
    from dashboard.bench import overview_refresh

    url, site = fill_store(ctx, chairs)
    refresh = overview_refresh(url, site, chairs)
    refresh()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        refresh()
        times.append((time.perf_counter() - t0) * 1000)
    return {"chairs": chairs, "ms": percentiles(times)}


def session_lookup(ctx: Context, sessions: int = 1000, repeats: int = 2000) -> dict[str, Any]:
    """Time one session lookup in a sessions file holding ``sessions`` sessions (what every request pays)."""
    try:
        from dashboard.sessions import Sessions
    except ImportError:
        return {"skipped": "no dashboard.sessions (sessions in process memory)"}
    from dashboard.auth import User

    store = Sessions(3600, ctx.workdir / "sessions.db")
    ids = [store.create(User(f"nurse{i}", "nurse", "hash")) for i in range(sessions)]
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        found = store.get(ids[k % sessions])
        times.append((time.perf_counter() - t0) * 1000)
        assert found is not None
    store.close()
    return {"sessions": sessions, "ms": percentiles(times)}


def main(argv: list[str] | None = None) -> int:
    """Run the four figures and print them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__)
    parser.add_argument("--chairs", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="infusion-bench-server-"))
    ctx = Context(workdir, Sizes(), quick=False)
    results: dict[str, Any] = {}
    try:
        ctx.start_servers()
        results["overview_inproc"] = overview_inproc(ctx, args.chairs, args.repeats)
        results["overview_http_login"] = overview_http(ctx, args.chairs, args.repeats, login=True)
        results["overview_http_nologin"] = overview_http(ctx, args.chairs, args.repeats, login=False)
        results["session_lookup"] = session_lookup(ctx)
        results["publish_to_screen"] = browser.measure(ctx, args.chairs, probes=args.probes)
    finally:
        ctx.stop_servers()
        shutil.rmtree(workdir, ignore_errors=True)
    import dashboard

    results["dashboard_code"] = str(Path(dashboard.__file__).parent)
    text = json.dumps(results, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
