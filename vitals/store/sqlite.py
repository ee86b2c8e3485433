"""The embedded store: one SQLite file, for a one-box clinic and the demo (schema: docs/storage-schema.md).

WAL mode so the dashboard reads while the ingest writes; ``synchronous=FULL`` so a write that returned
survives a power cut (the ingest acknowledges to the broker only after it). A reading is keyed by
(site, chair, ts_ms): writing it again merges its values into the row instead of adding one, which turns
the broker's at-least-once delivery into exactly-once storage, as InfluxDB does with its points.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vitals.care import CareRecord
from vitals.reading import VITALS, Reading
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store.base import Latest, Series, Store, StoreError, choose_step_ms

SCHEMA_VERSION = 2  # 2: care_records, and the sessions columns of a nurse-started session

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    site TEXT NOT NULL, chair TEXT NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER,
    hr REAL, spo2 REAL, rr REAL, sys REAL, dia REAL, map REAL,
    PRIMARY KEY (site, chair, ts_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chairs (
    site TEXT NOT NULL, chair TEXT NOT NULL, PRIMARY KEY (site, chair)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    site TEXT NOT NULL, chair TEXT NOT NULL, started_at INTEGER NOT NULL, session_id TEXT NOT NULL,
    state TEXT NOT NULL, ended_at INTEGER, drug TEXT, dose_mg_per_kg REAL, duration_min REAL,
    patient_ref TEXT, baseline_sys REAL,
    PRIMARY KEY (site, chair, started_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    site TEXT NOT NULL, chair TEXT NOT NULL, ts INTEGER NOT NULL, alarm_id TEXT NOT NULL, event TEXT NOT NULL,
    vital TEXT NOT NULL, kind TEXT NOT NULL, priority TEXT NOT NULL, value REAL, "limit" REAL,
    user TEXT, text TEXT,
    PRIMARY KEY (site, chair, ts, alarm_id, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms (ts);
CREATE TABLE IF NOT EXISTS audit (
    ts INTEGER NOT NULL, action TEXT NOT NULL, user TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '', chair TEXT NOT NULL DEFAULT '', alarm_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (ts, action, user, site, chair, alarm_id, detail)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS care_records (
    site TEXT NOT NULL, chair TEXT NOT NULL, ts INTEGER NOT NULL, type TEXT NOT NULL, session_id TEXT NOT NULL,
    author TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (site, chair, ts, type)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS care_by_session ON care_records (site, chair, session_id);
"""
# Columns added to a version-1 file's sessions table (SQLite adds them in place; old rows read as NULL).
_SESSION_ADDED = (("weight_kg", "REAL"), ("total_mg", "REAL"), ("baseline_dia", "REAL"), ("baseline_source", "TEXT"),
                  ("started_by", "TEXT"))

_READING_COLS = ("seq", *VITALS)
_UPSERT_READING = (
    f"INSERT INTO readings (site, chair, ts_ms, {', '.join(_READING_COLS)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in _READING_COLS)}) "
    "ON CONFLICT (site, chair, ts_ms) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(excluded.{c}, readings.{c})" for c in _READING_COLS)
)
_SESSION_COLS = ("site", "chair", "started_at", "session_id", "state", "ended_at", "drug", "dose_mg_per_kg",
                 "duration_min", "patient_ref", "baseline_sys", *(name for name, _ in _SESSION_ADDED))
_ALARM_COLS = ("site", "chair", "ts", "alarm_id", "event", "vital", "kind", "priority", "value", "limit", "user", "text")
_AUDIT_COLS = ("ts", "action", "user", "site", "chair", "alarm_id", "detail")


def _where(clauses: Iterable[tuple[str, object]]) -> tuple[str, list[object]]:
    """Return a WHERE clause and its parameters for the clauses whose value is not None."""
    parts, params = [], []
    for sql, value in clauses:
        if value is not None:
            parts.append(sql)
            params.append(value)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


class SQLiteStore(Store):
    """A Store in one SQLite file; safe to share between threads (one connection per thread)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.url_redacted = f"sqlite:///{self.path}"
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._known_chairs: set[tuple[str, str]] = set()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}; this release knows {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            for name, kind in _SESSION_ADDED:
                if name not in have:
                    db.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the schema in {self.path}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """Open ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (other options ignored)."""
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(f"a SQLite store URL is sqlite:///path/file.db, not {url!r}")
        path = url[len("sqlite:///"):].split("?", 1)[0]
        return cls(path, timeout_s=float(options.get("timeout_s") or 5.0))

    # -- connections --------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, exc: object, tb: object) -> None:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _tx(self) -> SQLiteStore._Tx:
        return self._Tx(self._db())

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        try:
            with self._tx() as db:
                db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write to {self.path} failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite query on {self.path} failed: {exc}") from exc

    # -- readings -----------------------------------------------------------------------------------------

    def write_readings(self, readings: Sequence[Reading]) -> None:
        """Write readings in one transaction; a second write of the same chair and time merges into the row."""
        if not readings:
            return
        new_chairs = {(r.site, r.chair) for r in readings} - self._known_chairs
        rows = [(r.site, r.chair, r.ts_ms, r.seq, r.hr, r.spo2, r.rr, r.sys, r.dia, r.map) for r in readings]
        try:
            with self._tx() as db:
                db.executemany(_UPSERT_READING, rows)
                if new_chairs:
                    db.executemany("INSERT OR IGNORE INTO chairs (site, chair) VALUES (?, ?)", sorted(new_chairs))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write to {self.path} failed: {exc}") from exc
        self._known_chairs |= new_chairs

    def latest(self, site: str | None = None, since_ms: int | None = None) -> list[Latest]:
        """Return each chair's newest value of every vital, walking the primary key backwards per chair."""
        where, params = _where([("site = ?", site)])
        out = []
        for chair_site, chair in self._query(f"SELECT site, chair FROM chairs{where} ORDER BY site, chair", params):
            values: dict[str, tuple[int, float]] = {}
            for vital in VITALS:
                sql = (f"SELECT ts_ms, {vital} FROM readings WHERE site = ? AND chair = ? AND {vital} IS NOT NULL"
                       + (" AND ts_ms >= ?" if since_ms is not None else "") + " ORDER BY ts_ms DESC LIMIT 1")
                args: list[object] = [chair_site, chair] + ([since_ms] if since_ms is not None else [])
                row = self._query(sql, args)
                if row:
                    values[vital] = (row[0][0], row[0][1])
            if values:
                out.append(Latest(chair_site, chair, values))
        return out

    def series(self, site: str, chair: str, start_ms: int, end_ms: int, max_points: int = 2000) -> Series:
        """Return a chair's vitals over a range, as raw rows or as buckets aligned to the epoch."""
        step = choose_step_ms(start_ms, end_ms, max_points)
        series = Series(step_ms=step)
        if step == 0:
            rows = self._query(
                f"SELECT ts_ms, {', '.join(VITALS)} FROM readings WHERE site = ? AND chair = ? AND ts_ms >= ? "
                "AND ts_ms < ? ORDER BY ts_ms", (site, chair, start_ms, end_ms))
            series.times = [row[0] for row in rows]
            for i, vital in enumerate(VITALS, start=1):
                column = [row[i] for row in rows]
                series.mean[vital], series.low[vital], series.high[vital] = column, list(column), list(column)
            return series
        aggregates = ", ".join(f"AVG({v}), MIN({v}), MAX({v})" for v in VITALS)
        rows = self._query(
            f"SELECT ts_ms - (ts_ms % ?) AS bucket, {aggregates} FROM readings WHERE site = ? AND chair = ? "
            "AND ts_ms >= ? AND ts_ms < ? GROUP BY bucket ORDER BY bucket", (step, site, chair, start_ms, end_ms))
        series.times = [row[0] for row in rows]
        for i, vital in enumerate(VITALS):
            series.mean[vital] = [row[1 + 3 * i] for row in rows]
            series.low[vital] = [row[2 + 3 * i] for row in rows]
            series.high[vital] = [row[3 + 3 * i] for row in rows]
        return series

    def readings(self, site: str, chair: str, start_ms: int, end_ms: int) -> list[Reading]:
        """Return a chair's raw readings in [start_ms, end_ms), oldest first."""
        rows = self._query(
            f"SELECT site, chair, ts_ms, {', '.join(_READING_COLS)} FROM readings "
            "WHERE site = ? AND chair = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
            (site, chair, start_ms, end_ms))
        return [Reading(*row) for row in rows]

    def count_readings(self, site: str | None = None, chair: str | None = None) -> int:
        """Return how many readings are stored (for a site, a chair, or everything)."""
        where, params = _where([("site = ?", site), ("chair = ?", chair)])
        return int(self._query(f"SELECT COUNT(*) FROM readings{where}", params)[0][0])

    # -- sessions, alarm events, audit ------------------------------------------------------------------

    def write_sessions(self, sessions: Sequence[Session]) -> None:
        """Write sessions; the same chair and start time replaces the earlier row."""
        cols = ", ".join(_SESSION_COLS)
        self._write(f"INSERT OR REPLACE INTO sessions ({cols}) VALUES ({', '.join('?' for _ in _SESSION_COLS)})",
                    [tuple(getattr(s, c) for c in _SESSION_COLS) for s in sessions])

    def sessions(self, site: str | None = None, chair: str | None = None,
                 start_ms: int | None = None, end_ms: int | None = None) -> list[Session]:
        """Return sessions that started in [start_ms, end_ms), oldest first."""
        where, params = _where([("site = ?", site), ("chair = ?", chair), ("started_at >= ?", start_ms),
                                ("started_at < ?", end_ms)])
        rows = self._query(f"SELECT {', '.join(_SESSION_COLS)} FROM sessions{where} ORDER BY started_at, site, chair",
                           params)
        return [Session(**dict(zip(_SESSION_COLS, row, strict=True))) for row in rows]

    def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        """Write alarm events; the same event (chair, time, alarm id, event) written twice is stored once."""
        cols = ", ".join(f'"{c}"' for c in _ALARM_COLS)
        self._write(f"INSERT OR IGNORE INTO alarms ({cols}) VALUES ({', '.join('?' for _ in _ALARM_COLS)})",
                    [tuple(getattr(e, c) for c in _ALARM_COLS) for e in events])

    def alarm_events(self, site: str | None = None, chair: str | None = None,
                     start_ms: int | None = None, end_ms: int | None = None) -> list[AlarmEvent]:
        """Return alarm events in [start_ms, end_ms), oldest first."""
        where, params = _where([("site = ?", site), ("chair = ?", chair), ("ts >= ?", start_ms), ("ts < ?", end_ms)])
        cols = ", ".join(f'"{c}"' for c in _ALARM_COLS)
        rows = self._query(f"SELECT {cols} FROM alarms{where} ORDER BY ts, site, chair, alarm_id, event", params)
        return [AlarmEvent(**dict(zip(_ALARM_COLS, row, strict=True))) for row in rows]

    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Write audit records; an identical record written twice (a retried batch) is stored once."""
        self._write(
            f"INSERT OR IGNORE INTO audit ({', '.join(_AUDIT_COLS)}) VALUES ({', '.join('?' for _ in _AUDIT_COLS)})",
            [tuple("" if getattr(r, c) is None else getattr(r, c) for c in _AUDIT_COLS) for r in records])

    def audit(self, site: str | None = None, start_ms: int | None = None,
              end_ms: int | None = None, user: str | None = None) -> list[AuditRecord]:
        """Return audit records in [start_ms, end_ms), oldest first."""
        where, params = _where([("site = ?", site), ("ts >= ?", start_ms), ("ts < ?", end_ms), ("user = ?", user)])
        rows = self._query(f"SELECT {', '.join(_AUDIT_COLS)} FROM audit{where} ORDER BY ts, action, user", params)
        return [AuditRecord(**{c: (None if v == "" and c not in ("action", "user") else v)
                               for c, v in zip(_AUDIT_COLS, row, strict=True)}) for row in rows]

    def write_care_records(self, records: Sequence[CareRecord]) -> None:
        """Write session-record entries; the same chair, ts and type replaces the earlier row (a re-sent record)."""
        self._write("INSERT OR REPLACE INTO care_records (site, chair, ts, type, session_id, author, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.site, r.chair, r.ts, r.type, r.session_id, r.author, r.data_json()) for r in records])

    def care_records(self, site: str, chair: str | None = None, session_id: str | None = None,
                     types: Sequence[str] | None = None, start_ms: int | None = None,
                     end_ms: int | None = None) -> list[CareRecord]:
        """Return session-record entries in [start_ms, end_ms), oldest first."""
        where, params = _where([("site = ?", site), ("chair = ?", chair), ("session_id = ?", session_id),
                                ("ts >= ?", start_ms), ("ts < ?", end_ms)])
        if types is not None:
            where += (" AND " if where else " WHERE ") + f"type IN ({', '.join('?' for _ in types)})"
            params += list(types)
        rows = self._query("SELECT site, chair, session_id, ts, type, author, data FROM care_records"
                           f"{where} ORDER BY ts, chair, type", params)
        return [CareRecord.from_stored(*row) for row in rows]

    # -- health -------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        """Return whether the database file answers a query."""
        try:
            self._query("SELECT 1")
        except StoreError:
            return False
        return True

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections.clear()
        self._local = threading.local()
