"""The live HL7 exporter against a real MLLP receiver (hl7apy's server) and a real mosquitto, in event time.

Every cuff reading and every minute of numerics of a session arrives once, read back by a second parser
(python-hl7) with the table's MDC codes and units; with the receiver stopped (three minutes of a session in event
time; the exporter itself restarted in between) nothing is lost, the chair's export status goes ``failing`` and
back to ``ok``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import hl7
import pytest

from interop.hl7_export import Hl7ExportService
from interop.hl7_mdc import OUTBOUND
from tests.interop.helpers import TOPICS, Publisher, Receiver, minute_floor, session_readings
from tests.servers import Mosquitto, MqttCollector, free_port, wait_until
from vitals.settings import FixedSettings

pytestmark = pytest.mark.integration
CHAIR = "c-03"


def _settings(mosquitto: Mosquitto, site: str, port: int, tmp_path: Path) -> FixedSettings:
    return FixedSettings(mqtt_url=mosquitto.url, site=site, data_dir=tmp_path, hl7_mllp=f"127.0.0.1:{port}",
                         mqtt_client_id=f"hl7-export-{site}"[:60], hl7_close_grace_s=3600, hl7_retry_backoff_s=0.05,
                         hl7_retry_max_s=0.2, hl7_fail_after=3, hl7_ack_timeout_s=2)


def _parsed(receiver: Receiver) -> list[hl7.Message]:
    return [hl7.parse(text.replace("\n", "\r")) for text in receiver.received()]


def _metrics(message: hl7.Message) -> dict[str, tuple[str, float, str]]:
    """vital -> (OBX-3 code, value, OBX-6 unit code) of a message's metric rows."""
    by_code = {c.code: c for c in OUTBOUND.values()}
    out = {}
    for obx in message.segments("OBX"):
        if str(obx[2]) == "NM":
            code = str(obx[3][0][0])
            out[by_code[code].vital] = (code, float(str(obx[5])), str(obx[6][0][0]))
    return out


def _expected(objs: list[dict]) -> tuple[dict[int, dict], dict[int, dict]]:
    """(cuff ts -> values, minute start -> median numerics) of published readings."""
    cuffs = {o["ts"]: {v: float(o[v]) for v in ("sys", "dia", "map")} for o in objs if "sys" in o}
    minutes: dict[int, dict[str, list[float]]] = {}
    for o in objs:
        if "hr" in o:
            bucket = minutes.setdefault(minute_floor(o["ts"]), {"hr": [], "spo2": [], "rr": []})
            for v in bucket:
                bucket[v].append(float(o[v]))
    return cuffs, {m: {v: float(statistics.median(vals)) for v, vals in b.items()} for m, b in minutes.items()}


def _check_once(receiver: Receiver, objs: list[dict]) -> None:
    cuffs, minutes = _expected(objs)
    messages = _parsed(receiver)
    ids = [str(m.segment("MSH")[10]) for m in messages]
    assert len(ids) == len(set(ids)) == len(cuffs) + len(minutes), ids  # each arrives once
    got_cuffs, got_minutes = {}, {}
    for message in messages:
        obr_start = str(message.segment("OBR")[7])
        metrics = _metrics(message)
        for vital, (code, _, unit) in metrics.items():
            assert (code, unit) == (OUTBOUND[vital].code, OUTBOUND[vital].unit_code)
        assert str(message.segment("PID")[3][0][0]) == "P-0042"  # the pseudonymous ref, nothing else
        if "sys" in metrics:
            got_cuffs[obr_start] = {v: metrics[v][1] for v in ("sys", "dia", "map")}
        else:
            got_minutes[obr_start] = {v: metrics[v][1] for v in ("hr", "spo2", "rr")}
    from interop.hl7 import hl7_ts

    assert got_cuffs == {hl7_ts(ts): values for ts, values in cuffs.items()}
    assert got_minutes == {hl7_ts(ts): values for ts, values in minutes.items()}


def test_every_cuff_reading_and_minute_arrives_once_and_nothing_is_lost_while_the_receiver_is_down(
        mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver(port)
    receiver.start()
    publisher = Publisher(mosquitto.url)
    status = MqttCollector(mosquitto.url, TOPICS.chair_filter("export", site))
    exporter = Hl7ExportService(_settings(mosquitto, site, port, tmp_path))
    assert exporter.start()
    try:
        time.sleep(0.3)  # the SUBACK
        # Session 1: four minutes, receiver up. Event time: it happened 20 minutes ago.
        t1 = minute_floor(int(time.time() * 1000)) - 20 * 60_000
        first = session_readings(t1, 4)
        publisher.session(site, CHAIR, "S-1", t1)
        publisher.readings(site, CHAIR, first)
        publisher.session(site, CHAIR, "S-1", t1, ended=t1 + 4 * 60_000)
        assert wait_until(lambda: len(receiver.received()) == 8, timeout=20), len(receiver.received())
        _check_once(receiver, first)

        # Session 2 with the receiver down: three minutes in event time (more than the 30 s asked), the exporter
        # restarted in the middle of it (its outbox and the broker's persistent session carry everything).
        receiver.stop()
        t2 = t1 + 10 * 60_000
        second = session_readings(t2, 3)
        publisher.session(site, CHAIR, "S-2", t2)
        publisher.readings(site, CHAIR, second[: len(second) // 2])
        assert status.wait_for(lambda c: any(json.loads(p)["state"] == "failing" for p in c.payloads()), timeout=15)
        failing = json.loads(status.payloads()[-1])
        assert failing["target"] == "hl7" and "127.0.0.1" in failing["reason"] and failing["pending"] >= 1
        exporter.stop()
        publisher.readings(site, CHAIR, second[len(second) // 2:])
        publisher.session(site, CHAIR, "S-2", t2, ended=t2 + 3 * 60_000)
        exporter = Hl7ExportService(_settings(mosquitto, site, port, tmp_path))
        assert exporter.start()
        time.sleep(0.5)  # it takes the queued messages and keeps failing against the stopped receiver
        assert len(receiver.received()) == 8
        receiver.start()
        assert wait_until(lambda: len(receiver.received()) == 8 + 6, timeout=20), len(receiver.received())
        _check_once(receiver, first + second)
        assert status.wait_for(lambda c: json.loads(c.payloads()[-1])["state"] == "ok", timeout=10)
        time.sleep(0.3)
        assert len(receiver.received()) == 14  # and nothing more came
        assert exporter.exporter.outbox.counts()["pending"] == 0
    finally:
        exporter.stop()
        receiver.stop()
        publisher.close()
        status.client.loop_stop()
