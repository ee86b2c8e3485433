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


def test_the_effective_limits_example_is_a_valid_payload_with_every_field() -> None:
    import json

    from vitals.limits import EffectiveLimits

    text = DOC.read_text()
    section = text[text.index("## Effective limits"):]
    example = section[section.index("```json\n") + len("```json\n"):section.index("```\n", section.index("```json"))]
    parsed = EffectiveLimits.from_payload("north", "c-07", example)
    assert set(json.loads(example)) == set(parsed.to_json_obj())
    assert parsed.priority("spo2", "low_medium") == "medium" and parsed.source("hr", "high_medium") == "admin"
    assert parsed.admin_ts == 1795568400000
