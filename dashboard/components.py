"""Shared pieces of the pages: chair tiles, banners, alarm badges, tables."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import datetime

from dash import dcc, html

from dashboard.figures import sparkline_svg, svg_data_uri
from dashboard.state import TileView

PRIORITY_LABEL = {"high": "HIGH", "medium": "MED", "low": "LOW"}
# Sparklines are redrawn once per bucket (5 s), not every second: the numbers carry the current value, and an
# unchanged image source costs the browser nothing. (site, chair) -> ((bucket, stale), data URI).
SPARK_REDRAW_MS = 5_000
_spark_cache: dict[tuple[str, str], tuple[tuple[int, bool], str]] = {}


def spark_src(view: TileView, now_ms: int, points: Callable[[], tuple[Sequence, Sequence]] | None = None) -> str:
    """Return the tile's sparkline image source, redrawn at most once per SPARK_REDRAW_MS."""
    stale = view.mode != "live"
    # Each chair redraws at its own phase of the 5 s: at 2,000 chairs, 400 images a second instead of 2,000 at
    # once (one multi-megabyte push event every 5 s made the page's slowest updates).
    key = ((now_ms + zlib.crc32(view.chair.encode()) % SPARK_REDRAW_MS) // SPARK_REDRAW_MS, stale)
    cached = _spark_cache.get((view.site, view.chair))
    if cached is not None and cached[0] == key:
        return cached[1]
    hr, spo2 = points() if points is not None else (view.hr_points, view.spo2_points)
    uri = svg_data_uri(sparkline_svg(hr, spo2, now_ms, stale=stale))
    if len(_spark_cache) > 10_000:
        _spark_cache.clear()
    _spark_cache[(view.site, view.chair)] = (key, uri)
    return uri


def chair_href(site: str, chair: str) -> str:
    """Return the chair view's path."""
    return f"/chair/{site}/{chair}"


def clock_text(ts_ms: int) -> str:
    """Return a local wall-clock time for display."""
    return datetime.fromtimestamp(ts_ms / 1000).strftime("%H:%M:%S")


def numeric(n, big: bool = True) -> html.Div:  # type: ignore[no-untyped-def]
    """Return one vital's number block; a stale value is greyed and carries its age."""
    return html.Div(
        [
            html.Div([html.Span(n.label, className="num-label"), html.Span(n.unit, className="num-unit")],
                     className="num-head"),
            html.Div(n.text, className="num-value"),
            html.Div(n.age if n.stale and n.age != "never" else "", className="num-age"),
        ],
        className=f"num num-{n.vital}{' stale' if n.stale else ''}{' missing' if n.text == '--' else ''}"
                  f"{' big' if big else ''}",
    )


def status_badge(view: TileView) -> html.Span:
    """Return the badge saying LIVE, NO DATA (with age) or OFFLINE (with age)."""
    label, small, cls = badge_text(view)
    return html.Span([label, html.Small(small)] if small else label, className=cls)


def alarm_bar(view: TileView) -> html.Div:
    """Return the tile's alarm line in its priority colour (or an empty line)."""
    if view.alarms_error:
        return html.Div("ALARM STATE UNREADABLE: check the ingest", className="tile-alarm alarm-error")
    if not view.alarm_priority:
        return html.Div("no alarms", className="tile-alarm tile-alarm-none")
    extra = []
    if view.alarm_acknowledged:
        extra.append(html.Span("ACK", className="alarm-tag"))
    if view.audio_paused:
        extra.append(html.Span("AUDIO PAUSED", className="alarm-tag"))
    if view.alarm_more:
        extra.append(html.Span(f"+{view.alarm_more}", className="alarm-tag"))
    return html.Div(
        [html.Span(PRIORITY_LABEL[view.alarm_priority], className="alarm-prio"),
         html.Span(view.alarm_text, className="alarm-text"), *extra],
        className=f"tile-alarm alarm-{view.alarm_priority}{' acked' if view.alarm_acknowledged else ''}",
    )


def tile(view: TileView, now_ms: int, points: Callable[[], tuple[Sequence, Sequence]] | None = None,
         show_site: bool = False) -> dcc.Link:
    """Return one chair's tile as Dash components (the chair view; the overview renders tile_data in the browser)."""
    spark = spark_src(view, now_ms, points)
    session_bits = [html.Span(view.session_text, className="session-text")]
    if view.elapsed:
        session_bits.append(html.Span(view.elapsed, className="session-elapsed"))
    body = html.Div(
        [
            html.Div([html.Span([view.chair, html.Small(f" {view.site}", className="tile-site") if show_site else None],
                                className="tile-chair"), status_badge(view)], className="tile-head"),
            alarm_bar(view),
            html.Div([numeric(n) for n in view.numerics], className="tile-nums"),
            html.Div(
                [html.Span("NIBP", className="num-label"), html.Span(view.cuff_text, className="cuff-value"),
                 html.Span(view.cuff_age + (" · overdue" if view.cuff_overdue else ""),
                           className=f"cuff-age{' overdue' if view.cuff_overdue else ''}")],
                className="tile-cuff",
            ),
            html.Div(session_bits, className=f"tile-session session-{view.session_state}"),
            html.Img(src=spark, className="spark", alt="last 15 minutes of HR and SpO2"),
        ],
        className=tile_classes(view),
        id=f"tile-{view.site}--{view.chair}",
        **{"data-chair": view.chair, "data-site": view.site, "data-mode": view.mode,
           "data-alarm": view.alarm_priority or "none"},
    )
    return dcc.Link(body, href=chair_href(view.site, view.chair), className="tile-link")


def density(count: int) -> str:
    """Return the grid density class for a number of tiles (fewer tiles, bigger numbers)."""
    if count <= 8:
        return "density-l"
    if count <= 24:
        return "density-m"
    return "density-s"


def banner(text: str, kind: str, ident: str | None = None) -> html.Div:
    """Return a full-width banner (kind: info, warn, danger)."""
    props = {"id": ident} if ident else {}
    return html.Div(text, className=f"banner banner-{kind}", role="status", **props)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], ident: str | None = None,
          empty: str = "none") -> html.Table | html.P:
    """Return a simple HTML table (or a note when there are no rows)."""
    if not rows:
        return html.P(empty, className="muted")
    props = {"id": ident} if ident else {}
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in headers])),
         html.Tbody([html.Tr([html.Td(c) for c in row]) for row in rows])],
        className="data-table", **props,
    )


def tile_classes(view: TileView) -> str:
    """Return a tile's CSS classes (mode, and the highest alarm's priority)."""
    classes = ["tile", f"mode-{view.mode}"]
    if view.alarms_error:
        classes.append("tile-high")
    elif view.alarm_priority:
        classes.append(f"tile-{view.alarm_priority}")
        if view.alarm_acknowledged:
            classes.append("tile-acked")
    return " ".join(classes)


def badge_text(view: TileView) -> tuple[str, str, str]:
    """Return the status badge as (label, small text, class)."""
    since = " · no readings yet" if view.age == "never" else f" · last {view.age}"
    if view.mode == "offline":
        return "OFFLINE", since, "badge badge-offline"
    if view.mode == "nodata":
        return "NO DATA", since, "badge badge-nodata"
    return "LIVE", "", "badge badge-live"


def tile_data(view: TileView, show_site: bool = False, spark: str | None = None) -> dict[str, object]:
    """Return a tile as compact JSON for the browser-side renderer (assets/vitals.js, renderOverview)."""
    label, small, badge_class = badge_text(view)
    if view.alarms_error:
        alarm: dict[str, object] | None = {"cls": "tile-alarm alarm-error", "prio": "",
                                           "text": "ALARM STATE UNREADABLE: check the ingest", "tags": []}
    elif view.alarm_priority:
        tags = (["ACK"] if view.alarm_acknowledged else []) + (["AUDIO PAUSED"] if view.audio_paused else []) + \
            ([f"+{view.alarm_more}"] if view.alarm_more else [])
        alarm = {"cls": f"tile-alarm alarm-{view.alarm_priority}{' acked' if view.alarm_acknowledged else ''}",
                 "prio": PRIORITY_LABEL[view.alarm_priority], "text": view.alarm_text, "tags": tags}
    else:
        alarm = None
    out: dict[str, object] = {
        "id": f"tile-{view.site}--{view.chair}", "href": chair_href(view.site, view.chair), "site": view.site,
        "chair": view.chair, "showSite": show_site, "mode": view.mode, "alarmPrio": view.alarm_priority or "none",
        "cls": tile_classes(view), "badge": [label, small, badge_class], "alarm": alarm,
        "nums": [[n.vital, n.label, n.unit, n.text, n.age if n.stale and n.age != "never" else "",
                  f"num num-{n.vital}{' stale' if n.stale else ''}{' missing' if n.text == '--' else ''} big",
                  None if n.stale else n.stale_at]
                 for n in view.numerics],
        # Server-clock deadlines: the browser greys a value and shows NO DATA on its own when they pass without
        # an update (assets/vitals.js), so a stalled push or poll never leaves a value looking current.
        "liveUntil": view.live_until,
        "cuff": [view.cuff_text, view.cuff_age + (" · overdue" if view.cuff_overdue else ""),
                 f"cuff-age{' overdue' if view.cuff_overdue else ''}"],
        "session": [view.session_text, view.elapsed, f"tile-session session-{view.session_state}"],
    }
    if spark is not None:
        out["spark"] = spark
    return out
