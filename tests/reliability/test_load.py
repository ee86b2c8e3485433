"""Load: 500 chairs at 1 Hz for 10 minutes of simulated time through mosquitto, the real ingest and influxd.

Publishes as fast as the broker takes it (timestamps advance 1 s per round), samples the ingest's RSS and the
consumer lag (published minus stored) once a second, and asserts memory stays flat and lag does not grow.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.servers import Influxd, IngestProcess, Mosquitto
from vitals.mqtt import connect, make_client, wait_connected
from vitals.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOPICS = Topics()
CHAIRS = 500
ROUNDS = 600  # 10 minutes at 1 Hz


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def thirds(values: list[float]) -> tuple[float, float, float]:
    """Return the means of the first, middle and last thirds."""
    n = len(values) // 3
    return statistics.mean(values[:n]), statistics.mean(values[n:2 * n]), statistics.mean(values[2 * n:])


def test_500_chairs_for_10_simulated_minutes(mosquitto: Mosquitto, influxd: Influxd, site: str,
                                             tmp_path: Path) -> None:
    db = f"load_{site}".replace("-", "_")
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, influxd.store_url(db), "--site", site, "--no-alarms")
    ingest.start()
    assert ingest.proc is not None
    client, target = make_client(mosquitto.url, f"load-{site}")
    client.max_inflight_messages_set(1000)
    connect(client, target)
    client.loop_start()
    assert wait_connected(client, 10)
    published = [0]
    samples: list[tuple[float, int, float]] = []  # (time, rss KiB, lag in readings)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            stored = ingest.metrics().get("ingest_readings_stored_total", 0.0)
            samples.append((time.monotonic(), rss_kib(ingest.proc.pid), published[0] - stored))  # type: ignore[union-attr]
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = int(time.time() * 1000) - (ROUNDS + 60) * 1000  # the whole run lies in the past: never "future"
    started = time.monotonic()
    sampler.start()
    try:
        for r in range(ROUNDS):
            last = None
            for c in range(CHAIRS):
                payload = json.dumps({"ts": t0 + r * 1000, "seq": r, "hr": 60 + c % 40, "spo2": 97, "rr": 14})
                last = client.publish(TOPICS.vitals(site, f"c{c:03d}"), payload, qos=1)
            assert last is not None
            last.wait_for_publish(60)  # as fast as the broker takes it
            published[0] += CHAIRS
        publish_s = time.monotonic() - started
        deadline = time.monotonic() + 180
        while ingest.metrics().get("ingest_readings_stored_total", 0.0) < CHAIRS * ROUNDS and time.monotonic() < deadline:
            time.sleep(1)
        drain_s = time.monotonic() - started
    finally:
        done.set()
        sampler.join(5)
        client.disconnect()
        client.loop_stop()
    try:
        count = influxd.query(f"SELECT count(hr) FROM vitals WHERE site = '{site}'", db)["results"][0]
        stored = count["series"][0]["values"][0][1] if "series" in count else 0
        during = [s for s in samples if s[0] - started <= publish_s]
        rss = [float(s[1]) for s in during]
        lag = [s[2] for s in during]
        rss_t, lag_t = thirds(rss), thirds(lag)
        print(f"\nload: {CHAIRS * ROUNDS} readings published in {publish_s:.0f} s "
              f"({CHAIRS * ROUNDS / publish_s:.0f}/s), all stored after {drain_s:.0f} s; "
              f"RSS MiB by thirds {[round(x / 1024, 1) for x in rss_t]}, max {max(rss) / 1024:.1f}; "
              f"lag (readings) by thirds {[round(x) for x in lag_t]}, max {max(lag):.0f}")
        assert stored == CHAIRS * ROUNDS
        assert len(during) >= 6, "the run was too short to sample"
        assert abs(rss_t[2] - rss_t[1]) <= 0.15 * rss_t[1], rss_t
        assert lag_t[2] <= lag_t[1] * 1.25 + 2 * CHAIRS, lag_t  # no growth beyond noise (two rounds)
    finally:
        ingest.stop()
