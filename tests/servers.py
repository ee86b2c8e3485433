"""Start real mosquitto and influxd processes on free loopback ports in temporary directories.

Used by the pytest fixtures in tests/conftest.py and by the benchmark suite. Each server can be
stopped, killed and started again on the same port and data directory, for fault tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path


def free_port() -> int:
    """Return a TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on loopback ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def wait_until(predicate, timeout: float = 20.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` is true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class ThreadedHTTP:
    """A real HTTP server on a free loopback port, served from a daemon thread; ``close()`` stops it."""

    def __init__(self, handler: type) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def require(binary: str) -> str:
    """Return the path of a server binary or fail with how to install it."""
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )
    if not found:
        raise RuntimeError(f"{binary} is not installed: run scripts/test (it apt-installs mosquitto and influxdb)")
    return found


class Server:
    """A server process that can be stopped, killed and restarted on the same port and directory."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the process and wait until it serves."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        self.wait_ready()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the process (SIGTERM, or SIGKILL when given) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """Kill the process with SIGKILL."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port and directory."""
        self.stop()
        self.start()

    def log(self) -> str:
        """Return the server's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Mosquitto(Server):
    """A mosquitto broker with persistence, generous in-flight and queue limits, and optional extras."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "",
                 max_queued: int = 1_000_000, max_inflight: int = 1000) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.max_queued = max_queued
        self.max_inflight = max_inflight

    @property
    def url(self) -> str:
        """Return the broker's mqtt:// URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join([
                "user root",
                "per_listener_settings false",
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous true" if "allow_anonymous" not in self.extra_conf else "",
                "persistence true",
                f"persistence_location {self.workdir}/",
                "autosave_interval 1",
                f"max_queued_messages {self.max_queued}",
                "max_queued_bytes 0",
                f"max_inflight_messages {self.max_inflight}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_dest stdout",
                self.extra_conf,
                "",
            ])
        )
        return [require("mosquitto"), "-c", str(conf)]

    def wait_ready(self) -> None:
        wait_port(self.port, proc=self.proc)


class Influxd(Server):
    """An InfluxDB 1.x server (Debian's influxdb) speaking the v1 HTTP API.

    With ``admin=(user, password)`` it enforces authentication (``auth-enabled``) and has that admin user, made
    after start (1.x lets the first admin be created without credentials); without, it is open, as most tests want.
    """

    name = "influxd"

    def __init__(self, workdir: Path, port: int | None = None, admin: tuple[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.admin = admin

    @property
    def url(self) -> str:
        """Return the HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    def store_url(self, database: str = "vitals") -> str:
        """Return an influxdb:// store URL for a database on this server (with the admin's credentials, if any)."""
        from urllib.parse import quote

        credentials = f"{quote(self.admin[0], safe='')}:{quote(self.admin[1], safe='')}@" if self.admin else ""
        return f"influxdb://{credentials}127.0.0.1:{self.port}/{database}"

    def command(self) -> list[str]:
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            "\n".join([
                "reporting-disabled = true",
                f'bind-address = "127.0.0.1:{self.rpc_port}"',
                "[meta]",
                f'  dir = "{self.workdir}/meta"',
                "[data]",
                f'  dir = "{self.workdir}/data"',
                f'  wal-dir = "{self.workdir}/wal"',
                '  index-version = "inmem"',
                "  query-log-enabled = false",
                "[http]",
                f'  bind-address = "127.0.0.1:{self.port}"',
                "  log-enabled = false",
                f"  auth-enabled = {'true' if self.admin else 'false'}",
                "[monitor]",
                "  store-enabled = false",
                "[continuous_queries]",
                "  enabled = false",
                "",
            ])
        )
        return [require("influxd"), "-config", str(conf)]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status == 204:
                        self._ensure_admin()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"influxd did not answer /ping within {timeout} s:\n{self.log()[-2000:]}")

    def _ensure_admin(self) -> None:
        """Create the admin user once (allowed without credentials while the server has no user)."""
        if not self.admin or (self.workdir / "admin-created").exists():
            return
        user, password = self.admin
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{escaped}' WITH ALL PRIVILEGES", db="")
        (self.workdir / "admin-created").touch()

    def query(self, q: str, db: str = "vitals") -> dict:
        """Run an InfluxQL query over HTTP (as the admin, if any) and return the decoded JSON."""
        import base64
        import json
        import urllib.parse

        data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ms"}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=data)
        if self.admin and (self.workdir / "admin-created").exists():
            pair = f"{self.admin[0]}:{self.admin[1]}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())


class IngestProcess(Server):
    """The real ``infusion-monitor ingest`` in a subprocess (killable, restartable with the same data dir)."""

    name = "ingest"

    def __init__(self, workdir: Path, mqtt_url: str, store_url: str, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.mqtt_url = mqtt_url
        self.store_url = store_url
        self.extra = list(extra)
        self.http_port = free_port()
        self.env = env or {}

    def command(self) -> list[str]:
        import sys

        # Its own client id (kept across restarts of this ingest), unless the test gives one. The product's default
        # (``infusion-ingest-all`` without --site) would make every such test resume one persistent session on the
        # shared broker: an earlier test's ingest, once stopped, leaves it subscribed to every site's readings, and
        # the broker queues the rest of the suite's readings for it, which the next one then drains first (seen
        # in CI: a test's own 3,300 readings not stored within 30 s behind that backlog).
        given = "--client-id" in self.extra or "INFUSION_MQTT_CLIENT_ID" in self.env or "--shared-group" in self.extra
        own_id = [] if given else ["--client-id", f"test-ingest-{zlib.crc32(str(self.workdir).encode()):08x}"]
        # And a short session expiry, unless the test sets one: the product keeps its session 7 days so that no
        # reading is lost while it is down, but a test ingest's session outlives its test, and the shared broker
        # would queue every later test's readings for it (a million per session in the test broker), which made
        # it deliver late by the end of the suite. Two minutes covers every restart a fault test makes.
        set_expiry = "--session-expiry-s" in self.extra or "INFUSION_SESSION_EXPIRY_S" in self.env
        own_expiry = [] if set_expiry else ["--session-expiry-s", "120"]
        return [
            sys.executable, "-m", "infusion_monitor", "ingest", "--mqtt-url", self.mqtt_url,
            "--store-url", self.store_url, "--data-dir", str(self.workdir / "data"),
            "--http-port", str(self.http_port), *own_id, *own_expiry, *self.extra,
        ]

    def start(self) -> None:
        """Start the ingest with the repository on PYTHONPATH and wait until it is connected."""
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        log.close()
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"ingest not healthy within {timeout} s:\n{self.log()[-3000:]}")

    def metrics(self) -> dict[str, float]:
        """Return the ingest's Prometheus samples as {name{labels}: value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


class MqttCollector:
    """A real paho subscriber that records every message on some filters (for assertions)."""

    def __init__(self, url: str, *filters: str, protocol: str = "5", persistent_id: str | None = None) -> None:
        """Subscribe at QoS 1; with ``persistent_id`` on a persistent session the broker keeps across restarts."""
        import threading

        from vitals.mqtt import connect, make_client, wait_connected

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client, target = make_client(url, persistent_id or "", protocol=protocol, persistent=bool(persistent_id))
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        if persistent_id:
            connect(self.client, target, clean_start=False, session_expiry_s=3600)
        else:
            connect(self.client, target)
        self.client.loop_start()
        if not wait_connected(self.client, 10):
            raise TimeoutError(f"could not connect to {url}")
        time.sleep(0.2)  # let the SUBACK arrive before the test publishes

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def payloads(self, topic_part: str = "") -> list[bytes]:
        """Return payloads received on topics containing ``topic_part``."""
        with self._lock:
            return [p for t, p, _ in self.messages if topic_part in t]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
        """Wait until ``predicate(self)`` is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return bool(predicate(self))

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def mosquitto_pub_lines(port: int, topic: str, lines: list[str], qos: int = 1) -> None:
    """Publish each line as one message with the real ``mosquitto_pub -l``."""
    proc = subprocess.run(
        [require("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-l"],
        input="\n".join(lines) + "\n", text=True, capture_output=True, timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mosquitto_pub failed: {proc.stderr}")
