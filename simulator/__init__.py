"""The simulator: realistic ketamine-infusion sessions published over MQTT, plus record and replay.

In-process API (the demo uses it). In the background, with start() and stop()::

    import simulator

    sim = simulator.Simulation("mqtt://127.0.0.1:1883", site="demo", chairs=8, scenario="clinic-day",
                               speed=1.0, protocol="3.1.1")   # "3.1.1" for amqtt; "5" (default) for mosquitto
    sim.start()          # returns once every chair is connected; raises ConnectionError otherwise
    ...
    stats = sim.stop()   # every chair goes offline (retained), connections close

Or blocking, until the scenario's duration is simulated or ``stop_event`` is set::

    stats = simulator.run_clinic("mqtt://127.0.0.1:1883", "demo", 8, 1.0, "clinic-day", stop_event)

``run(settings, ...)`` is the same with a full settings object (TLS files, topic prefix). A run cut short
publishes each chair's ``offline`` and leaves its session ``active``, as a device unplugged mid-session would.
Pure parts, usable without a broker:
``simulator.stream.generate`` (the byte-exact stream), ``simulator.scenario.load_scenario``,
``simulator.physiology``. Details: docs/simulator.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from simulator.publisher import DEVICE_MODE_MAX_CHAIRS, Publisher, PublishStats, pace
from simulator.scenario import Scenario, load_scenario
from simulator.stream import OFFLINE, Message, chair_ids, generate
from vitals.mqtt import redact
from vitals.reading import MAX_FUTURE_MS
from vitals.settings import Settings, load_settings

__all__ = ["Message", "PublishStats", "Scenario", "Simulation", "generate", "load_scenario", "run", "run_clinic"]

log = logging.getLogger(__name__)


def run(settings: Settings, site: str, chairs: int | None = None, scenario: str | Scenario = "normal",
        speed: float = 1.0, seed: int | None = None, stop: threading.Event | None = None, *,
        start_ms: int | None = None, duration_s: float | None = None, connection: str = "auto",
        connected: threading.Event | None = None) -> PublishStats:
    """Publish a simulated site to the broker in ``settings``, paced by ``speed`` (0 = as fast as possible).

    Raise ConnectionError when a connection cannot be made; set ``connected`` once every one is up.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    chairs = chairs or sc.chairs or 4
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    if start_ms is None:
        start_ms = round(time.time()) * 1000
    mode = connection if connection != "auto" else ("device" if chairs <= DEVICE_MODE_MAX_CHAIRS else "gateway")
    stop = stop or threading.Event()
    log.info("simulating site %s: %d chairs, scenario %s, seed %d, speed %s, %s connection(s) to %s",
             site, chairs, sc.name, seed, speed or "max", mode, redact(settings.mqtt_url))
    _warn_future(start_ms, duration_s or sc.duration_s, speed)
    devices = [(site, chair) for chair in chair_ids(chairs)]
    publisher = Publisher(settings, client_prefix=f"infusion-sim-{os.getpid()}", devices=devices, mode=mode,
                          stop=stop)
    if connected is not None:
        connected.set()
    try:
        stream = generate(sc, site=site, chairs=chairs, seed=seed, start_ms=start_ms, duration_s=duration_s,
                          prefix=settings.topic_prefix)
        stats = pace(stream, lambda m: publisher.send(m, stop), speed=speed, stop=stop)
        if stats.stopped:  # cut short: say so on every chair's status topic, as the stream's end would have
            for chair in chair_ids(chairs):
                publisher.send(Message(0, publisher.topics.status(site, chair), OFFLINE, 1, True), timeout_s=2)
    finally:
        publisher.close()
    log.info("published %d messages (%d readings), %.0f simulated s in %.1f real s", stats.messages, stats.readings,
             stats.sim_s, stats.real_s)
    return stats


def run_clinic(mqtt_url: str, site: str = "demo", chairs: int | None = None, speed: float = 1.0,
               scenario: str | Scenario = "clinic-day", stop_event: threading.Event | None = None, *,
               protocol: str = "5", seed: int | None = None, start_ms: int | None = None,
               duration_s: float | None = None, topic_prefix: str | None = None) -> PublishStats:
    """Publish a simulated clinic to ``mqtt_url`` until the scenario ends or ``stop_event`` is set (blocking)."""
    settings = load_settings(mqtt_url=mqtt_url, mqtt_protocol=protocol, topic_prefix=topic_prefix)
    return run(settings, site, chairs, scenario, speed, seed, stop_event, start_ms=start_ms, duration_s=duration_s)


class Simulation:
    """A simulated site publishing in a background thread: ``start()``, ``stop()``, ``wait()``.

    Example: ``Simulation("mqtt://127.0.0.1:1883", site="demo", chairs=8, protocol="3.1.1").start()``.
    """

    def __init__(self, mqtt_url: str | None = None, site: str = "demo", chairs: int | None = None,
                 scenario: str | Scenario = "clinic-day", speed: float = 1.0, seed: int | None = None, *,
                 protocol: str | None = None, settings: Settings | None = None, start_ms: int | None = None,
                 duration_s: float | None = None, connection: str = "auto") -> None:
        if settings is None:
            settings = load_settings(mqtt_url=mqtt_url, mqtt_protocol=protocol)
        elif mqtt_url is not None or protocol is not None:
            settings = settings.model_copy(update={k: v for k, v in (("mqtt_url", mqtt_url),
                                                                      ("mqtt_protocol", protocol)) if v is not None})
        self.settings = settings
        self.site = site
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self._kwargs = {"chairs": chairs, "speed": speed, "seed": seed, "start_ms": start_ms,
                        "duration_s": duration_s, "connection": connection}
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: PublishStats | None = None
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            self.stats = run(self.settings, self.site, scenario=self.scenario, stop=self._stop,
                             connected=self._connected, **self._kwargs)  # type: ignore[arg-type]
        except Exception as exc:  # kept for start() and stop() callers: a thread cannot raise to them
            self.error = exc
            log.error("simulation of site %s failed: %s", self.site, exc)
        finally:
            self._done.set()

    def start(self, timeout_s: float = 30.0) -> Simulation:
        """Start publishing in the background; return once connected, raise ConnectionError if it cannot."""
        if self._thread is not None:
            raise RuntimeError("this simulation was already started")
        self._thread = threading.Thread(target=self._main, name=f"simulator-{self.site}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(0.05):
            if self._done.is_set() or time.monotonic() > deadline:
                self._stop.set()
                error = self.error or TimeoutError("not connected in time")
                raise ConnectionError(f"simulator could not start: {error}") from error
        return self

    @property
    def running(self) -> bool:
        """Return whether the simulation is still publishing."""
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the scenario's duration is simulated (or stop() ends it); return whether it ended."""
        return self._done.wait(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> PublishStats | None:
        """Stop publishing: every chair goes offline, connections close; return what was published."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.stats

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _warn_future(start_ms: int, duration_s: float | None, speed: float) -> None:
    """Warn when simulated time will run more than 5 minutes ahead of the clock (the ingest refuses that)."""
    if speed == 1 or duration_s is None:
        return
    real_s = duration_s / speed if speed > 0 else 0.0
    lead_s = (start_ms / 1000 + duration_s) - (time.time() + real_s)
    if lead_s > MAX_FUTURE_MS / 1000:
        log.warning("at speed %s the simulated clock ends %.0f min ahead of the real one; the ingest refuses readings "
                    "more than %d min in the future: start in the past (e.g. --start now-%dm)", speed or "max",
                    lead_s / 60, MAX_FUTURE_MS // 60000, int(lead_s // 60) + 1)
