"""Run the dashboard: build it from its settings, serve it on a thread, stop it (used by the CLI, the demo and tests)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from dash import Dash
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from dashboard.app import create_app
from dashboard.services import Services, check_settings, is_loopback
from vitals.settings import Settings

log = logging.getLogger("dashboard")


def build_server(config: Settings) -> tuple[Services, Dash]:
    """Return the dashboard's services (not started) and its Dash app, after checking the settings."""
    check_settings(config)
    services = Services(config)
    return services, create_app(services)


class QuietHandler(WSGIRequestHandler):
    """Log only failed requests (a station polls every second; logging each poll drowns the log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log a request only when it failed."""
        if str(code).startswith(("4", "5")) and str(code) not in ("401", "304"):
            super().log_request(code, size)


@dataclass
class RunningDashboard:
    """A dashboard serving on a thread; ``stop()`` shuts it down."""

    services: Services
    app: Dash
    http: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Return the base URL it serves on."""
        host = self.http.host if ":" not in self.http.host else f"[{self.http.host}]"
        return f"http://{host}:{self.http.server_port}"

    def stop(self) -> None:
        """Stop serving, then stop the MQTT feed and the history thread."""
        self.http.shutdown()
        self.thread.join(10)
        self.http.server_close()
        self.services.stop()


def serve(config: Settings) -> RunningDashboard:
    """Start the dashboard (MQTT feed, history, HTTP on a thread) and return a handle to stop it."""
    services, app = build_server(config)
    services.start()
    http = make_server(config.dashboard_host, config.dashboard_port, app.server, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=http.serve_forever, name="dashboard-http", daemon=True)
    thread.start()
    running = RunningDashboard(services, app, http, thread)
    log.info("dashboard serving on %s%s", running.url, " (LOGIN DISABLED)" if config.dashboard_no_login else "")
    host = config.dashboard_host
    if not is_loopback(host) and not (config.dashboard_secure_cookies or config.dashboard_trust_proxy):
        log.warning("serving logins over plain HTTP on %s: put a TLS-terminating proxy in front "
                    "(--trust-proxy) or serve only on a closed station network (docs/dashboard.md)", host)
    return running
