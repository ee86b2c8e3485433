"""MQTT connection setup shared by every role: URL parsing, TLS, protocol version, backoff."""

from __future__ import annotations

import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Reconnect backoff bounds (seconds): quick first retry, capped so an outage is noticed within a minute.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where and how to connect, parsed from ``mqtt[s]://[user:password@]host:port``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        """Parse a broker URL, raising ValueError that names the accepted form."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"invalid MQTT URL {redact(url)!r}: use mqtt://host:port or mqtts://host:port")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"invalid port in MQTT URL {redact(url)!r}") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def redact(url: str) -> str:
    """Return a URL with its password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def make_client(
    url: str,
    client_id: str = "",
    *,
    protocol: str = "5",
    manual_ack: bool = False,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    persistent: bool = False,
) -> tuple[paho.Client, MqttTarget]:
    """Return a configured (not yet connected) paho client and its target."""
    target = MqttTarget.parse(url)
    proto = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
    extra = {} if proto == paho.MQTTv5 else {"clean_session": not persistent}
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, manual_ack=manual_ack,
        reconnect_on_failure=True, **extra,
    )
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        client.tls_set_context(context)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client, target


def connect(client: paho.Client, target: MqttTarget, *, clean_start: bool = True,
            session_expiry_s: int | None = None, keepalive: int = 30) -> None:
    """Start connecting asynchronously (the network loop must run); retries go on in the loop."""
    props = None
    if client.protocol == paho.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        if session_expiry_s:
            props.SessionExpiryInterval = session_expiry_s
        # Let the broker send as many unacknowledged QoS 1 messages as it is configured to.
        props.ReceiveMaximum = 65535
        client.connect_async(target.host, target.port, keepalive=keepalive, clean_start=clean_start, properties=props)
    else:  # v3.1.1: persistence was chosen when the client was made (make_client(persistent=...))
        client.connect_async(target.host, target.port, keepalive=keepalive)


def wait_connected(client: paho.Client, timeout: float = 10.0) -> bool:
    """Block until the client is connected or the timeout passes; return whether it connected."""
    done = threading.Event()
    previous = client.on_connect

    def on_connect(c, userdata, flags, reason_code, properties=None):  # type: ignore[no-untyped-def]
        if previous is not None:
            previous(c, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:
            done.set()

    client.on_connect = on_connect
    if client.is_connected():
        done.set()
    ok = done.wait(timeout)
    client.on_connect = previous
    return ok


_PUBACK = struct.Struct("!BBH")  # fixed header PUBACK (0x40), remaining length 2, packet id: success, no properties


def ack_many(client: paho.Client, mids: list[int]) -> None:
    """Acknowledge QoS 1 messages (manual acknowledgement) with one write for all of them.

    ``client.ack`` queues one packet and wakes the network thread once per message, and the network thread
    then makes one ``send`` per PUBACK; here the PUBACKs of a whole batch leave in one packet and one wake-up.
    That uses paho's packet queue (a private method, pinned by tests/ingest/test_pipeline.py); without it
    each message is acknowledged with ``client.ack``.
    """
    if not mids:
        return
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None or not getattr(client, "_manual_ack", False):
        for mid in mids:
            client.ack(mid, 1)
        return
    queue_packet(paho.PUBACK, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids]), 0, 0)
