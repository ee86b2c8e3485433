"""MQTT connection setup shared by every role: URL parsing, TLS, protocol version, backoff."""

from __future__ import annotations

import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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


class BufferedSocket:
    """A client socket that reads what the kernel has in one ``recv`` and hands paho its small reads from memory.

    paho reads each packet with three or more ``recv`` calls (the command byte, the length bytes one at a time,
    then the body), and selects once per packet. Every such call releases and re-takes the GIL, which the
    ingest's other threads then contend for. Here one ``recv`` of up to 64 KiB serves many packets, and
    ``pending()`` (which paho asks of any socket, for TLS's own buffer) tells its loop not to wait in ``select``
    while packets are buffered. Anything else goes to the wrapped socket unchanged.
    """

    __slots__ = ("_buf", "_pos", "_sock")
    CHUNK = 65536

    def __init__(self, sock: object) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` bytes, from memory when buffered (raises as the socket does when empty)."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, self.CHUNK))  # type: ignore[attr-defined]
            if len(data) <= bufsize:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._buf))
        return self._buf[start:self._pos]

    def pending(self) -> int:
        """Return the bytes buffered here (and in the TLS layer below, if any)."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


_PUBLISH_TABLES = {k: v for k, v in Properties(PacketTypes.PUBLISH).__dict__.items() if k != "packetType"}
_PROPERTY_NAMES = frozenset(name.replace(" ", "") for name in _PUBLISH_TABLES.get("names", {}))


class SharedTableProperties(Properties):
    """paho's MQTT v5 ``Properties`` with its constant lookup tables built once, not once per message.

    paho builds a fresh ``Properties`` for every PUBLISH it receives, and its ``__init__`` rebuilds two dicts
    and looks up 25 type names each time; ``unpack`` then clears every possible property by name. Together
    that was 44 % of the ingest's CPU while it drained a backlog (py-spy ``--gil``, benchmarks/findings.md).
    Here the tables (which paho only reads) are class attributes taken from a real paho ``Properties``, so
    whatever version is installed; every method is paho's, and ``clear`` removes the same attributes.
    """

    def __init__(self, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)

    def clear(self) -> None:
        """Remove every property set on this object (as paho's ``clear`` does, without trying all 27 names)."""
        for name in [key for key in self.__dict__ if key in _PROPERTY_NAMES]:
            delattr(self, name)


for _name, _table in _PUBLISH_TABLES.items():
    setattr(SharedTableProperties, _name, _table)


def _share_publish_tables() -> bool:
    """Make paho decode received PUBLISH properties into SharedTableProperties (once per process).

    paho's PUBLISH decoder (``paho.mqtt._packet``, paho 2.x) looks ``Properties`` up in its module when it
    decodes; only there is it replaced. Returns whether the decoder now uses it (False: a paho whose layout
    differs, left as it is; ``tests/vitals/test_mqtt_fast_path.py`` then fails and says so).
    """
    try:
        from paho.mqtt import _packet
    except ImportError:
        return False
    current = getattr(_packet, "Properties", None)
    if current is Properties:
        _packet.Properties = SharedTableProperties  # type: ignore[attr-defined,misc]
        return True
    return current is SharedTableProperties


class FastClient(paho.Client):
    """paho's client with a cheaper receive path, same behaviour (``tests/vitals/test_mqtt_fast_path.py``).

    - reads through a BufferedSocket (per connection, reconnects included; paho's private ``_create_socket``
      hook, present throughout paho 2.x: if a later paho drops it, reads are simply unbuffered);
    - decodes PUBLISH properties with shared tables (``_share_publish_tables``);
    - hands each message straight to ``on_message`` while no per-topic callback was added
      (``message_callback_add``): paho otherwise walks its topic matcher for every message (11 % of the ingest's
      CPU in the same profile) to find none.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._topic_callbacks = False
        _share_publish_tables()

    def message_callback_add(self, sub: str, callback: Any) -> None:
        """As paho's; per-topic callbacks then take paho's own dispatch."""
        self._topic_callbacks = True
        super().message_callback_add(sub, callback)

    def _create_socket(self):  # type: ignore[no-untyped-def]
        return BufferedSocket(super()._create_socket())  # type: ignore[misc]

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if self._topic_callbacks or on_message is None:
            super()._handle_on_message(message)  # type: ignore[misc]
            return
        with self._in_callback_mutex:  # type: ignore[attr-defined]
            try:
                on_message(self, self._userdata, message)  # type: ignore[attr-defined]
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)  # type: ignore[attr-defined]
                if not self.suppress_exceptions:
                    raise


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
    client = FastClient(
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
        # The in-flight window we accept: mosquitto sends up to this many unacknowledged QoS 1 messages in place
        # of its max_inflight_messages (which it applies to v3.1.1 clients); EMQX takes the smaller of the two.
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
