"""The in-process API the demo uses (Simulation, run_clinic) against mosquitto and the amqtt 3.1.1 broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import simulator
from simulator.scenario import load_scenario
from simulator.stream import chair_ids, generate
from tests.servers import Mosquitto, MqttCollector, free_port
from tests.simulator.helpers import START_MS, Amqtt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Amqtt]:
    """A real amqtt broker process, as the demo would run it."""
    server = Amqtt(tmp_path_factory.mktemp("amqtt"))
    server.start()
    yield server
    server.stop()


def by_topic(messages) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    """Return payloads per topic in arrival order."""
    out: dict[str, list[bytes]] = {}
    for topic, payload, *_ in messages:
        out.setdefault(topic, []).append(payload)
    return out


def retained(url: str, protocol: str, *filters: str, expect: int) -> dict[str, bytes]:
    """Return the retained payload of each topic matching ``filters``, as a fresh subscriber sees them."""
    collector = MqttCollector(url, *filters, protocol=protocol)
    try:
        assert collector.wait_for(lambda c: len(c.messages) >= expect, timeout=10), collector.messages
        time.sleep(0.3)
        return {t: p for t, p, r in collector.messages if r}
    finally:
        collector.close()


def test_simulation_on_amqtt_publishes_exactly_the_generated_stream(amqtt: Amqtt, site: str) -> None:
    expected = list(generate(load_scenario("desaturation"), site=site, chairs=3, seed=4, start_ms=START_MS,
                             duration_s=300))
    collector = MqttCollector(amqtt.url, f"clinic/{site}/#", protocol="3.1.1")
    try:
        sim = simulator.Simulation(amqtt.url, site=site, chairs=3, scenario="desaturation", speed=0, seed=4,
                                   protocol="3.1.1", start_ms=START_MS, duration_s=300).start()
        assert sim.wait(60) and not sim.running and sim.error is None
        assert sim.stats is not None and sim.stats.messages == len(expected) and not sim.stats.stopped
        assert collector.wait_for(lambda c: len(c.messages) >= len(expected), timeout=20)
        time.sleep(0.3)
        got = list(collector.messages)
    finally:
        collector.close()
    assert by_topic(got) == by_topic((m.topic, m.payload) for m in expected)
    state = retained(amqtt.url, "3.1.1", f"clinic/{site}/chair/+/status", f"clinic/{site}/chair/+/session", expect=6)
    assert sorted(p for t, p in state.items() if t.endswith("/status")) == [b"offline"] * 3


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_simulation_start_returns_live_and_stop_marks_every_chair_offline(request: pytest.FixtureRequest,
                                                                         broker: str, site: str) -> None:
    server = request.getfixturevalue(broker)
    protocol = "3.1.1" if broker == "amqtt" else "5"
    site = f"{site[:50]}-{broker}"
    live = MqttCollector(server.url, f"clinic/{site}/chair/+/status", f"clinic/{site}/chair/+/vitals",
                         protocol=protocol)
    try:
        with simulator.Simulation(server.url, site=site, chairs=4, scenario="clinic-day", speed=1,
                                  protocol=protocol) as sim:
            assert sim.running
            # Real time: every chair online at once, chair 01's reading of the current second arrives promptly.
            assert live.wait_for(lambda c: c.payloads("/status").count(b"online") == 4, timeout=10)
            assert live.wait_for(lambda c: len(c.payloads("/vitals")) >= 2, timeout=10)
            ts = json.loads(live.payloads("/vitals")[-1])["ts"]
            assert abs(ts - time.time() * 1000) < 5000
        assert not sim.running and sim.stats is not None and sim.stats.stopped
    finally:
        live.close()
    state = retained(server.url, protocol, f"clinic/{site}/chair/+/status", expect=4)
    assert state == {f"clinic/{site}/chair/{c}/status": b"offline" for c in chair_ids(4)}


def test_run_clinic_blocks_until_the_stop_event(mosquitto: Mosquitto, site: str) -> None:
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    began = time.monotonic()
    stats = simulator.run_clinic(mosquitto.url, site, 2, 1.0, "normal", stop)
    elapsed = time.monotonic() - began
    assert stats.stopped and 1.4 <= elapsed <= 10
    assert stats.readings >= 2  # chair 01 publishes from its first second


def test_start_raises_connection_error_when_no_broker_listens(tmp_path: Path) -> None:
    sim = simulator.Simulation(f"mqtt://127.0.0.1:{free_port()}", site="nobody", chairs=1)
    with pytest.raises(ConnectionError):
        sim.start(timeout_s=2)
    began = time.monotonic()
    sim.stop()
    assert not sim.running and time.monotonic() - began < 5 and isinstance(sim.error, ConnectionError)


def test_the_public_names_are_pinned() -> None:
    assert sorted(simulator.__all__) == ["Message", "PublishStats", "Scenario", "Simulation", "generate",
                                         "load_scenario", "run", "run_clinic"]
    assert all(callable(getattr(simulator, name)) for name in simulator.__all__)
