"""Access control at the broker: password file + ACLs, and MQTT over TLS with client certificates (real mosquitto)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import IngestProcess, Mosquitto, MqttCollector, free_port, require
from vitals.mqtt import MqttTarget, connect, make_client, wait_connected
from vitals.topics import Topics

pytestmark = pytest.mark.integration
TOPICS = Topics()

# A minimal policy of the same shape as the one deploy/mosquitto/acl ships (that file itself is tested in
# tests/deploy/test_acl.py): a device publishes only under its own username, here "<site>.<chair>"; the
# ingest reads every chair and writes alarms/rejected; anything else is denied.
ACL = """\
user ingest
topic read clinic/+/chair/+/vitals
topic read clinic/+/chair/+/session
topic read clinic/+/chair/+/ack
topic readwrite clinic/+/chair/+/alarms
topic write clinic/+/alarms/events
topic write clinic/ingest/rejected

user dashboard
topic read clinic/#
topic write clinic/+/chair/+/ack

pattern write clinic/+/chair/%u/vitals
pattern write clinic/+/chair/%u/status
"""
PASSWORDS = {"chair-1": "pw-one", "chair-2": "pw-two", "ingest": "pw-ingest", "dashboard": "pw-dash"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Start a mosquitto that refuses anonymous clients and enforces the ACL above."""
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    for user, pw in PASSWORDS.items():
        subprocess.run([require("mosquitto_passwd"), "-b", str(pwfile), user, pw], check=True, capture_output=True)
    (tmp_path / "acl").write_text(ACL)
    broker = Mosquitto(tmp_path / "broker", extra_conf=(
        f"allow_anonymous false\npassword_file {pwfile}\nacl_file {tmp_path / 'acl'}\n"))
    broker.workdir.mkdir(parents=True, exist_ok=True)
    broker.start()
    yield broker
    broker.stop()


def url(broker: Mosquitto, user: str) -> str:
    """Return a URL with credentials for one of PASSWORDS."""
    return f"mqtt://{user}:{PASSWORDS[user]}@127.0.0.1:{broker.port}"


def publish(broker_url: str, topic: str, payload: bytes) -> None:
    """Publish one QoS 1 message and wait for the broker's answer (an ACL denial is silent on 3.1.1)."""
    client, target = make_client(broker_url, client_id=f"pub-{time.monotonic_ns()}")
    connect(client, target)
    client.loop_start()
    try:
        assert wait_connected(client, 10), f"could not connect to {target}"
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_device_cannot_publish_to_another_chairs_topic(acl_broker: Mosquitto) -> None:
    watcher = MqttCollector(url(acl_broker, "ingest"), TOPICS.chair_filter("vitals"))
    try:
        own = TOPICS.vitals("site-a", "chair-1")
        other = TOPICS.vitals("site-a", "chair-2")
        publish(url(acl_broker, "chair-1"), other, b'{"ts": 1, "hr": 1, "forged": true}')
        publish(url(acl_broker, "chair-1"), TOPICS.alarms("site-a", "chair-1"), b"[]")
        publish(url(acl_broker, "chair-1"), own, b'{"ts": 2, "hr": 72}')
        assert watcher.wait_for(lambda w: w.payloads(own), 10)
        time.sleep(0.5)  # the forged message was published first; give it every chance to arrive
        topics = [t for t, _, _ in watcher.messages]
        assert topics == [own], topics
    finally:
        watcher.close()


def test_anonymous_and_wrong_password_clients_are_refused(acl_broker: Mosquitto) -> None:
    for bad in (f"mqtt://127.0.0.1:{acl_broker.port}", f"mqtt://chair-1:wrong@127.0.0.1:{acl_broker.port}"):
        client, target = make_client(bad)
        connect(client, target)
        client.loop_start()
        try:
            assert not wait_connected(client, 3), bad
        finally:
            client.disconnect()
            client.loop_stop()


# -- TLS --------------------------------------------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    """Run the openssl binary, failing loudly."""
    subprocess.run([require("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """Create a CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)
    return d


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[tuple[Mosquitto, int]]:
    """Start a mosquitto with a plain listener and a TLS listener that requires a client certificate."""
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "tls-broker", extra_conf="\n".join([
        f"listener {tls_port} 127.0.0.1",
        f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'server.crt'}", f"keyfile {pki / 'server.key'}",
        "require_certificate true", "tls_version tlsv1.2",
    ]))
    broker.workdir.mkdir(parents=True, exist_ok=True)
    broker.start()
    yield broker, tls_port
    broker.stop()


def test_mqtts_with_ca_and_client_certificate(tls_broker: tuple[Mosquitto, int], pki: Path) -> None:
    broker, tls_port = tls_broker
    tls_url = f"mqtts://127.0.0.1:{tls_port}"
    assert MqttTarget.parse(tls_url).tls
    client, target = make_client(tls_url, ca_file=pki / "ca.crt", cert_file=pki / "client.crt",
                                 key_file=pki / "client.key")
    got: list[bytes] = []
    client.on_message = lambda c, u, msg: got.append(msg.payload)
    client.on_connect = lambda c, *_: c.subscribe("clinic/+/chair/+/vitals", 1)
    connect(client, target)
    client.loop_start()
    try:
        assert wait_connected(client, 10), broker.log()[-2000:]
        time.sleep(0.2)
        # Publish over the TLS listener with the real mosquitto_pub and the same credentials.
        subprocess.run([require("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(tls_port), "--cafile", str(pki / "ca.crt"),
                        "--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"), "-q", "1",
                        "-t", TOPICS.vitals("s", "chair-1"), "-m", '{"ts": 1, "hr": 70}'], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [b'{"ts": 1, "hr": 70}']
    finally:
        client.disconnect()
        client.loop_stop()
    # Without a client certificate the TLS listener refuses the connection.
    bare, target = make_client(tls_url, ca_file=pki / "ca.crt")
    try:
        connect(bare, target)
        bare.loop_start()
        assert not wait_connected(bare, 3)
    except OSError:
        pass
    finally:
        bare.loop_stop()


def test_ingest_connects_over_mqtts_and_stores(tls_broker: tuple[Mosquitto, int], pki: Path, tmp_path: Path,
                                               site: str) -> None:
    from vitals.store import open_store

    _, tls_port = tls_broker
    store_url = f"sqlite:///{tmp_path}/vitals.db"
    ingest = IngestProcess(tmp_path / "ingest", f"mqtts://127.0.0.1:{tls_port}", store_url, "--site", site,
                           "--no-alarms", env={"INFUSION_MQTT_CA_FILE": str(pki / "ca.crt"),
                                               "INFUSION_MQTT_CERT_FILE": str(pki / "client.crt"),
                                               "INFUSION_MQTT_KEY_FILE": str(pki / "client.key")})
    ingest.workdir.mkdir(parents=True, exist_ok=True)
    ingest.start()
    try:
        now = int(time.time() * 1000)
        lines = [json.dumps({"ts": now - 1000 * i, "seq": i, "hr": 70}) for i in range(20)]
        subprocess.run([require("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(tls_port), "--cafile", str(pki / "ca.crt"),
                        "--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"), "-q", "1",
                        "-t", TOPICS.vitals(site, "chair-1"), "-l"], input="\n".join(lines) + "\n", text=True,
                       check=True, timeout=30)
        store = open_store(store_url)
        deadline = time.monotonic() + 20
        while store.count_readings(site=site) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.count_readings(site=site) == 20
    finally:
        ingest.stop()
