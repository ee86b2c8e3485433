"""The committed broker configuration enforced by a real mosquitto: password file from start.sh, ACLs, TLS.

deploy/mosquitto/{mosquitto.conf, acl, start.sh} run as they are (only container paths and ports mapped);
device users are created with deploy/add-device. MQTT v5 clients read the broker's reason codes, and a
subscriber with full read access confirms that nothing refused was delivered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    NOT_AUTHORIZED,
    SECRETS,
    RepoMosquitto,
    connects,
    mqtt_session,
    puback,
    run_sh,
    suback,
)
from tests.servers import MqttCollector, require, wait_port
from vitals.mqtt import connect, make_client, wait_connected
from vitals.topics import Topics

pytestmark = pytest.mark.integration
T = Topics()
DEVICES = {"north-c01": "device-one-pw-0123456789", "north-c02": "device-two-pw-0123456789"}
SERVICE = {user: SECRETS[var] for user, var in (("svc.ingest", "MQTT_INGEST_PASSWORD"),
                                                 ("svc.dashboard", "MQTT_DASHBOARD_PASSWORD"),
                                                 ("svc.simulator", "MQTT_SIMULATOR_PASSWORD"))}
BROKER_SECRETS = {k: SECRETS[k] for k in ("MQTT_INGEST_PASSWORD", "MQTT_DASHBOARD_PASSWORD", "MQTT_SIMULATOR_PASSWORD")}


def add_device(devices_file: Path, chair: str, password: str) -> subprocess.CompletedProcess[str]:
    """Run deploy/add-device with the password on stdin."""
    return run_sh(DEPLOY / "add-device", chair, env={"DEVICES_FILE": str(devices_file), "PATH": "/usr/bin:/bin"},
                  stdin=password + "\n")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepoMosquitto]:
    """The committed mosquitto configuration with two device users added by deploy/add-device."""
    work = tmp_path_factory.mktemp("deploy-broker")
    devices = work / "devices.passwd"
    for chair, password in DEVICES.items():
        result = add_device(devices, chair, password)
        assert result.returncode == 0, result.stderr
    server = RepoMosquitto(work / "broker", BROKER_SECRETS, devices)
    server.start()
    yield server
    server.stop()


def url(broker: RepoMosquitto, user: str) -> str:
    """Return a URL with the credentials of a device or service user."""
    return broker.url(user, {**DEVICES, **SERVICE}[user])


@pytest.fixture
def everything(broker: RepoMosquitto) -> Iterator[MqttCollector]:
    """A subscriber as the dashboard (reads clinic/#), to see what the broker actually delivered."""
    collector = MqttCollector(url(broker, "svc.dashboard"), "clinic/#")
    yield collector
    collector.close()


def delivered(collector: MqttCollector, site: str) -> list[str]:
    """Return the topics of a site that reached the collector, after letting stragglers arrive."""
    time.sleep(0.5)
    return sorted({t for t, _, _ in collector.messages if t.startswith(f"clinic/{site}/")})


def test_the_password_file_holds_hashes_only(broker: RepoMosquitto) -> None:
    text = (broker.auth / "passwd").read_text()
    users = [line.split(":", 1)[0] for line in text.splitlines()]
    assert sorted(users) == sorted(["svc.ingest", "svc.dashboard", "svc.simulator", "svc.health", *DEVICES])
    for secret in [*SECRETS.values(), *DEVICES.values()]:
        assert secret not in text
    assert all(line.split(":", 1)[1].startswith("$7$") for line in text.splitlines())


def test_anonymous_wrong_password_and_unknown_users_are_refused(broker: RepoMosquitto) -> None:
    assert not connects(f"mqtt://127.0.0.1:{broker.port}")
    assert not connects(broker.url("north-c01", "device-two-pw-0123456789"))
    assert not connects(broker.url("north-c03", "device-one-pw-0123456789"))
    assert connects(url(broker, "north-c01"))


def test_a_device_publishes_only_to_its_own_chair(broker: RepoMosquitto, everything: MqttCollector, site: str) -> None:
    reading = json.dumps({"ts": int(time.time() * 1000), "hr": 72}).encode()
    with mqtt_session(url(broker, "north-c01")) as device:
        assert puback(device, T.vitals(site, "north-c01"), reading) == 0
        assert puback(device, T.session(site, "north-c01"), b'{"state": "active"}', retain=True) == 0
        assert puback(device, T.status(site, "north-c01"), b"online", retain=True) == 0
        assert puback(device, T.record(site, "north-c01"), b'{"type": "note"}') == 0  # a pump's session record
        # Another chair's topics, and every topic only the ingest or the dashboard may write.
        for forged in (T.vitals(site, "north-c02"), T.session(site, "north-c02"), T.status(site, "north-c02"),
                       T.record(site, "north-c02"), T.record_state(site, "north-c01"),
                       T.alarms(site, "north-c01"), T.ack(site, "north-c01"), T.alarm_events(site), T.rejected,
                       T.limits(site, "north-c01"), T.effective_limits(site, "north-c01"),
                       f"clinic/{site}/chair/north-c01/vitals/extra", "other/north-c01/vitals"):
            assert puback(device, forged, reading) == NOT_AUTHORIZED, forged
    assert delivered(everything, site) == sorted([T.vitals(site, "north-c01"), T.session(site, "north-c01"),
                                                  T.status(site, "north-c01"), T.record(site, "north-c01")])
    with mqtt_session(url(broker, "north-c01")) as device:  # clear the retained messages again
        puback(device, T.session(site, "north-c01"), b"", retain=True)
        puback(device, T.status(site, "north-c01"), b"", retain=True)


def test_a_device_reads_nothing(broker: RepoMosquitto, site: str) -> None:
    """Mosquitto grants wildcard subscriptions and filters at delivery: a device must receive nothing."""
    device = MqttCollector(url(broker, "north-c01"), "clinic/#", T.alarms(site, "north-c01"), T.ack(site, "north-c01"),
                           T.effective_limits(site, "north-c01"))
    try:
        with mqtt_session(url(broker, "north-c02")) as other:
            assert puback(other, T.vitals(site, "north-c02"), b'{"ts": 1, "hr": 70}') == 0
        with mqtt_session(url(broker, "svc.ingest")) as ingest:
            assert puback(ingest, T.alarms(site, "north-c01"), b"[]") == 0
            assert puback(ingest, T.effective_limits(site, "north-c01"), b"{}") == 0
        with mqtt_session(url(broker, "svc.dashboard")) as dashboard:
            assert puback(dashboard, T.ack(site, "north-c01"), b'{"action": "pause_audio"}') == 0
        time.sleep(1.0)
        assert device.messages == []
    finally:
        device.close()


def test_a_device_last_will_reaches_its_own_status_only(broker: RepoMosquitto, everything: MqttCollector, site: str) -> None:
    for chair in ("north-c01", "north-c02"):  # north-c02's will names north-c01's status: refused
        client, target = make_client(url(broker, chair), client_id=f"will-{chair}-{site}",
                                     will=(T.status(site, "north-c01"), b"offline", 1, False))
        connect(client, target)
        client.loop_start()
        assert wait_connected(client, 10)
        client.socket().close()  # an unclean drop: the broker publishes the will
        client.loop_stop()
    time.sleep(1.0)
    wills = [(t, p) for t, p, _ in everything.messages if t == T.status(site, "north-c01")]
    assert wills == [(T.status(site, "north-c01"), b"offline")]


def test_the_dashboard_reads_everything_and_writes_only_commands_edits_and_the_nurses_records(
        broker: RepoMosquitto, site: str) -> None:
    ingest = MqttCollector(url(broker, "svc.ingest"), T.chair_filter("vitals"), T.chair_filter("ack"))
    try:
        with mqtt_session(url(broker, "svc.dashboard")) as dashboard:
            assert suback(dashboard, "clinic/#") == 1
            ack = json.dumps({"alarm_id": None, "user": "nurse.kim", "action": "pause_audio"}).encode()
            assert puback(dashboard, T.ack(site, "north-c01"), ack) == 0
            # A nurse starts sessions and records infusion events, assessments and discharges from the dashboard.
            assert puback(dashboard, T.record(site, "north-c01"), b'{"type": "note"}') == 0
            assert puback(dashboard, T.session(site, "north-c01"), b'{"state": "active"}', retain=True) == 0
            puback(dashboard, T.session(site, "north-c01"), b"", retain=True)
            for forged in (T.vitals(site, "north-c01"), T.status(site, "north-c01"),
                           T.alarms(site, "north-c01"), T.alarm_events(site), T.rejected,
                           T.effective_limits(site, "north-c01"),  # only the engine says what it enforces
                           T.record_state(site, "north-c01"),  # and what is due, and whether one may leave
                           # the device patterns (%u) apply to every user: the ACL denies svc.* their own
                           T.vitals(site, "north-c01").replace("north-c01", "svc.dashboard")):
                assert puback(dashboard, forged, b'{"ts": 1, "hr": 60}') == NOT_AUTHORIZED, forged
        time.sleep(0.5)
        assert [t for t, _, _ in ingest.messages if site in t] == [T.ack(site, "north-c01")]
    finally:
        ingest.close()


def test_the_ingest_reads_its_inputs_and_writes_alarms_events_and_refusals(broker: RepoMosquitto,
                                                                           everything: MqttCollector, site: str) -> None:
    with mqtt_session(url(broker, "svc.ingest")) as ingest:
        for kind in ("vitals", "session", "status", "ack"):
            assert suback(ingest, T.chair_filter(kind)) == 1, kind
        # Storage-only replicas share the readings through a shared subscription.
        assert suback(ingest, f"$share/ingest/{T.chair_filter('vitals')}") == 1
        assert puback(ingest, T.alarms(site, "north-c01"), b"[]", retain=True) == 0
        assert suback(ingest, T.chair_filter("limits")) == 1
        limits = json.dumps({"site": site, "chair": "north-c01", "ts": 1, "limits": {}}).encode()
        assert puback(ingest, T.effective_limits(site, "north-c01"), limits, retain=True) == 0
        puback(ingest, T.effective_limits(site, "north-c01"), b"", retain=True)  # clear the retained test message
        assert puback(ingest, T.alarm_events(site), b'{"event": "raised"}') == 0
        assert puback(ingest, T.rejected, b'{"reason": "test"}') == 0
        assert suback(ingest, T.chair_filter("record")) == 1
        assert puback(ingest, T.record_state(site, "north-c01"), b"{}", retain=True) == 0
        puback(ingest, T.record_state(site, "north-c01"), b"", retain=True)
        for forged in (T.vitals(site, "north-c01"), T.ack(site, "north-c01"), T.session(site, "north-c01"),
                       T.record(site, "north-c01")):
            assert puback(ingest, forged, b"{}") == NOT_AUTHORIZED, forged
        puback(ingest, T.alarms(site, "north-c01"), b"", retain=True)
        puback(ingest, T.effective_limits(site, "north-c01"), b"", retain=True)
    assert {T.alarms(site, "north-c01"), T.effective_limits(site, "north-c01")} <= set(delivered(everything, site))


def test_the_ingest_does_not_read_what_it_does_not_need(broker: RepoMosquitto, site: str) -> None:
    ingest = MqttCollector(url(broker, "svc.ingest"), "clinic/#")
    try:
        with mqtt_session(url(broker, "north-c01")) as device:
            assert puback(device, T.vitals(site, "north-c01"), b'{"ts": 1, "hr": 70}') == 0
        with mqtt_session(url(broker, "svc.ingest")) as other:
            assert puback(other, T.alarm_events(site), b'{"event": "raised"}') == 0
            assert puback(other, T.rejected, b'{"reason": "test"}') == 0
        time.sleep(1.0)
        # clinic/# was granted, but only the readings reach it: not alarm events nor refusals.
        assert [t for t, _, _ in ingest.messages] == [T.vitals(site, "north-c01")]
    finally:
        ingest.close()


def test_the_simulator_writes_only_as_devices_of_site_sim(broker: RepoMosquitto) -> None:
    with mqtt_session(url(broker, "svc.simulator")) as simulator:
        assert puback(simulator, T.vitals("sim", "c-01"), b'{"ts": 1, "hr": 70}') == 0
        assert puback(simulator, T.status("sim", "c-01"), b"online") == 0
        assert puback(simulator, T.vitals("north", "c-01"), b"{}") == NOT_AUTHORIZED
        assert puback(simulator, T.alarms("sim", "c-01"), b"[]") == NOT_AUTHORIZED
        assert puback(simulator, T.ack("sim", "c-01"), b"{}") == NOT_AUTHORIZED


def test_the_compose_healthcheck_command_passes_against_the_broker(broker: RepoMosquitto) -> None:
    """Run the healthcheck exactly as docker-compose.yml spells it (paths mapped) against the running broker."""
    import yaml

    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("$$", "$").replace("/mosquitto/auth/", f"{broker.auth}/")
    command = command.replace("-p 1883", f"-p {broker.port}")
    assert subprocess.run(["sh", "-c", command], timeout=20).returncode == 0
    wrong = command.replace(f"-p {broker.port}", f"-p {broker.tls_port}")  # nothing listens there: unhealthy
    assert subprocess.run(["sh", "-c", wrong], timeout=20, capture_output=True).returncode != 0


def test_start_refuses_placeholder_and_missing_secrets(tmp_path: Path) -> None:
    for secrets, complaint in (({**BROKER_SECRETS, "MQTT_INGEST_PASSWORD": "change-me"}, "MQTT_INGEST_PASSWORD"),
                               ({"MQTT_INGEST_PASSWORD": SECRETS["MQTT_INGEST_PASSWORD"]}, "MQTT_DASHBOARD_PASSWORD"),
                               ({**BROKER_SECRETS, "MQTT_SIMULATOR_PASSWORD": "short"}, "MQTT_SIMULATOR_PASSWORD")):
        server = RepoMosquitto(tmp_path / complaint, secrets)
        with pytest.raises(RuntimeError, match="exited with 78"):
            server.start()
        assert complaint in server.log()
        assert not (server.auth / "passwd").exists()


def test_start_refuses_a_devices_file_with_plaintext_or_a_bad_chair_id(tmp_path: Path) -> None:
    for name, line in (("plain", "north-c01:a-plaintext-password-0123"), ("badid", "svc.ingest:$7$101$abc$def")):
        devices = tmp_path / f"{name}.passwd"
        devices.write_text(line + "\n")
        server = RepoMosquitto(tmp_path / name, BROKER_SECRETS, devices)
        with pytest.raises(RuntimeError, match="exited with 78"):
            server.start()
        assert "line 1" in server.log()


def test_add_device_replaces_a_password_and_refuses_weak_ones(tmp_path: Path) -> None:
    devices = tmp_path / "devices.passwd"
    assert add_device(devices, "c-01", "first-password-0123456789").returncode == 0
    first = devices.read_text()
    assert add_device(devices, "c-01", "second-password-0123456789").returncode == 0
    assert add_device(devices, "c-02", "third-password-0123456789").returncode == 0
    lines = devices.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["c-01", "c-02"]
    assert lines[0] != first.strip() and "password" not in devices.read_text()
    assert devices.stat().st_mode & 0o077 == 0
    for chair, password in (("c-03", "change-me"), ("c-03", "short"), ("bad/id", "fine-password-0123456789"),
                            ("svc.ingest", "fine-password-0123456789")):
        result = add_device(devices, chair, password)
        assert result.returncode != 0, (chair, password)
    assert len(devices.read_text().splitlines()) == 2


# -- the optional TLS listener -------------------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    """Run openssl, failing loudly."""
    subprocess.run([require("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_certs(certs: Path) -> None:
    """Make a CA and a server certificate for 127.0.0.1 in ``certs``, the key readable by its owner only."""
    certs.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=certs)
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=broker", "-keyout", "server.key",
            "-out", "server.csr", cwd=certs)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "server.crt", "-extfile", "san.ext", cwd=certs)
    (certs / "server.key").chmod(0o600)


def check_tls(server: RepoMosquitto, certs: Path) -> None:
    """Connect over the TLS listener as the ingest and check the ACLs apply there too."""
    wait_port(server.tls_port)
    client, target = make_client(f"mqtts://svc.ingest:{SECRETS['MQTT_INGEST_PASSWORD']}@127.0.0.1:{server.tls_port}",
                                 ca_file=certs / "ca.crt")
    connect(client, target)
    client.loop_start()
    try:
        assert wait_connected(client, 10), server.log()[-2000:]
        assert suback(client, T.chair_filter("vitals")) == 1
        # The same users and ACLs on the TLS listener.
        assert puback(client, T.vitals("north", "c-01"), b"{}") == NOT_AUTHORIZED
        assert puback(client, T.alarms("north", "c-01"), b"[]") == 0
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_tls_listener_example_works_as_committed(tmp_path: Path) -> None:
    server = RepoMosquitto(tmp_path / "broker", BROKER_SECRETS)
    make_certs(server.config / "certs")
    shutil.copy(server.config / "conf.d" / "tls.conf.example", server.config / "conf.d" / "tls.conf")
    server.start()
    try:
        check_tls(server, server.config / "certs")
    finally:
        server.stop()


def test_as_in_the_container_mosquitto_drops_root_and_still_reads_everything(tmp_path: Path) -> None:
    """Started as root without `user root`, mosquitto runs as user mosquitto before it loads the password file,
    ACLs and TLS key: start.sh must leave them readable to it and to nobody else."""
    import os
    import pwd
    import tempfile

    if os.geteuid() != 0:  # CI containers run as root; a developer's account cannot start mosquitto this way
        pytest.skip("needs root: only a root-started mosquitto drops privileges as it does in the container")
    pwd.getpwnam("mosquitto")  # Debian's mosquitto package creates the user
    work = Path(tempfile.mkdtemp(prefix="deploy-as-container-", dir="/tmp"))
    work.chmod(0o755)  # pytest's own tmp dirs are 0700: the mosquitto user could not reach the data dir
    try:
        devices = work / "devices.passwd"
        assert add_device(devices, "north-c01", DEVICES["north-c01"]).returncode == 0
        server = RepoMosquitto(work / "broker", BROKER_SECRETS, devices, as_root=False)
        server.workdir.chmod(0o755)
        make_certs(server.config / "certs")
        shutil.copy(server.config / "conf.d" / "tls.conf.example", server.config / "conf.d" / "tls.conf")
        server.start()
        try:
            check_tls(server, server.config / "certs")
            assert connects(url(server, "north-c01"))
            assert not connects(server.url("north-c01", "wrong-password-0123456789"))
            key = server.auth / "certs" / "server.key"
            for private in (key, server.auth / "passwd", server.auth / "health", server.auth / "acl"):
                mode, owner = private.stat().st_mode & 0o777, pwd.getpwuid(private.stat().st_uid).pw_name
                assert (mode, owner) == (0o600, "mosquitto"), private
            uid = int(next(line.split()[1] for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
                           if line.startswith("Uid:")))
            assert pwd.getpwuid(uid).pw_name == "mosquitto"
        finally:
            server.stop()
        assert "Error" not in server.log() and "Warning" not in server.log(), server.log()[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)
