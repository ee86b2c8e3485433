"""Timing hook for benchmarks/queries.py: one overview refresh as the server does it.

``overview_refresh(store_url, site, chairs)`` builds a dashboard on the given store (no broker: chairs come
from the store as at start-up, with their sparkline history), then returns a callable that runs the
overview's per-second callback through Dash's own request handling (routing, the callback, JSON encoding),
in process, without HTTP sockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from dashboard.app import create_app
from dashboard.services import Services
from vitals.settings import Settings

OVERVIEW_CALLBACK = {
    "output": "overview-data.data",
    "outputs": {"id": "overview-data", "property": "data"},
    "inputs": [{"id": "overview-poll-go", "property": "data", "value": 5}],  # a refresh with the sparklines
    "changedPropIds": ["overview-poll-go.data"],
    "state": [],
}


def overview_refresh(store_url: str, site: str, chairs: int = 48) -> Callable[[], int]:
    """Return a callable doing one overview refresh for a site's chairs; it returns the response size in bytes."""
    # The environment counts (INFUSION_INFLUX_TOKEN for an influxdb2:// store), as for a dashboard.
    services = Services(Settings(mqtt_url=None, store_url=store_url, dashboard_no_login=True, site=site))
    app = create_app(services)
    history = services.history
    if not history.check():
        raise RuntimeError(f"store does not answer: {services.state.links().store_reason}")
    history.seed()
    for _site, chair in services.state.chairs():
        services.state.backfill(_site, chair, history.spark_points(_site, chair))
    found = len(services.state.chairs())
    if found < chairs:
        raise RuntimeError(f"the store has {found} chairs of site {site}, expected {chairs}")
    client = app.server.test_client()
    body = json.dumps(OVERVIEW_CALLBACK)

    def refresh() -> int:
        response = client.post("/_dash-update-component", data=body, content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"overview refresh answered {response.status_code}")
        return len(response.data)

    return refresh
