"""The simulator: realistic ketamine-infusion sessions published over MQTT, plus record and replay.

In-process API (the demo uses it)::

    import threading
    import simulator
    from vitals.settings import load_settings

    stop = threading.Event()
    stats = simulator.run(load_settings(mqtt_url="mqtt://127.0.0.1:1883"), site="demo", chairs=8,
                          scenario="clinic-day", speed=1.0, seed=7, stop=stop)   # blocks until done or stop.set()

``run`` publishes until the scenario's duration (or ``duration_s``) has been simulated, or ``stop`` is set;
then it publishes each chair's ``offline`` and disconnects. Pure parts, usable without a broker:
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
from vitals.settings import Settings

__all__ = ["Message", "PublishStats", "Scenario", "generate", "load_scenario", "run"]

log = logging.getLogger(__name__)


def run(settings: Settings, site: str, chairs: int | None = None, scenario: str | Scenario = "normal",
        speed: float = 1.0, seed: int | None = None, stop: threading.Event | None = None, *,
        start_ms: int | None = None, duration_s: float | None = None, connection: str = "auto") -> PublishStats:
    """Publish a simulated site to the broker in ``settings``, paced by ``speed`` (0 = as fast as possible)."""
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
    publisher = Publisher(settings, client_prefix=f"infusion-sim-{os.getpid()}", devices=devices, mode=mode)
    try:
        stream = generate(sc, site=site, chairs=chairs, seed=seed, start_ms=start_ms, duration_s=duration_s,
                          prefix=settings.topic_prefix)
        stats = pace(stream, lambda m: publisher.send(m, stop), speed=speed, stop=stop)
        if stats.stopped:  # cut short: say so on every chair's status topic, as the stream's end would have
            for chair in chair_ids(chairs):
                publisher.send(Message(0, publisher.topics.status(site, chair), OFFLINE, 1, True))
    finally:
        publisher.close()
    log.info("published %d messages (%d readings), %.0f simulated s in %.1f real s", stats.messages, stats.readings,
             stats.sim_s, stats.real_s)
    return stats


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
