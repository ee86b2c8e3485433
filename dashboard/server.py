"""Run the dashboard: build it from its settings, serve it with waitress on a thread, stop it (CLI, demo and tests).

waitress is a production WSGI server in pure Python with a pool of threads in one process, which is what the
dashboard needs: the live MQTT feed and the cache every callback reads live in that process (docs/dashboard.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dash import Dash

from dashboard.app import create_app
from dashboard.services import Services, check_settings, is_loopback
from vitals.settings import Settings

log = logging.getLogger("dashboard")
access_log = logging.getLogger("dashboard.access")

SERVER_NAME = "infusion-monitor"  # the Server header: no product versions for a scanner to match
CONNECTION_LIMIT = 200  # open connections; a station screen holds a few, a clinic has a few dozen screens
BACKLOG = 256


def build_server(config: Settings) -> tuple[Services, Dash]:
    """Return the dashboard's services (not started) and its Dash app, after checking the settings."""
    check_settings(config)
    services = Services(config)
    return services, create_app(services)


def failed_requests_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app to log failed requests only (a station polls every second; logging each poll drowns the log)."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = status[:3]
            if code[0] in "45" and code not in ("401", "304"):
                access_log.info('%s "%s %s" %s', environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
                                environ.get("PATH_INFO"), code)
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return logged


def http_server(app: Callable[..., Iterable[bytes]], config: Settings) -> Any:
    """Return a waitress server for ``app`` bound to the config's host and port (not yet running).

    Proxy headers are left to the app (werkzeug's ProxyFix, installed with --trust-proxy): one mechanism.
    """
    from waitress.server import create_server

    idle = config.dashboard_idle_timeout_s
    return create_server(
        failed_requests_only(app), host=config.dashboard_host, port=config.dashboard_port,
        threads=config.dashboard_threads,
        connection_limit=CONNECTION_LIMIT, backlog=BACKLOG, ident=SERVER_NAME,
        channel_timeout=max(1, round(idle)), cleanup_interval=max(1, min(10, round(idle / 2))),
        clear_untrusted_proxy_headers=False, expose_tracebacks=False,
    )


@dataclass
class RunningDashboard:
    """A dashboard serving on a thread; ``stop()`` shuts it down."""

    services: Services
    app: Dash
    http: Any  # waitress.server.TcpWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Return the base URL it serves on."""
        host = str(self.http.effective_host)
        return f"http://{host if ':' not in host else f'[{host}]'}:{self.http.effective_port}"

    def stop(self) -> None:
        """Stop serving (listening socket, connections, worker threads), then the MQTT feed and the history thread."""
        from waitress import wasyncore

        http = self.http
        self.services.state.close()  # push streams end, giving their worker threads back for the shutdown
        # Worker threads first: each one ends its request by waking the loop through the trigger pipe, so the
        # pipe must still be open (closing it first made a finishing request log EBADF, 1 CI run in ~10).
        http.task_dispatcher.shutdown(timeout=5)
        # Then close every socket, the trigger last of all, from the server's own loop thread; with its map
        # empty, the loop returns.
        try:
            http.trigger.pull_trigger(lambda: wasyncore.close_all(http._map))
        except OSError:  # the trigger pipe is closed already: its loop has ended, so close what is left from here
            wasyncore.close_all(http._map)
        self.thread.join(10)
        self.services.stop()
        self.services.gate.sessions.close()


def serve(config: Settings) -> RunningDashboard:
    """Start the dashboard (MQTT feed, history, HTTP on a thread) and return a handle to stop it."""
    services, app = build_server(config)
    try:
        http = http_server(app.server, config)  # binds now: a taken port fails here, before the feed starts
    except OSError:
        services.gate.sessions.close()
        raise
    services.start()
    thread = threading.Thread(target=http.run, name="dashboard-http", daemon=True)
    thread.start()
    running = RunningDashboard(services, app, http, thread)
    log.info("dashboard serving on %s%s", running.url, " (LOGIN DISABLED)" if config.dashboard_no_login else "")
    host = config.dashboard_host
    if not is_loopback(host) and not (config.dashboard_secure_cookies or config.dashboard_trust_proxy):
        log.warning("serving logins over plain HTTP on %s: put a TLS-terminating proxy in front "
                    "(--trust-proxy) or serve only on a closed station network (docs/dashboard.md)", host)
    return running
