"""Publishing: pace a stream of messages in real time and send it over MQTT.

Connections: ``device`` mode opens one MQTT connection per chair, each with ``offline`` (retained) as its last
will on the chair's status topic, as a real bedside device would; ``gateway`` mode shares one connection for all
chairs (what 2,000 chairs need) and publishes each chair's ``online``/``offline`` explicitly; it has no per-chair
last will, so if a gateway crashes the ingest sees the chairs through ``no_data``. ``auto`` picks ``device`` up to
``DEVICE_MODE_MAX_CHAIRS`` chairs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as paho

from simulator.stream import OFFLINE, Message
from vitals.mqtt import connect, make_client, redact, wait_connected
from vitals.settings import Settings
from vitals.topics import TopicError, Topics

log = logging.getLogger(__name__)

# Above this many chairs one connection per chair costs more threads and sockets than it is worth.
DEVICE_MODE_MAX_CHAIRS = 50
# Unacknowledged QoS 1 messages allowed before publishing waits: bounds memory when the broker is slow or away.
MAX_OUTSTANDING = 20000
CONNECT_TIMEOUT_S = 15.0
# Falling this far behind the requested pace is worth a warning (the simulated clock is then late).
LAG_WARN_S = 5.0
# Numbers the publishers of one process, so two runs in one process never share an MQTT client id.
_INSTANCES = itertools.count(1)


@dataclass(slots=True)
class PublishStats:
    """What a run published: counts, simulated span and real time taken."""

    messages: int = 0
    readings: int = 0
    first_sim_ms: int | None = None
    last_sim_ms: int | None = None
    real_s: float = 0.0
    stopped: bool = False

    @property
    def sim_s(self) -> float:
        """Return the simulated span covered, in seconds."""
        if self.first_sim_ms is None or self.last_sim_ms is None:
            return 0.0
        return (self.last_sim_ms - self.first_sim_ms) / 1000.0


class Publisher:
    """MQTT connections for a set of chairs (device mode) or one shared connection (gateway mode)."""

    def __init__(self, settings: Settings, *, client_prefix: str, devices: Iterable[tuple[str, str]] = (),
                 mode: str = "gateway", stop: threading.Event | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._room = threading.Semaphore(MAX_OUTSTANDING)
        # The last status published per chair, said again after a reconnect (the last will may have said offline).
        self._status: dict[str, bytes] = {}
        self._status_lock = threading.Lock()
        self._untracked: set[tuple[int, int]] = set()  # (client, mid) of republished statuses: not in _room
        self._ever_connected: set[int] = set()
        self.clients: dict[tuple[str, str], paho.Client] = {}
        self.gateway: paho.Client | None = None
        devices = list(devices)
        client_prefix = f"{client_prefix}-{next(_INSTANCES)}"
        if mode == "device":
            for site, chair in devices:
                will = (self.topics.status(site, chair), OFFLINE, 1, True)
                self.clients[(site, chair)] = self._open(f"{client_prefix}-{site}-{chair}", will)
        else:
            self.gateway = self._open(f"{client_prefix}-gw", None)
        self.devices = devices
        deadline = time.monotonic() + connect_timeout_s
        for client in self.all_clients():
            while not wait_connected(client, min(0.2, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    self.close(drain_s=0)
                    raise ConnectionError(f"could not connect to the MQTT broker at {redact(settings.mqtt_url)} "
                                          f"within {connect_timeout_s:.0f} s")

    def _open(self, client_id: str, will: tuple[str, bytes, int, bool] | None) -> paho.Client:
        s = self.settings
        client, target = make_client(s.mqtt_url, client_id[:128], protocol=s.mqtt_protocol, ca_file=s.mqtt_ca_file,
                                     cert_file=s.mqtt_cert_file, key_file=s.mqtt_key_file, will=will)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        connect(client, target)
        client.loop_start()
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        """After a reconnect, publish each chair's current status again, as a device does after connecting."""
        if reason_code.is_failure:
            return
        if id(client) in self._ever_connected:
            with self._status_lock:
                mine = [(t, p) for t, p in self._status.items() if self._client_for(t) is client]
            for topic, payload in mine:
                info = client.publish(topic, payload, qos=1, retain=True)
                self._untracked.add((id(client), info.mid))  # its PUBACK cannot arrive before this callback ends
            log.info("reconnected to the broker: published the status of %d chair(s) again", len(mine))
        self._ever_connected.add(id(client))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:  # type: ignore[no-untyped-def]
        if (id(client), mid) in self._untracked:
            self._untracked.discard((id(client), mid))
            return
        self._room.release()

    def all_clients(self) -> list[paho.Client]:
        """Return every open client."""
        return list(self.clients.values()) + ([self.gateway] if self.gateway is not None else [])

    def _client_for(self, topic: str) -> paho.Client:
        if self.gateway is not None:
            return self.gateway
        try:
            parsed = self.topics.parse_chair(topic)
            return self.clients[(parsed.site, parsed.chair)]
        except (TopicError, KeyError):
            return next(iter(self.clients.values()))

    def send(self, msg: Message, stop: threading.Event | None = None, timeout_s: float | None = None) -> bool:
        """Publish one message (waiting while too many are unacknowledged); return False if stopped or timed out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._room.acquire(timeout=0.2):
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
                return False
        if msg.topic.endswith("/status"):
            with self._status_lock:
                self._status[msg.topic] = msg.payload
        info = self._client_for(msg.topic).publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if msg.qos == 0 or info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self._room.release()
        return True

    def drain(self, timeout_s: float) -> bool:
        """Wait until every QoS 1 message is acknowledged by the broker (or the timeout passes)."""
        deadline = time.monotonic() + timeout_s
        taken = 0
        while taken < MAX_OUTSTANDING and time.monotonic() < deadline:
            if self._room.acquire(timeout=max(0.0, min(0.2, deadline - time.monotonic()))):
                taken += 1
        for _ in range(taken):
            self._room.release()
        return taken == MAX_OUTSTANDING

    def close(self, drain_s: float = 10.0) -> None:
        """Wait for acknowledgements, then disconnect cleanly (no last will is sent)."""
        if drain_s > 0 and not self.drain(drain_s):
            log.warning("some messages were not acknowledged by the broker before disconnecting")
        for client in self.all_clients():
            client.disconnect()
            client.loop_stop()


def pace(messages: Iterable[Message], send: Callable[[Message], bool], *, speed: float,
         stop: threading.Event | None = None, progress: Callable[[PublishStats], None] | None = None) -> PublishStats:
    """Send messages at their simulated times scaled by ``speed`` (0 = as fast as possible)."""
    stop = stop or threading.Event()
    stats = PublishStats()
    real0 = time.monotonic()
    last_progress = real0
    last_warning = real0 - 30
    for msg in messages:
        if stats.first_sim_ms is None:
            stats.first_sim_ms = msg.sim_ms
        if speed > 0:
            delay = real0 + (msg.sim_ms - stats.first_sim_ms) / 1000.0 / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                stats.stopped = True
                break
            if delay < -LAG_WARN_S and time.monotonic() - last_warning > 30:
                last_warning = time.monotonic()
                log.warning("publishing is %.0f s behind the requested speed (broker or CPU too slow)", -delay)
        if stop.is_set() or not send(msg):
            stats.stopped = True
            break
        stats.messages += 1
        stats.last_sim_ms = msg.sim_ms
        if msg.topic.endswith("/vitals"):
            stats.readings += _count_readings(msg.payload)
        if progress is not None and time.monotonic() - last_progress >= 0.2:
            last_progress = time.monotonic()
            progress(stats)
    stats.real_s = time.monotonic() - real0
    return stats


def _count_readings(payload: bytes) -> int:
    """Return how many readings a vitals payload holds (1 for an object, n for an array)."""
    return payload.count(b'"ts"') if payload[:1] == b"[" else 1
