"""The shipped rule table, overrides per site/chair/session, and the errors a bad file gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.alarms.rules import Rule, RulesError, load_rules

# Issue 4's table: (vital, op, limit or baseline %, priority, delay s).
ISSUE_TABLE = [
    ("spo2", "<", 90, "medium", 15), ("spo2", "<", 85, "high", 5),
    ("hr", ">", 120, "medium", 15), ("hr", ">", 140, "high", 10),
    ("hr", "<", 50, "medium", 15), ("hr", "<", 40, "high", 10),
    ("rr", "<", 8, "high", 30), ("rr", ">", 30, "medium", 60),
    ("sys", ">=", 160, "medium", 0), ("sys", ">=", 180, "high", 0),
    ("dia", ">=", 100, "medium", 0), ("dia", ">=", 110, "high", 0),
    ("sys", "<", 90, "medium", 0), ("sys", "<", 80, "high", 0),
    ("sys", ">=", "baseline+30%", "medium", 0),
]


def _fact(rule: Rule) -> tuple:
    limit = f"baseline+{rule.baseline_pct:g}%" if rule.baseline_pct is not None else rule.limit
    return (rule.vital, rule.op, limit, rule.priority, rule.delay_s)


def test_shipped_rules_are_the_issue_table() -> None:
    book = load_rules()
    assert [_fact(r) for r in book.rules] == ISSUE_TABLE
    assert dict(book.hysteresis) == {"hr": 5, "spo2": 2, "rr": 2, "sys": 5, "dia": 5}
    assert dict(book.technical) == {"no_data": "medium", "offline": "medium", "nibp_overdue": "low", "notify_failed": "high",
                                   "assessment_overdue": "low"}
    assert book.gap_s == 5 and book.recent_s == 600 and book.nibp_overdue_factor == 1.5 and book.latching == {"high"}


def write(tmp_path: Path, text: str) -> Path:
    """Write an override file."""
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_overrides_layer_file_site_chair_session(tmp_path: Path) -> None:
    book = load_rules(write(tmp_path, """
[hysteresis]
spo2 = 3
[rules.spo2-low-medium]
limit = 88
[sites.north.rules.spo2-low-medium]
delay_s = 20
[sites.north.chairs.c-07.rules.spo2-low-medium]
limit = 86
[sites.north.chairs.c-07.rules.rr-high-medium]
enabled = false
[sessions."S-2026-11-25-c07-1".rules.sys-baseline-medium]
baseline_pct = 25
priority = "high"
"""))

    def rule(site: str, chair: str, session: str | None, rule_id: str) -> Rule | None:
        return next((r for r in book.rules_for(site, chair, session) if r.id == rule_id), None)

    assert book.hysteresis["spo2"] == 3
    assert _fact(rule("south", "c-01", None, "spo2-low-medium")) == ("spo2", "<", 88, "medium", 15)  # type: ignore[arg-type]
    assert _fact(rule("north", "c-01", None, "spo2-low-medium")) == ("spo2", "<", 88, "medium", 20)  # type: ignore[arg-type]
    assert _fact(rule("north", "c-07", None, "spo2-low-medium")) == ("spo2", "<", 86, "medium", 20)  # type: ignore[arg-type]
    assert rule("north", "c-07", None, "rr-high-medium") is None
    assert rule("north", "c-08", None, "rr-high-medium") is not None
    baseline = rule("north", "c-07", "S-2026-11-25-c07-1", "sys-baseline-medium")
    assert baseline is not None and baseline.baseline_pct == 25 and baseline.priority == "high"
    assert book.priorities("sys.high") == {"medium", "high"}


@pytest.mark.parametrize(("text", "message"), [
    ("[rules.spo2-low]\nlimit = 88", "rules.spo2-low: no rule with id 'spo2-low'"),
    ("[rules.spo2-low-medium]\nlimt = 88", "rules.spo2-low-medium: unknown key 'limt'"),
    ("[rules.spo2-low-medium]\npriority = 'urgent'", "rules.spo2-low-medium.priority = 'urgent' is not one of high, medium, low"),
    ("[rules.sys-high-medium]\ndelay_s = 30", "delay_s must be 0 for the cuff vital 'sys'"),
    ("[rules.spo2-low-medium]\nlimit = 20", "rules.spo2-low-medium.limit = 20.0 is outside 50..100"),
    ("[rules.spo2-low-medium]\nlimit = 'low'", "rules.spo2-low-medium.limit must be a finite number, not 'low'"),
    ("[rules.sys-baseline-medium]\nlimit = 150", "rule 'sys-baseline-medium' is relative to the baseline"),
    ("[sites.'bad site'.rules.spo2-low-medium]\nlimit = 88", "invalid sites.bad site 'bad site'"),
    ("[sites.north.chairs.c-07.rules.nope]\nlimit = 88", "sites.north.chairs.c-07.rules.nope: no rule with id 'nope'"),
    ("[hysteresis]\nmap = 3", "hysteresis.map: not one of"),
    ("[technical]\nno_data = 'loud'", "technical.no_data = 'loud' is not one of"),
    ("gap_s = 0", "gap_s = 0 is outside 0.5..600"),
    ("colour = 'red'", "top level: unknown key 'colour'"),
    ("[rules", "not valid TOML"),
])
def test_bad_override_files_are_refused_naming_file_place_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path / "nope.toml")


def test_rules_are_frozen() -> None:
    rule = load_rules().rules[0]
    with pytest.raises(AttributeError):
        rule.limit = 1.0  # type: ignore[misc]


def test_dashboard_limits_layer_on_the_file_chair_level_and_clearing_returns_to_it(tmp_path: Path) -> None:
    from ingest.alarms.engine import AlarmEngine

    book = load_rules(write(tmp_path, "[sites.north.chairs.c-07.rules.hr-high-medium]\nlimit = 125\ndelay_s = 20\n"))
    eng = AlarmEngine(book)

    def hr_rule() -> Rule:
        return next(r for r in eng.book.rules_for("north", "c-07") if r.id == "hr-high-medium")

    eng.set_chair_overrides("north", "c-07", {"hr-high-medium": {"limit": 130.0}})
    assert (hr_rule().limit, hr_rule().delay_s) == (130.0, 20.0)
    eng.set_chair_overrides("north", "c-07", {})
    assert (hr_rule().limit, hr_rule().delay_s) == (125.0, 20.0)
