"""The alarm report page: alarm burden, durations, acknowledgement and actionability (vitals/alarm_report.py).

The same figures as ``infusion-monitor alarms report``, for the sites the signed-in user may see, over the last
day, week or month, drawn with Plotly. Read from the store; while it is down the page says so.
"""

from __future__ import annotations

import logging
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html

from dashboard.figures import PRIORITY_COLOURS, label
from dashboard.history import HistoryUnavailable
from dashboard.live import in_scope, now_ms
from dashboard.services import Services
from vitals.alarm_report import SESSION_LOOKBACK_MS, build_report
from vitals.records import ACTIONABILITY_LABEL

log = logging.getLogger("dashboard.report")
RANGES = {"24h": ("Last 24 hours", 24), "7d": ("Last 7 days", 24 * 7), "30d": ("Last 30 days", 24 * 30)}
TAG_COLOURS = {"actionable": "#2e8b57", "not_actionable": "#c9892c", "unsure": "#6a7c8f", "untagged": "#3a3f46"}


def layout(services: Services) -> html.Div:
    """Return the report page (its figures fill in from the range callback)."""
    return html.Div(
        [html.H2("Alarm report"),
         html.P("Alarm burden of the monitored sessions, how long alarms lasted, how fast they were acknowledged and "
                "whether staff judged them actionable. The same figures as 'infusion-monitor alarms report'.",
                className="muted"),
         dcc.RadioItems(id="report-range", options=[{"label": v[0], "value": k} for k, v in RANGES.items()],
                        value="7d", inline=True, className="range-select"),
         dcc.Loading(html.Div(id="report-body"))],
        className="panel", id="report-page",
    )


def _bar(title: str, counts: dict[str, int], colours: list[str] | str = "#6aa8ff") -> dcc.Graph:
    fig = go.Figure(go.Bar(x=[label(k) for k in counts], y=list(counts.values()), marker={"color": colours},
                           hovertemplate="%{x}: %{y}<extra></extra>"))
    fig.update_layout(template="plotly_dark", paper_bgcolor="#111418", plot_bgcolor="#111418", height=280,
                      title={"text": label(title), "font": {"size": 14}}, margin={"l": 40, "r": 10, "t": 40, "b": 60},
                      yaxis={"rangemode": "tozero"})
    return dcc.Graph(figure=fig, config={"displayModeBar": False})


def body(services: Services, choice: str, at: int | None = None) -> list[Any]:
    """Return the report's summary table and figures for the user's sites over the chosen range."""
    now = now_ms() if at is None else at
    title, hours = RANGES.get(choice, RANGES["7d"])
    since = now - hours * 3_600_000
    scope = services.scope()
    sites = "every site" if scope is None else scope if isinstance(scope, str) else ", ".join(sorted(scope))
    try:
        events = services.history.alarm_events(scope, None, since, now) if isinstance(scope, str) else \
            services.history.alarm_events(None, None, since, now)  # type: ignore[arg-type]
        sessions = services.history.sessions(scope if isinstance(scope, str) else None, None,  # type: ignore[arg-type]
                                             since - SESSION_LOOKBACK_MS, now)
        audit = services.history.audit(scope if isinstance(scope, str) else None, since, now)
    except HistoryUnavailable as exc:
        return [html.P(f"Report of {sites} unavailable: the store is not answering ({exc}).", className="banner banner-warn",
                       id="report-unavailable")]
    report = build_report([e for e in events if in_scope(e.site, scope)], [s for s in sessions if in_scope(s.site, scope)],
                          [a for a in audit if a.site is not None and in_scope(a.site, scope)], since_ms=since, until_ms=now)
    dur, ack, tag = report["duration"], report["time_to_ack"], report["actionability"]

    def fmt(value: Any, unit: str = "") -> str:
        return "–" if value is None else f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.0f} %"

    rows = [("Alarms", fmt(report["alarms"])), ("Sessions", fmt(report["sessions"])),
            ("Monitored chair-hours", fmt(report["chair_hours"])), ("Alarms per chair-hour", fmt(report["per_chair_hour"])),
            ("Alarms per session", fmt(report["per_session"])),
            ("Lasting under 10 s / under 20 s", f"{pct(dur['under_10s_share'])} / {pct(dur['under_20s_share'])}"),
            ("Time to acknowledge p50 / p90", f"{fmt(ack['p50_s'], ' s')} / {fmt(ack['p90_s'], ' s')}"),
            ("Tagged actionable (of tagged)", pct(tag["actionable_share"])),
            *[(f"Tagged {ACTIONABILITY_LABEL[t]}", fmt(tag[t])) for t in ACTIONABILITY_LABEL],
            ("Not tagged", fmt(tag["untagged"])),
            ("Notifications sent / failed", f"{report['notifications']['sent']} / {report['notifications']['failed']}"),
            ("Escalations", fmt(report["escalations"]))]
    table = html.Table(html.Tbody([html.Tr([html.Td(k), html.Td(v, **{"data-figure": k})]) for k, v in rows]),
                       className="data-table report-summary", id="report-summary")
    tags = {ACTIONABILITY_LABEL.get(t, t): tag[t] for t in (*ACTIONABILITY_LABEL, "untagged")}
    ended = dur["ended"]
    under10 = round((dur["under_10s_share"] or 0) * ended)
    under20 = round((dur["under_20s_share"] or 0) * ended)
    figures = [
        _bar("Alarms by rule (top 5)", report["by_rule"]),
        _bar("Alarms by chair (top 5)", report["by_chair"]),
        _bar("Alarms by priority", report["by_priority"],
             [PRIORITY_COLOURS.get(p, "#6aa8ff") for p in report["by_priority"]]),
        _bar("Actionability at acknowledgement", tags, [TAG_COLOURS[t] for t in (*ACTIONABILITY_LABEL, "untagged")]),
        _bar("Alarm duration (ended alarms)", {"< 10 s": under10, "10–20 s": under20 - under10, "≥ 20 s": ended - under20}),
    ]
    return [html.P(f"{title}, {sites}: {report['since']} to {report['until']}.", className="muted", id="report-period"),
            table, html.Div(figures, className="report-figures")]


def register(app: Dash, services: Services) -> None:
    """Register the range callback."""

    @app.callback(Output("report-body", "children"), Input("report-range", "value"))
    def report_range(choice: Any) -> list[Any]:
        return body(services, choice if isinstance(choice, str) else "7d")
