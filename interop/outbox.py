"""The HL7 exporter's durable outbox (SQLite): what must reach the receiver survives a receiver outage and a restart.

Tables: ``messages`` (one row per message, keyed so the same input never makes two: a redelivered MQTT message
adds nothing), ``numerics`` (the readings of numerics intervals, with the key of the message that carried them
once their interval was closed), ``sessions`` (the chairs' sessions, so readings redelivered after a restart
find theirs) and ``failing`` (chairs whose export was published as failing, so a restart still clears it).
Every change is committed before the exporter acknowledges the MQTT message that caused it.
States of a message: ``pending`` (to send, ``next_try_ms`` says when), ``sent`` (AA received), ``refused`` (AR:
the receiver will never take it as it is; kept for people to look at, and the chair's export alarm raised).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from vitals.reading import Reading
from vitals.records import Session

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    chair TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (state, id);
CREATE TABLE IF NOT EXISTS numerics (
    site TEXT NOT NULL,
    chair TEXT NOT NULL,
    ts INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    reading TEXT NOT NULL,
    message_key TEXT,
    PRIMARY KEY (site, chair, ts)
);
CREATE INDEX IF NOT EXISTS numerics_open ON numerics (message_key, site, chair, ts);
CREATE TABLE IF NOT EXISTS failing (
    site TEXT NOT NULL,
    chair TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (site, chair)
);
CREATE TABLE IF NOT EXISTS sessions (
    site TEXT NOT NULL,
    chair TEXT NOT NULL,
    session_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (site, chair, session_id)
);
"""


@dataclass(frozen=True, slots=True)
class Pending:
    """A message due to be sent."""

    id: int
    key: str
    site: str
    chair: str
    body: str
    attempts: int


class Outbox:
    """The outbox file; thread-safe (one connection, one lock: a few writes a second per chair)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # -- writes (each one transaction, committed on return) ---------------------------------------------

    def add(self, key: str, site: str, chair: str, body: str, now_ms: int) -> bool:
        """Queue a message; return False when one with this key was queued before (a redelivery)."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO messages (key, site, chair, body, created_ms) VALUES (?,?,?,?,?)",
                                   (key, site, chair, body, now_ms))
            return cur.rowcount == 1

    def save_session(self, session: Session) -> None:
        """Keep a chair's session (its newest state replaces the old)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?)",
                             (session.site, session.chair, session.session_id, session.started_at,
                              json.dumps(session.to_json_obj())))

    def add_numerics(self, session_id: str, readings: list[Reading]) -> None:
        """Keep readings of open numerics intervals (a reading already kept is ignored)."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO numerics (site, chair, ts, session_id, reading) VALUES (?,?,?,?,?)",
                [(r.site, r.chair, r.ts_ms, session_id, json.dumps(r.to_json_obj())) for r in readings])

    def open_numerics(self, site: str, chair: str, before_ms: int | None = None) -> list[tuple[str, Reading]]:
        """Return (session id, reading) of the chair's readings not yet in a message, oldest first."""
        query = "SELECT session_id, reading FROM numerics WHERE message_key IS NULL AND site=? AND chair=?"
        args: list[object] = [site, chair]
        if before_ms is not None:
            query += " AND ts < ?"
            args.append(before_ms)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY ts", args).fetchall()
        out = []
        for session_id, text in rows:
            obj = json.loads(text)
            ts = obj.pop("ts")
            out.append((session_id, Reading(site, chair, ts, **obj)))
        return out

    def chairs_with_open_numerics(self) -> list[tuple[str, str, int]]:
        """Return (site, chair, newest ts) of every chair with readings not yet in a message."""
        with self._lock:
            return self._db.execute("SELECT site, chair, MAX(ts) FROM numerics WHERE message_key IS NULL "
                                    "GROUP BY site, chair").fetchall()

    def close_numerics(self, key: str, site: str, chair: str, body: str, ts_list: list[int], now_ms: int) -> None:
        """Queue a numerics message and mark its readings as carried by it, in one transaction."""
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO messages (key, site, chair, body, created_ms) VALUES (?,?,?,?,?)",
                             (key, site, chair, body, now_ms))
            self._db.executemany("UPDATE numerics SET message_key=? WHERE site=? AND chair=? AND ts=?",
                                 [(key, site, chair, ts) for ts in ts_list])

    def mark_numerics(self, site: str, chair: str, ts_list: list[int], why: str) -> None:
        """Mark readings that will not be in any message (no session), so they are not looked at again."""
        with self._lock, self._db:
            self._db.executemany("UPDATE numerics SET message_key=? WHERE site=? AND chair=? AND ts=?",
                                 [(why, site, chair, ts) for ts in ts_list])

    def prune(self, before_ms: int) -> None:
        """Forget carried readings and sent messages older than ``before_ms`` (refused ones stay)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM numerics WHERE message_key IS NOT NULL AND ts < ?", (before_ms,))
            self._db.execute("DELETE FROM messages WHERE state='sent' AND done_ms < ?", (before_ms,))

    # -- sessions -----------------------------------------------------------------------------------------

    def sessions(self) -> list[Session]:
        """Return every kept session."""
        with self._lock:
            rows = self._db.execute("SELECT site, chair, payload FROM sessions ORDER BY started_at").fetchall()
        return [Session.from_payload(site, chair, payload) for site, chair, payload in rows]

    # -- chairs whose export health was published as failing (so a restart still clears it) --------------

    def failing(self) -> dict[tuple[str, str], str]:
        """Return the chairs published as failing, with the reason."""
        with self._lock:
            rows = self._db.execute("SELECT site, chair, reason FROM failing").fetchall()
        return {(site, chair): reason for site, chair, reason in rows}

    def set_failing(self, site: str, chair: str, reason: str | None) -> None:
        """Record a chair as failing (``reason``) or ok again (None)."""
        with self._lock:
            if reason is None:
                self._db.execute("DELETE FROM failing WHERE site=? AND chair=?", (site, chair))
            else:
                self._db.execute("INSERT OR REPLACE INTO failing VALUES (?,?,?)", (site, chair, reason))

    # -- the sender's side --------------------------------------------------------------------------------

    def next_due(self, now_ms: int) -> Pending | None:
        """Return the oldest pending message if it is due (messages go in order: a failing one holds the rest)."""
        with self._lock:
            row = self._db.execute("SELECT id, key, site, chair, body, attempts, next_try_ms FROM messages "
                                   "WHERE state='pending' ORDER BY id LIMIT 1").fetchone()
        if row is None or row[6] > now_ms:
            return None
        return Pending(*row[:6])

    def done(self, message_id: int, state: str, now_ms: int, error: str | None = None) -> None:
        """Mark a message ``sent`` or ``refused``."""
        with self._lock:
            self._db.execute("UPDATE messages SET state=?, done_ms=?, last_error=?, attempts=attempts+1 WHERE id=?",
                             (state, now_ms, error, message_id))

    def retry(self, message_id: int, next_try_ms: int, error: str) -> None:
        """Count a failed attempt and set when to try again."""
        with self._lock:
            self._db.execute("UPDATE messages SET attempts=attempts+1, next_try_ms=?, last_error=? WHERE id=?",
                             (next_try_ms, error, message_id))

    def counts(self) -> dict[str, int]:
        """Return the number of messages in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM messages GROUP BY state").fetchall()
        return {"pending": 0, "sent": 0, "refused": 0, **dict(rows)}

    def pending_chairs(self) -> list[tuple[str, str]]:
        """Return the chairs with pending messages."""
        with self._lock:
            return self._db.execute("SELECT DISTINCT site, chair FROM messages WHERE state='pending'").fetchall()
