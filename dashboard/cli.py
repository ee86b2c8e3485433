"""``infusion-monitor dashboard``: serve the nurse-station dashboard until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from vitals.settings import add_settings_arguments, settings_from_args

log = logging.getLogger("dashboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the dashboard's flags (made from its settings: docs/configuration.md)."""
    add_settings_arguments(parser, "dashboard")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    from dashboard.server import serve
    from dashboard.services import check_settings
    from dashboard.sessions import SessionsError

    try:
        settings = settings_from_args(args, "dashboard")
        check_settings(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        running = serve(settings)
    except (OSError, SessionsError) as exc:  # the port is taken, or the sessions file cannot be used
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"dashboard on {running.url}", flush=True)
    stop.wait()
    running.stop()
    return 0
