"""docs/alarm-rules.md carries the rule table generated from the shipped default_rules.toml."""

from __future__ import annotations

from pathlib import Path

from ingest.alarms.rules import rules_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "alarm-rules.md"


def test_the_doc_table_is_the_shipped_rules() -> None:
    text = DOC.read_text()
    start = text.index("-->\n", text.index("<!-- generated from ingest/alarms/default_rules.toml")) + len("-->\n")
    end = text.index("<!-- end of generated table -->")
    assert text[start:end] == rules_markdown(), "regenerate: python -m ingest.alarms.rules"
