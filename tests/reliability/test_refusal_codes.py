"""Every refusal code the ingest reports belongs to the documented label set, so dashboards can alert on all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vitals.reading import REFUSAL_CODES

INGEST = Path(__file__).resolve().parents[2] / "ingest"


@pytest.mark.xfail(strict=True, reason="ingest/service.py uses internal, bad_session, bad_status, bad_command, "
                                       "which vitals/reading.py REFUSAL_CODES does not list (reported to the lead)")
def test_ingest_refusal_codes_are_all_in_refusal_codes() -> None:
    used = {code for path in INGEST.rglob("*.py") for code in re.findall(r'code="([a-z_]+)"', path.read_text())}
    assert used, "no refusal codes found: the pattern no longer matches the ingest's source"
    assert sorted(used - set(REFUSAL_CODES)) == []
