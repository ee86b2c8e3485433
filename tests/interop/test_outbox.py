"""The exporter's core without MQTT: the outbox keys, intervals, acknowledgements AE/AR, backoff, status, restart.

A real MLLP receiver (interop.mllp.MllpServer) answers from a script; the sender is driven step by step.
"""

from __future__ import annotations

from pathlib import Path

from interop.hl7 import make_ack
from interop.hl7_export import Hl7Exporter
from interop.mllp import MllpServer
from tests.servers import wait_until
from vitals.reading import Reading
from vitals.records import ExportStatus, Session
from vitals.settings import FixedSettings

T0 = 1795597200000  # a minute boundary
SITE, CHAIR = "north", "c-07"


class Scripted:
    """A receiver answering the next code of ``codes`` (AA when they run out) and keeping each message's id."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.got: list[tuple[str, str]] = []
        self.server = MllpServer("127.0.0.1", 0, self.answer)
        self.server.start()

    def answer(self, text: str) -> str:
        code = self.codes.pop(0) if self.codes else "AA"
        self.got.append((text.split("\r")[0].split("|")[9], code))
        return make_ack(text, code, "" if code == "AA" else f"scripted {code}")


def numerics(start: int, n: int = 6) -> list[Reading]:
    return [Reading(SITE, CHAIR, start + i * 10_000, hr=70 + i, spo2=97, rr=12) for i in range(n)]


def exporter(tmp_path: Path, port: int, statuses: list[ExportStatus]) -> Hl7Exporter:
    settings = FixedSettings(data_dir=tmp_path, hl7_mllp=f"127.0.0.1:{port}", hl7_retry_backoff_s=0.01,
                             hl7_retry_max_s=0.02, hl7_fail_after=2, hl7_close_grace_s=3600)
    return Hl7Exporter(settings, lambda site, chair, status: statuses.append(status))


def drain(ex: Hl7Exporter) -> None:
    """Send until nothing is pending (retries are due within milliseconds)."""
    assert wait_until(lambda: ex.send_one() is False and ex.outbox.counts()["pending"] == 0, timeout=10, step=0.01)


def test_keys_intervals_acknowledgements_and_a_restart(tmp_path: Path) -> None:
    receiver = Scripted(["AE", "AE", "AA", "AR"])
    statuses: list[ExportStatus] = []
    ex = exporter(tmp_path, receiver.server.port, statuses)
    try:
        ex.on_readings(numerics(T0))  # before any session: not exported
        assert ex.outbox.counts() == {"pending": 0, "sent": 0, "refused": 0}
        ex.on_session(Session(SITE, CHAIR, "S-1", "active", T0, patient_ref="P-1"))
        cuff = Reading(SITE, CHAIR, T0 + 30_000, sys=120, dia=80, map=93)
        ex.on_readings([*numerics(T0), cuff])
        ex.on_readings([*numerics(T0), cuff])  # an MQTT redelivery adds nothing
        assert ex.outbox.counts()["pending"] == 1  # the cuff message; minute 0 is still open
        ex.on_readings(numerics(T0 + 60_000, 1))  # a reading of minute 1 closes minute 0 (event time)
        assert ex.outbox.counts()["pending"] == 2

        # The cuff message: AE, AE (the chair goes failing after hl7_fail_after=2 attempts), then AA (ok again).
        drain_until = len(statuses)
        ex.send_one()
        assert statuses[drain_until:] == []
        assert wait_until(lambda: ex.send_one() and len(receiver.got) == 2, timeout=5, step=0.01)
        assert [s.state for s in statuses] == ["failing"] and "AE" in (statuses[0].reason or "")
        assert wait_until(lambda: ex.send_one() and len(receiver.got) == 3, timeout=5, step=0.01)
        assert [s.state for s in statuses] == ["failing", "ok"]
        # Minute 0: AR. It is kept as refused, the chair goes failing, and later messages still go.
        ex.send_one()
        assert ex.outbox.counts() == {"pending": 0, "sent": 1, "refused": 1}
        assert statuses[-1].state == "failing" and "refused" in (statuses[-1].reason or "")
        assert [g for g in receiver.got] == [("north.c-07.cuff.1795597230000", "AE"),
                                             ("north.c-07.cuff.1795597230000", "AE"),
                                             ("north.c-07.cuff.1795597230000", "AA"),
                                             ("north.c-07.num.1795597200000", "AR")]

        # A late reading of minute 0 goes out in a second message for that minute, never dropped.
        ex.on_readings([Reading(SITE, CHAIR, T0 + 55_000, hr=90)])
        ex.on_readings(numerics(T0 + 120_000, 1))  # closes minute 0's late part and minute 1
        ex.outbox.close()
        # Restart: a new exporter on the same outbox finds the session and the queued messages.
        ex = exporter(tmp_path, receiver.server.port, statuses)
        assert ex.outbox.counts()["pending"] == 2
        ex.on_session(Session(SITE, CHAIR, "S-1", "ended", T0, T0 + 150_000, patient_ref="P-1"))  # closes minute 2
        drain(ex)
        assert [key for key, _ in receiver.got[4:]] == ["north.c-07.num.1795597200000.1795597255000",
                                                        "north.c-07.num.1795597260000", "north.c-07.num.1795597320000"]
        assert statuses[-1].state == "ok"  # an AA for the chair clears its failing state
    finally:
        ex.outbox.close()
        receiver.server.stop()
