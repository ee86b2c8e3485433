"""With a store: simulated streams through mosquitto into the real ingest; replay of a stored session (SQLite, InfluxDB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import simulator
from simulator.replay_cli import stored_messages
from simulator.scenario import load_scenario
from simulator.stream import generate, readings_of
from tests.servers import IngestProcess, Mosquitto, MqttCollector
from vitals.reading import Reading
from vitals.records import Session
from vitals.settings import FixedSettings, load_settings
from vitals.store import open_store
from vitals.topics import Topics

pytestmark = pytest.mark.integration


def test_clinic_day_at_speed_60_lands_every_published_reading_once(mosquitto: Mosquitto, site: str,
                                                                    tmp_path: Path) -> None:
    # 10 simulated minutes of 12 chairs at --speed 60 take 10 real seconds. The slice starts 11 minutes ago so
    # that no reading is more than 5 minutes in the future (which the ingest would rightly refuse).
    start_ms = (round(time.time()) - 11 * 60) * 1000
    sc = load_scenario("clinic-day")
    expected = list(generate(sc, site=site, chairs=12, seed=5, start_ms=start_ms, duration_s=600))
    unique = {(topic, obj["ts"]) for topic, obj in readings_of(expected)}
    assert len(unique) == sum(600 - 60 * i for i in range(10))  # chairs start a minute apart: 01 to 10 in time
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--no-alarms")
    ingest.start()
    try:
        stats = simulator.run(load_settings(mqtt_url=mosquitto.url), site, 12, sc, speed=60, seed=5,
                              start_ms=start_ms, duration_s=600)
        assert stats.messages == len(expected) and not stats.stopped
        assert 9.0 <= stats.real_s <= 11.5
        store = open_store(store_url)
        try:
            deadline = time.monotonic() + 30
            while store.count_readings(site=site) < len(unique) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # nothing more arrives after that
            assert store.count_readings(site=site) == len(unique)
            for number in ("01", "12"):
                rows = [obj for topic, obj in readings_of(expected) if topic.endswith(f"/{number}/vitals")]
                stored = store.readings(site, number, start_ms, start_ms + 601_000)
                assert [r.ts_ms for r in stored] == [obj["ts"] for obj in rows]
                assert [r.values() for r in stored] == [{k: v for k, v in obj.items() if k not in ("ts", "seq")}
                                                        for obj in rows]
        finally:
            store.close()
    finally:
        ingest.stop()


@pytest.mark.parametrize("backend", ["sqlite", "influxdb"])
def test_replay_of_a_stored_session_publishes_its_readings_at_their_times(request: pytest.FixtureRequest,
                                                                         mosquitto: Mosquitto, site: str,
                                                                         tmp_path: Path, backend: str) -> None:
    site = f"{site[:50]}-{backend}"  # the site fixture is cut before the parameter: keep the runs apart
    if backend == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    else:
        store_url = request.getfixturevalue("influxd").store_url(site.replace("-", "_")[:60])
    t0 = 1_767_600_000_000
    rows = [Reading(site=site, chair="03", ts_ms=t0 + i * 1000, seq=i, hr=70.0 + i % 5, spo2=97.0, rr=14.0)
            for i in range(120)]
    session = Session(site=site, chair="03", session_id="S-1", state="ended", started_at=t0 - 60_000,
                      ended_at=t0 + 50_000, drug="ketamine", dose_mg_per_kg=0.5, duration_min=40, patient_ref="P-1")
    store = open_store(store_url)
    try:
        store.write_readings(rows)
        store.write_sessions([session])
    finally:
        store.close()
    msgs = stored_messages(FixedSettings(store_url=store_url), Topics(), site, "03", t0 + 10_000, t0 + 70_000)
    assert [m.sim_ms for m in msgs if m.topic.endswith("/vitals")] == [r.ts_ms for r in rows[10:70]]
    # The session running at --from is published active then, and ended when it ended, both retained.
    sessions = [(m.sim_ms, json.loads(m.payload), m.retain) for m in msgs if m.topic.endswith("/session")]
    assert [(at, doc["state"], doc["ended_at"], retain) for at, doc, retain in sessions] == [
        (t0 + 10_000, "active", None, True), (t0 + 50_000, "ended", "2026-01-05T08:00:50.000Z", True)]
    assert msgs[0].topic.endswith("/session") and sessions[0][1]["started_at"] == "2026-01-05T07:59:00.000Z"
    collector = MqttCollector(mosquitto.url, f"clinic/{site}-r/chair/+/vitals")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "infusion_monitor", "replay", "--store-url", store_url, "--site", site,
             "--chair", "03", "--from", "2026-01-05T08:00:10Z", "--to", "2026-01-05T08:01:10Z", "--to-site",
             f"{site}-r", "--mqtt-url", mosquitto.url, "--speed", "max"],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: len(c.messages) >= 60, timeout=10)
        time.sleep(0.2)
        got = [Reading(site=site, chair="03", **{("ts_ms" if k == "ts" else k): v for k, v in json.loads(p).items()})
               for p in collector.payloads()]
    finally:
        collector.close()
    assert got == rows[10:70]


@pytest.mark.parametrize(("scenario", "minutes"), [("delivery-faults", 6), ("disconnect", 35)])
def test_faulty_delivery_and_store_and_forward_land_every_reading_exactly_once(mosquitto: Mosquitto, site: str,
                                                                              tmp_path: Path, scenario: str,
                                                                              minutes: int) -> None:
    # As fast as possible, all in the past (late copies included), so the ingest refuses nothing as future.
    start_ms = (round(time.time()) - (minutes + 5) * 60) * 1000
    sc = load_scenario(scenario)
    expected = list(generate(sc, site=site, chairs=2, seed=8, start_ms=start_ms, duration_s=minutes * 60))
    unique = {(topic, obj["ts"]): obj for topic, obj in readings_of(expected)}
    copies = sum(1 for _ in readings_of(expected))
    if scenario == "delivery-faults":
        assert copies > len(unique) * 1.015  # duplicates really were published (5 % expected)
    else:
        assert any(m.payload[:1] == b"[" for m in expected)  # the gap's readings came as arrays
    store_url = f"sqlite:///{tmp_path / 'vitals.db'}"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, store_url, "--no-alarms")
    ingest.start()
    try:
        stats = simulator.run(load_settings(mqtt_url=mosquitto.url), site, 2, sc, speed=0, seed=8,
                              start_ms=start_ms, duration_s=minutes * 60)
        assert stats.readings == copies
        store = open_store(store_url)
        try:
            deadline = time.monotonic() + 30
            while store.count_readings(site=site) < len(unique) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            assert store.count_readings(site=site) == len(unique)
            for chair in ("01", "02"):
                stored = store.readings(site, chair, start_ms, start_ms + (minutes + 2) * 60_000)
                want = sorted((obj for (topic, _), obj in unique.items() if topic.endswith(f"/{chair}/vitals")),
                              key=lambda obj: obj["ts"])
                assert [(r.ts_ms, r.seq) for r in stored] == [(obj["ts"], obj["seq"]) for obj in want]
        finally:
            store.close()
    finally:
        ingest.stop()
