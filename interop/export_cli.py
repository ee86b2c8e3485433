"""``infusion-monitor export FORMAT``: send or write one stored session for a record system.

Each format is a module in ``EXPORTERS`` with ``add_arguments(parser)`` and ``run(args) -> int``, like the
top-level commands. ``add_session_arguments`` and ``find_session`` are the shared ``--site --chair (--session ID
| --last)`` choice, for every format.
"""

from __future__ import annotations

import argparse
import importlib

from vitals.records import Session
from vitals.store import Store

# format -> (module, one-line help)
EXPORTERS: dict[str, tuple[str, str]] = {
    "fhir": ("interop.fhir_cli", "a session as a FHIR R4 transaction Bundle, to a file or a FHIR server"),
}


class SessionNotFound(LookupError):
    """No stored session matches the --site, --chair and --session/--last choice."""


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--site S --chair C (--session ID | --last)``."""
    parser.add_argument("--site", required=True, help="site of the session")
    parser.add_argument("--chair", required=True, help="chair of the session")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", dest="session_id", metavar="ID", help="the session's session_id")
    which.add_argument("--last", action="store_true", help="the chair's most recent session")


def find_session(store: Store, site: str, chair: str, session_id: str | None) -> Session:
    """Return the chair's session with ``session_id``, or its newest one when None; raise SessionNotFound."""
    sessions = store.sessions(site=site, chair=chair)
    if session_id is not None:
        sessions = [s for s in sessions if s.session_id == session_id]
    if not sessions:
        which = f"session {session_id!r}" if session_id is not None else "session"
        raise SessionNotFound(f"the store has no {which} of site {site!r} chair {chair!r}")
    return max(sessions, key=lambda s: s.started_at)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one subcommand per export format."""
    subs = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (module, help_text) in EXPORTERS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_export_module=module)
        importlib.import_module(module).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen format's export."""
    return int(importlib.import_module(args._export_module).run(args) or 0)
