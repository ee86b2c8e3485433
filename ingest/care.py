"""The session-record service: the ingest's side of issue 13 (infusion events, assessments, discharge, schedule).

``IngestService`` builds it next to the alarm service and calls it from the paho network thread:
``on_session`` (a chair's session), ``on_readings`` (through the alarm service's listeners: newest cuff and SpO2),
``handle`` (a ``.../record`` message: returns the Batch to store, or refuses it). It keeps one
``vitals.session_record.SessionRecord`` per chair (the single authority), publishes its ``snapshot`` retained on
``.../record_state`` whenever it changes, and on its own wall-clock timer (like NO DATA, but woken at each item's
overdue time) raises and clears the technical alarm ``assessment_overdue`` through the alarm engine.

Its clock is the wall clock, held back to the chair's own time: the newest time the chair's data carried, advanced
by the wall time since it arrived, never ahead of the wall clock. Live, that is the wall clock (readings arrive each
second); for a replay or a demo running from the past at speed it is the replayed time, so a schedule is judged as
it was lived, not as if every replayed item were hours overdue.

Nothing is kept on disk here: the store holds every accepted record, and a session seen again (the retained
session topic, after a restart) rebuilds its record from the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ingest.spool import Batch
from vitals.care import CareRecord, CareRefusal, parse_record
from vitals.careplan import CarePlan, load_care_plan
from vitals.reading import Reading, Refusal
from vitals.records import AuditRecord, Session
from vitals.session_record import SessionRecord
from vitals.settings import Settings
from vitals.store import Store, StoreError
from vitals.topics import Topics

log = logging.getLogger("ingest.care")

# The timer wakes at least this often (and at each item's due or overdue time): overdue is raised within it.
TICK_S = 0.25
# Clock fields of the state: they change every tick and alone do not make a republication.
_CLOCKS = (("ts",), ("infusion", "elapsed_ms"), ("infusion", "remaining_ms"), ("recovery", "elapsed_ms"))

Publish = Callable[[str, bytes, int, bool], None]
Refuse = Callable[[str, list[Refusal], bytes], None]


def wall_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _shape(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the state without its running clocks (what decides whether to publish again)."""
    out = json.loads(json.dumps(doc))
    for path in _CLOCKS:
        node = out
        for key in path[:-1]:
            node = node.get(key) or {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


class CareService:
    """Session records of every chair: validate, judge, store (through the caller's Batch), publish, remind."""

    def __init__(self, settings: Settings, topics: Topics, store: Store, *, publish: Publish, refuse: Refuse,
                 overdue: Callable[[str, str, list[str]], None] | None = None,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.settings = settings
        self.topics = topics
        self.store = store
        self._publish = publish
        self._refuse = refuse
        self._overdue = overdue
        self._clock = clock
        self._plans: dict[str | None, CarePlan] = {}
        self.plan(settings.site)  # a broken care plan file stops the ingest at start, with the reason
        self._chairs: dict[tuple[str, str], SessionRecord] = {}
        self._sent: dict[tuple[str, str], dict[str, Any]] = {}
        self._overdue_sent: dict[tuple[str, str], list[str]] = {}
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}  # chair -> (newest data time, wall time it came)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, site: str | None) -> CarePlan:
        """Return the care plan of a site (the shipped one, the site file, its site table)."""
        if site not in self._plans:
            self._plans[site] = load_care_plan(self.settings.care_plan_file, site)
        return self._plans[site]

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the wall-clock timer."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="care-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- the chair's clock ------------------------------------------------------------------------------------

    def now(self, key: tuple[str, str], wall: int | None = None) -> int:
        """Return the chair's clock: its newest data time advanced by the wall time since, at most the wall clock."""
        wall = self._clock() if wall is None else wall
        seen = self._seen.get(key)
        if seen is None:
            return wall
        return min(wall, seen[0] + max(0, wall - seen[1]))

    def _observe(self, key: tuple[str, str], ts: int, wall: int) -> None:
        """Start the chair's clock at its first data time, then move it to any data time ahead of it (lock held)."""
        if key not in self._seen or ts > self.now(key, wall):
            self._seen[key] = (min(ts, wall), wall)

    # -- inputs (paho network thread) -------------------------------------------------------------------------

    def on_session(self, session: Session) -> None:
        """Take a chair's session; a new one starts its record (rebuilt from the store if it has entries)."""
        key = (session.site, session.chair)
        with self._lock:
            rec = self._chairs.get(key)
            if rec is None:
                rec = self._chairs[key] = SessionRecord(session.site, session.chair, self.plan(session.site))
                self._restore_cuff(rec)
            if rec.set_session(session):
                self._restore_records(rec)
            self._observe(key, session.started_at, self._clock())
        self._after(key)

    def on_readings(self, readings: list[Reading]) -> None:
        """Take validated readings: the newest cuff and SpO2 of chairs with a session record."""
        changed: set[tuple[str, str]] = set()
        wall = self._clock()
        with self._lock:
            chairs = self._chairs
            groups: dict[tuple[str, str], list[Reading]] = {}
            for r in readings:  # the hot path: one dict lookup per reading, the rest per chair
                key = (r.site, r.chair)
                if key in chairs:
                    groups.setdefault(key, []).append(r)
            for key, group in groups.items():
                self._observe(key, max(r.ts_ms for r in group), wall)
                if chairs[key].note_readings(group):
                    changed.add(key)
        for key in changed:
            self._after(key)

    def handle(self, site: str, chair: str, topic: str, payload: bytes) -> Batch:
        """Validate and judge one ``.../record`` message; return what to store (empty when refused)."""
        wall = self._clock()
        batch = Batch()
        try:
            record = parse_record(site, chair, payload, wall)
            with self._lock:
                rec = self._chairs.get((site, chair))
                if rec is None:
                    raise CareRefusal("no_session", f"session_id {record.session_id!r} is not the chair's current "
                                                    "session (the chair has none)")
                repeat = rec.check(record)
                if repeat:  # a re-sent record: store again (idempotent), change and audit nothing
                    batch.care.append(next(r for r in rec.records if r.ts == record.ts and r.type == record.type))
                    return batch
                self._observe((site, chair), record.ts, wall)
                if record.type == "discharge":
                    record = self._judge_discharge(rec, record, wall, topic, payload, batch)
                    if record is None:
                        return batch
                rec.apply(record)
        except CareRefusal as exc:
            self._refuse(topic, [Refusal("message", exc.reason, code=exc.code)], payload)
            return batch
        batch.care.append(record)
        action = "discharge_override" if record.data.get("accepted") == "override" else f"record.{record.type}"
        batch.audit.append(AuditRecord(ts=wall, action=action, user=record.author, site=site, chair=chair,
                                       detail=f"{record.summary()}; session {record.session_id}"[:500]))
        self._after((site, chair))
        return batch

    def _judge_discharge(self, rec: SessionRecord, record: CareRecord, wall: int, topic: str, payload: bytes,
                         batch: Batch) -> CareRecord | None:
        """Return the discharge with its criteria, or refuse it (and audit the refusal) when one fails unexcused."""
        # Judged no later than the chair's clock: a ts ahead of it cannot shorten the observation.
        at = min(record.ts, self.now((rec.site, rec.chair), wall))
        criteria = rec.criteria(at)
        unmet = [c for c in criteria if not c.met]
        override = record.data.get("override_reason")
        if unmet and not override:
            reason = "discharge refused: " + "; ".join(f"{c.id}: {c.detail}" for c in unmet)
            self._refuse(topic, [Refusal("message", reason[:500], code="discharge_refused")], payload)
            batch.audit.append(AuditRecord(ts=wall, action="discharge_refused", user=record.author, site=rec.site,
                                           chair=rec.chair, detail=f"{reason}; session {record.session_id}"[:500]))
            return None
        data = {**record.data, "criteria": [c.to_json_obj() for c in criteria],
                "accepted": "override" if unmet else "criteria"}
        return CareRecord(record.site, record.chair, record.session_id, record.ts, record.type, record.author, data)

    # -- restore from the store -------------------------------------------------------------------------------

    def _restore_records(self, rec: SessionRecord) -> None:
        assert rec.session is not None
        try:
            stored = self.store.care_records(rec.site, rec.chair, rec.session.session_id)
        except StoreError as exc:
            log.error("could not read the session record of %s/%s from the store: %s", rec.site, rec.chair, exc)
            return
        for record in stored:
            rec.apply(record)
        if stored:
            log.info("session record of %s/%s: %d entries restored", rec.site, rec.chair, len(stored))

    def _restore_cuff(self, rec: SessionRecord) -> None:
        try:
            latest = [x for x in self.store.latest(rec.site) if x.chair == rec.chair]
        except StoreError:
            return
        for found in latest:
            if "sys" in found.values:
                ts, sys = found.values["sys"]
                dia = found.values.get("dia")
                rec.last_cuff = (ts, sys, dia[1] if dia and dia[0] == ts else None)

    # -- outputs ----------------------------------------------------------------------------------------------

    def state(self, site: str, chair: str) -> dict[str, Any] | None:
        """Return a chair's state as published (None when the chair has no session record)."""
        with self._lock:
            rec = self._chairs.get((site, chair))
            return None if rec is None else rec.snapshot(self.now((site, chair)))

    def _after(self, key: tuple[str, str]) -> None:
        """Publish a chair's state if it changed, and tell the alarm engine what is overdue."""
        with self._lock:
            rec = self._chairs.get(key)
            if rec is None:
                return
            now = self.now(key)
            doc = rec.snapshot(now)
            shape = _shape(doc)
            publish = self._sent.get(key) != shape
            if publish:
                self._sent[key] = shape
            overdue = [item.label for item in rec.overdue(now)]
            alarm = self._overdue_sent.get(key) != overdue
            if alarm:
                self._overdue_sent[key] = overdue
        if publish:
            self._publish(self.topics.record_state(*key), json.dumps(doc, separators=(",", ":")).encode(), 1, True)
        if alarm and self._overdue is not None:
            self._overdue(key[0], key[1], overdue)

    def tick(self) -> float:
        """Re-judge every chair at its clock now; return seconds until the next item falls due or overdue."""
        waits: list[float] = []
        with self._lock:
            keys = list(self._chairs)
            for key, rec in self._chairs.items():
                now = self.now(key)
                upcoming = rec.next_change_ms(now)
                if upcoming is not None:
                    waits.append((upcoming - now) / 1000)
        for key in keys:
            self._after(key)
        return min([TICK_S, *(max(0.0, w) for w in waits)])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # the timer must outlive a bug in one turn, and say so
                log.exception("session-record timer turn failed")
                wait = TICK_S
            self._stop.wait(max(wait, 0.01))
