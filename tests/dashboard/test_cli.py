"""The ``infusion-monitor dashboard`` and ``user`` commands as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import Mosquitto, free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.run([sys.executable, "-m", "infusion_monitor", *args], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=60, **kwargs)


def test_no_login_is_refused_off_loopback() -> None:
    run = cli("dashboard", "--no-login", "--host", "0.0.0.0", "--store-url", "sqlite:///x.db")
    assert run.returncode == 2 and "loopback" in run.stderr


def test_missing_users_file_is_explained(tmp_path: Path) -> None:
    run = cli("dashboard", "--users-file", str(tmp_path / "none.json"), "--store-url", "sqlite:///x.db")
    assert run.returncode == 2 and "user add" in run.stderr


@pytest.mark.integration
def test_dashboard_serves_and_stops_on_sigterm(mosquitto: Mosquitto, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    assert cli("user", "add", "kim", "--role", "nurse", "--users-file", str(users), input="a long password\n").returncode == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor", "dashboard", "--mqtt-url", mosquitto.url,
                             "--store-url", f"sqlite:///{tmp_path / 'v.db'}", "--port", str(port),
                             "--users-file", str(users)], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, timeout=30, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            assert response.status == 200 and "Sign in" in response.read().decode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/_dash-layout")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
