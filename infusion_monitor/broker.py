"""A broker for the demo: amqtt in a background thread, or a mosquitto found on PATH, on a free loopback port.

    broker = start_broker()                 # amqtt (pure Python, installed with the package)
    client, target = make_client(broker.url, protocol=broker.protocol)
    ...
    broker.stop()

amqtt speaks MQTT 3.1.1 only, so clients of an amqtt broker must use ``protocol="3.1.1"`` (``broker.protocol``
says which). amqtt keeps a persistent session (offline queue) only for a client that sends a username, so
``broker.url`` carries one (``demo``). amqtt does not redeliver a QoS 1 message that was sent but never
acknowledged when the client reconnects, and it sends a connecting client the retained messages of every
filter any client subscribed to, not only its own (tests/demo/test_broker.py pins both): the demo loses at
most the ingest's in-flight messages on a crash, and its clients ignore topics they did not ask for. It is
never a production broker; production uses Mosquitto (docker-compose.yml, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BROKERS = ("amqtt", "mosquitto")
DEMO_USER = "demo"  # amqtt keeps sessions only for clients with a username
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
# Mosquitto limits sized like the production config: the ingest acknowledges after writing (many in flight),
# and its queue must hold a restart's worth of readings.
MOSQUITTO_MAX_INFLIGHT = 1000
MOSQUITTO_MAX_QUEUED = 1_000_000


class BrokerStartError(RuntimeError):
    """The broker could not start (no free port, mosquitto missing or failing)."""


@dataclass
class RunningBroker:
    """A started broker: where to connect, with which protocol, and how to stop it."""

    kind: str
    host: str
    port: int
    protocol: str
    _stop: Callable[[], None] = field(repr=False)
    pid: int | None = None  # mosquitto's process id (None for the in-process amqtt)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """Return the broker URL with the demo username."""
        return f"mqtt://{DEMO_USER}@{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the broker and wait until its port is closed (safe to call twice)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop()

    def __enter__(self) -> RunningBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on ``host`` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def check_free(host: str, port: int) -> None:
    """Raise BrokerStartError naming the port when something already listens on it."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerStartError(f"port {host}:{port} is not available ({exc.strerror}): choose another") from None


def start_broker(kind: str = "amqtt", *, host: str = "127.0.0.1", port: int = 0, data_dir: Path | None = None,
                 mosquitto: str | None = None, quiet: bool = True) -> RunningBroker:
    """Start an embedded amqtt broker or a mosquitto subprocess on a free (or given) port; return it running."""
    if kind not in BROKERS:
        raise ValueError(f"unknown broker {kind!r}: use one of {', '.join(BROKERS)}")
    attempts = 1 if port else 3  # a free port can be taken between choosing it and binding it: choose again
    last: Exception | None = None
    for _ in range(attempts):
        chosen = port or free_port(host)
        try:
            if kind == "amqtt":
                return _start_amqtt(host, chosen, quiet)
            return _start_mosquitto(host, chosen, data_dir, mosquitto)
        except BrokerStartError as exc:
            last = exc
            if port_open(host, chosen) and not port:
                continue
            raise
    raise BrokerStartError(f"no free port for the {kind} broker: {last}")


# -- amqtt ----------------------------------------------------------------------------------------------

def _amqtt_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        # Refusing anonymous clients is what makes amqtt keep sessions (it treats every session of an
        # allow-anonymous broker as anonymous, and drops anonymous sessions on disconnect); any username passes.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }


def _start_amqtt(host: str, port: int, quiet: bool) -> RunningBroker:
    from amqtt.broker import Broker

    if quiet:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        broker = Broker(_amqtt_config(host, port), loop=loop)
        try:
            await broker.start()
        except Exception as exc:  # reported to the caller, who raises it
            state["error"] = exc
            return
        finally:
            state["broker"] = broker
            started.set()
        state["stopping"] = stopping = asyncio.Event()
        await stopping.wait()
        await broker.shutdown()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name=f"amqtt-broker-{port}", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT_S):
        raise BrokerStartError(f"amqtt did not start within {START_TIMEOUT_S:.0f} s")
    if "error" in state:
        thread.join(STOP_TIMEOUT_S)
        raise BrokerStartError(f"amqtt could not listen on {host}:{port}: {state['error']}")

    def stop() -> None:
        stopping = state.get("stopping")
        if stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already closed on its own
                loop.call_soon_threadsafe(stopping.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("the amqtt broker thread did not stop within %.0f s", STOP_TIMEOUT_S)

    log.info("embedded amqtt broker (MQTT 3.1.1) on %s:%d", host, port)
    return RunningBroker("amqtt", host, port, "3.1.1", stop)


# -- mosquitto ------------------------------------------------------------------------------------------

def find_mosquitto() -> str | None:
    """Return the mosquitto binary on PATH (or in the sbin directories Debian installs it to)."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(("/usr/sbin", "/usr/local/sbin", "/sbin"))
    return shutil.which("mosquitto", path=path)


def _start_mosquitto(host: str, port: int, data_dir: Path | None, binary: str | None) -> RunningBroker:
    check_free(host, port)  # mosquitto would fail to bind, but whatever holds the port would look like it
    binary = binary or find_mosquitto()
    if not binary or not Path(binary).exists():
        raise BrokerStartError("mosquitto is not installed (Debian: apt-get install mosquitto); "
                               "or use the embedded broker (--broker amqtt)")
    owned = data_dir is None
    workdir = Path(tempfile.mkdtemp(prefix="infusion-mosquitto-")) if data_dir is None else Path(data_dir) / "mosquitto"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join([
        # As root, mosquitto would drop to its own user and could not write its persistence file here.
        "user root" if os.geteuid() == 0 else "",
        f"listener {port} {host}",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {workdir}/",
        f"max_inflight_messages {MOSQUITTO_MAX_INFLIGHT}",
        f"max_queued_messages {MOSQUITTO_MAX_QUEUED}",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "",
    ]))
    log_file = open(workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
    # A new session: a Ctrl-C in the terminal reaches the demo, which stops mosquitto itself, in order.
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log_file.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_open(host, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
            tail = (workdir / "mosquitto.log").read_text(errors="replace")[-500:]
            if owned:
                shutil.rmtree(workdir, ignore_errors=True)
            raise BrokerStartError(f"mosquitto did not listen on {host}:{port}: {tail.strip()}")
        time.sleep(0.05)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)

    log.info("mosquitto (pid %d) on %s:%d", proc.pid, host, port)
    return RunningBroker("mosquitto", host, port, "5", stop, pid=proc.pid)
