"""A real MLLP receiver (hl7apy's MLLPServer) recording what it acknowledges, and session/reading publishing."""

from __future__ import annotations

import json
import threading

from hl7apy.mllp import AbstractHandler, MLLPServer

from interop.hl7 import make_ack
from vitals.mqtt import connect, make_client, wait_connected
from vitals.reading import format_ts
from vitals.topics import Topics

TOPICS = Topics()


class Receiver:
    """hl7apy's MLLP server on a fixed port, answering ``answer`` (AA unless told) and keeping what it received."""

    def __init__(self, port: int, answer: str = "AA") -> None:
        self.port = port
        self.answer = answer
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self.server: MLLPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(AbstractHandler):
            def reply(self) -> str:
                with receiver._lock:
                    if receiver.answer == "AA":
                        receiver.messages.append(self.incoming_message)
                    ack = make_ack(self.incoming_message, receiver.answer, "" if receiver.answer == "AA" else "test")
                return "\x0b" + ack + "\x1c\r"

        self.server = MLLPServer("127.0.0.1", self.port, {"ORU^R01^ORU_R01": (Handler,)}, timeout=5)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def received(self) -> list[str]:
        with self._lock:
            return list(self.messages)


class Publisher:
    """A paho client publishing a chair's session and readings at QoS 1, waiting for each PUBACK."""

    def __init__(self, url: str) -> None:
        self.client, target = make_client(url)
        connect(self.client, target)
        self.client.loop_start()
        assert wait_connected(self.client, 10)

    def session(self, site: str, chair: str, session_id: str, started: int, ended: int | None = None,
                patient_ref: str | None = "P-0042") -> None:
        body = {"session_id": session_id, "state": "ended" if ended else "active", "started_at": format_ts(started),
                "ended_at": format_ts(ended) if ended else None, "drug": "ketamine", "dose_mg_per_kg": 0.5,
                "duration_min": 40, "patient_ref": patient_ref}
        self.client.publish(TOPICS.session(site, chair), json.dumps(body), qos=1, retain=True).wait_for_publish(5)

    def readings(self, site: str, chair: str, objs: list[dict]) -> None:
        for i in range(0, len(objs), 100):
            self.client.publish(TOPICS.vitals(site, chair), json.dumps(objs[i:i + 100]), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def minute_floor(ms: int) -> int:
    return ms - ms % 60_000


def session_readings(start: int, minutes: int, cuff_offset_s: int = 30) -> list[dict]:
    """Numerics every 5 s for ``minutes`` minutes (hr varies, so medians are checkable) and one cuff reading a minute."""
    out = []
    for i in range(minutes * 12):
        ts = start + i * 5000
        out.append({"ts": ts, "hr": 70 + (i % 12) ** 2 // 10 + i // 12, "spo2": 95 + (i % 5 == 0) * 3, "rr": 12 + (i % 3 == 0)})
    for m in range(minutes):
        out.append({"ts": start + m * 60_000 + cuff_offset_s * 1000 + 1, "sys": 120 + m, "dia": 80, "map": 93})
    return sorted(out, key=lambda o: o["ts"])
