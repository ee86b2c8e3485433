"""FastClient (vitals/mqtt.py): paho's receive path made cheaper, with paho's behaviour kept.

Each shortcut is checked against stock paho: decoded properties, socket reads, and delivery over a real mosquitto
(message order, v5 properties, per-topic callbacks, a payload larger than the read buffer, a broker restart).
"""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.servers import Mosquitto
from vitals.mqtt import BufferedSocket, FastClient, SharedTableProperties, connect, make_client, wait_connected


def _publish_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    props.ResponseTopic = "clinic/s1/reply"
    props.CorrelationData = b"\x00\x01corr"
    props.UserProperty = [("gateway", "g-7"), ("fw", "2.1")]
    props.TopicAlias = 3
    return props


@pytest.mark.parametrize("make", [_publish_properties, lambda: Properties(PacketTypes.PUBLISH)],
                         ids=["every-publish-property", "none"])
def test_shared_table_properties_decode_exactly_as_paho(make) -> None:  # type: ignore[no-untyped-def]
    wire = make().pack()
    stock, shared = Properties(PacketTypes.PUBLISH), SharedTableProperties(PacketTypes.PUBLISH)
    assert stock.unpack(wire + b"payload")[1] == shared.unpack(wire + b"payload")[1]
    assert shared.json() == stock.json()
    assert str(shared) == str(stock)
    assert shared.isEmpty() == stock.isEmpty()
    assert shared.pack() == stock.pack() == wire
    shared.clear()
    assert shared.isEmpty() and shared.json() == {}
    # A fresh object shares the tables and carries nothing of the previous one.
    assert SharedTableProperties(PacketTypes.PUBLISH).json() == {}


def test_shared_table_properties_refuse_what_paho_refuses() -> None:
    props = SharedTableProperties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException):
        props.SessionExpiryInterval = 10  # a CONNECT property, not a PUBLISH one
    with pytest.raises(MQTTException):
        props.NoSuchProperty = 1


def test_paho_decodes_publish_properties_with_the_shared_tables() -> None:
    # Fails if a paho upgrade moved its PUBLISH decoder: the speed-up would then be silently gone.
    FastClient(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    assert _packet.Properties is SharedTableProperties
    topic = b"clinic/s1/chair/c1/vitals"
    packet = (len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + _publish_properties().pack()
              + b'{"ts":1}')
    decoded = _packet.decode_publish(0x32, packet, paho.MQTTv5)
    assert isinstance(decoded.properties, SharedTableProperties)
    assert decoded.properties.json() == _publish_properties().json()
    assert (decoded.mid, decoded.payload, decoded.topic) == (7, b'{"ts":1}', topic)


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    left, right = socket.socketpair()
    right.setblocking(False)
    buffered = BufferedSocket(right)
    try:
        with pytest.raises(BlockingIOError):  # nothing sent yet: raises as the socket does
            buffered.recv(1)
        left.sendall(b"\x30\x05hello\x30\x03abc")
        time.sleep(0.05)
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 11  # the rest is in memory now: paho's loop must not wait in select
        assert buffered.recv(1) == b"\x05"
        assert buffered.recv(5) == b"hello"
        assert buffered.recv(100) == b"\x30\x03abc"  # never more than is buffered, never across a read
        assert buffered.pending() == 0
        assert buffered.fileno() == right.fileno()  # everything else is the socket's own
        left.close()
        time.sleep(0.05)
        assert buffered.recv(1) == b""  # end of stream, as from the socket
    finally:
        right.close()


def _collector(url: str, filters: list[str], cls: type) -> tuple[paho.Client, list[paho.MQTTMessage]]:
    got: list[paho.MQTTMessage] = []
    client = cls(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: got.append(m)
    client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
    return client, got


def test_fast_client_delivers_what_stock_paho_delivers_over_a_real_broker(own_mosquitto: Mosquitto) -> None:
    stock, stock_got = _collector(own_mosquitto.url, ["t/#"], paho.Client)
    fast, fast_got = _collector(own_mosquitto.url, ["t/#"], FastClient)
    per_topic: list[str] = []
    fast.message_callback_add("t/special", lambda c, u, m: per_topic.append(m.payload.decode()))
    for client in (stock, fast):
        client.connect("127.0.0.1", own_mosquitto.port)
        client.loop_start()
        assert wait_connected(client, 10)
    time.sleep(0.3)
    pub, pub_target = make_client(own_mosquitto.url)
    connect(pub, pub_target)
    pub.loop_start()
    assert wait_connected(pub, 10)
    big = bytes(range(256)) * 800  # 200 KiB: larger than one buffered read
    sent = [(f"t/{i % 7}", f"{i}".encode() * (1 + i % 50), 1) for i in range(3000)]
    sent += [("t/big", big, 1), ("t/special", b"only-for-the-topic-callback", 1)]
    for topic, payload, qos in sent:
        pub.publish(topic, payload, qos=qos, properties=_publish_properties() if topic == "t/0" else None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(stock_got) < len(sent) or len(fast_got) + len(per_topic) < len(sent)):
        time.sleep(0.05)
    for client in (stock, fast, pub):
        client.disconnect()
        client.loop_stop()
    # Per-topic callbacks take paho's own dispatch (on_message does not see those messages, as in paho).
    assert per_topic == ["only-for-the-topic-callback"]
    assert [(m.topic, m.payload) for m in stock_got] == [(t, p) for t, p, _ in sent]
    assert [(m.topic, m.payload) for m in fast_got] == [(t, p) for t, p, _ in sent if t != "t/special"]
    for a, b in zip(stock_got, fast_got, strict=False):
        # The broker counts the expiry interval down while a message waits, so it may differ by a second.
        props_a = {k: v for k, v in (a.properties.json() if a.properties else {}).items() if k != "MessageExpiryInterval"}
        props_b = {k: v for k, v in (b.properties.json() if b.properties else {}).items() if k != "MessageExpiryInterval"}
        assert props_a == props_b, (a.topic, props_a, props_b)
    assert any(m.properties and m.properties.json().get("UserProperty") for m in fast_got)


def test_fast_client_reconnects_and_resumes_after_a_broker_restart(own_mosquitto: Mosquitto) -> None:
    client, target = make_client(own_mosquitto.url, "fast-resume", persistent=True)
    got: list[bytes] = []
    connected = threading.Event()

    def on_connect(c, u, flags, reason_code, properties=None):  # type: ignore[no-untyped-def]
        c.subscribe([("r/#", 1)])
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda c, u, m: got.append(m.payload)
    connect(client, target, clean_start=False, session_expiry_s=600)
    client.loop_start()
    assert connected.wait(10)
    time.sleep(0.3)
    own_mosquitto.restart()
    connected.clear()
    assert connected.wait(30), "did not reconnect after the broker restart"
    time.sleep(0.3)
    pub, pub_target = make_client(own_mosquitto.url)
    connect(pub, pub_target)
    pub.loop_start()
    assert wait_connected(pub, 10)
    for i in range(200):
        pub.publish("r/x", str(i).encode(), qos=1)
    deadline = time.monotonic() + 20
    while len(got) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in (client, pub):
        c.disconnect()
        c.loop_stop()
    assert got == [str(i).encode() for i in range(200)]
