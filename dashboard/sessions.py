"""Login sessions in a small SQLite file shared by every dashboard process (survive restarts, no sticky sessions).

- A session is a random id (the cookie); the file keeps only its SHA-256, so a copy of the file cannot be
  replayed as a cookie. With it: user, role, created, expires, the CSRF token, and a fingerprint of the user's
  password hash (a password change ends the user's sessions).
- Every request looks its session up in the file (one indexed SELECT), so a logout, an expiry or a removed user
  ends a session at once in every process that shares the file. WAL mode: readers never wait for a login.
- Without a file (tests, benchmarks) the sessions live in an in-memory database of this process only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("dashboard.sessions")

SESSIONS_FILE_NAME = "dashboard-sessions.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,      -- sha256 of the session id, hex; the id itself is only in the browser's cookie
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    created REAL NOT NULL,     -- unix seconds
    expires REAL NOT NULL,     -- unix seconds
    csrf TEXT NOT NULL,
    stamp TEXT NOT NULL        -- fingerprint of the user's password hash at login
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
"""


class SessionsError(RuntimeError):
    """The sessions file cannot be opened or used; the message says which file and why."""


@dataclass(slots=True)
class LoginSession:
    """A logged-in browser."""

    user: str
    role: str
    created: float
    csrf: str
    stamp: str = ""  # fingerprint of the user's password hash at login (see user_stamp)


def session_key(sid: str) -> str:
    """Return what the file stores for a session id: its SHA-256, hex."""
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()


def user_stamp(password_hash: str) -> str:
    """Return a fingerprint of a user's password hash (changes when the password does)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def sessions_path(sessions_file: Path | None, data_dir: Path | None) -> Path | None:
    """Return the sessions file: the one given, else ``<data_dir>/dashboard-sessions.db``, else None (in memory)."""
    if sessions_file is not None:
        return Path(sessions_file)
    return Path(data_dir) / SESSIONS_FILE_NAME if data_dir is not None else None


class Sessions:
    """Server-side login sessions by random id, in a SQLite file; they end at logout or after their lifetime."""

    def __init__(self, lifetime_s: float, path: Path | str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(SCHEMA)
            return db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # created owner-only: it names who is logged in
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise SessionsError(f"sessions file {self.path} cannot be used: {exc}") from None
        return db

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def create(self, user: Any) -> str:
        """Start a session for a user (name, role, password_hash); return its id."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        stamp = user_stamp(getattr(user, "password_hash", ""))
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (session_key(sid), user.name, user.role, now, now + self.lifetime_s,
                              secrets.token_urlsafe(16), stamp))
        return sid

    def get(self, sid: str | None) -> LoginSession | None:
        """Return a live session, or None when unknown or expired.

        A sessions file that cannot be read refuses the session (logged): never let a request in unchecked.
        """
        if not sid:
            return None
        try:
            rows = self._run("SELECT user, role, created, csrf, stamp FROM sessions WHERE key = ? AND expires > ?",
                             (session_key(sid), self.clock()))
        except sqlite3.Error as exc:
            log.error("sessions file %s cannot be read, refusing the session: %s", self.path, exc)
            return None
        if not rows:
            return None
        return LoginSession(*rows[0])

    def end(self, sid: str | None) -> None:
        """End a session (in every process sharing the file)."""
        if sid:
            self._run("DELETE FROM sessions WHERE key = ?", (session_key(sid),))

    def end_user(self, name: str) -> int:
        """End every session of a user; return how many there were."""
        with self._lock:
            return self._db.execute("DELETE FROM sessions WHERE user = ?", (name,)).rowcount

    def count(self) -> int:
        """Return how many sessions are live."""
        return self._run("SELECT count(*) FROM sessions WHERE expires > ?", (self.clock(),))[0][0]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
