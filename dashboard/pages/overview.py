"""The overview: one tile per chair, refreshed every second from the live cache (never from the store)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, html

from dashboard.components import density, tile
from dashboard.live import now_ms
from dashboard.services import Services


def layout(services: Services) -> html.Div:
    """Return the overview page, filled at once so the first paint already shows the chairs."""
    grid, summary = refresh(services)
    return html.Div([html.Div(summary, id="overview-summary", className="summary"),
                     html.Div(grid, id="overview-grid", className="grid")], id="overview")


def refresh(services: Services, now: int | None = None) -> tuple[list[Any], list[Any]]:
    """Return the tiles and the summary line for one refresh."""
    at = now_ms() if now is None else now
    state = services.state
    views = state.tiles(services.config.site, at, with_spark=False)
    several_sites = len({v.site for v in views}) > 1
    tiles = [tile(v, at, lambda v=v: state.spark_points(v.site, v.chair, at), several_sites) for v in views]
    if not views:
        tiles = [html.Div("No chairs yet: waiting for the first reading, session or status message.",
                          className="empty", id="overview-empty")]
    live = sum(1 for v in views if v.mode == "live")
    alarms = sum(1 for v in views if v.alarm_priority)
    summary = [html.Span(f"{len(views)} chairs", className="sum-item"),
               html.Span(f"{live} live", className="sum-item"),
               html.Span(f"{len(views) - live} not live", className="sum-item" + (" sum-warn" if live < len(views) else "")),
               html.Span(f"{alarms} with alarms", className="sum-item" + (" sum-alarm" if alarms else ""))]
    return [html.Div(tiles, className=f"tiles {density(len(views))}")], summary


def register(app: Dash, services: Services) -> None:
    """Register the overview's per-second refresh."""

    @app.callback(Output("overview-grid", "children"), Output("overview-summary", "children"),
                  Input("tick", "n_intervals"))
    def overview_tick(_n: int) -> tuple[list[Any], list[Any]]:
        return refresh(services)
