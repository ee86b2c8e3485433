"""``infusion-monitor export hl7``: one stored session sent as PCD-01 messages over MLLP, now."""

from __future__ import annotations

import argparse
import sys

from interop.hl7 import PatientLookup, read_ack, session_messages
from interop.hl7_export import endpoint_of
from interop.mllp import MllpError, parse_hostport, send
from interop.sessions import add_session_arguments, find_session
from vitals.settings import Settings, add_settings_arguments, settings_from_args
from vitals.store import open_store_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``export hl7``."""
    add_settings_arguments(parser, "export-hl7")
    add_session_arguments(parser)  # the same session choice as `export fhir`


def export(settings: Settings, site: str, chair: str, session_id: str | None, out=sys.stdout) -> int:  # type: ignore[no-untyped-def]
    """Send a stored session's messages in order; return 0 when all were acknowledged AA, else 1."""
    host, port = parse_hostport(settings.hl7_mllp or "")
    store = open_store_from(settings)
    try:
        session = find_session(store, site, chair, session_id)
        end = session.ended_at if session.ended_at is not None else 2**62
        readings = store.readings(site, chair, session.started_at, end + 1)
    finally:
        store.close()
    messages = session_messages(session, readings, round(settings.hl7_numerics_interval_s * 1000),
                                endpoint_of(settings), PatientLookup.load(settings.hl7_patient_lookup_file))
    failed = 0
    for message in messages:
        try:
            ack = read_ack(send(host, port, message.text, settings.hl7_ack_timeout_s))
        except (MllpError, ValueError) as exc:
            print(f"{message.key}: not sent: {exc}", file=out)
            return 1
        if ack.code != "AA":
            failed += 1
            print(f"{message.key}: {ack.code} {ack.reason}", file=out)
    print(f"session {session.session_id} of {site}/{chair}: {len(messages) - failed} of {len(messages)} messages "
          f"acknowledged AA by {host}:{port}", file=out)
    return 0 if failed == 0 else 1


def run(args: argparse.Namespace) -> int:
    """Run ``export hl7``."""
    settings = settings_from_args(args, "export-hl7")
    if not settings.hl7_mllp:
        print("infusion-monitor export hl7: --mllp HOST:PORT (hl7_mllp) names no receiver", file=sys.stderr)
        return 2
    try:
        return export(settings, args.site, args.chair, None if args.last else args.session_id)
    except (LookupError, ValueError) as exc:
        print(f"infusion-monitor export hl7: {exc}", file=sys.stderr)
        return 2
