"""Shared fixtures: real mosquitto and influxd servers, unique sites per test, clean environment."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Influxd, Mosquitto


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep INFUSION_* settings from the developer's shell out of tests."""
    for key in list(os.environ):
        if key.startswith("INFUSION_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real mosquitto broker shared by the session (tests isolate themselves by site id)."""
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, which the test may stop, kill or reconfigure."""
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """A real InfluxDB 1.x server shared by the session (tests use their own database)."""
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An InfluxDB server of the test's own, which the test may stop and start."""
    server = Influxd(tmp_path / "influxd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def site(request: pytest.FixtureRequest) -> str:
    """A site id unique to the test, so tests sharing a broker or database never collide."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:40]
    return f"t-{name}-{os.getpid() % 10000}"
