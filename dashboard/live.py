"""The live state cache: every chair's latest values, session, device status and alarms, filled from MQTT.

The live picture never waits on the store: readings, the retained session, status and alarms topics come
straight from the broker, so the overview stays current while the database is down. The paho callback only
decodes and dispatches; one bad message never stops the loop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from dashboard.state import ChairState, TileView, sort_alarms, sounding, tile_view
from vitals.limits import AdminEdit, EffectiveLimits, LimitsError
from vitals.mqtt import connect, make_client, redact
from vitals.reading import validate_payload
from vitals.records import AckCommand, ActiveAlarm, RecordError, Session, device_status
from vitals.topics import TopicError, Topics

log = logging.getLogger("dashboard.live")


# Which sites a read covers: one site, a set of sites (a user limited to sites), or None for every site.
Scope = str | frozenset[str] | None


def in_scope(site: str, scope: Scope) -> bool:
    """Return whether a site is inside a scope."""
    return scope is None or (site == scope if isinstance(scope, str) else site in scope)


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class LinkState:
    """Whether the broker and the store answer, and since when they do not."""

    broker_connected: bool
    broker_down_since: int | None
    store_available: bool
    store_down_since: int | None
    store_reason: str


class LiveState:
    """Thread-safe map of (site, chair) to ChairState; MQTT and the store write, callbacks read."""

    def __init__(self, *, no_data_ms: int = 15_000, cuff_interval_ms: int = 600_000, audio_pause_ms: int = 120_000,
                 clock: Callable[[], int] = now_ms) -> None:
        self._lock = threading.Lock()
        self._chairs: dict[tuple[str, str], ChairState] = {}
        self.no_data_ms = no_data_ms
        self.cuff_interval_ms = cuff_interval_ms
        self.audio_pause_ms = audio_pause_ms
        self.clock = clock
        self.on_new_chair: Callable[[str, str], None] | None = None
        self.broker_connected = False
        self.broker_down_since: int | None = clock()
        self.store_available = False
        self.store_down_since: int | None = clock()
        self.store_reason = "not checked yet"
        self.messages = 0
        # Change notification for the push channel (dashboard/push.py): a sequence number, the sequence at which
        # each chair last changed, and a condition the streams wait on. Its own lock: waiting never holds _lock.
        self._changes = threading.Condition(threading.Lock())
        self._change_seq = 0
        self._changed_at: dict[tuple[str, str], int] = {}
        self._closed = False

    def _touch(self, site: str, chair: str) -> None:
        """Record that a chair's tile may have changed and wake the push streams."""
        with self._changes:
            self._change_seq += 1
            self._changed_at[(site, chair)] = self._change_seq
            self._changes.notify_all()

    def change_seq(self) -> int:
        """Return the current change sequence number (a stream's starting point)."""
        with self._changes:
            return self._change_seq

    def changes_since(self, seq: int, timeout: float) -> tuple[int, list[tuple[str, str]]]:
        """Wait up to ``timeout`` s for a chair to change after ``seq``; return (new seq, the chairs changed)."""
        with self._changes:
            if self._change_seq == seq and not self._closed and timeout > 0:
                self._changes.wait(timeout)
            latest = self._change_seq
            if latest == seq:
                return seq, []
            return latest, [key for key, at in self._changed_at.items() if at > seq]

    @property
    def closed(self) -> bool:
        """Return whether the dashboard is stopping (push streams end)."""
        return self._closed

    def close(self) -> None:
        """Wake and end every push stream (the dashboard is stopping)."""
        with self._changes:
            self._closed = True
            self._changes.notify_all()

    def _chair(self, site: str, chair: str) -> ChairState:
        key = (site, chair)
        state = self._chairs.get(key)
        if state is None:
            state = self._chairs[key] = ChairState(site, chair)
            if self.on_new_chair is not None:
                try:
                    self.on_new_chair(site, chair)
                except Exception:  # a backfill hook must never stop live updates
                    log.exception("new-chair hook failed")
        return state

    def apply_payload(self, site: str, chair: str, payload: bytes, arrived_ms: int | None = None) -> int:
        """Validate a readings payload and apply its readings; return how many were taken."""
        arrived = self.clock() if arrived_ms is None else arrived_ms
        validated = validate_payload(site, chair, payload, arrived)
        if not validated.readings:
            return 0
        with self._lock:
            state = self._chair(site, chair)
            for reading in validated.readings:
                state.apply_reading(reading, arrived)
        self._touch(site, chair)
        return len(validated.readings)

    def apply_session(self, site: str, chair: str, payload: bytes) -> None:
        """Take a retained session payload (empty clears it)."""
        session = Session.from_payload(site, chair, payload) if payload.strip() else None
        with self._lock:
            self._chair(site, chair).session = session
        self._touch(site, chair)

    def apply_status(self, site: str, chair: str, payload: bytes) -> None:
        """Take a retained device status payload (empty clears it)."""
        status = device_status(payload) if payload.strip() else None
        with self._lock:
            state = self._chair(site, chair)
            state.status = status
            state.status_ms = self.clock()
        self._touch(site, chair)

    def apply_alarms(self, site: str, chair: str, payload: bytes) -> None:
        """Take a retained active-alarms payload; an unreadable one is flagged on the tile, never dropped quietly."""
        alarms: list[ActiveAlarm] = []
        error = None
        try:
            doc = json.loads(payload) if payload.strip() else []
            if not isinstance(doc, list):
                raise RecordError("alarms payload must be a JSON array")
            for item in doc:
                try:
                    alarms.append(ActiveAlarm.from_json_obj(item))
                except (RecordError, AttributeError, TypeError) as exc:
                    error = f"an alarm entry could not be read: {str(exc)[:80]}"
        except (ValueError, RecursionError) as exc:
            error = f"alarm state unreadable: {str(exc)[:80]}"
        with self._lock:
            state = self._chair(site, chair)
            if error is None or alarms:
                state.alarms = tuple(alarms)
            state.alarms_error = error
        self._touch(site, chair)
        if error:
            log.warning("chair %s/%s: %s", site, chair, error)

    def apply_limits(self, site: str, chair: str, payload: bytes) -> None:
        """Take a retained admin's alarm-limit edit (empty clears it); it is drawn only once the engine publishes it."""
        edit = AdminEdit.from_payload(payload) if payload.strip() else None
        with self._lock:
            self._chair(site, chair).limits_edit = edit

    def apply_effective_limits(self, site: str, chair: str, payload: bytes) -> None:
        """Take the retained limits the alarm engine enforces for a chair (empty: none published)."""
        error = None
        try:
            effective = EffectiveLimits.from_payload(site, chair, payload) if payload.strip() else None
        except LimitsError as exc:  # never keep drawing limits the engine may have changed since
            effective, error = None, f"effective limits unreadable: {str(exc)[:120]}"
            log.warning("chair %s/%s: %s", site, chair, error)
        with self._lock:
            state = self._chair(site, chair)
            state.effective_limits = effective
            state.limits_error = error

    def seed(self, site: str, chair: str, values: dict[str, tuple[int, float]]) -> None:
        """Take stored latest values for a chair (from the store at start-up)."""
        with self._lock:
            self._chair(site, chair).seed(values)
        self._touch(site, chair)

    def backfill(self, site: str, chair: str, points: list[tuple[int, float | None, float | None]]) -> None:
        """Add stored (ts, hr, spo2) points to a chair's sparkline, once."""
        now = self.clock()
        with self._lock:
            state = self._chair(site, chair)
            if state.backfilled:
                return
            known = set(state.spark.buckets)
            for ts, hr, spo2 in points:
                if ts - ts % state.spark.bucket_ms not in known:
                    state.spark.add(ts, hr, spo2, now)
            state.backfilled = True

    def set_broker(self, connected: bool) -> None:
        """Record whether the broker connection is up."""
        with self._lock:
            if connected:
                self.broker_down_since = None
            elif self.broker_connected or self.broker_down_since is None:
                self.broker_down_since = self.clock()
            self.broker_connected = connected

    def set_store(self, available: bool, reason: str = "") -> None:
        """Record whether the store answers."""
        with self._lock:
            if available:
                self.store_down_since = None
            elif self.store_available or self.store_down_since is None:
                self.store_down_since = self.clock()
            self.store_available = available
            self.store_reason = reason

    def links(self) -> LinkState:
        """Return the broker and store link state."""
        with self._lock:
            return LinkState(self.broker_connected, self.broker_down_since, self.store_available,
                             self.store_down_since, self.store_reason)

    def chairs(self) -> list[tuple[str, str]]:
        """Return the known (site, chair) keys in display order."""
        with self._lock:
            return sorted(self._chairs)

    def chair_state(self, site: str, chair: str) -> ChairState | None:
        """Return a chair's state object (read-only use) or None."""
        with self._lock:
            return self._chairs.get((site, chair))

    def tiles(self, site: Scope = None, now: int | None = None, with_spark: bool = True) -> list[TileView]:
        """Return every chair's tile view, ordered by site and chair id."""
        at = self.clock() if now is None else now
        with self._lock:
            states = [self._chairs[key] for key in sorted(self._chairs) if in_scope(key[0], site)]
            return [tile_view(s, at, no_data_ms=self.no_data_ms, cuff_interval_ms=self.cuff_interval_ms,
                              audio_pause_ms=self.audio_pause_ms, with_spark=with_spark) for s in states]

    def tiles_of(self, keys: list[tuple[str, str]], now: int) -> list[TileView]:
        """Return the tile views of the given known chairs (unknown keys are skipped)."""
        with self._lock:
            states = [self._chairs[key] for key in keys if key in self._chairs]
            return [tile_view(s, now, no_data_ms=self.no_data_ms, cuff_interval_ms=self.cuff_interval_ms,
                              audio_pause_ms=self.audio_pause_ms, with_spark=False) for s in states]

    def spark_points(self, site: str, chair: str, now: int | None = None) -> tuple[list, list]:
        """Return a chair's sparkline (HR, SpO2) points."""
        at = self.clock() if now is None else now
        with self._lock:
            state = self._chairs.get((site, chair))
            return state.spark.points(at) if state is not None else ([], [])

    def tile(self, site: str, chair: str, now: int | None = None) -> TileView | None:
        """Return one chair's tile view, or None when the chair is unknown."""
        at = self.clock() if now is None else now
        with self._lock:
            state = self._chairs.get((site, chair))
            if state is None:
                return None
            return tile_view(state, at, no_data_ms=self.no_data_ms, cuff_interval_ms=self.cuff_interval_ms,
                             audio_pause_ms=self.audio_pause_ms)

    def active_alarms(self, site: Scope = None) -> list[tuple[str, str, ActiveAlarm]]:
        """Return every standing alarm as (site, chair, alarm), in alarm-panel order."""
        with self._lock:
            items = [(s.site, s.chair, a) for s in self._chairs.values() if in_scope(s.site, site)
                     for a in s.alarms]
        return sort_alarms(items)

    def sounding_count(self, site: Scope = None) -> int:
        """Return how many high alarms should sound now (unacknowledged, not under an audio pause)."""
        at = self.clock()
        return sum(1 for _, _, a in self.active_alarms(site) if sounding(a, at, self.audio_pause_ms))

    def alarm_errors(self, site: Scope = None) -> list[tuple[str, str, str]]:
        """Return chairs whose alarm state could not be read."""
        with self._lock:
            return [(s.site, s.chair, s.alarms_error) for s in self._chairs.values()
                    if s.alarms_error and in_scope(s.site, site)]


class LiveFeed:
    """The dashboard's MQTT client: fills a LiveState and publishes acknowledgement and limits commands."""

    KINDS = ("vitals", "session", "status", "alarms", "limits", "effective_limits")

    def __init__(self, state: LiveState, mqtt_url: str, *, topics: Topics | None = None, site: str | None = None,
                 protocol: str = "5", client_id: str | None = None, **tls: object) -> None:
        self.state = state
        self.topics = topics or Topics()
        self.site = site
        self.url = mqtt_url
        self.client, self.target = make_client(
            mqtt_url, client_id or f"infusion-dashboard-{uuid.uuid4().hex[:10]}", protocol=protocol, **tls)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._handlers = {
            "vitals": state.apply_payload, "session": state.apply_session, "status": state.apply_status,
            "alarms": state.apply_alarms, "limits": state.apply_limits,
            "effective_limits": state.apply_effective_limits,
        }
        self._exact: dict[str, Callable[[str, bytes], None]] = {}

    def filters(self) -> list[str]:
        """Return the subscription filters, one per chair topic kind the dashboard reads."""
        return [self.topics.chair_filter(kind, self.site) for kind in self.KINDS] + list(self._exact)

    def add_kind(self, kind: str, handler: Callable[[str, str, bytes], None]) -> None:
        """Also read a chair topic kind (call before start): ``handler(site, chair, payload)`` gets its messages."""
        self.KINDS = (*self.KINDS, kind)  # type: ignore[misc]
        self._handlers[kind] = handler

    def add_topic(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Also read one exact topic (call before start): ``handler(topic, payload)`` gets its messages."""
        self._exact[topic] = handler

    def publish(self, topic: str, payload: str, *, retain: bool = False, timeout: float = 5.0) -> bool:
        """Publish a command or record (QoS 1); return whether the broker took it."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def start(self) -> None:
        """Connect in the background; reconnects are automatic."""
        connect(self.client, self.target)
        self.client.loop_start()
        log.info("live feed connecting to %s", redact(self.url))

    def stop(self) -> None:
        """Disconnect and stop the network loop."""
        self._stopping = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            self.state.set_broker(False)
            return
        client.subscribe([(f, 1) for f in self.filters()])
        self.state.set_broker(True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        self.state.set_broker(False)
        if getattr(self, "_stopping", False):
            log.info("live feed disconnected")
        else:
            log.warning("live feed disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        self.state.messages += 1
        try:
            exact = self._exact.get(msg.topic)
            if exact is not None:
                exact(msg.topic, msg.payload)
                return
            parsed = self.topics.parse_chair(msg.topic)
            handler = self._handlers.get(parsed.kind)
            if handler is not None:
                handler(parsed.site, parsed.chair, msg.payload)
        except (TopicError, RecordError, ValueError) as exc:
            log.warning("ignored %s: %s", msg.topic[:200], str(exc)[:200])
        except Exception:  # one bad message must never stop the loop
            log.exception("handler failed for %s", msg.topic[:200])

    def publish_ack(self, command: AckCommand, timeout: float = 5.0) -> bool:
        """Publish an acknowledge or audio-pause command (QoS 1); return whether the broker took it."""
        topic = self.topics.ack(command.site, command.chair)
        info = self.client.publish(topic, json.dumps(command.to_json_obj()), qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def publish_limits(self, site: str, chair: str, payload: str, timeout: float = 5.0) -> bool:
        """Publish a chair's alarm limits, retained (QoS 1); return whether the broker took it."""
        info = self.client.publish(self.topics.limits(site, chair), payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
