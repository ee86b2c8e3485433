"""deploy/check-secrets (the entrypoint check of every service) and deploy/healthcheck.py (the image's healthcheck)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.helpers import DEPLOY, run_sh
from tests.servers import free_port

CHECK = DEPLOY / "check-secrets"
GOOD = "0123456789abcdef-secret"
SHELLS = [s for s in ("/bin/sh", "/bin/dash", shutil.which("busybox") and f"{shutil.which('busybox')} sh") if s]


def check(*names: str, env: dict[str, str], shell: str = "/bin/sh") -> subprocess.CompletedProcess[str]:
    """Run check-secrets NAMES -- echo started."""
    if " " in shell:  # busybox sh
        binary, sub = shell.split()
        return subprocess.run([binary, sub, str(CHECK), *names, "--", "echo", "started"], env={"PATH": "/usr/bin:/bin", **env},
                              capture_output=True, text=True, timeout=30)
    return run_sh(CHECK, *names, "--", "echo", "started", env=env, shell=shell)


@pytest.mark.parametrize("shell", SHELLS)
def test_real_secrets_start_the_command(shell: str) -> None:
    result = check("A", env={"A": GOOD, "INFUSION_MQTT_URL": f"mqtt://svc.ingest:{GOOD}@mosquitto:1883",
                             "INFUSION_INFLUX_TOKEN": GOOD + "x", "REQUIRED_SECRETS": "INFUSION_INFLUX_TOKEN"},
                   shell=shell)
    assert (result.returncode, result.stdout) == (0, "started\n"), result.stderr


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("env", "names", "complaint"), [
    ({}, ["A"], "A is not set"),
    ({"A": ""}, ["A"], "A is not set"),
    ({"REQUIRED_SECRETS": "B"}, [], "B is not set"),
    ({"A": "change-me"}, ["A"], "A is still a placeholder"),
    ({"A": "please-CHANGE-ME-0123456789"}, ["A"], "A is still a placeholder"),
    ({"A": "example-example-example"}, ["A"], "A is still a placeholder"),
    ({"A": "short-1234"}, ["A"], "A is shorter than 16"),
    ({"A": "0123456789abcdef$(id)"}, ["A"], "A has characters other than"),
    ({"A": "0123456789abcdef 0123"}, ["A"], "A has characters other than"),
    ({"A": "0123456789abcdef@host"}, ["A"], "A has characters other than"),
    ({"INFUSION_MQTT_URL": "mqtt://svc.ingest:change-me@mosquitto:1883"}, [], "the password in INFUSION_MQTT_URL"),
    ({"INFUSION_MQTT_URL": "mqtt://svc.ingest:@mosquitto:1883"}, ["INFUSION_MQTT_URL"], "INFUSION_MQTT_URL has no password"),
    ({"INFUSION_INFLUX_TOKEN": "change-me"}, [], "INFUSION_INFLUX_TOKEN is still a placeholder"),
    ({"INFLUX_TOKEN": "abc"}, [], "INFLUX_TOKEN is shorter"),
    ({"INFUSION_STORE_URL": "influxdb://admin:change-me@influx:8086/vitals"}, [], "the password in INFUSION_STORE_URL"),
])
def test_missing_placeholder_and_weak_secrets_refuse_to_start(shell: str, env: dict[str, str], names: list[str],
                                                              complaint: str) -> None:
    result = check(*names, env=env, shell=shell)
    assert result.returncode == 78, result
    assert result.stdout == ""  # the command never ran
    assert complaint in result.stderr
    assert "refusing to start echo" in result.stderr
    for name, value in env.items():  # a secret's value is never printed
        secret = urlsplit(value).password if "://" in value else value
        if name != "REQUIRED_SECRETS" and secret:
            assert secret not in result.stderr


def test_every_problem_is_reported_at_once() -> None:
    result = check("A", "B", "C", env={"A": "change-me", "C": "tiny"})
    assert result.returncode == 78
    assert [line.split()[1] for line in result.stderr.splitlines()[:3]] == ["A", "B", "C"]


def test_urls_without_credentials_are_fine_when_not_required() -> None:
    result = check(env={"INFUSION_MQTT_URL": "mqtts://broker:8883", "INFUSION_STORE_URL": "sqlite:///data/vitals.db"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_tokens_may_hold_what_influxdb_tokens_hold_but_passwords_may_not(shell: str) -> None:
    """A token travels in a header: InfluxDB 2.x makes base64 ones (ending ==), 1.x-compat ones are user:password."""
    v2 = "7-OD3Yzk9fcE6pT9kwfSrPrCm2mxG7v2_PCgJpnZFnh8gu9AODRBqlG8IiJx_6FE+Uf1fxj3/kb2RbLbAy5rlQ=="
    for token in (v2, "svc-operator:0123456789abcdef"):
        for name in ("INFUSION_INFLUX_TOKEN", "INFLUX_TOKEN", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"):
            result = check(name, env={name: token}, shell=shell)
            assert (result.returncode, result.stdout) == (0, "started\n"), (name, result.stderr)
    # Still refused in a token: placeholders, shortness, spaces and shell characters.
    for token, complaint in (("change-me:change-me", "placeholder"), ("a:b", "shorter"), ("0123456789abcdef $(id)", "other")):
        result = check("INFUSION_INFLUX_TOKEN", env={"INFUSION_INFLUX_TOKEN": token}, shell=shell)
        assert result.returncode == 78 and complaint in result.stderr, (token, result.stderr)
    # A password goes into a URL unescaped: the same characters are refused there.
    for value in ("0123456789abcdef==", "0123456789abcdef:x"):
        assert check("MQTT_INGEST_PASSWORD", env={"MQTT_INGEST_PASSWORD": value}, shell=shell).returncode == 78


def test_usage_without_a_command() -> None:
    assert run_sh(CHECK, "A").returncode == 64


# -- healthcheck.py --------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(_Handler.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"healthy": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    """A real HTTP server on a free port answering /healthz with _Handler.status."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    _Handler.status = 200


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run deploy/healthcheck.py as the image runs it."""
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=30)


def test_healthcheck_follows_the_ingest_port_and_the_status(health_server: int) -> None:
    assert healthcheck({"INFUSION_HTTP_PORT": str(health_server)}).returncode == 0
    _Handler.status = 503  # the ingest while it is not connected to the broker
    result = healthcheck({"INFUSION_HTTP_PORT": str(health_server)})
    assert result.returncode == 1 and "503" in result.stdout
    assert healthcheck({"HEALTHCHECK_URL": f"http://127.0.0.1:{health_server}/other"}).returncode == 1


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = healthcheck({"HEALTHCHECK_URL": f"http://127.0.0.1:{free_port()}/healthz"})
    assert result.returncode == 1
    assert "refused" in result.stdout.lower()


def test_healthcheck_default_is_the_settings_default_port() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        import healthcheck  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEPLOY))
    from vitals.settings import Settings

    assert healthcheck.health_url({}) == f"http://127.0.0.1:{Settings().http_port}/healthz"


def test_scripts_are_executable_posix_sh() -> None:
    for script in (CHECK, DEPLOY / "add-device", DEPLOY / "mosquitto" / "start.sh"):
        assert Path(script).stat().st_mode & 0o111, script
        assert Path(script).read_text().startswith("#!/bin/sh\n"), script
        assert subprocess.run(["/bin/dash", "-n", str(script)], capture_output=True).returncode == 0, script
