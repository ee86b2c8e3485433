"""A bounded, durable local spool: where batches wait while the store is unreachable.

A SQLite file in the data directory, one row per batch, fsynced on every append (synchronous=FULL), so a
batch acknowledged to the broker after it reached the spool survives a crash. Drained oldest first.
The file records the origin (store) its batches are bound for, and never drains into another (ingest/origin.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.origin import Origin, OriginMismatch, decide, enforce, set_aside
from vitals.care import CareRecord
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session

log = logging.getLogger("ingest.spool")


@dataclass(slots=True)
class Batch:
    """What one store write carries: readings and the records that travel with them."""

    readings: list[Reading] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    care: list[CareRecord] = field(default_factory=list)  # session-record entries (ingest/care.py)

    def __len__(self) -> int:
        return len(self.readings) + len(self.sessions) + len(self.alarms) + len(self.audit) + len(self.care)

    def extend(self, other: Batch) -> None:
        """Append another batch's contents to this one."""
        self.readings.extend(other.readings)
        self.sessions.extend(other.sessions)
        self.alarms.extend(other.alarms)
        self.audit.extend(other.audit)
        self.care.extend(other.care)

    def to_json(self) -> bytes:
        """Serialise the batch for the spool."""
        return json.dumps({
            "r": [[r.site, r.chair, r.ts_ms, r.seq, r.hr, r.spo2, r.rr, r.sys, r.dia, r.map] for r in self.readings],
            "s": [_fields(s) for s in self.sessions],
            "a": [_fields(a) for a in self.alarms],
            "u": [_fields(u) for u in self.audit],
            "c": [_fields(c) | {"data": dict(c.data)} for c in self.care],
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Batch:
        """Restore a batch written by to_json."""
        doc = json.loads(body)
        return cls(
            readings=[Reading(*row) for row in doc["r"]],
            sessions=[Session(**obj) for obj in doc["s"]],
            alarms=[AlarmEvent(**obj) for obj in doc["a"]],
            audit=[AuditRecord(**obj) for obj in doc["u"]],
            care=[CareRecord(**obj) for obj in doc.get("c", [])],
        )


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class SpoolFull(Exception):
    """The spool has reached its configured bound."""


class Spool:
    """Batches kept on local disk, oldest first, bounded in bytes."""

    def __init__(self, path: Path, max_bytes: int, *, origin: Origin | None = None, fresh: bool = False) -> None:
        """Open the spool; with ``origin``, refuse one left for another store (or with ``fresh`` set it aside)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.aside: Path | None = None
        self._lock = threading.Lock()
        existed = path.exists()
        self._open()
        if origin is not None:
            self._bind(origin, existed, fresh)

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, items INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS origin (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL)")
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(items), 0), COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()
        self.batches, self.items, self.bytes = int(row[0]), int(row[1]), int(row[2])

    def _bind(self, origin: Origin, existed: bool, fresh: bool) -> None:
        """Check the recorded origin: its batches are bound for one store (docs/reliability.md)."""
        try:
            recorded = self.recorded_origin()
        except ValueError as exc:  # not written by this code: say so rather than guess where it belongs
            self._db.close()
            raise OriginMismatch(f"spool {self.path} has an unreadable origin record ({exc}); move it out of the "
                                 "data directory, or keep it and start elsewhere") from None
        decision = decide(existed, recorded, origin, always=(), while_pending=("store",), pending=self.items > 0)
        holding = f"{self.items} records not yet stored"
        try:
            move = enforce("spool", self.path, decision, recorded, origin, fresh=fresh, holding=holding)
        except OriginMismatch:
            self._db.close()
            raise
        if move:
            self._db.close()
            self.aside = set_aside(self.path)
            log.warning("spool %s held %s for %s: moved aside to %s (never drained elsewhere); starting empty for %s",
                        self.path, holding, recorded.store if recorded else "?", self.aside, origin.store)
            self._open()
        if decision.verdict != "same":
            self._db.execute("INSERT OR REPLACE INTO origin (id, body) VALUES (1, ?)", (json.dumps(origin.to_json_obj()),))

    def recorded_origin(self) -> Origin | None:
        """Return the origin recorded in the spool file, if any."""
        with self._lock:
            row = self._db.execute("SELECT body FROM origin WHERE id = 1").fetchone()
        return None if row is None else Origin.from_json_obj(json.loads(row[0]))

    def append(self, batch: Batch) -> None:
        """Store a batch durably; raise SpoolFull when it would pass the bound."""
        body = batch.to_json()
        with self._lock:
            if self.bytes + len(body) > self.max_bytes and self.batches > 0:
                raise SpoolFull(f"spool holds {self.bytes} bytes; bound is {self.max_bytes}")
            self._db.execute("INSERT INTO spool (items, body) VALUES (?, ?)", (len(batch), body))
            self.batches += 1
            self.items += len(batch)
            self.bytes += len(body)

    def oldest(self) -> tuple[int, Batch] | None:
        """Return the oldest batch and its id, or None when empty."""
        with self._lock:
            row = self._db.execute("SELECT id, body FROM spool ORDER BY id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), Batch.from_json(row[1]))

    def remove(self, batch_id: int) -> None:
        """Delete a batch once the store has it."""
        with self._lock:
            row = self._db.execute("SELECT items, LENGTH(body) FROM spool WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM spool WHERE id = ?", (batch_id,))
            self.batches -= 1
            self.items -= int(row[0])
            self.bytes -= int(row[1])
            if self.batches == 0:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the spool file."""
        with self._lock:
            self._db.close()
