"""``infusion-monitor export FORMAT``: a stored session out to a record system (``hl7`` or ``fhir``)."""

from __future__ import annotations

import argparse
import importlib

# format -> (module with add_arguments/run, help)
FORMATS: dict[str, tuple[str, str]] = {
    "hl7": ("interop.hl7_send_cli", "send a session as HL7 v2 PCD-01 ORU^R01 messages over MLLP"),
    "fhir": ("interop.fhir_cli", "write or POST a session as a FHIR R4 transaction Bundle"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-subcommand per format."""
    subs = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (module, help_text) in FORMATS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_format_module=module)
        importlib.import_module(module).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen format's export."""
    return int(importlib.import_module(args._format_module).run(args) or 0)
