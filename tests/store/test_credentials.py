"""Every role that opens a store gives it its credentials: the settings' token, or 1.x ``user:password``.

The dashboard once opened its store with the URL alone, so with ``influxdb2://`` and ``INFUSION_INFLUX_TOKEN`` (the
compose stack) its trends, CSV export and audit failed. Here each role loads its settings the way it does when
run (its command line, the environment), then opens its store:

- against a local HTTP server that records what arrives (no InfluxDB 2.x can run here): each role's requests
  carry ``Authorization: Token ...``;
- against a real InfluxDB 1.6.7 with authentication enabled: the ingest writes, and the dashboard's trend, CSV
  export and audit, the replay from a store and the benchmarks' queries read, with ``user:password@`` in the URL
  or ``user:password`` as the token; a wrong password fails at once, naming the credentials.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from infusion_monitor.cli import build_parser
from tests.servers import Influxd, IngestProcess, Mosquitto, MqttCollector, ThreadedHTTP, wait_until
from vitals.settings import FixedSettings, settings_from_args
from vitals.store import StoreError, open_store_from
from vitals.topics import Topics

TOKEN = "tok-3f9c-settings-test"
PASSWORD = "pw with spaces: it's fine"


class RecordingInflux:
    """A local HTTP server answering like an empty InfluxDB 2.x, recording each request's path and Authorization."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                seen.append((self.command, path, self.headers.get("Authorization")))
                if path == "/query":
                    self._send(200, {"results": [{"statement_id": 0}]})
                elif path == "/api/v2/buckets":  # influxdb-client looks the bucket up before the first write
                    self._send(200, {"buckets": [{"id": "0000000000000001", "name": "vitals", "orgID": "1",
                                                  "retentionRules": []}]})
                else:  # /ping, /api/v2/write
                    self.send_response(204)
                    self.end_headers()

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.http = ThreadedHTTP(Handler)
        self.port = self.http.port

    def url(self, bucket: str = "vitals") -> str:
        """Return an influxdb2:// store URL naming this server."""
        return f"influxdb2://127.0.0.1:{self.port}/{bucket}?org=clinic"

    def take(self) -> list[tuple[str, str, str | None]]:
        """Return the requests recorded so far and forget them."""
        out = list(self.requests)
        self.requests.clear()
        return out



@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    """Restore SIGINT/SIGTERM after a role's run() (replay installs its own) so pytest stays interruptible."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def influx2(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingInflux]:
    server = RecordingInflux()
    monkeypatch.setenv("INFUSION_INFLUX_TOKEN", TOKEN)  # as docker-compose.yml sets it
    yield server
    server.http.close()


def role_settings(*argv: str):  # type: ignore[no-untyped-def]
    """Return the settings a role's command line gives (with the environment), as the role loads them."""
    args = build_parser().parse_args(list(argv))
    return args, settings_from_args(args, args.command)


def assert_token_sent(requests: list[tuple[str, str, str | None]], *paths: str) -> None:
    assert requests, "the role sent nothing to the store"
    assert {auth for _, _, auth in requests} == {f"Token {TOKEN}"}, requests
    assert {p for _, p, _ in requests} >= set(paths), requests


def test_influxdb2_token_reaches_the_store_from_every_role(influx2: RecordingInflux, tmp_path: Path) -> None:
    from dashboard.services import Services
    from ingest.service import IngestService
    from simulator import replay_cli

    # ingest: as `infusion-monitor ingest --store-url ...` builds it
    _, settings = role_settings("ingest", "--store-url", influx2.url(), "--data-dir", str(tmp_path / "ingest"))
    ingest = IngestService(settings, alarms=False)
    try:
        ingest.store.latest("s1")
    finally:
        ingest.store.close()
        ingest.spool.close()
    assert_token_sent(influx2.take(), "/query")

    # dashboard: history check, trend, CSV readings, audit read and write
    users = tmp_path / "users.json"
    users.write_text("{}")
    _, settings = role_settings("dashboard", "--store-url", influx2.url(), "--users-file", str(users), "--site", "s1")
    services = Services(settings, feed=None)
    assert services.history.check()
    services.history.series("s1", "c1", 0, 60_000)
    services.history.readings("s1", "c1", 0, 60_000)
    services.history.audit("s1")
    assert services.audit("login", "nurse.kim", site="s1")
    services.history.stop()
    assert_token_sent(influx2.take(), "/ping", "/query", "/api/v2/write")

    # replay from a store: the whole command (nothing stored, so nothing to publish)
    args, _ = role_settings("replay", "--store-url", influx2.url(), "--site", "s1", "--chair", "c1",
                            "--from", "0", "--to", "60000", "--mqtt-url", "mqtt://127.0.0.1:9")
    assert replay_cli.run(args) == 0
    assert_token_sent(influx2.take(), "/query")

    # benchmarks: the query suite's own store opening (the token from the environment)
    from benchmarks import queries
    from benchmarks.harness import Context, Sizes

    sizes = Sizes.quick()
    sizes.clinic_chairs, sizes.trend_repeats = 2, 1
    ctx = Context(tmp_path / "bench", sizes, quick=True,
                  influxd=types.SimpleNamespace(store_url=influx2.url))  # type: ignore[arg-type]
    assert queries.latest(ctx, "influxdb")["chairs_found"] == 0  # the recorder stores nothing
    assert_token_sent(influx2.take(), "/api/v2/write", "/query")


# -- a real InfluxDB 1.6.7 with authentication ---------------------------------------------------------------

@pytest.fixture
def auth_influxd(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influxd", admin=("clinic.admin", PASSWORD))
    server.start()
    yield server
    server.stop()


def publish_readings(mqtt_url: str, site: str, chair: str, start_ms: int, n: int) -> None:
    from vitals.mqtt import connect, make_client, wait_connected

    client, target = make_client(mqtt_url)
    connect(client, target)
    client.loop_start()
    try:
        assert wait_connected(client, 10)
        topic = Topics().vitals(site, chair)
        infos = [client.publish(topic, json.dumps({"ts": start_ms + i * 1000, "seq": i, "hr": 70 + i % 5, "spo2": 97,
                                                   "rr": 14}), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.integration
@pytest.mark.parametrize("credentials", ["url", "token"])
def test_every_role_uses_influxdb1_credentials(credentials: str, auth_influxd: Influxd, mosquitto: Mosquitto,
                                               site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.app import create_app
    from dashboard.auth import UsersFile
    from dashboard.services import Services
    from simulator import replay_cli

    db = f"auth_{credentials}"
    if credentials == "url":
        url, env = auth_influxd.store_url(db), {}
    else:  # the compose shape: a URL without credentials, INFUSION_INFLUX_TOKEN as user:password
        url, env = f"influxdb://127.0.0.1:{auth_influxd.port}/{db}", {"INFUSION_INFLUX_TOKEN": f"clinic.admin:{PASSWORD}"}
        monkeypatch.setenv("INFUSION_INFLUX_TOKEN", env["INFUSION_INFLUX_TOKEN"])
    assert "auth-enabled = true" in (auth_influxd.workdir / "influxdb.conf").read_text()

    # the ingest, a real process, writes what a device publishes through mosquitto
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, url, "--site", site, env=env)
    ingest.start()
    start = (time.time_ns() // 1_000_000 - 120_000) // 1000 * 1000
    try:
        publish_readings(mosquitto.url, site, "c-01", start, 60)
        _, settings = role_settings("ingest", "--store-url", url)
        store = open_store_from(settings)
        assert wait_until(lambda: store.count_readings(site) == 60, 20, 0.2), ingest.log()[-2000:]
        store.close()
    finally:
        ingest.stop()

    # the dashboard: trend, CSV export and the audit records of a login and the export
    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", "a long password 1")
    _, settings = role_settings("dashboard", "--mqtt-url", mosquitto.url, "--store-url", url, "--users-file", str(users),
                                "--site", site)
    services = Services(settings)
    assert services.history.check()
    trend = services.history.series(site, "c-01", start, start + 60_000)
    assert len(trend.times) == 60 and trend.mean["hr"][0] == 70
    client = create_app(services).server.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    client.post("/login", data={"username": "nurse.kim", "password": "a long password 1", "csrf": csrf})
    exported = client.get(f"/export/{site}/c-01.csv?start={start}&end={start + 60_000}")
    assert exported.status_code == 200, exported.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(rows) == 60 and rows[0]["hr"] == "70"
    assert wait_until(lambda: {r.action for r in services.history.audit(site)} >= {"login", "export_csv"}, 10, 0.2)
    services.history.stop()

    # replay from the store: every stored reading republished under another site
    to_site = f"{site}-replayed"
    collector = MqttCollector(mosquitto.url, Topics().vitals(to_site, "c-01"))
    try:
        args, _ = role_settings("replay", "--mqtt-url", mosquitto.url, "--store-url", url, "--site", site,
                                "--chair", "c-01", "--from", str(start), "--to", str(start + 60_000),
                                "--to-site", to_site, "--speed", "max")
        assert replay_cli.run(args) == 0
        assert collector.wait_for(lambda c: len(c.payloads()) == 60)
    finally:
        collector.close()

    # the benchmarks' queries: they write and read the server the suite names
    from benchmarks import queries
    from benchmarks.harness import Context, Sizes

    sizes = Sizes.quick()
    sizes.clinic_chairs, sizes.trend_repeats = 3, 1
    bench_server = auth_influxd if credentials == "url" else types.SimpleNamespace(
        store_url=lambda name: f"influxdb://127.0.0.1:{auth_influxd.port}/{name}")
    ctx = Context(tmp_path / "bench", sizes, quick=True, influxd=bench_server)  # type: ignore[arg-type]
    assert queries.latest(ctx, "influxdb")["chairs_found"] == 3


@pytest.mark.integration
def test_wrong_influxdb1_password_is_named_at_once(auth_influxd: Influxd, mosquitto: Mosquitto, site: str,
                                                   tmp_path: Path) -> None:
    from dashboard.history import History, HistoryUnavailable
    from dashboard.live import LiveState

    url = f"influxdb://clinic.admin:wrong@127.0.0.1:{auth_influxd.port}/vitals"
    store = open_store_from(FixedSettings(store_url=url))
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"\(401\).*authorization failed.*check the credentials"):
        store.latest(site)
    with pytest.raises(StoreError, match="check the credentials"):
        from vitals.reading import Reading

        store.write_readings([Reading(site, "c-01", time.time_ns() // 1_000_000, 1, hr=70.0)])
    assert time.monotonic() - started < 3.0
    state = LiveState()
    history = History(FixedSettings(store_url=url, site=site), state)
    # /ping needs no credentials in 1.x; the availability check also queries, so the banner names the cause
    assert not history.check()
    assert "check the credentials" in (state.links().store_reason or "")
    with pytest.raises(HistoryUnavailable, match="authorization failed"):
        history.series(site, "c-01", 0, 60_000)
    # the ingest keeps what it got (spooled) and its log says what to fix
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, url, "--site", site, "--no-alarms")
    ingest.start()
    try:
        publish_readings(mosquitto.url, site, "c-01", time.time_ns() // 1_000_000 - 10_000, 3)
        named = "spooling locally until it answers again: InfluxDB refused a query (401): {\"error\":\"authorization failed\"}"
        assert wait_until(lambda: named in ingest.log(), 15), ingest.log()[-2000:]
        assert "check the credentials" in ingest.log()
    finally:
        ingest.stop()
