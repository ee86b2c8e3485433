"""The ``infusion-monitor`` command: one subcommand per role.

Each role module exposes ``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when
their subcommand runs, so ``infusion-monitor --help`` stays fast and a broken role cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("ingest.cli", "consume readings from MQTT, evaluate alarms, write to the store"),
    "dashboard": ("dashboard.cli", "serve the nurse-station dashboard"),
    "simulate": ("simulator.cli", "publish simulated infusion sessions"),
    "record": ("simulator.record_cli", "record vitals, session and status topics to JSON Lines"),
    "replay": ("simulator.replay_cli", "replay a recording or a stored session"),
    "demo": ("infusion_monitor.demo", "run the whole system on this machine, no servers needed"),
    "user": ("dashboard.users_cli", "manage dashboard users"),
    "export": ("interop.export_cli", "send a stored session to a record system (HL7 v2 over MLLP, FHIR R4)"),
    "hl7-export": ("interop.hl7_export_cli", "send active sessions' readings as HL7 v2 PCD-01 over MLLP, durably"),
    "hl7-gateway": ("interop.gateway_cli", "accept HL7 v2 PCD-01 readings over MLLP and publish them on MQTT"),
    "alarms": ("ingest.alarms.cli", "alarm report and what-if replay of alarm rules on stored history"),
    "report": ("infusion_monitor.report", "write one session's report (PDF or HTML) from the store"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every role's subcommand."""
    parser = argparse.ArgumentParser(
        prog="infusion-monitor",
        description="Vitals monitoring for infusion clinics. A secondary display and alerting aid, "
        "not a certified medical device.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(sub)
        except ImportError as exc:
            sub.set_defaults(_unavailable=str(exc))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "_unavailable", None):
        parser.error(f"{args.command} is not available: {args._unavailable}")
    from vitals.settings import SettingsError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except SettingsError as exc:
        print(f"infusion-monitor {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
