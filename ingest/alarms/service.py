"""The alarm service: the engine wrapped for the ingest (locking, a ticker, MQTT output, state on disk).

``IngestService`` builds it as ``AlarmService(settings, topics, publish=..., record=...)`` and calls the
``on_*`` methods from the paho network thread. Every event is published on ``{prefix}/{site}/alarms/events``
(QoS 1), handed to ``record`` for the store, and to the notifier; a chair whose alarm list changed gets its
retained ``{prefix}/{site}/chair/{chair}/alarms`` array republished; a chair whose effective limits changed
(first seen, restored at start, a session, its baseline, an admin's edit) gets them republished, retained, on
``{prefix}/{site}/chair/{chair}/effective_limits``: the one place screens take limits from. The state is saved in
``{data_dir}/alarm_state.json`` before the ingest acknowledges messages the engine evaluated (the writer's
checkpoint, coalesced), every few seconds for wall-clock changes, and on stop. With it goes the outbox: events
published but not yet durable in the store or spool. So after a crash the engine has seen every acknowledged
reading (unacknowledged ones are redelivered), and the outbox events are recorded (idempotent in the store) and
published again: alarm events are stored exactly once and published at least once, as QoS 1 promises.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.origin import Origin, decide, enforce, set_aside
from vitals.limits import EffectiveLimits, edit_meta
from vitals.reading import Reading, format_ts
from vitals.records import AckCommand, AlarmEvent, AuditRecord, Session
from vitals.settings import Settings
from vitals.topics import Topics

from .engine import AlarmEngine, EngineConfig
from .notifier import Notice, Notifier
from .rules import RulesError, chair_overrides, load_rules

log = logging.getLogger("ingest.alarms")

# The wall clock is read once a second: no_data needs 15 s, escalation 60 s, so 1 s is fine grain enough.
TICK_S = 1.0
# Save the state this often when wall-clock changes (ticks) alone changed it, and always on stop. Changes caused
# by messages are saved by the writer's checkpoint before those messages are acknowledged (ingest/writer.py).
SAVE_EVERY_S = 5.0

Publish = Callable[[str, bytes, int, bool], None]
Record = Callable[[list[AlarmEvent], list[AuditRecord], Callable[[], None] | None], None]


def wall_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class AlarmService:
    """Thread-safe alarm engine for the ingest: inputs from MQTT, outputs to MQTT, the store and staff."""

    def __init__(self, settings: Settings, topics: Topics, *, publish: Publish, record: Record,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.settings = settings
        self.topics = topics
        self._publish = publish
        self._record = record
        self._clock = clock
        self.book = load_rules(settings.alarm_rules_file)
        self.engine = AlarmEngine(self.book, EngineConfig.from_settings(settings))
        self.state_path = Path(settings.data_dir) / "alarm_state.json"
        self.origin = Origin.from_settings(settings)
        self.state_aside = self._bind_state(fresh=settings.state_mismatch == "fresh")
        self.notifier = Notifier(settings.notify, on_failed=self._notify_failed, on_delivered=self._notify_delivered)
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._dirty = False
        self.events_published = 0
        # Events handed to the store writer and not yet durable, keyed as the store keys them.
        self._outbox: dict[tuple[str, str, str, int], AlarmEvent] = {}
        # Effective limits: the last published per chair (without its ts, to publish only on change), and the
        # admin edit each chair last had (who, when, applied or refused) from its retained .../limits.
        self._limits_sent: dict[tuple[str, str], dict[str, Any]] = {}
        self._admin_edit: dict[tuple[str, str], dict[str, Any]] = {}
        # Called with every batch of validated readings after the engine took them, outside the lock (the
        # session-record service, ingest/care.py, follows the newest cuff and SpO2 this way).
        self.reading_listeners: list[Callable[[list[Reading]], None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Restore saved state, republish every known chair's alarm list, start the notifier and the ticker."""
        with self._lock:
            self._restore()
            self._emit([], audit=[])
        self.notifier.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="alarm-ticker", daemon=True)
        self._ticker.start()
        log.info("alarm service: rules from %s, state in %s, %d chairs restored", self.book.source, self.state_path,
                 len(self.engine.chairs()))

    def stop(self) -> None:
        """Stop the ticker, let the notifier finish what is due, and save the state."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5)
        self.notifier.stop()
        self._save()

    # -- inputs (paho network thread) ---------------------------------------------------------------------

    def on_readings(self, readings: list[Reading]) -> None:
        """Evaluate validated readings."""
        with self._lock:
            self._dirty = True  # delays in progress and the newest ts are state too
            self._emit(self.engine.on_readings(readings))
        for listener in self.reading_listeners:
            listener(readings)

    def on_session(self, session: Session) -> None:
        """Take a session start, update or end."""
        with self._lock:
            self._dirty = True
            self._emit(self.engine.on_session(session, self._clock()))

    def on_status(self, site: str, chair: str, status: str) -> None:
        """Take a device status, ``online`` or ``offline``."""
        with self._lock:
            self._dirty = True
            self._emit(self.engine.on_status(site, chair, status, self._clock()))

    def on_command(self, command: AckCommand) -> None:
        """Apply an acknowledge or audio-pause command and record it in the audit trail."""
        with self._lock:
            self._dirty = True
            now = self._clock()
            events = self.engine.on_command(command, now)
            if command.action == "pause_audio":
                detail = f"audio paused until {format_ts(now + round(self.settings.audio_pause_s * 1000))}"
            elif events:
                detail = "acknowledged"
            else:
                detail = "no standing unacknowledged alarm with this id"
            audit = AuditRecord(ts=now, action=command.action, user=command.user, site=command.site,
                                chair=command.chair, alarm_id=command.alarm_id, detail=detail)
            self._emit(events, audit=[audit])

    def on_limits(self, site: str, chair: str, payload: bytes) -> None:
        """Apply a chair's alarm limits from its retained ``.../limits`` topic; raise RulesError when invalid.

        The payload is the dashboard's (docs/mqtt-contract.md): ``rules`` maps rule ids to overrides. An empty
        payload (the retained message cleared) returns the chair to the site's rules.
        """
        overrides: dict[str, dict[str, Any]] = {}
        edit: dict[str, Any] | None = None
        if payload:
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError):
                raise RulesError("limits payload is not JSON") from None
            if isinstance(doc, dict):
                user, ts = edit_meta(doc)
                edit = {"user": user, "ts": ts, "status": "applied"}
            try:
                if not isinstance(doc, dict) or not isinstance(doc.get("rules"), dict):
                    raise RulesError("limits payload needs a 'rules' object of rule overrides")
                overrides = chair_overrides(self.book, site, doc["rules"], f"limits of {site}/{chair}")
            except RulesError as exc:
                if edit is not None:  # say so on effective_limits too: the chair keeps its previous limits
                    with self._lock:
                        self._admin_edit[(site, chair)] = {**edit, "status": "refused", "reason": str(exc)[:300]}
                        self._publish_limits([(site, chair)])
                raise
        with self._lock:
            self.engine.set_chair_overrides(site, chair, overrides)
            if edit is None:
                self._admin_edit.pop((site, chair), None)
            else:
                self._admin_edit[(site, chair)] = edit
            self._publish_limits()
            self._dirty = True
        log.info("alarm limits of %s/%s: %s", site, chair,
                 ", ".join(f"{rid} {fields}" for rid, fields in overrides.items()) or "site defaults")

    def on_assessment_overdue(self, site: str, chair: str, overdue: list[str]) -> None:
        """Raise or clear a chair's ``assessment_overdue`` (labels of the overdue care-plan items; empty clears)."""
        with self._lock:
            events = self.engine.assessment_overdue(site, chair, overdue, self._clock())
            if events:
                self._dirty = True
            self._emit(events)

    def tick(self) -> None:
        """Advance the engine to the wall clock now (the ticker calls this every second)."""
        with self._lock:
            self._emit(self.engine.tick(self._clock()))

    # -- outputs --------------------------------------------------------------------------------------------

    def active_payload(self, site: str, chair: str) -> bytes:
        """Return the retained JSON array of a chair's standing alarms."""
        return json.dumps([a.to_json_obj() for a in self.engine.active(site, chair)], separators=(",", ":")).encode()

    def _emit(self, events: list[AlarmEvent], audit: list[AuditRecord] | None = None) -> None:
        """Publish, record and notify events; republish changed chairs. Call with the lock held."""
        for event in events:
            self._publish_event(event)
            self.events_published += 1
            self._notify(event)
        for site, chair in self.engine.take_changed():
            self._publish(self.topics.alarms(site, chair), self.active_payload(site, chair), 1, True)
        if events or audit:
            self._record_durably(list(events), list(audit or []))
            self._dirty = True
        self._publish_limits()

    def _publish_limits(self, also: list[tuple[str, str]] | None = None) -> None:
        """Publish, retained, the effective limits of chairs whose limits changed. Call with the lock held."""
        for site, chair in [*self.engine.take_limits_changed(), *(also or [])]:
            found = self.engine.effective_limits(site, chair)
            found["admin"] = self._admin_edit.get((site, chair))
            if self._limits_sent.get((site, chair)) == found:
                continue
            self._limits_sent[(site, chair)] = found
            doc = EffectiveLimits(site, chair, self._clock(), found["limits"], found["rules"], found["session_id"],
                                  found["admin"])
            self._publish(self.topics.effective_limits(site, chair), doc.to_payload(), 1, True)

    def _publish_event(self, event: AlarmEvent) -> None:
        """Publish one event on its site's events topic (QoS 1, not retained)."""
        self._publish(self.topics.alarm_events(event.site), json.dumps(event.to_json_obj()).encode(), 1, False)

    def _record_durably(self, events: list[AlarmEvent], audit: list[AuditRecord]) -> None:
        """Hand records to the store writer, keeping events in the outbox until the writer says they are durable."""
        keys = [(e.alarm_id, e.event, e.chair, e.ts) for e in events]
        for key, event in zip(keys, events, strict=True):
            self._outbox[key] = event

        def durable() -> None:
            with self._lock:
                for key in keys:
                    self._outbox.pop(key, None)

        self._record(events, audit, durable if keys else None)

    def checkpoint(self) -> None:
        """Save the state now if it changed (the writer calls this before acknowledging evaluated messages)."""
        if self._dirty:
            self._save()

    def _notify(self, event: AlarmEvent) -> None:
        if event.event not in ("raised", "upgraded", "escalated"):
            return
        session = self.engine.session(event.site, event.chair)
        active = session is not None and session.state == "active"
        self.notifier.submit(Notice(
            event=event,
            session_elapsed_s=(event.ts - session.started_at) / 1000 if active and session is not None else None,
            patient_ref=session.patient_ref if active and session is not None else None,
        ))

    def _notify_failed(self, event: AlarmEvent) -> None:
        with self._lock:
            self._emit(self.engine.notify_failed(event.site, event.chair, self._clock()))

    def _notify_delivered(self, event: AlarmEvent) -> None:
        with self._lock:
            self._emit(self.engine.notify_ok(event.site, event.chair, self._clock()))

    # -- ticker and state ---------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        last_save = time.monotonic()
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
                if self._dirty and time.monotonic() - last_save >= SAVE_EVERY_S:
                    self._save()
                    last_save = time.monotonic()
            except Exception:  # the ticker must outlive a bug in one turn, and say so
                log.exception("alarm ticker turn failed")

    def _save(self) -> None:
        """Write the state atomically (temporary file, fsync, rename); the lock is held only for the snapshot."""
        with self._lock:
            engine_text = self.engine.to_state_text()
            outbox = [e.to_json_obj() for e in self._outbox.values()]
            self._dirty = False
        with self._save_lock:
            try:
                self.state_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.state_path.with_suffix(".tmp")
                text = (f'{{"origin":{json.dumps(self.origin.to_json_obj(), separators=(",", ":"))},'
                        f'"engine":{engine_text},"outbox":{json.dumps(outbox, separators=(",", ":"))}}}')
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.state_path)
            except OSError as exc:
                self._dirty = True
                log.error("could not save alarm state to %s: %s", self.state_path, exc)

    def _bind_state(self, *, fresh: bool) -> Path | None:
        """Refuse a saved state of another broker, topic prefix or site (or of another store while its outbox
        holds events); with ``fresh`` move it aside instead. Return where it was moved, if it was.

        An unreadable file is left for ``_restore``, which keeps it as ``.bad`` and starts empty.
        """
        recorded: Origin | None = None
        pending = 0
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
                recorded = Origin.from_json_obj(state["origin"]) if "origin" in state else None
                pending = len(state.get("outbox", []))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None
        decision = decide(self.state_path.exists(), recorded, self.origin, always=("broker", "topic_prefix", "site"),
                          while_pending=("store",), pending=pending > 0)
        holding = f"{pending} alarm events not yet stored" if pending else ""
        if not enforce("alarm state", self.state_path, decision, recorded, self.origin, fresh=fresh, holding=holding):
            return None
        aside = set_aside(self.state_path)
        assert recorded is not None
        log.warning("alarm state %s belonged to %s: moved aside to %s (its alarms are not republished); starting "
                    "empty for %s", self.state_path, recorded.describe(decision.differs), aside,
                    self.origin.describe(decision.differs))
        return aside

    def _restore(self) -> None:
        if not self.state_path.exists():
            return
        try:
            state: Any = json.loads(self.state_path.read_text(encoding="utf-8"))
            engine_state = state.get("engine", state)  # files saved before the outbox held the engine alone
            self.engine.load_state(engine_state)
            outbox = [AlarmEvent.from_json_obj(obj) for obj in state.get("outbox", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = self.state_path.with_suffix(".bad")
            log.error("alarm state %s is unreadable (%s); starting empty, kept as %s", self.state_path, exc, bad)
            os.replace(self.state_path, bad)
            self.engine = AlarmEngine(self.book, self.engine.config)
            return
        if outbox:
            # Published before the crash, perhaps not sent and not stored: store them (idempotent), send again
            # (QoS 1 consumers dedupe on alarm_id + event), and notify again (a double beats a lost one).
            log.warning("re-sending %d alarm events that were not yet durable when the ingest stopped", len(outbox))
            for event in outbox:
                self._publish_event(event)
                self._notify(event)
            self._record_durably(outbox, [])
        self.engine.restarted(self._clock())
