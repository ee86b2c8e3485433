"""Pure figure builders: data in, figure out (no store, no broker, no clock inside).

Every text from MQTT or the store that reaches a Plotly label (hover text, annotations, titles) goes through
``label``: Plotly renders a subset of HTML in labels, and an ack user or alarm text must show as text.

The overview's sparklines are tiny inline SVG images (cheap to redraw every second for dozens of chairs);
the chair view's trends are Plotly figures.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vitals.limits import EffectiveLimits
from vitals.records import AlarmEvent, Session
from vitals.store import Series

# Monitor-style trace colours, kept apart from the alarm colours (red, yellow, cyan).
COLOURS = {"hr": "#33e07a", "spo2": "#6aa8ff", "rr": "#e6e6e6", "sys": "#ff8fb1", "dia": "#ff8fb1", "map": "#c77dff"}
PRIORITY_COLOURS = {"high": "#ff2d2d", "medium": "#ffd400", "low": "#00e5ff"}
GREY = "#7a7a7a"
# A gap longer than this between sparkline points is drawn as a gap, not a line across it.
SPARK_GAP_MS = 20_000
PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("HR /min", ("hr",), "hr"),
    ("SpO\u2082 %", ("spo2",), "spo2"),
    ("RR /min", ("rr",), "rr"),
    ("NIBP mmHg", ("sys", "dia", "map"), "sys"),
)


def label(text: object) -> str:
    """Return text safe in a Plotly label: Plotly renders <b>, <a href>, <br> and entities, so escape & < >."""
    return html.escape(str(text), quote=False)


def _polyline_paths(points: Sequence[tuple[int, float]], start_ms: int, window_ms: int, width: float, top: float,
                    height: float, lo: float, hi: float) -> list[str]:
    paths: list[str] = []
    current: list[str] = []
    last_t: int | None = None
    span = max(hi - lo, 1e-9)
    for t, v in points:
        x = (t - start_ms) / window_ms * width
        y = top + height - (v - lo) / span * height
        if last_t is not None and t - last_t > SPARK_GAP_MS and current:
            paths.append(" ".join(current))
            current = []
        current.append(f"{'M' if not current else ''}{x:.0f},{y:.0f}")
        last_t = t
    if current:
        paths.append(" ".join(current))
    return paths


def _range(points: Sequence[tuple[int, float]], min_span: float) -> tuple[float, float]:
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return lo, hi


def sparkline_svg(hr: Sequence[tuple[int, float]], spo2: Sequence[tuple[int, float]], now_ms: int,
                  window_ms: int = 15 * 60_000, width: int = 300, height: int = 56, stale: bool = False) -> str:
    """Return an SVG sparkline of HR (upper half) and SpO2 (lower half) over the window ending at now."""
    start = now_ms - window_ms
    hr = [p for p in hr if start <= p[0] <= now_ms]
    spo2 = [p for p in spo2 if start <= p[0] <= now_ms]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" preserveAspectRatio="none">']
    half = height / 2
    for points, colour, top, min_span in ((hr, COLOURS["hr"], 2.0, 10.0), (spo2, COLOURS["spo2"], half + 2, 4.0)):
        if not points:
            continue
        lo, hi = _range(points, min_span)
        for d in _polyline_paths(points, start, window_ms, width, top, half - 4, lo, hi):
            parts.append(f'<path d="{d}" fill="none" stroke="{GREY if stale else colour}" stroke-width="2" '
                         'stroke-linejoin="round" stroke-linecap="round"/>')
    parts.append("</svg>")
    return "".join(parts)


def svg_data_uri(svg: str) -> str:
    """Return an SVG as a compact data: URI usable as an image source (UTF-8, only unsafe characters escaped)."""
    text = svg.replace('"', "'").replace("%", "%25").replace("#", "%23").replace("<", "%3C").replace(">", "%3E")
    return "data:image/svg+xml;utf8," + text


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000)


def panel_range(series: Series, vitals: Sequence[str], limits: Mapping[str, Mapping[str, float]],
                limit_vital: str, marks: Sequence[float] = ()) -> list[float]:
    """Return a panel's y range covering its data, its alarm limits and its alarm-event marks.

    Limits show even without data, and an alarm's mark (at its value) shows even when no limits are drawn.
    """
    values: list[float] = list(marks)
    for vital in vitals:
        for source in (series.mean, series.low, series.high):
            values += [v for v in source.get(vital, []) if v is not None]
    for vital in (limit_vital, "dia") if limit_vital == "sys" else (limit_vital,):
        values += list(limits.get(vital, {}).values())
    if not values:
        return [0.0, 1.0]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.08, 2.0)
    return [lo - pad, hi + pad]


def trend_figure(series: Series, effective: EffectiveLimits | None, events: Sequence[AlarmEvent] = (),
                 sessions: Sequence[Session] = (), start_ms: int | None = None, end_ms: int | None = None) -> go.Figure:
    """Return the chair view's trend figure: one panel per vital, the engine's limits dashed, alarm events marked.

    Only the limits the alarm engine published (``effective``) are drawn, each in its priority's colour; with
    none published, none are drawn.
    """
    limits: Mapping[str, Mapping[str, float]] = effective.limits if effective is not None else {}
    fig = make_subplots(rows=len(PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[title for title, _, _ in PANELS])
    x = [_dt(t) for t in series.times]
    for row, (_title, vitals, limit_vital) in enumerate(PANELS, start=1):
        for vital in vitals:
            mean = series.mean.get(vital)
            if not mean or all(v is None for v in mean):
                continue
            colour = COLOURS[vital]
            low, high = series.low.get(vital), series.high.get(vital)
            if series.step_ms and low and high:
                fig.add_trace(go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, hoverinfo="skip",
                                         showlegend=False, connectgaps=False), row=row, col=1)
                fig.add_trace(go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                                         fillcolor="rgba(255,255,255,0.12)", hoverinfo="skip", showlegend=False,
                                         connectgaps=False), row=row, col=1)
            mode = "lines+markers" if vital in ("sys", "dia", "map") else "lines"
            fig.add_trace(go.Scatter(x=x, y=mean, mode=mode, name=vital.upper(), line={"color": colour, "width": 2},
                                     marker={"size": 6}, connectgaps=vital in ("sys", "dia", "map"),
                                     showlegend=False, hovertemplate=f"{vital} %{{y:.0f}}<extra></extra>"),
                          row=row, col=1)
        lim = limits.get(limit_vital, {})
        for name, value in lim.items():
            colour = PRIORITY_COLOURS.get(effective.priority(limit_vital, name) if effective else "", GREY)
            fig.add_hline(y=value, line={"color": colour, "width": 1, "dash": "dash"}, row=row, col=1,
                          exclude_empty_subplots=False, annotation_text=label(f"{value:g}"), annotation_position="right",
                          annotation_font={"color": colour, "size": 11})
        if limit_vital == "sys":
            for name, value in limits.get("dia", {}).items():
                colour = PRIORITY_COLOURS.get(effective.priority("dia", name) if effective else "", GREY)
                fig.add_hline(y=value, line={"color": colour, "width": 1, "dash": "dot"}, row=row, col=1,
                              exclude_empty_subplots=False)
    rows = {vital: row for row, (_, vitals, _) in enumerate(PANELS, start=1) for vital in vitals}
    by_row: dict[int, list[AlarmEvent]] = {}
    for event in events:
        if event.event in ("raised", "upgraded", "acknowledged", "escalated"):
            by_row.setdefault(rows.get(event.vital, 1), []).append(event)
    last_y: dict[str, float | None] = {}  # an acknowledgement has no value: mark it at its alarm's last one
    ys: dict[int, float | None] = {}
    for event in sorted(events, key=lambda e: e.ts):
        y = event.value if event.value is not None else event.limit
        if y is None:
            y = last_y.get(event.alarm_id)
        last_y[event.alarm_id] = y
        ys[id(event)] = y
    for row, items in by_row.items():
        fig.add_trace(go.Scatter(
            x=[_dt(e.ts) for e in items],
            y=[ys.get(id(e)) for e in items],
            mode="markers", showlegend=False,
            marker={"symbol": ["triangle-down" if e.event != "acknowledged" else "circle-open" for e in items],
                    "size": 13, "color": [PRIORITY_COLOURS[e.priority] for e in items], "line": {"width": 2}},
            text=[label(f"{e.event} {e.priority}: {e.text or e.vital}" + (f" by {e.user}" if e.user else ""))
                  for e in items],
            hovertemplate="%{text}<extra></extra>",
        ), row=row, col=1)
    for session in sessions:
        for ts in (session.started_at, session.ended_at):
            if ts is not None:
                fig.add_vline(x=_dt(ts), line={"color": "#9e9e9e", "width": 1, "dash": "dot"}, row="all", col=1,
                              exclude_empty_subplots=False)
    fig.update_layout(
        template="plotly_dark", paper_bgcolor="#111418", plot_bgcolor="#111418", height=900,
        margin={"l": 50, "r": 50, "t": 30, "b": 30}, font={"size": 14}, hovermode="x unified", uirevision="trend",
    )
    for row, (_title, vitals, limit_vital) in enumerate(PANELS, start=1):
        marks = [y for e in by_row.get(row, ()) if (y := ys.get(id(e))) is not None]
        fig.update_yaxes(range=panel_range(series, vitals, limits, limit_vital, marks), row=row, col=1)
    fig.update_xaxes(type="date")
    if start_ms is not None and end_ms is not None:
        fig.update_xaxes(range=[_dt(start_ms), _dt(end_ms)])
    fig.update_xaxes(showgrid=True, gridcolor="#2a2f36")
    fig.update_yaxes(showgrid=True, gridcolor="#2a2f36")
    return fig
