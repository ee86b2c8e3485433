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


def _section(text: str, title: str) -> str:
    start = text.index(title)
    return text[start:text.index("\n## ", start + 1)]


def _json_blocks(section: str) -> list[str]:
    return [block.split("```", 1)[0] for block in section.split("```json\n")[1:]]


def test_the_session_record_examples_are_valid_records_of_every_documented_type() -> None:
    import json

    from vitals.care import RECORD_TYPES, parse_record

    text = DOC.read_text()
    section = _section(text, "## Session record (`.../record`)")
    lines = [line for block in _json_blocks(section) for line in block.splitlines() if line.strip()]
    parsed = [parse_record("north", "c-07", line, 1795574400000) for line in lines]
    assert {p.type for p in parsed} >= {"infusion_start", "rate_change", "adverse_event", "assessment", "discharge"}
    assert all(f"| `{kind}` |" in section for kind in RECORD_TYPES)
    assert json.loads(lines[0])["type"] == "infusion_start"


def test_the_nurse_session_and_record_state_examples_match_the_code() -> None:
    import json

    from vitals.careplan import CarePlan
    from vitals.records import Session
    from vitals.session_record import SessionRecord

    text = DOC.read_text()
    nurse = _json_blocks(_section(text, "## Sessions (`.../session`, retained)"))[1]
    session = Session.from_payload("north", "c-07", nurse)
    assert session.started_by == "nurse.kim" and session.total_mg == 35.0
    state = json.loads(_json_blocks(_section(text, "## Session record state"))[0])
    made = SessionRecord("north", "c-07", CarePlan())
    made.set_session(session)
    snapshot = made.snapshot(1795570800000)
    assert set(state) == set(snapshot) and set(state["infusion"]) == set(snapshot["infusion"])
    assert set(state["due"][0]) == {"id", "label", "due_at", "overdue_at", "due", "overdue"}
