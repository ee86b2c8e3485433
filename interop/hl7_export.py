"""The live HL7 exporter (``infusion-monitor hl7-export``): sessions' readings out as PCD-01 over MLLP.

Readings and sessions come from MQTT (QoS 1, a persistent session, manual acknowledgement); each MQTT message is
acknowledged only after what it caused is committed in the durable outbox (interop/outbox.py), so neither a
receiver outage nor an exporter restart loses anything. During an active session: one message per cuff cycle
(at once), one per ``hl7_numerics_interval_s`` of numerics (an interval closes when a newer reading of the chair
shows it is over, event time, at the session's end, or when the chair sent no numerics for ``hl7_close_grace_s``).
A sender thread sends the outbox in order, waits for the acknowledgement, retries with doubling backoff; a chair
whose message keeps failing (``hl7_fail_after`` attempts) or is refused (AR) gets ``state: failing`` on its
retained ``.../export`` topic, which the ingest turns into the ``export_failed`` technical alarm.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from interop.hl7 import Endpoint, PatientLookup, bucket_start, cuff_message, numerics_message, read_ack
from interop.mllp import MllpError, parse_hostport, send
from interop.outbox import Outbox
from vitals.mqtt import connect, make_client, redact, wait_connected
from vitals.reading import Reading, validate_payload
from vitals.records import ExportStatus, RecordError, Session
from vitals.settings import Settings
from vitals.topics import TopicError, Topics

log = logging.getLogger("interop.hl7_export")

# Carried readings and sent messages are kept this long in the outbox (for people looking into a complaint).
KEEP_MS = 7 * 24 * 3600 * 1000


def wall_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def endpoint_of(settings: Settings) -> Endpoint:
    """Return MSH sender and receiver names from the settings."""
    return Endpoint(settings.hl7_sending_facility, settings.hl7_receiving_application, settings.hl7_receiving_facility)


class Hl7Exporter:
    """The exporter's core: sessions and readings in, outbox rows out, a sender draining the outbox.

    ``publish_status(site, chair, status)`` publishes a chair's export health; the MQTT service passes its
    retained publish, a test may pass a list's append.
    """

    def __init__(self, settings: Settings, publish_status: Callable[[str, str, ExportStatus], None],
                 clock: Callable[[], int] = wall_ms) -> None:
        if not settings.hl7_mllp:
            raise ValueError("hl7_mllp (--mllp HOST:PORT) names no receiver")
        self.settings = settings
        self.receiver = parse_hostport(settings.hl7_mllp)
        self.interval_ms = round(settings.hl7_numerics_interval_s * 1000)
        self.endpoint = endpoint_of(settings)
        self.lookup = PatientLookup.load(settings.hl7_patient_lookup_file)
        path = settings.hl7_outbox_file or Path(settings.data_dir) / "hl7-outbox.db"
        self.outbox = Outbox(path)
        self._publish_status = publish_status
        self._clock = clock
        self._sessions: dict[tuple[str, str], list[Session]] = {}
        for session in self.outbox.sessions():
            self._remember(session)
        # chairs published as failing: kept in the outbox, so the first AA after a restart still publishes ok
        self._failing: dict[tuple[str, str], str] = self.outbox.failing()
        self._arrival: dict[tuple[str, str], int] = {}  # wall ms of each chair's newest numerics (close_due)
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    # -- inputs (MQTT thread): each returns after its outbox writes are committed ----------------------

    def _remember(self, session: Session) -> None:
        known = self._sessions.setdefault((session.site, session.chair), [])
        known[:] = [s for s in known if s.session_id != session.session_id] + [session]
        known.sort(key=lambda s: s.started_at)

    def session_of(self, reading: Reading) -> Session | None:
        """Return the session a reading belongs to (started before it and not ended before it), if any."""
        for session in reversed(self._sessions.get((reading.site, reading.chair), [])):
            if session.started_at <= reading.ts_ms and (session.ended_at is None or reading.ts_ms <= session.ended_at):
                return session
        return None

    def on_session(self, session: Session) -> None:
        """Take a session start, update or end; an end sends its last interval of numerics."""
        with self._lock:
            self.outbox.save_session(session)
            self._remember(session)
            if session.state == "ended":
                self._close(session.site, session.chair, None)
        self._wake.set()

    def on_readings(self, readings: list[Reading]) -> None:
        """Queue the cuff messages of readings in a session, keep their numerics, close intervals they end."""
        now = self._clock()
        with self._lock:
            numerics: dict[str, list[Reading]] = {}
            newest: dict[tuple[str, str], int] = {}
            for reading in readings:
                session = self.session_of(reading)
                if session is None:
                    continue  # outside any session: not exported (docs/interoperability.md)
                message = cuff_message(session, reading, self.endpoint, self.lookup)
                if message is not None:
                    self.outbox.add(message.key, message.site, message.chair, message.text, now)
                if self.interval_ms and any(getattr(reading, v) is not None for v in ("hr", "spo2", "rr")):
                    numerics.setdefault(session.session_id, []).append(reading)
                    key = (reading.site, reading.chair)
                    newest[key] = max(newest.get(key, 0), reading.ts_ms)
                    self._arrival[key] = now
            for session_id, group in numerics.items():
                self.outbox.add_numerics(session_id, group)
            for (site, chair), ts in newest.items():
                self._close(site, chair, bucket_start(ts, self.interval_ms))
        self._wake.set()

    def _close(self, site: str, chair: str, before_ms: int | None) -> None:
        """Queue a message for every interval of the chair that ends at or before ``before_ms`` (None: all)."""
        if not self.interval_ms:
            return
        groups: dict[tuple[str, int], list[Reading]] = {}
        for session_id, reading in self.outbox.open_numerics(site, chair, before_ms):
            groups.setdefault((session_id, bucket_start(reading.ts_ms, self.interval_ms)), []).append(reading)
        sessions = {s.session_id: s for s in self._sessions.get((site, chair), [])}
        now = self._clock()
        for (session_id, start), group in sorted(groups.items(), key=lambda item: item[0][1]):
            session = sessions.get(session_id)
            message = None if session is None else numerics_message(session, start, self.interval_ms, group,
                                                                    self.endpoint, self.lookup)
            ts_list = [r.ts_ms for r in group]
            if message is None:
                self.outbox.mark_numerics(site, chair, ts_list, "no-session")
            else:
                self.outbox.close_numerics(message.key, site, chair, message.text, ts_list, now)

    def close_due(self) -> None:
        """Close every open interval of a chair that sent no numerics for ``hl7_close_grace_s`` of wall clock."""
        if not self.interval_ms:
            return
        now = self._clock()
        grace = round(self.settings.hl7_close_grace_s * 1000)
        with self._lock:
            for site, chair, _ in self.outbox.chairs_with_open_numerics():
                if now - self._arrival.setdefault((site, chair), now) >= grace:
                    self._close(site, chair, None)

    # -- the sender ----------------------------------------------------------------------------------------

    def send_one(self) -> bool:
        """Send the oldest due message once; return whether one was due."""
        now = self._clock()
        item = self.outbox.next_due(now)
        if item is None:
            return False
        host, port = self.receiver
        try:
            ack = read_ack(send(host, port, item.body, self.settings.hl7_ack_timeout_s))
        except (MllpError, ValueError) as exc:
            self._failed(item, f"{exc}"[:200], now)
            return True
        if ack.code in ("AA", "CA"):
            self.outbox.done(item.id, "sent", now)
            self.sent += 1
            self._ok(item.site, item.chair, now)
        elif ack.code in ("AR", "CR"):
            reason = f"receiver {host}:{port} refused message {item.key} ({ack.code}): {ack.reason}"[:250]
            log.error("%s; kept in the outbox as refused", reason)
            self.outbox.done(item.id, "refused", now, reason)
            self._set_failing(item.site, item.chair, reason, now)
        else:
            self._failed(item, f"receiver {host}:{port} answered {ack.code}: {ack.reason}"[:200], now)
        return True

    def _failed(self, item: Any, reason: str, now: int) -> None:
        attempts = item.attempts + 1
        delay = min(self.settings.hl7_retry_backoff_s * 2 ** (attempts - 1), self.settings.hl7_retry_max_s)
        self.outbox.retry(item.id, now + round(delay * 1000), reason)
        log.warning("HL7 message %s: attempt %d failed (%s); next in %.1f s", item.key, attempts, reason, delay)
        if attempts >= self.settings.hl7_fail_after:
            for site, chair in self.outbox.pending_chairs():
                self._set_failing(site, chair, reason, now)

    def _set_failing(self, site: str, chair: str, reason: str, now: int) -> None:
        if self._failing.get((site, chair)) == reason:
            return
        self._failing[(site, chair)] = reason
        self.outbox.set_failing(site, chair, reason)
        pending = self.outbox.counts()["pending"]
        self._publish_status(site, chair, ExportStatus("hl7", "failing", now, reason, pending))

    def _ok(self, site: str, chair: str, now: int) -> None:
        # this chair, and every chair failing only because the receiver was down, is fine again
        for key in [k for k, why in self._failing.items() if k == (site, chair) or "refused" not in why]:
            del self._failing[key]
            self.outbox.set_failing(*key, None)
            self._publish_status(*key, ExportStatus("hl7", "ok", now, None, self.outbox.counts()["pending"]))

    def _run(self) -> None:
        last_housekeeping = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_housekeeping > 1.0:
                    self.close_due()
                    self.outbox.prune(self._clock() - KEEP_MS)
                    last_housekeeping = time.monotonic()
                if self.send_one():
                    continue
            except Exception:  # a bug must not stop the sender silently
                log.exception("HL7 sender")
            self._wake.wait(0.2)
            self._wake.clear()

    def start(self) -> None:
        """Start the sender thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hl7-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender (an attempt under way finishes) and close the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.hl7_ack_timeout_s + 5)
        self.outbox.close()


class Hl7ExportService:
    """The exporter on MQTT: subscribes to readings and sessions, acknowledges after the outbox commit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.client_id = settings.mqtt_client_id or "infusion-hl7-export"
        self.client, self.target = make_client(
            settings.mqtt_url or "", self.client_id, protocol=settings.mqtt_protocol, manual_ack=True,
            ca_file=settings.mqtt_ca_file, cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file,
            persistent=True)
        self.exporter = Hl7Exporter(settings, self._publish_status)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._generation = 0

    def _publish_status(self, site: str, chair: str, status: ExportStatus) -> None:
        log.log(logging.WARNING if status.state == "failing" else logging.INFO, "export %s/%s: %s %s",
                site, chair, status.state, status.reason or "")
        self.client.publish(self.topics.export(site, chair), json.dumps(status.to_json_obj()), qos=1, retain=True)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", redact(self.settings.mqtt_url or ""), reason_code)
            return
        self._generation += 1
        site = self.settings.site
        client.subscribe([(self.topics.chair_filter("session", site), 1), (self.topics.chair_filter("vitals", site), 1)])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        generation = self._generation
        try:
            parsed = self.topics.parse_chair(msg.topic)
            if parsed.kind == "session" and msg.payload:
                self.exporter.on_session(Session.from_payload(parsed.site, parsed.chair, msg.payload))
            elif parsed.kind == "vitals":
                # refusals are the ingest's to report; the exporter sends what the contract accepts
                self.exporter.on_readings(validate_payload(parsed.site, parsed.chair, msg.payload, wall_ms()).readings)
        except (TopicError, RecordError) as exc:
            log.debug("ignored %s: %s", msg.topic, exc)
        except Exception:
            log.exception("handling %s failed; not acknowledged (the broker redelivers it)", msg.topic)
            return
        if msg.qos and generation == self._generation:
            client.ack(msg.mid, msg.qos)

    def start(self) -> bool:
        """Start the sender, connect (persistent session) and return whether the connection came up in time."""
        self.exporter.start()
        connect(self.client, self.target, clean_start=False, session_expiry_s=self.settings.session_expiry_s)
        self.client.loop_start()
        return wait_connected(self.client, 10)

    def stop(self) -> None:
        """Disconnect and stop the sender."""
        self.client.disconnect()
        self.client.loop_stop()
        self.exporter.stop()
