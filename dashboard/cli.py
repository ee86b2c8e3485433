"""``infusion-monitor dashboard``: serve the nurse-station dashboard until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from dashboard.auth import DEFAULT_SESSION_HOURS
from dashboard.users_cli import DEFAULT_USERS_FILE, default_users_file
from vitals.settings import load_settings

log = logging.getLogger("dashboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the dashboard's flags."""
    parser.add_argument("--config", help="TOML configuration file (see docs/configuration.md)")
    parser.add_argument("--mqtt-url", help="broker URL, mqtt[s]://[user:password@]host:port")
    parser.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], help="MQTT protocol version (default 5)")
    parser.add_argument("--topic-prefix", help="first topic level (default clinic)")
    parser.add_argument("--store-url", help="sqlite:///file.db, influxdb://host:port/db or influxdb2://host:port/bucket?org=O")
    parser.add_argument("--site", help="show only this site (default: every site)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    parser.add_argument("--users-file", default=None,
                        help=f"users file (default {DEFAULT_USERS_FILE} or $INFUSION_DASHBOARD_USERS_FILE)")
    parser.add_argument("--no-login", action="store_true",
                        help="no login (only on a loopback --host; the page says so)")
    parser.add_argument("--session-hours", type=float, default=DEFAULT_SESSION_HOURS,
                        help=f"a login lasts at most this long (default {DEFAULT_SESSION_HOURS:g})")
    parser.add_argument("--secure-cookies", action="store_true",
                        help="always mark cookies Secure (they are whenever the request came over HTTPS)")
    parser.add_argument("--trust-proxy", action="store_true",
                        help="trust X-Forwarded-For/Proto/Host from one reverse proxy (TLS terminated there)")


def config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Return the DashboardConfig from the settings (file, environment) and the flags."""
    from dashboard.services import DashboardConfig

    settings = load_settings(args.config, mqtt_url=args.mqtt_url, mqtt_protocol=args.mqtt_protocol,
                             topic_prefix=args.topic_prefix, store_url=args.store_url, site=args.site)
    tls = {"ca_file": settings.mqtt_ca_file, "cert_file": settings.mqtt_cert_file, "key_file": settings.mqtt_key_file}
    return DashboardConfig(
        mqtt_url=settings.mqtt_url, store_url=settings.store_url, host=args.host, port=args.port,
        users_file=None if args.no_login else Path(args.users_file or default_users_file()),
        no_login=args.no_login, site=settings.site, topic_prefix=settings.topic_prefix,
        mqtt_protocol=settings.mqtt_protocol, mqtt_tls={k: v for k, v in tls.items() if v is not None},
        session_hours=args.session_hours, secure_cookies=args.secure_cookies, trust_proxy=args.trust_proxy,
        no_data_s=settings.no_data_s, cuff_interval_min=settings.cuff_interval_min,
        audio_pause_s=settings.audio_pause_s, dashboard_max_request_kb=settings.dashboard_max_request_kb,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    from dashboard.server import serve

    try:
        config = config_from_args(args)
        config.check()
        if config.users_file is not None and not config.users_file.exists():
            print(f"error: users file {config.users_file} does not exist; add a user with "
                  f"'infusion-monitor user add NAME --role admin --users-file {config.users_file}'", file=sys.stderr)
            return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    running = serve(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"dashboard on {running.url}", flush=True)
    stop.wait()
    running.stop()
    return 0
