"""The inbound gateway: sample PCD-01 messages through the real ``infusion-monitor hl7-gateway`` process into a real
mosquitto, the real ingest and its SQLite store; every refusal reason answered AE/AR with its reason; the ingest
turns the exporter's ``failing`` status into the ``export_failed`` technical alarm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard.live import LiveState
from interop.gateway import Gateway, GatewayService
from interop.hl7 import REFUSALS, read_ack
from interop.mllp import send
from tests.interop.helpers import TOPICS
from tests.interop.samples import (
    EXTRA_REFUSALS,
    GATEWAY_150301,
    GATEWAY_150301_READINGS,
    MAP_FILE,
    MONITOR_150021,
    MONITOR_150021_READINGS,
    REFUSAL_CASES,
)
from tests.servers import IngestProcess, Mosquitto, MqttCollector, free_port, wait_port, wait_until
from vitals.settings import FixedSettings
from vitals.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gw_site() -> str:
    """The site of this module's tests (they share one gateway process, which maps to one site)."""
    return f"t-hl7-gateway-{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def gateway(mosquitto: Mosquitto, gw_site: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real hl7-gateway process; yields its MLLP port."""
    tmp_path = tmp_path_factory.mktemp("hl7-gateway")
    site = gw_site
    mapping = tmp_path / "chairs.toml"
    mapping.write_text(MAP_FILE.format(site=site))
    port = free_port()
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor", "hl7-gateway", "--mqtt-url", mosquitto.url,
                             "--listen", f"127.0.0.1:{port}", "--map-file", str(mapping)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 15, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_sample_messages_of_both_nibp_families_are_stored_and_the_export_alarm_is_raised(
        mosquitto: Mosquitto, gw_site: str, tmp_path: Path, gateway: int) -> None:
    site = gw_site
    db = tmp_path / "vitals.db"
    ingest = IngestProcess(tmp_path / "ingest", mosquitto.url, f"sqlite:///{db}", "--site", site)
    seen = MqttCollector(mosquitto.url, TOPICS.chair_filter("vitals", site), TOPICS.alarm_events_filter(site),
                         TOPICS.chair_filter("alarms", site))
    try:
        ingest.start()
        time.sleep(0.5)  # the ingest subscribes right after connecting
        for message in (MONITOR_150021, GATEWAY_150301):
            ack = read_ack(send("127.0.0.1", gateway, message))
            assert (ack.code, ack.reason) == ("AA", "")
        # AA came after the broker took the publish: the readings are on the topic, names nowhere
        published = [json.loads(p) for p in seen.payloads("/vitals")]
        assert published == [MONITOR_150021_READINGS, GATEWAY_150301_READINGS]
        assert not any(b"Doe" in p or b"Jane" in p or b"4711" in p for p in seen.payloads())
        store = SQLiteStore(db)
        try:
            assert wait_until(lambda: store.count_readings(site) == 3, timeout=20), ingest.log()[-2000:]
            stored = {(r.chair, r.ts_ms): r.values() for r in store.readings(site, "c-07", 0, 2**62)}
            stored.update({(r.chair, r.ts_ms): r.values() for r in store.readings(site, "c-08", 0, 2**62)})
        finally:
            store.close()
        expected = {("c-07", o["ts"]): {k: v for k, v in o.items() if k != "ts"} for o in MONITOR_150021_READINGS}
        expected.update({("c-08", o["ts"]): {k: v for k, v in o.items() if k != "ts"} for o in GATEWAY_150301_READINGS})
        assert stored == expected

        # The exporter's retained status -> the ingest's export_failed technical alarm, cleared by ok.
        status = {"target": "hl7", "state": "failing", "reason": "MLLP 10.0.0.5:2575: connection refused",
                  "pending": 3, "ts": int(time.time() * 1000)}
        seen.client.publish(TOPICS.export(site, "c-07"), json.dumps(status), qos=1, retain=True).wait_for_publish(5)

        def export_events() -> list[dict]:
            return [e for e in map(json.loads, seen.payloads("/alarms/events")) if e["vital"] == "export_failed"]

        assert wait_until(lambda: export_events(), timeout=15), ingest.log()[-2000:]
        raised = export_events()[0]
        assert (raised["event"], raised["kind"], raised["priority"], raised["chair"]) == \
            ("raised", "technical", "medium", "c-07")
        # The dashboard draws the chair's retained alarm list: the export alarm is the tile's alarm text.
        assert wait_until(lambda: any(b"export_failed" in p for p in seen.payloads(TOPICS.alarms(site, "c-07")))), \
            ingest.log()[-2000:]
        live = LiveState()
        live.apply_alarms(site, "c-07", [p for p in seen.payloads(TOPICS.alarms(site, "c-07")) if b"export_failed" in p][-1])
        tile = live.tile(site, "c-07")
        assert tile is not None and (tile.alarm_priority, tile.alarm_text) == \
            ("medium", "HL7 export failing")
        seen.client.publish(TOPICS.export(site, "c-07"), json.dumps({**status, "state": "ok", "reason": None}),
                            qos=1, retain=True).wait_for_publish(5)
        assert wait_until(lambda: [e["event"] for e in export_events()] == ["raised", "cleared"], timeout=15)
        seen.client.publish(TOPICS.export(site, "c-07"), b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        ingest.stop()
        seen.client.loop_stop()


def test_every_refusal_reason_is_answered_with_its_code(mosquitto: Mosquitto, gw_site: str, gateway: int) -> None:
    site = gw_site
    seen = MqttCollector(mosquitto.url, TOPICS.chair_filter("vitals", site))
    try:
        assert set(REFUSAL_CASES) | {"broker_unavailable"} == set(REFUSALS)  # every code has a case here
        for code, message in {**REFUSAL_CASES, **EXTRA_REFUSALS}.items():
            ack = read_ack(send("127.0.0.1", gateway, message))
            expected = code if code in REFUSALS else "bad_value"
            assert ack.code == REFUSALS[expected], (code, ack)
            assert ack.reason.startswith(expected + ": ") and len(ack.reason) > len(expected) + 10, ack.reason
            if code != "not_hl7":
                assert ack.control_id == ("MSG-0001" if "MSG-0001" in message else "MSG-0002" if "MSG-0002" in message
                                          else "MSG-0003" if "MSG-0003" in message else ""), (code, ack)
        time.sleep(0.3)
        assert seen.payloads() == []  # nothing refused was published
    finally:
        seen.client.loop_stop()


def test_no_broker_is_answered_ae_broker_unavailable(site: str, tmp_path: Path) -> None:
    mapping = tmp_path / "chairs.toml"
    mapping.write_text(MAP_FILE.format(site=site))
    settings = FixedSettings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}", hl7_listen="127.0.0.1:0",
                             hl7_gateway_map_file=mapping, hl7_publish_timeout_s=0.5)
    service = GatewayService(settings)
    service.server.start()  # and the publisher never connects: nobody listens on its port
    try:
        ack = read_ack(send("127.0.0.1", service.port, MONITOR_150021))
        assert ack.code == "AE" and ack.reason.startswith("broker_unavailable: ")
        assert isinstance(service.gateway, Gateway) and service.gateway.refused == {"broker_unavailable": 1}
    finally:
        service.server.stop()
