"""infusion_monitor.broker: the demo's broker (amqtt in-process, or mosquitto from PATH) with real paho clients.

What the ingest needs from a broker: QoS 1 both ways, retained messages, a persistent session that queues
while the client is away, and redelivery of what was sent but never acknowledged. Mosquitto does all four;
amqtt 0.12 does the first three, and the last is pinned as a strict xfail so a fixed amqtt shows up.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest

from infusion_monitor.broker import BrokerStartError, RunningBroker, port_open, start_broker
from vitals.mqtt import connect, make_client, wait_connected

pytestmark = pytest.mark.integration


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    """A running demo broker of each kind."""
    running = start_broker(request.param)
    yield running
    running.stop()


class Client:
    """A paho client on the broker's protocol that records what it receives."""

    def __init__(self, broker: RunningBroker, client_id: str = "", *, persistent: bool = False,
                 manual_ack: bool = False, url: str | None = None) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client, target = make_client(url or broker.url, client_id, protocol=broker.protocol,
                                          manual_ack=manual_ack, persistent=persistent)
        self.client.on_message = self._on_message
        if broker.protocol == "5":
            connect(self.client, target, clean_start=not persistent, session_expiry_s=3600 if persistent else None)
        else:
            connect(self.client, target)
        self.client.loop_start()
        assert wait_connected(self.client, 10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic_filter, 1)
        assert done.wait(10)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def payloads(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait for at least ``count`` messages (or the timeout) and return their payloads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.02)
        with self.lock:
            return [m.payload for m in self.messages]

    def close(self, clean: bool = True) -> None:
        """Disconnect (clean) or drop the connection as a crash would."""
        if clean:
            self.client.disconnect()
        else:
            sock = self.client.socket()
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.client.loop_stop()


def test_qos1_publish_and_subscribe(broker: RunningBroker) -> None:
    sub = Client(broker)
    pub = Client(broker)
    try:
        sub.subscribe("clinic/+/chair/+/vitals")
        for i in range(50):
            pub.publish("clinic/s/chair/c-01/vitals", b'{"seq": %d}' % i)
        assert sub.payloads(50) == [b'{"seq": %d}' % i for i in range(50)]
        assert all(m.qos == 1 for m in sub.messages)
    finally:
        sub.close()
        pub.close()


def test_retained_messages_reach_late_subscribers_and_clear(broker: RunningBroker) -> None:
    pub = Client(broker)
    try:
        pub.publish("clinic/s/chair/c-01/status", b"online", retain=True)
        pub.publish("clinic/s/chair/c-01/alarms", b"[]", retain=True)
        late = Client(broker)
        late.subscribe("clinic/s/chair/+/+")
        got = late.payloads(2)
        assert sorted(got) == [b"[]", b"online"]
        assert all(m.retain for m in late.messages)
        late.close()
        pub.publish("clinic/s/chair/c-01/status", b"", retain=True)  # an empty retained payload clears it
        pub.publish("clinic/s/chair/c-01/alarms", b"", retain=True)
        later = Client(broker)
        later.subscribe("clinic/s/chair/+/+")
        time.sleep(0.5)
        assert later.payloads(0) == []
        later.close()
    finally:
        pub.close()


@pytest.mark.parametrize("kind", [
    pytest.param("amqtt", marks=pytest.mark.xfail(strict=True, reason=(
        "amqtt 0.12.1 sends a connecting client the retained messages of every filter any client has "
        "subscribed to (Broker._handle_client_session loops over all of self._subscriptions), at QoS 0"))),
    "mosquitto",
])
def test_a_new_client_gets_only_the_retained_messages_of_its_own_filters(kind: str) -> None:
    with start_broker(kind) as broker:
        station = Client(broker)
        station.subscribe("clinic/+/chair/+/status")
        pub = Client(broker)
        pub.publish("clinic/s/chair/c-01/status", b"online", retain=True)
        late = Client(broker)
        try:
            late.subscribe("clinic/+/alarms/events")
            time.sleep(1.0)
            assert [m.topic for m in late.messages] == []
        finally:
            for client in (station, pub, late):
                client.close()


def test_a_persistent_session_queues_while_the_client_is_away(broker: RunningBroker) -> None:
    ingest = Client(broker, "demo-ingest", persistent=True, manual_ack=True)
    ingest.subscribe("clinic/+/chair/+/vitals")
    ingest.close()
    pub = Client(broker)
    for i in range(20):
        pub.publish("clinic/s/chair/c-01/vitals", b"%d" % i)
    pub.close()
    back = Client(broker, "demo-ingest", persistent=True, manual_ack=True)
    try:
        assert back.payloads(20) == [b"%d" % i for i in range(20)]
        for msg in back.messages:
            back.client.ack(msg.mid, msg.qos)
    finally:
        back.close()


def test_amqtt_keeps_no_session_for_a_client_without_username() -> None:
    """Why broker.url carries a username: amqtt drops anonymous sessions, and refuses anonymous clients here."""
    with start_broker("amqtt") as broker:
        anonymous = f"mqtt://{broker.host}:{broker.port}"
        client, target = make_client(anonymous, "anon", protocol="3.1.1", persistent=True)
        connect(client, target)
        client.loop_start()
        try:
            assert not wait_connected(client, 3)
        finally:
            client.loop_stop()


@pytest.mark.parametrize("kind", [
    pytest.param("amqtt", marks=pytest.mark.xfail(strict=True, reason=(
        "amqtt 0.12.1 does not redeliver QoS 1 messages it sent but that were never acknowledged when the "
        "persistent client reconnects; only retained messages are re-sent"))),
    "mosquitto",
])
def test_unacknowledged_messages_are_redelivered_after_a_crash(kind: str) -> None:
    with start_broker(kind) as broker:
        ingest = Client(broker, "demo-ingest", persistent=True, manual_ack=True)
        ingest.subscribe("clinic/+/chair/+/vitals")
        pub = Client(broker)
        for i in range(5):
            pub.publish("clinic/s/chair/c-01/vitals", b"%d" % i)
        assert ingest.payloads(5) == [b"%d" % i for i in range(5)]
        ingest.close(clean=False)  # crashed before acknowledging anything
        time.sleep(0.5)
        back = Client(broker, "demo-ingest", persistent=True, manual_ack=True)
        try:
            assert back.payloads(5, timeout=5) == [b"%d" % i for i in range(5)]
            assert all(m.dup for m in back.messages)
        finally:
            back.close()
            pub.close()


def test_amqtt_refuses_mqtt5_so_clients_must_use_the_advertised_protocol() -> None:
    with start_broker("amqtt") as broker:
        assert broker.protocol == "3.1.1"
        client, target = make_client(broker.url, "v5", protocol="5")
        connect(client, target)
        client.loop_start()
        try:
            assert not wait_connected(client, 3)
        finally:
            client.loop_stop()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_free_ports_side_by_side_and_nothing_left_after_stop(kind: str) -> None:
    threads_before = set(threading.enumerate())
    first = start_broker(kind)
    second = start_broker(kind)
    try:
        assert first.port != second.port
        assert first.url.startswith("mqtt://demo@127.0.0.1:")
        assert port_open(first.host, first.port) and port_open(second.host, second.port)
    finally:
        first.stop()
        second.stop()
        first.stop()  # idempotent
    assert not port_open(first.host, first.port)
    assert not port_open(second.host, second.port)
    if kind == "mosquitto":
        for pid in (first.pid, second.pid):
            assert pid is not None
            with pytest.raises(ProcessLookupError):
                import os
                os.kill(pid, 0)
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in set(threading.enumerate()) - threads_before]


def test_a_taken_port_is_an_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for kind in ("amqtt", "mosquitto"):
            with pytest.raises(BrokerStartError, match=str(port)):
                start_broker(kind, port=port)


def test_a_missing_mosquitto_says_how_to_get_one() -> None:
    with pytest.raises(BrokerStartError, match="apt-get install mosquitto"):
        start_broker("mosquitto", mosquitto="/nonexistent/mosquitto")
