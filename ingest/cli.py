"""``infusion-monitor ingest``: run the ingest service until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from vitals.settings import add_settings_arguments, settings_from_args

log = logging.getLogger("ingest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ingest's flags: one per setting it reads (docs/configuration.md), and --no-alarms."""
    add_settings_arguments(parser, "ingest")
    parser.add_argument("--no-alarms", action="store_true", help="store readings only; evaluate no alarms")
    parser.add_argument("--fresh-state", dest="state_mismatch", action="store_const", const="fresh",
                        help="when the spool or alarm state belongs to another broker or store, move it aside and "
                        "start empty (default: refuse to start)")


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; flush and acknowledge before exiting."""
    from ingest.origin import OriginMismatch
    from ingest.service import IngestService

    settings = settings_from_args(args, "ingest")
    if settings.workers > 1:
        from ingest.workers import run_workers

        return run_workers(args, settings)
    try:
        service = IngestService(settings, alarms=not args.no_alarms)
    except OriginMismatch as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service.start()
    from ingest.alarms.whatif_service import start_whatif

    whatif = start_whatif(settings, service)  # answers the dashboard's what-if of a limits edit
    if not service.wait_connected(10):
        log.warning("not connected to the broker yet; still trying in the background")
    stop.wait()
    if whatif is not None:
        whatif.stop()
    service.stop()
    return 0
