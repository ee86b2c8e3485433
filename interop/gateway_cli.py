"""``infusion-monitor hl7-gateway``: the inbound HL7 gateway role."""

from __future__ import annotations

import argparse
import logging
import sys

from interop.hl7_export_cli import wait_for_signal
from vitals.settings import add_settings_arguments, settings_from_args

log = logging.getLogger("interop")



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hl7-gateway``."""
    add_settings_arguments(parser, "hl7-gateway")


def run(args: argparse.Namespace) -> int:
    """Run the inbound gateway until SIGTERM/SIGINT."""
    from interop.gateway import GatewayService

    settings = settings_from_args(args, "hl7-gateway")
    try:
        service = GatewayService(settings)
    except (ValueError, OSError) as exc:
        print(f"infusion-monitor hl7-gateway: {exc}", file=sys.stderr)
        return 2
    if not service.start():
        log.warning("broker not reachable yet: messages get AE until it is")
    log.info("hl7-gateway: MLLP on %s", settings.hl7_listen)
    try:
        wait_for_signal()
    finally:
        service.stop()
    return 0
