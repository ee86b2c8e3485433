"""Helpers for the deploy tests: a test .env, the repository's mosquitto config run for real, MQTT probes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho

from tests.servers import Server, free_port, require, wait_port
from vitals.mqtt import connect, make_client, wait_connected

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NOT_AUTHORIZED = 135  # MQTT v5 reason code of a PUBACK/SUBACK the ACLs refused

# Secrets of the test .env: real-looking, distinct, accepted by deploy/check-secrets.
SECRETS = {
    "DOCKER_INFLUXDB_INIT_PASSWORD": "influx-admin-pw-0123456789",
    "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": "influx-token-abcdef0123456789",
    "MQTT_INGEST_PASSWORD": "ingest-pw-0123456789abcdef",
    "MQTT_DASHBOARD_PASSWORD": "dashboard-pw-0123456789abcd",
    "MQTT_SIMULATOR_PASSWORD": "simulator-pw-0123456789abc",
    "MQTT_HL7_PASSWORD": "hl7-export-pw-0123456789ab",
}


def env_example() -> dict[str, str]:
    """Return the variables of .env.example (name -> value)."""
    out: dict[str, str] = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def write_test_env(path: Path, **changes: str | None) -> Path:
    """Write .env.example with the test secrets filled in (a None change removes the variable)."""
    values = {**env_example(), **SECRETS}
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def run_sh(script: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
           shell: str = "/bin/sh") -> subprocess.CompletedProcess[str]:
    """Run a repository shell script with a POSIX shell and a clean environment (PATH kept)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([shell, str(script), *args], env={**base, **(env or {})}, input=stdin, text=True,
                          capture_output=True, timeout=60)


class RepoMosquitto(Server):
    """The repository's deploy/mosquitto (conf, acl, start.sh) run by the real mosquitto on a free port.

    deploy/mosquitto is copied to a temporary config dir; only the container paths and the listener
    are rewritten, so the broker enforces exactly the committed configuration and ACL file.
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, secrets: dict[str, str], devices: Path | None = None, *,
                 as_root: bool = True) -> None:
        super().__init__(workdir)
        # as_root=False runs it as the container does: mosquitto drops to its own user before it reads the
        # password file, the ACLs and the TLS key (the work directory must then be traversable by that user).
        self.as_root = as_root
        self.port = free_port()
        self.tls_port = free_port()
        self.secrets = secrets
        self.config = workdir / "config"
        self.auth = workdir / "auth"
        self.data = workdir / "data"
        if not self.config.exists():
            shutil.copytree(DEPLOY / "mosquitto", self.config)
        self.data.mkdir(exist_ok=True)
        if devices is not None:
            shutil.copy(devices, self.config / "devices.passwd")

    def rewrite(self, text: str) -> str:
        """Return config text with the container paths and ports mapped to this test's."""
        text = text.replace("/mosquitto/config/", f"{self.config}/").replace("/mosquitto/auth/", f"{self.auth}/")
        text = text.replace("/mosquitto/data/", f"{self.data}/")
        text = re.sub(r"^listener 1883$", f"listener {self.port} 127.0.0.1", text, flags=re.M)
        return re.sub(r"^listener 8883$", f"listener {self.tls_port} 127.0.0.1", text, flags=re.M)

    def command(self) -> list[str]:
        conf = self.config / "mosquitto.conf"
        # By default run as the invoking user (root in CI containers) so the temporary directories stay readable.
        head = "user root\n" if self.as_root else ""
        conf.write_text(head + self.rewrite((DEPLOY / "mosquitto" / "mosquitto.conf").read_text()))
        for extra in (self.config / "conf.d").glob("*.conf"):
            extra.write_text(self.rewrite(extra.read_text()))
        return ["/bin/sh", str(DEPLOY / "mosquitto" / "start.sh"), require("mosquitto"), "-c", str(conf)]

    def start(self) -> None:
        """Run start.sh (password file from the secrets), which execs mosquitto."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin",
            "MOSQUITTO_CONFIG_DIR": str(self.config),
            "MOSQUITTO_AUTH_DIR": str(self.auth),
            "MOSQUITTO_DATA_DIR": str(self.data),
            "CHECK_SECRETS": str(DEPLOY / "check-secrets"),
            **self.secrets,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_port(self.port, proc=self.proc)

    def url(self, user: str, password: str) -> str:
        """Return an mqtt:// URL with credentials."""
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"


@contextlib.contextmanager
def mqtt_session(url: str, protocol: str = "5") -> Iterator[paho.Client]:
    """Yield a connected paho client (v5 by default, so refusals carry reason codes)."""
    client, target = make_client(url, client_id=f"t-{time.monotonic_ns()}", protocol=protocol)
    connect(client, target)
    client.loop_start()
    try:
        if not wait_connected(client, 10):
            raise ConnectionRefusedError(f"could not connect as {target.username}")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def connects(url: str, timeout: float = 3.0) -> bool:
    """Return whether the broker accepts a connection with these credentials."""
    client, target = make_client(url, client_id=f"t-{time.monotonic_ns()}")
    connect(client, target)
    client.loop_start()
    try:
        return wait_connected(client, timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def puback(client: paho.Client, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
    """Publish at QoS 1 and return the broker's PUBACK reason code (0 accepted, 135 not authorised)."""
    codes: dict[int, int] = {}
    arrived = threading.Condition()

    def on_publish(c, userdata, mid, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        with arrived:
            codes[mid] = reason_code.value
            arrived.notify_all()

    client.on_publish = on_publish
    info = client.publish(topic, payload, qos=1, retain=retain)
    with arrived:
        if not arrived.wait_for(lambda: info.mid in codes, 10):
            raise TimeoutError(f"no PUBACK for {topic}")
        # 16 = "no matching subscribers": accepted, only nobody was listening.
        return 0 if codes[info.mid] == 16 else codes[info.mid]


def suback(client: paho.Client, topic_filter: str) -> int:
    """Subscribe at QoS 1 and return the broker's SUBACK reason code (1 granted, 135 not authorised).

    Mosquitto 2.0 grants wildcard subscriptions and applies read ACLs to each delivered message, so a
    granted SUBACK proves little: what a client may read is checked by what it receives.
    """
    codes: dict[int, int] = {}
    arrived = threading.Condition()

    def on_subscribe(c, userdata, mid, reason_codes, properties=None) -> None:  # type: ignore[no-untyped-def]
        with arrived:
            codes[mid] = reason_codes[0].value
            arrived.notify_all()

    client.on_subscribe = on_subscribe
    _, mid = client.subscribe(topic_filter, qos=1)
    with arrived:
        if not arrived.wait_for(lambda: mid in codes, 10):
            raise TimeoutError(f"no SUBACK for {topic_filter}")
        return codes[mid]
