"""The alarm report: alarm burden, durations, acknowledgement and actionability over a period (pure, no I/O).

Computed from what the store keeps (alarm events, sessions, audit records); ``infusion-monitor alarms report``
and the dashboard's report page both call ``build_report``. Its JSON keys (``REPORT_KEYS``) are documented in
docs/alarm-rules.md ("Alarm report") and stable; a test checks the document lists every one.

Definitions (the same in the document):
- an alarm is an episode: one ``raised`` event in the period (physiological and technical alone);
- monitored time is the time sessions were open within the period (an open session counts up to ``until``);
- duration runs from ``raised`` to ``cleared`` of the same alarm id (alarms not cleared within the period are
  left out of the distribution and counted as ``open``);
- time to acknowledge runs from ``raised`` to the first ``acknowledged``; percentiles are nearest-rank;
- actionability is the tag given at acknowledgement (``actionable``, ``not_actionable``, ``unsure``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vitals.reading import format_ts
from vitals.records import ACTIONABILITY, AlarmEvent, AuditRecord, Session

TOP = 5
# Sessions are looked up from this long before the period, so one that started earlier and ran into it counts.
SESSION_LOOKBACK_MS = 24 * 3600 * 1000
REPORT_KEYS: tuple[str, ...] = (
    "site", "since", "until", "sessions", "chair_hours", "alarms", "per_chair_hour", "per_session",
    "by_rule", "by_vital", "by_priority", "by_chair", "by_kind", "duration", "time_to_ack", "actionability",
    "notifications", "escalations",
)
DURATION_KEYS: tuple[str, ...] = ("ended", "open", "median_s", "under_10s_share", "under_20s_share")
ACK_KEYS: tuple[str, ...] = ("acknowledged", "p50_s", "p90_s")
ACTIONABILITY_KEYS: tuple[str, ...] = ("tagged", *ACTIONABILITY, "untagged", "tagged_share", "actionable_share")
NOTIFICATION_KEYS: tuple[str, ...] = ("sent", "failed")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Return the nearest-rank ``p`` percentile (0 < p <= 100) of ``values``, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def session_chair_hours(sessions: Iterable[Session], since_ms: int, until_ms: int) -> tuple[float, int]:
    """Return (chair-hours of session time within [since, until), sessions overlapping it)."""
    total_ms = 0
    count = 0
    for s in sessions:
        end = s.ended_at if s.ended_at is not None else until_ms
        lo, hi = max(s.started_at, since_ms), min(end, until_ms)
        if hi > lo or (s.started_at >= since_ms and s.started_at < until_ms):
            count += 1
            total_ms += max(0, hi - lo)
    return total_ms / 3_600_000, count


def _top(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP])


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def build_report(events: Sequence[AlarmEvent], sessions: Sequence[Session], audit: Sequence[AuditRecord], *,
                 since_ms: int, until_ms: int, site: str | None = None) -> dict[str, Any]:
    """Return the report of alarm events, sessions and audit records of [since_ms, until_ms) (keys: REPORT_KEYS)."""
    events = [e for e in events if since_ms <= e.ts < until_ms and (site is None or e.site == site)]
    raised = {e.alarm_id: e for e in events if e.event == "raised"}
    cleared: dict[str, int] = {}
    acked: dict[str, AlarmEvent] = {}
    for e in events:
        if e.event == "cleared":
            cleared.setdefault(e.alarm_id, e.ts)
        elif e.event == "acknowledged":
            acked.setdefault(e.alarm_id, e)
    rule_of = {e.alarm_id: e.rule or e.vital for e in events if e.event == "raised"}
    chair_hours, n_sessions = session_chair_hours(
        [s for s in sessions if site is None or s.site == site], since_ms, until_ms)
    durations = [(cleared[i] - r.ts) / 1000 for i, r in raised.items() if i in cleared]
    ack_times = [(acked[i].ts - r.ts) / 1000 for i, r in raised.items() if i in acked]
    tags = Counter(acked[i].actionable for i in raised if i in acked)
    tagged = sum(tags[t] for t in ACTIONABILITY)
    n = len(raised)
    audit_in = [a for a in audit if since_ms <= a.ts < until_ms and (site is None or a.site == site)]
    p50, p90 = percentile(ack_times, 50), percentile(ack_times, 90)
    return {
        "site": site,
        "since": format_ts(since_ms),
        "until": format_ts(until_ms),
        "sessions": n_sessions,
        "chair_hours": round(chair_hours, 3),
        "alarms": n,
        "per_chair_hour": _ratio(n, chair_hours),
        "per_session": _ratio(n, n_sessions),
        "by_rule": _top(Counter(rule_of[i] for i in raised)),
        "by_vital": _top(Counter(r.vital for r in raised.values())),
        "by_priority": _top(Counter(r.priority for r in raised.values())),
        "by_chair": _top(Counter(r.chair for r in raised.values())),
        "by_kind": _top(Counter(r.kind for r in raised.values())),
        "duration": {
            "ended": len(durations),
            "open": n - len(durations),
            "median_s": percentile(durations, 50),
            "under_10s_share": _ratio(sum(d < 10 for d in durations), len(durations)),
            "under_20s_share": _ratio(sum(d < 20 for d in durations), len(durations)),
        },
        "time_to_ack": {"acknowledged": len(ack_times), "p50_s": p50, "p90_s": p90},
        "actionability": {
            "tagged": tagged,
            **{t: tags[t] for t in ACTIONABILITY},
            "untagged": n - tagged,
            "tagged_share": _ratio(tagged, n),
            "actionable_share": _ratio(tags["actionable"], tagged),
        },
        "notifications": {"sent": sum(a.action == "notification_sent" for a in audit_in),
                          "failed": sum(a.action == "notification_failed" for a in audit_in)},
        "escalations": sum(e.event == "escalated" for e in events),
    }


def report_from_store(store: Any, *, since_ms: int, until_ms: int, site: str | None = None) -> dict[str, Any]:
    """Read what the report needs from a vitals.store.Store and build it."""
    return build_report(
        store.alarm_events(site=site, start_ms=since_ms, end_ms=until_ms),
        store.sessions(site=site, start_ms=since_ms - SESSION_LOOKBACK_MS, end_ms=until_ms),
        store.audit(site=site, start_ms=since_ms, end_ms=until_ms),
        since_ms=since_ms, until_ms=until_ms, site=site)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flat(report: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = []
    for key in REPORT_KEYS:
        value = report[key]
        if isinstance(value, Mapping):
            rows.extend((key, str(k), v) for k, v in value.items())
        else:
            rows.append((key, "", value))
    return rows


def report_csv(report: Mapping[str, Any]) -> str:
    """Return the report as CSV: ``section,key,value`` rows (a nested figure's key names the item)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    for section, key, value in _flat(report):
        writer.writerow([section, key, "" if value is None else value])
    return out.getvalue()


def report_markdown(report: Mapping[str, Any]) -> str:
    """Return the report as Markdown for people."""
    dur, ack, tag = report["duration"], report["time_to_ack"], report["actionability"]
    lines = [
        f"# Alarm report{' — site ' + report['site'] if report['site'] else ''}",
        "",
        f"{report['since']} to {report['until']}",
        "",
        "| figure | value |", "|---|---|",
        f"| alarms | {report['alarms']} |",
        f"| sessions | {report['sessions']} |",
        f"| monitored chair-hours | {_fmt(report['chair_hours'])} |",
        f"| alarms per chair-hour | {_fmt(report['per_chair_hour'])} |",
        f"| alarms per session | {_fmt(report['per_session'])} |",
        f"| durations: ended / open | {dur['ended']} / {dur['open']} |",
        f"| duration median (s) | {_fmt(dur['median_s'])} |",
        f"| share under 10 s / under 20 s | {_fmt(dur['under_10s_share'])} / {_fmt(dur['under_20s_share'])} |",
        f"| time to acknowledge p50 / p90 (s) | {_fmt(ack['p50_s'])} / {_fmt(ack['p90_s'])} "
        f"({ack['acknowledged']} acknowledged) |",
        f"| tagged: actionable / not actionable / unsure / untagged | {tag['actionable']} / {tag['not_actionable']} / "
        f"{tag['unsure']} / {tag['untagged']} |",
        f"| share tagged actionable (of tagged) | {_fmt(tag['actionable_share'])} |",
        f"| notifications sent / failed | {report['notifications']['sent']} / {report['notifications']['failed']} |",
        f"| escalations | {report['escalations']} |",
    ]
    for key, title in (("by_rule", "rule"), ("by_vital", "vital"), ("by_priority", "priority"), ("by_chair", "chair")):
        lines += ["", f"| top {title} | alarms |", "|---|---|"]
        lines += [f"| {name} | {count} |" for name, count in report[key].items()] or ["| – | 0 |"]
    return "\n".join(lines) + "\n"


def render(report: Mapping[str, Any], fmt: str) -> str:
    """Return the report in ``json``, ``csv`` or ``md``."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return report_csv(report)
    return report_markdown(report)
