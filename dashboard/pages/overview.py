"""The overview: one tile per chair, refreshed every second from the live cache (never from the store).

The server builds each tile's display values (dashboard/state.py, components.tile_data) and sends them as
compact JSON; assets/vitals.js turns them into DOM, changing only what changed. Sparklines travel every
fifth refresh (they are redrawn once per 5 s bucket anyway).
"""

from __future__ import annotations

from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, dcc, html

from dashboard.components import SPARK_REDRAW_MS, density, spark_src, tile_data
from dashboard.live import now_ms
from dashboard.pages.session import record_tile
from dashboard.services import Services

# Send sparklines with every n-th refresh (and the first): they change once per SPARK_REDRAW_MS.
SPARK_EVERY = max(1, SPARK_REDRAW_MS // 1000)


def layout(services: Services) -> html.Div:
    """Return the overview page, with its first data already in it."""
    data, summary = refresh(services, with_sparks=True)
    return html.Div(
        [
            html.Div(summary, id="overview-summary", className="summary"),
            dcc.Store(id="overview-data", data=data),
            html.Div([html.Div("No chairs yet: waiting for the first reading, session or status message.",
                               className="empty", id="overview-empty", style={"display": "none"})],
                     id="overview-grid", className="grid"),
            html.Span(id="overview-rendered", hidden=True),
        ],
        id="overview",
    )


def refresh(services: Services, now: int | None = None, with_sparks: bool = True) -> tuple[dict[str, Any], list[Any]]:
    """Return the tiles' data and the summary line for one refresh."""
    at = now_ms() if now is None else now
    state = services.state
    views = state.tiles(services.scope(), at, with_spark=False)
    several_sites = len({v.site for v in views}) > 1
    tiles = []
    for v in views:
        spark = spark_src(v, at, lambda v=v: state.spark_points(v.site, v.chair, at)) if with_sparks else None
        tiles.append(tile_data(v, several_sites, spark))
        tiles[-1]["record"] = record_tile(services, v.site, v.chair, at)  # the session record's line (pages/session.py)
    live = sum(1 for v in views if v.mode == "live")
    alarms = sum(1 for v in views if v.alarm_priority)
    summary = [html.Span(f"{len(views)} chairs", className="sum-item"),
               html.Span(f"{live} live", className="sum-item"),
               html.Span(f"{len(views) - live} not live", className="sum-item" + (" sum-warn" if live < len(views) else "")),
               html.Span(f"{alarms} with alarms", className="sum-item" + (" sum-alarm" if alarms else ""))]
    return {"density": density(len(views)), "tiles": tiles}, summary


def register(app: Dash, services: Services) -> None:
    """Register the overview's per-second refresh and its browser-side renderer."""

    @app.callback(Output("overview-data", "data"), Output("overview-summary", "children"),
                  Input("tick", "n_intervals"))
    def overview_tick(n: int | None) -> tuple[dict[str, Any], list[Any]]:
        return refresh(services, with_sparks=not n or n % SPARK_EVERY == 0)

    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="renderOverview"),
        Output("overview-rendered", "children"), Input("overview-data", "data"),
    )
