"""The inbound HL7 gateway (``infusion-monitor hl7-gateway``): PCD-01 ``ORU^R01`` over MLLP in, contract readings out.

For each message: read it (interop/hl7.py ``read_oru``), find its chair through the mapping file (device id from
OBX-18 or MSH-3, else the bed of PV1-3), validate the readings as the ingest would (vitals/reading.py), publish
them on ``{prefix}/{site}/chair/{chair}/vitals`` at QoS 1 and answer ``AA`` only after the broker acknowledged the
publish. Anything else is answered ``AE`` or ``AR`` with the refusal's code and reason (``REFUSALS`` in
interop/hl7.py). Patient fields (PID) are never read: only the readings and the chair leave the gateway.

Mapping file (TOML)::

    [[device]]            # OBX-18 (equipment instance identifier) or MSH-3's second component
    id = "0012A1FFFE000001"
    site = "north"
    chair = "c-07"

    [[bed]]               # PV1-3: point of care ^ room ^ bed ^ facility
    facility = "WARD3"
    bed = "BED7"
    site = "north"
    chair = "c-08"
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interop.hl7 import Hl7Refusal, Inbound, make_ack, read_oru, reading_objects
from interop.mllp import MllpServer, parse_hostport
from vitals.mqtt import connect, make_client, wait_connected
from vitals.reading import validate_reading
from vitals.settings import Settings
from vitals.topics import TopicError, Topics, check_id

log = logging.getLogger("interop.gateway")


@dataclass(frozen=True, slots=True)
class ChairMap:
    """Device ids and beds to (site, chair)."""

    devices: dict[str, tuple[str, str]] = field(default_factory=dict)
    beds: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ChairMap:
        """Read a mapping file, raising ValueError naming the entry that is wrong."""
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        unknown = set(doc) - {"device", "bed"}
        if unknown:
            raise ValueError(f"{path}: unknown tables {sorted(unknown)}; use [[device]] and [[bed]]")
        out = cls()
        for kind, keys in (("device", ("id",)), ("bed", ("facility", "bed"))):
            for i, entry in enumerate(doc.get(kind, [])):
                where = f"{path}: [[{kind}]] #{i + 1}"
                if not isinstance(entry, dict) or set(entry) != {*keys, "site", "chair"}:
                    raise ValueError(f"{where} must have exactly {', '.join(keys)}, site and chair")
                try:
                    target = (check_id(entry["site"], "site id"), check_id(entry["chair"], "chair id"))
                except TopicError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if not all(isinstance(entry[k], str) and entry[k] for k in keys):
                    raise ValueError(f"{where}: {', '.join(keys)} must be non-empty text")
                if kind == "device":
                    out.devices[entry["id"]] = target
                else:
                    out.beds[(entry["facility"], entry["bed"])] = target
        return out

    def chair_of(self, inbound: Inbound) -> tuple[str, str]:
        """Return the (site, chair) of a message, or raise Hl7Refusal ``unmapped_device``."""
        for device in inbound.device_ids:
            if device in self.devices:
                return self.devices[device]
        if inbound.bed is not None and inbound.bed in self.beds:
            return self.beds[inbound.bed]
        bed = "^".join(inbound.bed) if inbound.bed else "none"
        raise Hl7Refusal("unmapped_device", f"no mapping for device {', '.join(inbound.device_ids) or 'none'} "
                                            f"nor bed (facility^bed) {bed}")


Publish = Any  # (topic, payload) -> bool: True once the broker accepted it


class Gateway:
    """The message handler: an HL7 message in, an acknowledgement out (publishing through ``publish``)."""

    def __init__(self, chairs: ChairMap, topics: Topics, publish: Publish, now_ms: Any) -> None:
        self.chairs = chairs
        self.topics = topics
        self._publish = publish
        self._now_ms = now_ms
        self.accepted = 0
        self.refused: dict[str, int] = {}

    def handle(self, text: str) -> str:
        """Return the acknowledgement of one message (never raises on bad input)."""
        try:
            inbound = read_oru(text)
            site, chair = self.chairs.chair_of(inbound)
            payload = self._readings(site, chair, inbound)
            if not self._publish(self.topics.vitals(site, chair), payload):
                raise Hl7Refusal("broker_unavailable", "the MQTT broker did not accept the readings in time; resend")
        except Hl7Refusal as refusal:
            self.refused[refusal.code] = self.refused.get(refusal.code, 0) + 1
            log.warning("HL7 message refused (%s %s): %s", refusal.ack_code, refusal.code, refusal.reason)
            return make_ack(text, refusal.ack_code, f"{refusal.code}: {refusal.reason}",
                            "200" if refusal.ack_code == "AR" else "207")
        self.accepted += 1
        return make_ack(text, "AA")

    def _readings(self, site: str, chair: str, inbound: Inbound) -> bytes:
        objects = reading_objects(inbound)
        now = self._now_ms()
        out = []
        for obj in objects:
            reading, refusals = validate_reading(site, chair, obj, now)
            if refusals or reading is None:
                reasons = "; ".join(r.reason for r in refusals)
                timing = any(r.code.startswith("ts_") for r in refusals)
                raise Hl7Refusal("bad_time" if timing else "bad_value", reasons)
            out.append(reading.to_json_obj())
        return json.dumps(out).encode()


class MqttPublisher:
    """QoS 1 publishes that report whether the broker acknowledged them within the timeout."""

    def __init__(self, settings: Settings) -> None:
        self.timeout_s = settings.hl7_publish_timeout_s
        self.client, self.target = make_client(settings.mqtt_url or "", "", protocol=settings.mqtt_protocol,
                                               ca_file=settings.mqtt_ca_file, cert_file=settings.mqtt_cert_file,
                                               key_file=settings.mqtt_key_file)
        self.client.max_queued_messages_set(1000)

    def start(self) -> bool:
        """Connect; return whether the connection came up in time (the gateway serves anyway: AE until it does)."""
        connect(self.client, self.target)
        self.client.loop_start()
        return wait_connected(self.client, 10)

    def __call__(self, topic: str, payload: bytes) -> bool:
        if not self.client.is_connected():
            return False
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class GatewayService:
    """The gateway role: an MLLP server in front of ``Gateway`` and an MQTT publisher."""

    def __init__(self, settings: Settings) -> None:
        if settings.hl7_gateway_map_file is None:
            raise ValueError("hl7_gateway_map_file (--map-file) is required: it says which chair a device or bed is")
        from interop.hl7_export import wall_ms

        self.publisher = MqttPublisher(settings)
        self.gateway = Gateway(ChairMap.load(settings.hl7_gateway_map_file), Topics(settings.topic_prefix),
                               self.publisher, wall_ms)
        host, port = parse_hostport(settings.hl7_listen)
        self.server = MllpServer(host, port, self.gateway.handle)

    @property
    def port(self) -> int:
        """Return the MLLP port listened on."""
        return self.server.port

    def start(self) -> bool:
        """Connect to the broker and start serving; return whether the broker connection came up in time."""
        connected = self.publisher.start()
        self.server.start()
        return connected

    def stop(self) -> None:
        """Stop serving and disconnect."""
        self.server.stop()
        self.publisher.stop()
