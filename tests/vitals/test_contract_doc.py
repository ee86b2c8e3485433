"""docs/mqtt-contract.md's topic table lists every chair topic kind of vitals/topics.py, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from vitals.topics import CHAIR_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-contract.md"


def test_the_topic_table_lists_every_chair_topic() -> None:
    text = DOC.read_text()
    table = text[text.index("## Topics"):text.index("## Readings")]
    rows = re.findall(r"^\| `clinic/\{site\}/chair/\{chair\}/([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert rows == list(CHAIR_KINDS)
    for kind in CHAIR_KINDS[1:]:  # and each has its own section
        assert f"(`.../{kind}`" in text, kind
