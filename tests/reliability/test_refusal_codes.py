"""Every refusal code the ingest reports belongs to the documented label set, so dashboards can alert on all."""

from __future__ import annotations

import re
from pathlib import Path

from vitals.reading import REFUSAL_CODES

INGEST = Path(__file__).resolve().parents[2] / "ingest"


def test_ingest_refusal_codes_are_all_in_refusal_codes() -> None:
    used = {code for path in INGEST.rglob("*.py") for code in re.findall(r'code="([a-z_]+)"', path.read_text())}
    assert used, "no refusal codes found: the pattern no longer matches the ingest's source"
    assert sorted(used - set(REFUSAL_CODES)) == []
