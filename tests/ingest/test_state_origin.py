"""State bound to its origin, end to end: the real ingest process, two real mosquitto brokers, real influxd.

The reported scenario: two ingests started in one data directory against two brokers. The second restored the
first one's alarm state and raised "No data" for chairs its broker never had. Now it refuses with a message
that says what to do, or with --fresh-state starts empty with the old files kept aside; and a spool left for
one store is never drained into another.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import Influxd, IngestProcess, Mosquitto, MqttCollector, mosquitto_pub_lines, require, wait_until
from vitals.store.influx import InfluxStore
from vitals.topics import Topics

pytestmark = pytest.mark.integration
TOPICS = Topics()
CHAIRS = [f"c-{n:02d}" for n in range(1, 6)]
REPO = Path(__file__).resolve().parents[2]
# no_data after 1 s instead of 15 s, so the first ingest raises it for every chair within the test.
QUICK = {"INFUSION_NO_DATA_S": "1"}


def publish_readings(broker: Mosquitto, site: str, chairs: list[str], n: int = 3) -> None:
    """Publish ``n`` recent readings for each chair with the real mosquitto_pub."""
    t0 = int(time.time() * 1000) - 10_000
    for chair in chairs:
        lines = [json.dumps({"ts": t0 + i * 1000, "seq": i, "hr": 72, "spo2": 97, "rr": 14}) for i in range(n)]
        mosquitto_pub_lines(broker.port, TOPICS.vitals(site, chair), lines)


def run_to_exit(ingest: IngestProcess, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the ingest's command in the foreground (it is expected to refuse and exit)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **ingest.env}
    return subprocess.run(ingest.command(), cwd=ingest.workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def health(ingest: IngestProcess) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ingest.http_port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def site_alarms(collector: MqttCollector, site: str) -> list[bytes]:
    """Return every alarm event or non-empty retained alarm list of ``site`` the collector received."""
    return [p for p in collector.payloads(f"{TOPICS.prefix}/{site}/") if p not in (b"", b"[]")]


def test_another_broker_refuses_then_fresh_state_starts_empty_with_the_old_state_kept(
        mosquitto: Mosquitto, own_mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'vitals.db'}"
    workdir = tmp_path / "ingest"  # both ingests run here, with the same data directory
    on_a = MqttCollector(mosquitto.url, TOPICS.alarm_events_filter(site))
    first = IngestProcess(workdir, mosquitto.url, store, "--site", site, env=QUICK)
    try:
        first.start()
        time.sleep(0.5)
        publish_readings(mosquitto, site, CHAIRS)
        # The control: these chairs do raise no_data once their readings stop, on the broker they came from.
        raised = lambda: {json.loads(p)["chair"] for p in on_a.payloads() if json.loads(p)["event"] == "raised"}  # noqa: E731
        assert wait_until(lambda: raised() == set(CHAIRS)), first.log()[-3000:]
    finally:
        first.stop()
        on_a.close()
    state = workdir / "data" / "alarm_state.json"
    assert json.loads(state.read_text())["origin"]["broker"] == f"mqtt://127.0.0.1:{mosquitto.port}"
    saved = state.read_bytes()

    on_b = MqttCollector(own_mosquitto.url, f"{TOPICS.prefix}/{site}/#")
    try:
        second = IngestProcess(workdir, own_mosquitto.url, store, "--site", site, env=QUICK)
        refused = run_to_exit(second)
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert f"alarm state {state} belongs to broker mqtt://127.0.0.1:{mosquitto.port}" in refused.stderr, \
            refused.stderr[-3000:]
        assert f"this ingest was given broker mqtt://127.0.0.1:{own_mosquitto.port}" in refused.stderr
        assert "--fresh-state" in refused.stderr and "INFUSION_BROKER_ID" in refused.stderr
        assert state.read_bytes() == saved  # untouched

        fresh = IngestProcess(workdir, own_mosquitto.url, store, "--site", site, "--fresh-state", env=QUICK)
        try:
            fresh.start()
            time.sleep(3)  # three ticks past no_data_s: a restored chair would have raised by now
            assert site_alarms(on_b, site) == []
            assert "0 chairs restored" in fresh.log() and "moved aside to" in fresh.log()
        finally:
            fresh.stop()
    finally:
        on_b.close()
    [aside] = (workdir / "data").glob("alarm_state.aside-*.json")
    assert aside.read_bytes() == saved
    assert json.loads(state.read_text())["origin"]["broker"] == f"mqtt://127.0.0.1:{own_mosquitto.port}"


def test_a_spool_left_for_one_store_is_not_drained_into_another(
        mosquitto: Mosquitto, own_influxd: Influxd, influxd: Influxd, site: str, tmp_path: Path) -> None:
    workdir = tmp_path / "ingest"
    store_a, store_b = own_influxd.store_url("origin_a"), influxd.store_url("origin_b")
    first = IngestProcess(workdir, mosquitto.url, store_a, "--site", site)
    try:
        first.start()
        own_influxd.stop()  # store A unreachable: readings go to the spool
        time.sleep(0.5)
        publish_readings(mosquitto, site, CHAIRS, n=4)
        assert wait_until(lambda: health(first)["spool_items"] >= 4 * len(CHAIRS)), first.log()[-3000:]
    finally:
        first.stop()

    refused = run_to_exit(IngestProcess(workdir, mosquitto.url, store_b, "--site", site))
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"belongs to store influxdb://127.0.0.1:{own_influxd.port}/origin_a and holds" in refused.stderr
    assert f"this ingest was given store influxdb://127.0.0.1:{influxd.port}/origin_b" in refused.stderr
    assert "spool_items 0" in refused.stderr
    b = InfluxStore.from_url(store_b)
    try:
        assert b.count_readings(site) == 0

        # What the refusal advises: back to store A until the spool is empty, then switch.
        own_influxd.start()
        back = IngestProcess(workdir, mosquitto.url, store_a, "--site", site)
        try:
            back.start()
            assert wait_until(lambda: health(back)["spool_items"] == 0), back.log()[-3000:]
        finally:
            back.stop()
        a = InfluxStore.from_url(store_a)
        try:
            assert a.count_readings(site) == 4 * len(CHAIRS)
        finally:
            a.close()
        moved = IngestProcess(workdir, mosquitto.url, store_b, "--site", site)
        try:
            moved.start()  # an empty spool and an empty outbox follow the new store
            assert "now belongs to store" in moved.log()
            publish_readings(mosquitto, site, ["c-99"], n=2)
            assert wait_until(lambda: b.count_readings(site) == 2), moved.log()[-3000:]
        finally:
            moved.stop()
        assert b.count_readings(site, "c-01") == 0
    finally:
        b.close()


def saved_chairs(state: Path) -> int:
    """Return how many chairs a saved alarm state holds (0 before the first save)."""
    return len(json.loads(state.read_text())["engine"]["chairs"]) if state.exists() else 0


def test_the_same_broker_with_a_new_password_keeps_its_state(site: str, tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"

    def set_password(password: str) -> None:
        subprocess.run([require("mosquitto_passwd"), "-c", "-b", str(passwords), "ingest", password], check=True)

    set_password("first-secret")
    broker = Mosquitto(tmp_path / "auth-broker", extra_conf=f"allow_anonymous true\npassword_file {passwords}")
    broker.start()
    try:
        store = f"sqlite:///{tmp_path / 'vitals.db'}"
        url = f"mqtt://ingest:first-secret@127.0.0.1:{broker.port}"
        first = IngestProcess(tmp_path / "ingest", url, store, "--site", site)
        try:
            first.start()
            time.sleep(0.5)
            publish_readings(broker, site, CHAIRS[:2])
            assert wait_until(lambda: saved_chairs(tmp_path / "ingest" / "data" / "alarm_state.json") == 2), first.log()
        finally:
            first.stop()

        set_password("second-secret")
        broker.restart()
        old = subprocess.run([require("mosquitto_pub"), "-p", str(broker.port), "-u", "ingest", "-P", "first-secret",
                              "-t", "x", "-m", "x"], capture_output=True, text=True, timeout=30)
        assert old.returncode != 0  # the broker does check passwords: the old one is refused
        second = IngestProcess(tmp_path / "ingest", url.replace("first-secret", "second-secret"), store, "--site", site)
        try:
            second.start()
            assert "2 chairs restored" in second.log(), second.log()[-3000:]
            assert "refusing" not in second.log().lower()
        finally:
            second.stop()
    finally:
        broker.stop()
