"""The overview: one tile per chair, from the live cache (never from the store).

The server builds each tile's display values (dashboard/state.py, components.tile_data) and sends them as
compact JSON; assets/vitals.js turns them into DOM, changing only what changed. The tiles arrive by push
(dashboard/push.py, server-sent events, when a chair changes); the one-second poll below runs only while the
push channel is not delivering (not yet open, refused, broken, or ``--no-push``). Sparklines travel every
fifth poll (they are redrawn once per 5 s bucket anyway).
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
    from dashboard.push import PUSH_PATH

    data = refresh(services, with_sparks=True)
    push = "" if services.config.dashboard_no_push else PUSH_PATH
    return html.Div(
        [
            html.Div(id="overview-summary", className="summary"),  # drawn by assets/vitals.js from the data
            dcc.Store(id="overview-data", data=data),
            # The fallback poll: its ticks reach the server (overview-poll-go) only while the push channel does
            # not deliver (assets/vitals.js, pollGate).
            dcc.Interval(id="overview-poll", interval=services.config.dashboard_refresh_ms, n_intervals=0),
            dcc.Store(id="overview-poll-go"),
            html.Div([html.Div("No chairs yet: waiting for the first reading, session or status message.",
                               className="empty", id="overview-empty", style={"display": "none"})],
                     id="overview-grid", className="grid"),
            html.Span(id="overview-rendered", hidden=True),
        ],
        id="overview", **{"data-push": push},
    )


def refresh(services: Services, now: int | None = None, with_sparks: bool = True) -> dict[str, Any]:
    """Return the tiles' data and the summary counts for one refresh (``now``: the server clock, for deadlines)."""
    at = now_ms() if now is None else now
    state = services.state
    views = state.tiles(services.scope(), at, with_spark=False)
    several_sites = len({v.site for v in views}) > 1
    tiles = []
    for v in views:
        spark = spark_src(v, at, lambda v=v: state.spark_points(v.site, v.chair, at)) if with_sparks else None
        tiles.append(tile_data(v, several_sites, spark))
        tiles[-1]["record"] = record_tile(services, v.site, v.chair, at)  # the session record's line (pages/session.py)
    return {"now": at, "noDataMs": state.no_data_ms, "density": density(len(views)), "tiles": tiles,
            "summary": summary_counts(views)}


def summary_counts(views: list[Any]) -> list[int]:
    """Return the summary line's counts: chairs, live, not live, with alarms."""
    live = sum(1 for v in views if v.mode == "live")
    return [len(views), live, len(views) - live, sum(1 for v in views if v.alarm_priority)]


def register(app: Dash, services: Services) -> None:
    """Register the overview's fallback poll and its browser-side renderer."""

    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="pollGate"),
        Output("overview-poll-go", "data"), Input("overview-poll", "n_intervals"),
    )

    @app.callback(Output("overview-data", "data"), Input("overview-poll-go", "data"), prevent_initial_call=True)
    def overview_tick(n: int | None) -> dict[str, Any]:
        return refresh(services, with_sparks=not n or n % SPARK_EVERY == 0)

    app.clientside_callback(
        ClientsideFunction(namespace="vitals", function_name="renderOverview"),
        Output("overview-rendered", "children"), Input("overview-data", "data"),
    )
