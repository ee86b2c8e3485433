"""``infusion-monitor report``: write one session's report to a PDF or HTML file.

``report --site S --chair C (--session ID | --last) --out FILE.pdf|FILE.html``; the store is opened from the
settings (``--store-url``, ``INFUSION_STORE_URL``, the ``--config`` file, with ``INFUSION_INFLUX_TOKEN``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dashboard.report import ReportError, collect, render
from vitals.settings import add_settings_arguments, settings_from_args
from vitals.store import StoreError, open_store_from
from vitals.topics import TopicError, check_id

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the report options."""
    add_settings_arguments(parser, "report")
    parser.add_argument("--site", required=True, help="the site of the chair")
    parser.add_argument("--chair", required=True, help="the chair")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", help="the session id")
    which.add_argument("--last", action="store_true", help="the chair's newest session")
    parser.add_argument("--out", required=True, help="file to write: .pdf or .html")


def run(args: argparse.Namespace) -> int:
    """Write the report; exit 2 for bad arguments, 1 when no such session or the store fails."""
    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("pdf", "html"):
        print(f"report: --out must end in .pdf or .html, not {out.name!r}", file=sys.stderr)
        return 2
    try:
        site, chair = check_id(args.site, "site id"), check_id(args.chair, "chair id")
    except TopicError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    settings = settings_from_args(args, "report")
    try:
        store = open_store_from(settings)
    except ValueError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    try:
        report = collect(store, site, chair, None if args.last else args.session)
    except ReportError as exc:
        print(f"report: {exc} ({site}/{chair})", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"report: the store failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    data = render(report, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    log.info("wrote the report of session %s (%s/%s) to %s", report.session.session_id, site, chair, out)
    return 0
