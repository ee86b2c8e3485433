"""``infusion-monitor demo``: the whole system on this machine, with no server installed.

Starts, in this process: an MQTT broker (embedded amqtt, or a ``mosquitto`` from PATH with ``--broker
mosquitto``), the SQLite store in a temporary or given directory, the ingest with its alarm engine, the HL7
exporter sending PCD-01 messages to a stand-in record system (an MLLP receiver answering AA), the dashboard on
127.0.0.1 without login (and saying so), and the simulator running a clinic day. Every port
is free-chosen unless given. Ctrl-C (or SIGTERM) stops the parts in reverse order: simulator, dashboard,
ingest (flushes and acknowledges), broker; nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infusion_monitor.broker import BROKERS, BrokerStartError, check_free, free_port, start_broker
from vitals.settings import FixedSettings, Settings

log = logging.getLogger("demo")

DEFAULT_PORT = 8050  # the dashboard's usual port, used when it is free; otherwise any free port
DEFAULT_CHAIRS = 8
DEFAULT_SCENARIO = "clinic-day"
DEFAULT_SITE = "demo"
CONNECT_TIMEOUT_S = 15.0
# The identity of the demo's own broker, which listens on a new free port every run (ingest/origin.py).
DEMO_BROKER_ID = "demo-embedded-broker"
# Simulated span assumed for a scenario without its own duration, when placing a fast run in the past.
DEFAULT_SPAN_S = 8 * 3600.0


def _positive_chairs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of chairs {text!r}") from None
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("--chairs must be between 1 and 500 for the demo")
    return value


def _speed(text: str) -> float:
    from simulator.common import parse_speed

    return parse_speed(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options."""
    parser.add_argument("--port", type=int, default=None,
                        help=f"dashboard port (default {DEFAULT_PORT} when free, else any free port)")
    parser.add_argument("--chairs", type=_positive_chairs, default=DEFAULT_CHAIRS,
                        help=f"simulated chairs (default {DEFAULT_CHAIRS})")
    parser.add_argument("--speed", type=_speed, default=1.0,
                        help="simulated time per real time: 1 = real time (default), 10 = ten minutes a minute")
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO,
                        help=f"simulator scenario name or TOML file (default {DEFAULT_SCENARIO}; docs/simulator.md)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the SQLite store, spool and alarm state here (default: a temporary directory, removed)")
    parser.add_argument("--broker", choices=BROKERS, default="amqtt",
                        help="embedded amqtt (default, pure Python) or a mosquitto found on PATH")
    parser.add_argument("--broker-port", type=int, default=0, help="MQTT port (default: any free port)")
    parser.add_argument("--site", default=DEFAULT_SITE, help=f"simulated site id (default {DEFAULT_SITE})")
    parser.add_argument("--seed", type=int, default=None, help="simulator random seed (default: random)")


class Demo:
    """The running parts, each with its stop function, stopped in reverse order."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], Any]]] = []
        self.urls: dict[str, str] = {}
        self.hl7_received: list[int] = []  # sizes of the HL7 messages the stand-in record system acknowledged

    def started(self, name: str, stop: Callable[[], Any]) -> None:
        """Remember a started part and how to stop it."""
        self._stops.append((name, stop))

    def stop(self) -> None:
        """Stop every part, newest first; one failing stop never keeps the others running."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
                log.info("stopped %s", name)
            except Exception:
                log.exception("stopping %s failed", name)


def dashboard_port(requested: int | None) -> int:
    """Return the dashboard port: the requested one, else 8050 when free, else any free port."""
    if requested is not None:
        check_free("127.0.0.1", requested)
        return requested
    try:
        check_free("127.0.0.1", DEFAULT_PORT)
        return DEFAULT_PORT
    except BrokerStartError:
        return free_port()


def simulated_start_ms(duration_s: float | None, speed: float, now_ms: int) -> int | None:
    """Return where a run faster than real time starts so no reading is ever in the future (None: now).

    The ingest refuses readings more than 5 minutes in the future, and a faster simulated clock would soon
    be that far ahead; so a fast run starts in the past, early enough to end at the wall clock's now.
    """
    if speed == 1 or 0 < speed < 1:
        return None
    span = duration_s or DEFAULT_SPAN_S
    lag_s = span if speed == 0 else span * (1 - 1 / speed)
    return now_ms - round(lag_s * 1000)


def demo_settings(**values: Any) -> Settings:
    """Return settings from defaults and ``values`` only: the shell's INFUSION_* variables and files are ignored.

    A demo must never page real staff through notification URLs set for production, nor filter away its own
    simulated site because INFUSION_SITE names another. The environment is read, never changed.
    """
    return FixedSettings(**values)


def start_parts(args: argparse.Namespace, demo: Demo, data_dir: Path) -> str:
    """Start broker, ingest, dashboard and simulator; return the dashboard URL."""
    from simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario)  # a wrong name fails here, before anything starts
    port = dashboard_port(args.port)
    broker = start_broker(args.broker, port=args.broker_port, data_dir=data_dir if args.data_dir else None)
    demo.started("broker", broker.stop)
    demo.urls["mqtt"] = broker.url

    settings = demo_settings(
        mqtt_url=broker.url, mqtt_protocol=broker.protocol, store_url=f"sqlite:///{data_dir / 'vitals.db'}",
        data_dir=data_dir, http_host="127.0.0.1", http_port=free_port(), mqtt_client_id="infusion-demo-ingest",
        dashboard_host="127.0.0.1", dashboard_port=port, dashboard_no_login=True,
        # The broker is the demo's own, on a new port each run: name it, so a kept --data-dir stays its state.
        broker_id=DEMO_BROKER_ID,
    )
    demo.urls["health"] = f"http://127.0.0.1:{settings.http_port}/healthz"

    from ingest.service import IngestService

    try:
        ingest = IngestService(settings, alarms=True)
    except ImportError as exc:  # the alarm engine is a separate package inside ingest/
        log.warning("alarm engine not available (%s): the demo runs without alarms", exc)
        ingest = IngestService(settings, alarms=False)
    ingest.start()
    demo.started("ingest", ingest.stop)
    from ingest.alarms.whatif_service import start_whatif

    whatif = start_whatif(settings, ingest)  # the dashboard's what-if of a limits edit
    if whatif is not None:
        demo.started("what-if", whatif.stop)
    if not ingest.wait_connected(CONNECT_TIMEOUT_S):
        raise ConnectionError(f"the ingest could not connect to the demo broker at {broker.url}")

    start_hl7(demo, settings)

    from dashboard.server import serve

    dashboard = serve(settings)
    demo.started("dashboard", dashboard.stop)
    demo.urls["dashboard"] = dashboard.url

    from simulator import Simulation

    start_ms = simulated_start_ms(scenario.duration_s, args.speed, time.time_ns() // 1_000_000)
    simulation = Simulation(site=args.site, chairs=args.chairs, scenario=scenario, speed=args.speed, seed=args.seed,
                            settings=settings, start_ms=start_ms)
    simulation.start(CONNECT_TIMEOUT_S)
    demo.started("simulator", simulation.stop)
    return dashboard.url


def start_hl7(demo: Demo, settings: Settings) -> None:
    """Start a stand-in record system (an MLLP receiver answering AA) and the HL7 exporter sending to it."""
    from interop.hl7 import make_ack
    from interop.hl7_export import Hl7ExportService
    from interop.mllp import MllpServer

    received: list[int] = []

    def acknowledge(text: str) -> str:
        received.append(len(text))
        return make_ack(text, "AA")

    ehr = MllpServer("127.0.0.1", 0, acknowledge)
    ehr.start()
    demo.started("HL7 receiver", ehr.stop)
    exporter = Hl7ExportService(settings.model_copy(update={
        "hl7_mllp": f"127.0.0.1:{ehr.port}", "mqtt_client_id": "infusion-demo-hl7-export"}))
    exporter.start()
    demo.started("HL7 exporter", exporter.stop)
    demo.urls["hl7"] = f"127.0.0.1:{ehr.port}"
    demo.hl7_received = received


def banner(demo: Demo, args: argparse.Namespace, data_dir: Path, temporary: bool) -> str:
    """Return what the demo prints once everything runs."""
    keep = "a temporary directory, removed at exit" if temporary else "kept"
    return "\n".join([
        "",
        f"  infusion-monitor demo: {args.chairs} simulated chairs ({args.scenario}, speed {args.speed:g}x)",
        f"  Dashboard:  {demo.urls['dashboard']}",
        "              no login: it listens on 127.0.0.1 only, so only this machine can open it",
        f"  Broker:     {demo.urls['mqtt']} ({args.broker})",
        f"  Ingest:     {demo.urls['health']}",
        f"  HL7 export: PCD-01 ORU^R01 over MLLP to a stand-in record system on {demo.urls.get('hl7', '-')}",
        "              (one message per cuff cycle and per minute of numerics; docs/interoperability.md)",
        f"  Data:       {data_dir} ({keep})",
        f"  Export:     infusion-monitor export fhir --store-url sqlite:///{data_dir / 'vitals.db'} --site {args.site} "
        "--chair 01 --last --out session.json",
        "              (a chair's session as a FHIR R4 Bundle; docs/interoperability.md)",
        *([] if args.speed == 1 else [
            f"  Speed {args.speed:g}x: readings carry simulated time, which starts in the past so that none is in",
            "              the future; live tiles show them as old (never as current), trends and alarms follow",
            "              the simulated day. Use --speed 1 for a live station screen.",
        ]),
        "  Not a medical device: a secondary display and alerting aid for demonstration.",
        "  Press Ctrl-C to stop.",
        "",
    ])


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or SIGTERM; stop every part before returning."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        # A second Ctrl-C while stopping interrupts at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="infusion-demo-")) if temporary else args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo()
    status = 0
    try:
        start_parts(args, demo, data_dir)
        print(banner(demo, args, data_dir, temporary), flush=True)
        stop.wait()
        print(f"stopping: simulator, dashboard, HL7 export ({len(demo.hl7_received)} messages acknowledged), ingest, "
              "broker ...", flush=True)
    except (BrokerStartError, ConnectionError, ValueError, ImportError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temporary:
            # The ingest's threads may close their files a moment after stop() returns.
            for _ in range(20):
                with contextlib.suppress(OSError):
                    shutil.rmtree(data_dir)
                if not data_dir.exists():
                    break
                time.sleep(0.1)
    if status == 0:
        print("demo stopped", flush=True)
    return status
