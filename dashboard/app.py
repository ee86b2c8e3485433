"""Create the Dash app: the shell, the pages and their callbacks, the login gate. Nothing else lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dash import Dash

from dashboard import guards, layouts, push
from dashboard.pages import alarms, chair, login, overview, report, session
from dashboard.services import Services

ASSETS = Path(__file__).with_name("assets")


def _install_health(server: Any, services: Services) -> None:
    """Serve ``/healthz`` without a login (no patient data): 200 while the live MQTT feed is up, else 503."""
    from flask import jsonify

    @server.route("/healthz")
    def healthz() -> Any:
        links = services.state.links()
        body = {"healthy": links.broker_connected, "mqtt_connected": links.broker_connected,
                "store_ok": links.store_available}
        return jsonify(body), 200 if links.broker_connected else 503


def create_app(services: Services) -> Dash:
    """Return the dashboard's Dash app, every route behind the login gate."""
    app = Dash(__name__, title="Infusion monitor", assets_folder=str(ASSETS), suppress_callback_exceptions=True,
               update_title=None, serve_locally=True, compress=False, enable_mcp=False)
    services.gate.install(app.server)
    login.install(app.server, services.gate, services.config.site)
    chair.install_export(app.server, services)
    app.layout = lambda: layouts.shell(services)
    layouts.register(app, services, {"overview": overview, "chair": chair, "alarms": alarms,
                                             "report": report})
    overview.register(app, services)
    chair.register(app, services)
    alarms.register(app, services)
    report.register(app, services)
    session.register(app, services)
    _install_health(app.server, services)
    push.install(app.server, services)
    guards.install(app.server, services, ASSETS)
    services.gate.set_script_hashes(list(app.csp_hashes()))
    if services.config.dashboard_trust_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.server.wsgi_app = ProxyFix(app.server.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    return app
