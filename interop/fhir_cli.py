"""``infusion-monitor export fhir --site S --chair C (--session ID | --last) (--out FILE | --fhir-url URL)``.

Reads the session from the store the settings name (``open_store_from``), builds its transaction Bundle
(interop/fhir.py), validates it, and writes it to a file or POSTs it to the FHIR server's base URL with the
bearer token from the settings (``INFUSION_FHIR_TOKEN`` or the file, never a flag). Exit 0 when written or
accepted, 1 when the server cannot be reached or refuses, 2 when the session cannot be exported.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from interop.fhir import (
    BundleInvalid,
    ExportInput,
    ExportRefused,
    FhirPostError,
    Systems,
    assessments_of,
    build_bundle,
    bundle_json,
    check_fhir_url,
    infusion_of,
    post_bundle,
    validate_bundle,
)
from interop.sessions import SessionNotFound, add_session_arguments, find_session
from vitals.settings import Settings, add_settings_arguments, settings_from_args
from vitals.store import Store, StoreError, open_store_from, redact_url

ROLE = "export-fhir"
log = logging.getLogger("export.fhir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the session choice, ``--out`` and the export-fhir settings' flags (``--fhir-url``, ``--store-url``...)."""
    add_session_arguments(parser)
    parser.add_argument("--out", type=Path, help="write the Bundle to this file (JSON) instead of POSTing it")
    add_settings_arguments(parser, ROLE)


def export_input(store: Store, site: str, chair: str, session_id: str | None, now_ms: int) -> ExportInput:
    """Return what the chosen stored session's Bundle is made of."""
    session = find_session(store, site, chair, session_id)
    end = session.ended_at if session.ended_at is not None else now_ms
    readings = store.readings(site, chair, session.started_at, end + 1)
    return ExportInput(session=session, readings=readings, weight_kg=session.weight_kg,
                       infusion=infusion_of(session, store.infusion_events(site, chair, session.session_id)),
                       assessments=assessments_of(store.assessments(site, chair, session.session_id)))


def systems_of(settings: Settings) -> Systems:
    """Return the identifier systems the settings name."""
    return Systems(patient=settings.fhir_patient_system, base=settings.fhir_identifier_system)


def summary(bundle: dict) -> str:
    """Return what a Bundle holds, e.g. ``412 entries: 1 Patient, 1 Device, 1 Encounter, 409 Observation``."""
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    return f"{len(bundle['entry'])} entries: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def run(args: argparse.Namespace) -> int:
    """Export one session; return the exit status."""
    settings = settings_from_args(args, ROLE)
    if args.out is not None and args.fhir_url is not None:
        print("export fhir: give --out FILE or --fhir-url URL, not both", file=sys.stderr)
        return 2
    if args.out is None and not settings.fhir_url:
        print("export fhir: give --out FILE, or --fhir-url URL (or set INFUSION_FHIR_URL)", file=sys.stderr)
        return 2
    if args.out is None:
        try:
            check_fhir_url(settings.fhir_url or "", with_token=settings.fhir_token is not None)
        except ExportRefused as exc:
            print(f"export fhir: {exc}", file=sys.stderr)
            return 2
    now_ms = time.time_ns() // 1_000_000
    try:
        store = open_store_from(settings)
    except (ValueError, StoreError) as exc:
        print(f"export fhir: {exc}", file=sys.stderr)
        return 2
    try:
        data = export_input(store, args.site, args.chair, args.session_id, now_ms)
        bundle = build_bundle(data, systems_of(settings), now_ms=now_ms)
        validate_bundle(bundle)
    except (SessionNotFound, ExportRefused, BundleInvalid) as exc:
        print(f"export fhir: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"export fhir: the store {redact_url(settings.store_url or '')} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    what = f"session {data.session.session_id} of {args.site}/{args.chair}: {summary(bundle)}"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(bundle_json(bundle), encoding="utf-8")
        print(f"wrote {what} to {args.out}")
        return 0
    try:
        answer = post_bundle(settings.fhir_url or "", bundle, token=settings.fhir_bearer(),
                             timeout_s=settings.fhir_timeout_s)
    except FhirPostError as exc:
        print(f"export fhir: {exc}", file=sys.stderr)
        return 1
    print(f"sent {what} to {redact_url(settings.fhir_url or '')}; the server answered {len(answer.get('entry', []))} "
          "entries, all 2xx")
    return 0
