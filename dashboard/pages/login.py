"""The login and logout pages: plain server-rendered HTML forms, not Dash.

Login is deliberately outside Dash: a Dash login page would need callbacks that answer without a session,
and the gate lets no callback answer without one.
"""

from __future__ import annotations

import secrets
from typing import Any

from markupsafe import escape

from dashboard.auth import COOKIE_NAME, USERNAME, Gate, safe_next
from dashboard.throttle import Refusal

FORM_CSRF_COOKIE = "infusion_login_csrf"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - infusion monitor</title><link rel="stylesheet" href="/assets/style.css"></head>
<body class="login-body"><main class="login-box">
<h1>Infusion monitor</h1>
<p class="login-sub">Nurse station sign-in</p>
{message}
<form method="post" action="/login" autocomplete="off">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="username">User</label><input id="username" name="username" required maxlength="64" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required maxlength="256">
<button type="submit" id="login-submit">Sign in</button>
</form>
<p class="login-note">A secondary display and alerting aid, not a certified medical device.</p>
</main></body></html>"""


def _form(gate: Gate, message: str = "", next_path: str = "/", status: int = 200) -> Any:
    from flask import make_response, request

    token = request.cookies.get(FORM_CSRF_COOKIE) or secrets.token_urlsafe(16)
    html = PAGE.format(message=f'<p class="login-error" role="alert">{escape(message)}</p>' if message else "",
                       csrf=escape(token), next=escape(safe_next(next_path)))
    response = make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.set_cookie(FORM_CSRF_COOKIE, token, httponly=True, secure=gate.cookie_secure(), samesite="Strict",
                        path="/login", max_age=3600)
    return response


def install(server: Any, gate: Gate, site: str | None = None) -> None:
    """Register /login and /logout on the Flask server (``site``: the one site the dashboard serves, if any)."""
    from flask import make_response, redirect, request

    def login() -> Any:
        if gate.no_login:
            return redirect("/", 302)
        if request.method == "GET":
            return _form(gate, next_path=request.args.get("next", "/"))
        next_path = safe_next(request.form.get("next"))
        token = request.cookies.get(FORM_CSRF_COOKIE, "")
        if not token or not secrets.compare_digest(token, request.form.get("csrf", "")):
            return _form(gate, "The form expired; please sign in again.", next_path, 400)
        name = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:256]
        shown = name if USERNAME.fullmatch(name) else "?"
        attempt = gate.throttle.admit(shown, request.remote_addr or "?")
        if isinstance(attempt, Refusal):
            # Not audited one by one: refusals cost nothing, so a flood of them must not cost a store write each.
            response = _form(gate, attempt.message(), next_path, 429)
            response.headers["Retry-After"] = str(max(1, round(attempt.retry_after_s)))
            return response
        user = None
        try:
            if gate.users is not None and shown != "?":
                user = gate.users.verify(name, password)
        finally:
            attempt.finish(user is not None)
        if user is None:
            gate.audit("login_failed", shown, request.remote_addr)
            return _form(gate, "Wrong user or password.", next_path, 401)
        if site is not None and user.sites and site not in user.sites:
            # Signed in, this user would see an empty overview that looks like a quiet ward: say why instead.
            gate.audit("login_refused", user.name, f"{request.remote_addr} not allowed site {site}")
            return _form(gate, f"{user.name} may not see site {site}, the only site this dashboard shows.",
                         next_path, 403)
        gate.sessions.end(request.cookies.get(COOKIE_NAME))
        sid = gate.sessions.create(user)
        item = gate.sessions.get(sid)
        response = redirect(next_path, 303)
        gate.set_login_cookies(response, sid, item.csrf if item else "")
        response.delete_cookie(FORM_CSRF_COOKIE, path="/login")
        gate.audit("login", user.name, request.remote_addr)
        return response

    def logout() -> Any:
        # Only a POST from this dashboard's own page ends a login: it carries the session's CSRF token, which
        # another site cannot read. Anything else changes nothing (no cookie is cleared either).
        if request.method != "POST":  # registered for GET too, or Dash's catch-all page would answer it
            return make_response("sign out with the dashboard's Sign out button (POST)\n", 405,
                                 {"Allow": "POST", "Content-Type": "text/plain; charset=utf-8"})
        if gate.no_login:
            return redirect("/", 303)
        item = gate.current()
        token = request.form.get("csrf", "")
        if item is None or not token or not secrets.compare_digest(token, item.csrf):
            return make_response("sign-out refused: it must come from the dashboard's own Sign out button\n", 403,
                                 {"Content-Type": "text/plain; charset=utf-8"})
        gate.sessions.end(request.cookies.get(COOKIE_NAME))
        response = redirect("/login", 303)
        gate.clear_login_cookies(response)
        gate.audit("logout", item.user, request.remote_addr)
        return response

    server.add_url_rule("/login", "infusion_login", login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "infusion_logout", logout, methods=["GET", "POST"])
