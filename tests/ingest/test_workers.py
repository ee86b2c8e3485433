"""``infusion-monitor ingest --workers N``: the sites split between processes, each storing and alarming on its own."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from ingest.workers import split_sites
from tests.servers import Influxd, IngestProcess, Mosquitto, MqttCollector, mosquitto_pub_lines, wait_until
from vitals.settings import FixedSettings
from vitals.store import open_store
from vitals.topics import Topics


def test_sites_go_to_workers_by_position_and_appending_one_moves_no_other() -> None:
    assert split_sites(["a", "b", "c"], 2) == [["a", "c"], ["b"]]
    before, after = split_sites(["a", "b", "c"], 2), split_sites(["a", "b", "c", "d"], 2)
    assert all(set(old) <= set(new) for old, new in zip(before, after, strict=True))
    assert split_sites(["a"], 2) == [["a"], []]


def test_workers_need_sites_and_exclude_a_shared_group() -> None:
    assert FixedSettings(sites="a, b", workers=2).site_list() == ["a", "b"]
    for bad in ({"workers": 2}, {"workers": 2, "sites": "a", "shared_group": "g"}, {"site": "a", "sites": "b"},
                {"sites": "a,a"}, {"sites": "a,bad site"}):
        with pytest.raises(ValueError):
            FixedSettings(**bad)


def _stored(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("ingest_readings_stored_total "):
                return int(float(line.split()[1]))
    return -1


@pytest.mark.integration
def test_two_workers_store_each_site_once_and_raise_its_alarms(
    mosquitto: Mosquitto, influxd: Influxd, site: str, tmp_path: Path
) -> None:
    sites = [f"{site}a", f"{site}b"]
    db = f"db_{site}".replace("-", "_")
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, influxd.store_url(db),
                           "--sites", ",".join(sites), "--workers", "2")
    topics = Topics()
    events = MqttCollector(mosquitto.url, topics.alarm_events_filter())
    try:
        ingest.start()  # ready when worker 0 answers on http_port; worker 1 serves http_port + 1
        ports = [ingest.http_port, ingest.http_port + 1]
        assert wait_until(lambda: _healthy(ports[1]), 20), ingest.log()[-2000:]
        now = int(time.time() * 1000)
        for k, s in enumerate(sites):
            lines = [json.dumps({"ts": now - 60_000 + i * 100, "seq": i, "hr": 70}) for i in range(100 + 50 * k)]
            mosquitto_pub_lines(mosquitto.port, topics.vitals(s, "chair-1"), lines)
        # Three high readings on one chair of the second site: its worker raises the alarm, once.
        mosquitto_pub_lines(mosquitto.port, topics.vitals(sites[1], "chair-9"),
                            [json.dumps({"ts": now + j * 1000, "hr": 80, "sys": 185, "dia": 100}) for j in range(3)])
        metrics = [f"http://127.0.0.1:{p}/metrics" for p in ports]
        assert wait_until(lambda: [_stored(u) for u in metrics] == [100, 153], 30), [_stored(u) for u in metrics]
        store = open_store(influxd.store_url(db))
        try:
            assert [store.count_readings(site=s) for s in sites] == [100, 153]
        finally:
            store.close()

        def raised() -> list[dict]:
            out = []
            for payload in events.payloads():
                obj = json.loads(payload)
                if obj.get("site") == sites[1] and obj.get("chair") == "chair-9" and obj.get("event") == "raised":
                    out.append(obj)
            return out

        assert wait_until(lambda: "sys" in [e["vital"] for e in raised()], 15)
        time.sleep(0.5)
        assert [e["vital"] for e in raised()].count("sys") == 1
    finally:
        events.close()
        ingest.stop()
    assert not _healthy(ports[0]) and not _healthy(ports[1])  # SIGTERM reached both workers


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False
