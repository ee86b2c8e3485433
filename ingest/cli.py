"""``infusion-monitor ingest``: run the ingest service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from vitals.settings import load_settings

log = logging.getLogger("ingest")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags every role shares (each overrides the config file and the environment)."""
    parser.add_argument("--config", help="TOML configuration file (see docs/configuration.md)")
    parser.add_argument("--mqtt-url", help="broker URL, mqtt[s]://[user:password@]host:port")
    parser.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], help="MQTT protocol version (default 5)")
    parser.add_argument("--topic-prefix", help="first topic level (default clinic)")
    parser.add_argument("--store-url", help="sqlite:///file.db, influxdb://host:port/db or influxdb2://host:port/bucket?org=O")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ingest's flags."""
    add_common_arguments(parser)
    parser.add_argument("--site", help="consume only this site (default: every site)")
    parser.add_argument("--data-dir", help="directory for the spool and alarm state (default ./data)")
    parser.add_argument("--http-host", help="address for /healthz and /metrics (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="port for /healthz and /metrics (default 9108, 0 = off)")
    parser.add_argument("--shared-group", help="MQTT shared-subscription group for storage-only replicas")
    parser.add_argument("--client-id", dest="mqtt_client_id", help="MQTT client id (stable across restarts)")
    parser.add_argument("--no-alarms", action="store_true", help="store readings only; evaluate no alarms")
    parser.add_argument("--fresh-state", dest="state_mismatch", action="store_const", const="fresh",
                        help="when the spool or alarm state belongs to another broker or store, move it aside and "
                        "start empty (default: refuse to start)")


def settings_from_args(args: argparse.Namespace, names: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Return settings from the config file, the environment and the given flags."""
    overrides = {name: getattr(args, name, None) for name in names}
    return load_settings(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; flush and acknowledge before exiting."""
    from ingest.origin import OriginMismatch
    from ingest.service import IngestService

    settings = settings_from_args(args, (
        "mqtt_url", "mqtt_protocol", "topic_prefix", "store_url", "site", "data_dir", "http_host", "http_port",
        "shared_group", "mqtt_client_id", "state_mismatch",
    ))
    try:
        service = IngestService(settings, alarms=not args.no_alarms)
    except OriginMismatch as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service.start()
    if not service.wait_connected(10):
        log.warning("not connected to the broker yet; still trying in the background")
    stop.wait()
    service.stop()
    return 0
