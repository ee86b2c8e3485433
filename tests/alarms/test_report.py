"""``infusion-monitor alarms report`` on a generated history, in a real SQLite file and a real InfluxDB: every
figure equals a count made here, independently, from the generated alarms; the documented keys are the keys."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from infusion_monitor.cli import main
from vitals.alarm_report import ACK_KEYS, ACTIONABILITY_KEYS, DURATION_KEYS, NOTIFICATION_KEYS, REPORT_KEYS, render
from vitals.reading import format_ts
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store import open_store

DOC = Path(__file__).resolve().parents[2] / "docs" / "alarm-rules.md"
T0 = 1_790_000_000_000
HOUR = 3_600_000
RULES = [("spo2-low-medium", "spo2", "low", "medium"), ("spo2-low-high", "spo2", "low", "high"),
         ("hr-high-medium", "hr", "high", "medium"), ("rr-low-high", "rr", "low", "high"),
         ("sys-high-medium", "sys", "high", "medium"), ("dia-high-high", "dia", "high", "high")]


@dataclass
class Made:
    chair: str
    rule: tuple[str, str, str, str]
    raised: int
    cleared: int | None
    acked: int | None
    tag: str | None
    escalated: bool


def _history(site: str, seed: int = 7) -> tuple[list[Made], list[Session], list[AlarmEvent], list[AuditRecord]]:
    rnd = random.Random(seed)
    chairs = [f"c-{i:02d}" for i in range(1, 8)]
    sessions = []
    for i, chair in enumerate(chairs):  # one 3-hour session per chair; chair 1's started before the period
        start = T0 - HOUR if i == 0 else T0 + i * 600_000
        sessions.append(Session(site, chair, f"S-{i}", "ended", start, start + 3 * HOUR))
    made = []
    for _ in range(60):
        chair = rnd.choice(chairs)
        raised = T0 + rnd.randrange(0, 5 * HOUR, 1000)
        cleared = raised + rnd.choice([3, 8, 9, 12, 19, 25, 60, 300]) * 1000 if rnd.random() < 0.85 else None
        acked = raised + rnd.randrange(5, 400) * 1000 if rnd.random() < 0.6 else None
        tag = rnd.choice(["actionable", "not_actionable", "unsure", None]) if acked else None
        made.append(Made(chair, rnd.choice(RULES), raised, cleared, acked, tag, rnd.random() < 0.1))
    events, audit = [], []
    for n, m in enumerate(made):
        _rid, vital, direction, _prio = m.rule
        aid = f"{site}.{m.chair}.{vital}.{direction}.{m.raised + n}"

        def ev(kind: str, ts: int, _m: Made = m, _aid: str = aid, **extra: object) -> AlarmEvent:
            return AlarmEvent(_aid, site, _m.chair, _m.rule[1], "physiological", _m.rule[3], kind, 88.0, 90.0, ts,
                              rule=_m.rule[0], **extra)  # type: ignore[arg-type]

        events.append(ev("raised", m.raised))
        if m.cleared is not None:
            events.append(ev("cleared", m.cleared))
        if m.acked is not None:
            events.append(ev("acknowledged", m.acked, user="nurse.kim", actionable=m.tag))
        if m.escalated:
            events.append(ev("escalated", m.raised + 60_000))
        audit.append(AuditRecord(m.raised + 10, "notification_sent", "ingest", site, m.chair, aid, "raised"))
        if n % 9 == 0:
            audit.append(AuditRecord(m.raised + 20, "notification_failed", "ingest", site, m.chair, aid, "raised"))
    # Another site's alarm and one outside the period: neither may count.
    events.append(AlarmEvent(f"x.c-01.hr.high.{T0}", "other-site", "c-01", "hr", "physiological", "medium", "raised",
                             130.0, 120.0, T0 + 1000, rule="hr-high-medium"))
    events.append(AlarmEvent(f"{site}.c-01.hr.high.{T0 - 1}", site, "c-01", "hr", "physiological", "medium", "raised",
                             130.0, 120.0, T0 - 5000, rule="hr-high-medium"))
    return made, sessions, events, audit


def _nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def _top(pairs: dict[str, int]) -> dict[str, int]:
    return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:5])


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return _top(out)


@pytest.mark.parametrize("backend", ["sqlite", "influxdb"])
def test_report_figures_equal_an_independent_count(backend: str, site: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'vitals.db'}"
    else:
        influxd = request.getfixturevalue("influxd")
        url = f"influxdb://127.0.0.1:{influxd.port}/{site.replace('-', '_')}"
    made, sessions, events, audit = _history(site)
    store = open_store(url)
    try:
        store.write_sessions(sessions)
        store.write_alarm_events(events)
        store.write_audit(audit)
    finally:
        store.close()
    until = T0 + 6 * HOUR
    assert main(["alarms", "report", "--store-url", url, "--site", site, "--since", format_ts(T0),
                 "--until", format_ts(until), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)

    # The independent count, from what was generated (not from events).
    chair_hours = (2 * HOUR + 6 * 3 * HOUR) / HOUR  # chair 1's session began an hour before the period
    durations = [(m.cleared - m.raised) / 1000 for m in made if m.cleared is not None]
    ack_s = [(m.acked - m.raised) / 1000 for m in made if m.acked is not None]
    tags = [m.tag for m in made if m.tag]
    assert got["alarms"] == 60 and got["sessions"] == 7 and got["chair_hours"] == chair_hours
    assert got["per_chair_hour"] == round(60 / chair_hours, 4) and got["per_session"] == round(60 / 7, 4)
    assert got["by_rule"] == _count([m.rule[0] for m in made])
    assert got["by_vital"] == _count([m.rule[1] for m in made])
    assert got["by_priority"] == _count([m.rule[3] for m in made])
    assert got["by_chair"] == _count([m.chair for m in made])
    assert got["duration"] == {
        "ended": len(durations), "open": 60 - len(durations), "median_s": _nearest_rank(durations, 50),
        "under_10s_share": round(sum(d < 10 for d in durations) / len(durations), 4),
        "under_20s_share": round(sum(d < 20 for d in durations) / len(durations), 4)}
    assert got["time_to_ack"] == {"acknowledged": len(ack_s), "p50_s": _nearest_rank(ack_s, 50),
                                  "p90_s": _nearest_rank(ack_s, 90)}
    assert got["actionability"] == {
        "tagged": len(tags), "actionable": tags.count("actionable"), "not_actionable": tags.count("not_actionable"),
        "unsure": tags.count("unsure"), "untagged": 60 - len(tags), "tagged_share": round(len(tags) / 60, 4),
        "actionable_share": round(tags.count("actionable") / len(tags), 4)}
    assert got["notifications"] == {"sent": 60, "failed": len(range(0, 60, 9))}
    assert got["escalations"] == sum(m.escalated for m in made)
    assert list(got) == list(REPORT_KEYS)

    # The other formats carry the same figures.
    for fmt, marker in (("csv", f"alarms,,{got['alarms']}"), ("md", f"| alarms | {got['alarms']} |")):
        assert marker in render(got, fmt)


def test_the_document_lists_every_report_and_whatif_key() -> None:
    from ingest.alarms.whatif import RUN_KEYS, WHATIF_KEYS

    text = DOC.read_text()
    report = text[text.index("## Alarm report"):]
    for key in (*REPORT_KEYS, *DURATION_KEYS, *ACK_KEYS, *ACTIONABILITY_KEYS, *NOTIFICATION_KEYS):
        assert re.search(rf"`{key}`", report), key
    whatif = text[text.index("## What-if replay"):]
    for key in (*WHATIF_KEYS, *RUN_KEYS):
        assert f"`{key}`" in whatif, key


def test_bad_input_gets_a_clear_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    period = ["--store-url", url, "--since", format_ts(T0), "--until", format_ts(T0 + HOUR)]
    with pytest.raises(SystemExit):
        main(["alarms", "report", "--store-url", url, "--since", "yesterday", "--until", format_ts(T0)])
    assert "not an RFC 3339 time" in capsys.readouterr().err
    assert main(["alarms", "report", "--store-url", url, "--since", format_ts(T0), "--until", format_ts(T0)]) == 2
    assert "--until must be after --since" in capsys.readouterr().err
    alt = tmp_path / "alt.toml"
    alt.write_text("[rules.spo2-low-typo]\ndelay_s = 30\n")
    assert main(["alarms", "whatif", *period, "--rules", str(alt)]) == 2
    assert "no rule with id 'spo2-low-typo'" in capsys.readouterr().err
    assert main(["alarms", "whatif", *period]) == 2
    assert "give --rules ALT.toml or --grid RULE" in capsys.readouterr().err
    assert main(["alarms", "whatif", *period, "--grid", "nope"]) == 2
    assert "no rule 'nope'" in capsys.readouterr().err
