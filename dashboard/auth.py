"""Users, login sessions and the gate in front of every page and callback.

- Users live in a JSON users file with argon2id hashes (``infusion-monitor user add``); roles ``nurse``
  (view, acknowledge) and ``admin`` (also edit alarm limits). The file is re-read when it changes, so a
  removed user is logged out at their next request.
- A login creates a server-side session (random id in an HttpOnly, SameSite=Strict cookie, Secure over
  HTTPS), kept in the sessions file shared by every dashboard process (dashboard/sessions.py); it ends at
  logout (a POST carrying the CSRF token) or after ``session_hours``, in every process at once. Failed logins
  are throttled by dashboard.throttle, which never ends or blocks a session.
- Deny by default: only the login page, static assets and Dash's JavaScript bundles answer without a
  session. Pages redirect to the login; callbacks, layout, dependencies and exports get 401 and no data.
- Every response carries security headers (CSP with hashes of Dash's inline scripts, no framing, no sniff).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dashboard.sessions import LoginSession, Sessions, user_stamp
from dashboard.throttle import LoginThrottle
from vitals.topics import TopicError, check_id

log = logging.getLogger("dashboard.auth")

ROLES: tuple[str, ...] = ("nurse", "admin")
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 8
# A station screen stays open for a shift; a login lasts at most this long.
DEFAULT_SESSION_HOURS = 12.0
NO_LOGIN_USER = "station (no login)"
COOKIE_NAME = "infusion_session"

# Paths that answer without a session: the login itself and static files holding no patient data.
PUBLIC_EXACT = frozenset({"/login", "/logout", "/_favicon.ico", "/favicon.ico", "/healthz"})
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/")
# Paths that answer 401 without a session instead of redirecting to the login page: data for scripts (Dash's
# callbacks and layout, the CSV export, the overview's push channel), never a page a person opens.
DATA_PREFIXES = ("/_dash-", "/_reload", "/export", "/_push")


class UsersError(ValueError):
    """A users-file problem or a bad user name, role or password; the message says which."""


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user."""

    name: str
    role: str
    password_hash: str = ""
    sites: tuple[str, ...] = ()  # empty: every site the dashboard serves

    @property
    def is_admin(self) -> bool:
        """Return whether the user may edit alarm limits."""
        return self.role == "admin"


_hasher = PasswordHasher()
# Verified against for unknown names, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def check_name(name: str) -> str:
    """Return a valid user name or raise UsersError."""
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        raise UsersError("user name must be 1-64 characters of A-Z a-z 0-9 . _ @ -")
    return name


class UsersFile:
    """The users file: ``{"users": {name: {"role": ..., "hash": ...}}}``, mode 0600, re-read when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def _read(self) -> dict[str, User]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UsersError(f"users file {self.path} cannot be read: {exc}") from None
        users = {}
        for name, item in (doc.get("users") or {}).items():
            if isinstance(item, dict) and item.get("role") in ROLES and isinstance(item.get("hash"), str):
                sites = item.get("sites") or []
                if not isinstance(sites, list) or not all(isinstance(x, str) for x in sites):
                    # Fail closed for that user only: a typo must not open every site, nor stop every login.
                    log.warning("users file %s: sites of %r is not a list of site ids; that user cannot sign in",
                                self.path, name[:64])
                    continue
                users[name] = User(name, item["role"], item["hash"], tuple(sites))
        return users

    def users(self) -> dict[str, User]:
        """Return the users, re-reading the file when it changed."""
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = (0, 0)
            if stamp != self._stamp:
                self._users = self._read()
                self._stamp = stamp
            return dict(self._users)

    def get(self, name: str) -> User | None:
        """Return a user by name, or None."""
        return self.users().get(name)

    def add(self, name: str, role: str, password: str, *, replace: bool = False, sites: tuple[str, ...] = ()) -> bool:
        """Add (or with replace, update) a user, optionally limited to sites; return whether the user was new."""
        check_name(name)
        try:
            sites = tuple(check_id(site, "site id") for site in sites)
        except TopicError as exc:
            raise UsersError(str(exc)) from None
        if role not in ROLES:
            raise UsersError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UsersError(f"password must have at least {MIN_PASSWORD} characters")
        with self._lock:
            current = self._read()
            new = name not in current
            if not new and not replace:
                raise UsersError(f"user {name!r} exists (use --replace to change the password or role)")
            current[name] = User(name, role, _hasher.hash(password), sites)
            self._write(current)
            self._stamp = None
        return new

    def remove(self, name: str) -> bool:
        """Remove a user; return whether it existed."""
        with self._lock:
            current = self._read()
            existed = current.pop(name, None) is not None
            if existed:
                self._write(current)
                self._stamp = None
        return existed

    def _write(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": 1, "users": {u.name: {"role": u.role, "hash": u.password_hash,
                                                **({"sites": list(u.sites)} if u.sites else {})}
                                       for u in users.values()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def verify(self, name: str, password: str) -> User | None:
        """Return the user when the password matches, else None (same cost for unknown names)."""
        user = self.users().get(name)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user




def is_public(path: str) -> bool:
    """Return whether a path may be served without a session."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


# What a `next` path may hold: a path and query of printable ASCII with no backslash (checked raw and decoded).
_NEXT_CHARS = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@%?-]*")


def safe_next(target: str | None) -> str:
    """Return a same-origin absolute path to go to after login; anything else becomes '/'."""
    from urllib.parse import unquote, urlsplit

    if not target or len(target) > 2048:
        return "/"
    forms = [target]
    for _ in range(3):  # double and triple encoding decode to the same checks
        forms.append(unquote(forms[-1]))
    for form in forms:
        parts = urlsplit(form)
        if (not form.startswith("/") or "//" in form or not _NEXT_CHARS.fullmatch(form)
                or parts.scheme or parts.netloc):
            return "/"
    return target


def content_security_policy(script_hashes: list[str]) -> str:
    """Return the CSP: scripts only from this server (plus Dash's inline scripts by hash), no framing."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' " + " ".join(script_hashes),
        "style-src 'self' 'unsafe-inline'",  # Plotly and Dash set inline styles
        "img-src 'self' data:",  # sparklines are inline SVG images
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ])


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


CSRF_COOKIE = "_csrf_token"  # the name Dash's renderer reads to send X-CSRFToken with every callback
CSRF_HEADER = "X-CSRFToken"


class Gate:
    """The login gate of the Flask server under Dash: session lookup, guard, cookies and security headers."""

    def __init__(self, users: UsersFile | None, *, no_login: bool = False, session_hours: float = DEFAULT_SESSION_HOURS,
                 secure_cookies: bool = False, audit: Callable[[str, str, str | None], None] | None = None,
                 sessions_file: Path | None = None) -> None:
        if not no_login and users is None:
            raise UsersError("a users file is needed unless login is disabled")
        self.users = users
        self.no_login = no_login
        self.sessions = Sessions(session_hours * 3600, None if no_login else sessions_file)
        self.throttle = LoginThrottle()
        self.secure_cookies = secure_cookies
        self.audit = audit or (lambda action, user, detail: None)
        self._csp = content_security_policy([])

    def current(self) -> LoginSession | None:
        """Return the session of the current request (a fixed nurse-role one when login is disabled)."""
        from flask import g, request

        if self.no_login:
            return LoginSession(NO_LOGIN_USER, "nurse", 0.0, "")
        if "login" in g:
            return g.login
        item = self.sessions.get(request.cookies.get(COOKIE_NAME))
        if item is not None and self.users is not None:
            user = self.users.get(item.user)
            if user is None or user_stamp(user.password_hash) != item.stamp:  # removed, or its password changed
                self.sessions.end(request.cookies.get(COOKIE_NAME))
                item = None
            elif user.role != item.role:
                item.role = user.role
        g.login = item
        return item

    def set_script_hashes(self, hashes: list[str]) -> None:
        """Allow Dash's inline scripts by hash in the CSP."""
        self._csp = content_security_policy(hashes)

    def install(self, server: Any) -> None:
        """Register the guard and the header hook on a Flask server."""
        server.before_request(self._guard)
        server.after_request(self._headers)

    def _guard(self) -> Any:
        from urllib.parse import quote

        from flask import jsonify, redirect, request

        if self.no_login or is_public(request.path):
            return None
        item = self.current()
        if item is None:
            wants_page = request.method == "GET" and not request.path.startswith(DATA_PREFIXES)
            if wants_page:
                return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/?=&"), 302)
            response = jsonify({"error": "login required"})
            response.status_code = 401
            return response
        if (request.method == "POST" and request.path.startswith("/_dash-")
                and not secrets.compare_digest(request.headers.get(CSRF_HEADER, ""), item.csrf)):
            response = jsonify({"error": "missing or wrong CSRF token; reload the page"})
            response.status_code = 403
            return response
        return None

    def _headers(self, response: Any) -> Any:
        from flask import request

        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Content-Security-Policy", self._csp)
        if not request.path.startswith(PUBLIC_PREFIXES):
            response.headers["Cache-Control"] = "no-store"
        if self.cookie_secure():
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    def cookie_secure(self) -> bool:
        """Return whether cookies get the Secure flag (HTTPS, directly or as told by a trusted proxy)."""
        from flask import request

        return self.secure_cookies or request.is_secure

    def set_login_cookies(self, response: Any, sid: str, csrf: str) -> None:
        """Set the session cookie (HttpOnly) and the CSRF cookie Dash echoes in a header."""
        secure = self.cookie_secure()
        max_age = int(self.sessions.lifetime_s)
        response.set_cookie(COOKIE_NAME, sid, max_age=max_age, httponly=True, secure=secure, samesite="Strict", path="/")
        response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="Strict", path="/")

    def clear_login_cookies(self, response: Any) -> None:
        """Remove the login cookies."""
        secure = self.cookie_secure()
        response.delete_cookie(COOKIE_NAME, path="/", secure=secure, httponly=True, samesite="Strict")
        response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="Strict")
