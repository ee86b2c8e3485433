"""The stored session an export names: ``--site S --chair C (--session ID | --last)`` (``export hl7``, ``export fhir``)."""

from __future__ import annotations

import argparse

from vitals.records import Session
from vitals.store import Store


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
