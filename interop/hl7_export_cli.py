"""``infusion-monitor hl7-export``: the live HL7 exporter role."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from vitals.settings import add_settings_arguments, settings_from_args

log = logging.getLogger("interop")


def wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hl7-export``."""
    add_settings_arguments(parser, "hl7-export")


def run(args: argparse.Namespace) -> int:
    """Run the live exporter until SIGTERM/SIGINT."""
    from interop.hl7_export import Hl7ExportService

    settings = settings_from_args(args, "hl7-export")
    if not settings.hl7_mllp:
        print("infusion-monitor hl7-export: --mllp HOST:PORT (hl7_mllp) names no receiver", file=sys.stderr)
        return 2
    service = Hl7ExportService(settings)
    if not service.start():
        log.warning("broker not reachable yet; retrying in the background")
    log.info("hl7-export: sending to %s, outbox %s", settings.hl7_mllp, service.exporter.outbox.path)
    try:
        wait_for_signal()
    finally:
        service.stop()
    return 0


