"""Request hygiene behind the login gate: a body size limit, a real favicon, the site scope, 400 for malformed
callbacks (docs/dashboard.md, "Login and security").

- Bodies over ``dashboard_max_request_kb`` answer 413 (Flask's MAX_CONTENT_LENGTH, for callbacks and forms).
- ``/favicon.ico`` is the file in assets/ or 404, never Dash's catch-all page (which names Dash's version).
- A dashboard for one site (``--site``), or a user limited to sites, serves nothing of another site: its pages
  and exports answer 404, and a callback whose inputs, state or ids name another site (a crafted chair key, an
  acknowledge button of another site's alarm, a chair path) answers 403 before any callback runs.
- A callback body that is not Dash's shape, or that makes a callback fail on its values, answers 400, not 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboard.services import Services

log = logging.getLogger("dashboard.guards")

CALLBACK_PATH = "/_dash-update-component"
# Paths whose second segment is a site id: the chair view, the CSV export and the session report.
SITE_PATHS = ("chair", "export", "report")
# Errors a callback raises when a request carries values no page sends (a string for a chair key, an unknown
# output): the client's mistake, answered 400. Anything else stays a 500 with its traceback in the log.
CLIENT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, LookupError)


def path_site(path: str) -> str | None:
    """Return the site a page or export path names (``/chair/{site}/...``, ``/export/{site}/...``), else None."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] in SITE_PATHS:
        return parts[1]
    return None


def named_sites(doc: Any) -> set[str]:
    """Return every site a callback body names: ``site`` keys anywhere (ids, stores) and site paths in strings."""
    found: set[str] = set()
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "site":
                    found.add(value if isinstance(value, str) else repr(value))
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.startswith("/"):
            site = path_site(item.split("?", 1)[0])
            if site is not None:
                found.add(site)
    return found


def callback_shape_ok(body: Any) -> bool:
    """Return whether a callback body has the shape Dash's renderer sends."""
    return (isinstance(body, dict) and isinstance(body.get("output"), str) and isinstance(body.get("inputs"), list)
            and isinstance(body.get("outputs"), dict | list) and isinstance(body.get("state", []), list)
            and isinstance(body.get("changedPropIds", []), list))


def _error(status: int, message: str) -> Any:
    from flask import jsonify

    response = jsonify({"error": message})
    response.status_code = status
    return response


def install(server: Any, services: Services, assets: Path) -> None:
    """Register the size limit, the favicon, the site scope and the callback checks on a Flask server."""
    from flask import request, send_file

    server.config["MAX_CONTENT_LENGTH"] = int(services.config.dashboard_max_request_kb) * 1024

    def favicon() -> Any:
        icon = assets / "favicon.ico"
        if not icon.is_file():
            return _error(404, "no favicon")
        return send_file(icon, mimetype="image/x-icon", max_age=86400)

    server.add_url_rule("/favicon.ico", "infusion_favicon", favicon, methods=["GET"])

    def scope_guard() -> Any:
        site = path_site(request.path)
        if site is not None and not services.may_see(site):
            return _error(404, "not found")
        if request.path != CALLBACK_PATH or request.method != "POST":
            return None
        body = request.get_json(silent=True)  # over MAX_CONTENT_LENGTH this raises 413
        if not callback_shape_ok(body):
            return _error(400, "malformed callback request")
        other = sorted(s for s in named_sites(body) if not services.may_see(s))
        if other:
            log.warning("callback naming site(s) %s refused for %s", ", ".join(o[:40] for o in other[:3]),
                        request.remote_addr)
            return _error(403, "this dashboard does not serve that site")
        return None

    server.before_request(scope_guard)
    endpoint = next(rule.endpoint for rule in server.url_map.iter_rules() if rule.rule == CALLBACK_PATH)
    server.view_functions[endpoint] = _answer_400_for_bad_values(server.view_functions[endpoint])


def _answer_400_for_bad_values(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Dash's callback view: a callback failing on the values it was sent answers 400."""

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except CLIENT_ERRORS as exc:
            log.warning("malformed callback answered 400: %s: %s", type(exc).__name__, str(exc)[:200], exc_info=True)
            return _error(400, "malformed callback request")

    return dispatch
