"""The ingest service: MQTT in, validation, alarms, batched durable writes, acknowledgement after write.

Delivery: QoS 1 on a persistent session (stable client id, session expiry), manual acknowledgement only
after a message's readings are durable (in the store, or the local spool), so a crash loses nothing: the
broker redelivers what was not acknowledged, and the store's idempotent keys make the re-write harmless.

Threads: paho's network thread only queues what it receives; ``ingest-process`` takes the queue in chunks and
makes one pass per message (topic, budget, validation; readings into one list), then hands each chunk's
readings to the alarm engine and the writer together; ``ingest-writer`` batches, writes, checkpoints the
alarm state and releases the chunk's PUBACKs in one packet. New chair topics plug in through ``_handlers``.

Python API (used by ``infusion-monitor ingest`` and by the demo)::

    service = IngestService(load_settings(...))
    service.start()          # connects, subscribes, starts the writer and the alarm service
    ...
    service.stop()           # flushes, acknowledges, saves alarm state, disconnects
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import paho.mqtt.client as paho

from ingest.fairness import ChairBudget
from ingest.metrics import HealthServer, Metrics
from ingest.origin import Origin, OriginMismatch
from ingest.spool import Batch, Spool
from ingest.writer import Item, Writer
from vitals.mqtt import ack_many, connect, make_client, redact
from vitals.reading import Reading, Refusal, fast_readings, refusals_report, validate_payload_fully
from vitals.records import AckCommand, ExportStatus, RecordError, Session, device_status
from vitals.settings import Settings
from vitals.store import Store, open_store_from, redact_url
from vitals.topics import ChairTopic, TopicError, Topics

log = logging.getLogger("ingest")

# A refusal class is logged at most once per this many seconds (with a count of what was suppressed),
# so a misconfigured device sending 10 bad messages a second cannot flood the log.
REFUSAL_LOG_EVERY_S = 10.0
# The processing thread takes at most this many received messages per turn: enough to amortise the alarm
# engine's lock, the metrics and the writer hand-off; few enough to keep a turn around a millisecond or two.
CHUNK_MAX = 500
# Parsed topics are remembered (one dict lookup instead of two regular expressions); bounded under made-up ids.
TOPIC_CACHE_MAX = 100_000


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class IngestService:
    """Consume readings, sessions, device status and commands; persist; evaluate alarms."""

    def __init__(self, settings: Settings, store: Store | None = None, *, alarms: bool = True) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.metrics = Metrics()
        self.store = store or open_store_from(settings)
        self.spool = Spool(settings.data_dir / "spool.db", int(settings.spool_max_mb * 1024 * 1024),
                           origin=Origin.from_settings(settings), fresh=settings.state_mismatch == "fresh")
        self.writer = Writer(
            self.store, self.spool, self.metrics,
            max_items=settings.batch_max_readings, max_delay_s=settings.batch_max_delay_ms / 1000,
        )
        group = settings.shared_group
        sites = settings.site_list()
        self.client_id = settings.mqtt_client_id or (
            f"infusion-ingest-{group}-{socket.gethostname()}" if group
            else f"infusion-ingest-{'+'.join(sites)[:64] if sites else 'all'}"
        )
        self.client, self.target = make_client(
            settings.mqtt_url, self.client_id, protocol=settings.mqtt_protocol, manual_ack=True, persistent=True,
            ca_file=settings.mqtt_ca_file, cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._generation = 0
        self._stopping = False
        self._connected = threading.Event()
        self._refusal_log: dict[str, list[float]] = {}
        self.budget = ChairBudget(settings.chair_rate_kib_s * 1024, settings.chair_burst_kib * 1024)
        self._limited_report: dict[tuple[str, str], list[float]] = {}  # chair -> [last report, refused since]
        self.http: HealthServer | None = None
        # paho's network thread only queues what it receives (msg, connection generation); the processing
        # thread validates, evaluates alarms and hands batches to the writer (docs/benchmarks.md, "hot path").
        self._inbox: queue.SimpleQueue[tuple[paho.MQTTMessage, int] | None] = queue.SimpleQueue()
        self._processor = threading.Thread(target=self._process_loop, name="ingest-process", daemon=True)
        self._topic_cache: dict[str, ChairTopic] = {}
        self._message_counters: dict[str, Any] = {}
        self.alarms: Any = None
        if alarms and group:
            log.warning(
                "shared subscription group %r: this replica sees only part of each chair's readings, so it runs "
                "no alarm engine; partition replicas by --site to keep alarms (docs/operations.md)", group,
            )
        elif alarms:
            from ingest.alarms.service import AlarmService

            try:
                self.alarms = AlarmService(settings, self.topics, publish=self._publish, record=self._record)
            except OriginMismatch:
                self.spool.close()
                raise
            self.writer.checkpoint = self.alarms.checkpoint
        self.care = self._care_service()

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start every worker; returns at once (connection completes in the background)."""
        self.writer.start()
        if self.alarms is not None:
            self.alarms.start()
        if self.care is not None:
            self.care.start()
        self._processor.start()
        if self.settings.http_port:
            self.http = HealthServer(self.settings.http_host, self.settings.http_port, self.metrics, self.health)
            self.http.start()
            log.info("health and metrics on http://%s:%d/healthz and /metrics", self.settings.http_host, self.http.port)
        log.info(
            "ingest %s: broker %s, store %s, spool %s (%d records waiting)", self.client_id,
            redact(self.settings.mqtt_url), self.store.url_redacted or redact_url(self.settings.store_url),
            self.spool.path, self.spool.items,
        )
        connect(self.client, self.target, clean_start=False, session_expiry_s=self.settings.session_expiry_s)
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected and subscribed; return whether that happened in time."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Flush and acknowledge everything received, save alarm state, disconnect."""
        log.info("stopping: flushing %d pending messages", self.writer.pending + self._inbox.qsize())
        if self.care is not None:
            self.care.stop()
        if self._processor.is_alive():
            self._inbox.put(None)  # what was received before this is processed and handed to the writer
            self._processor.join(30)
        if self.alarms is not None:
            self.alarms.stop()
        self.writer.stop()
        self._stopping = True
        time.sleep(0.1)  # let the network thread send the last acknowledgements before DISCONNECT
        self.client.disconnect()
        self.client.loop_stop()
        if self.http is not None:
            self.http.stop()
        self.spool.close()
        self.store.close()
        log.info("stopped")

    def health(self) -> dict[str, Any]:
        """Return the service state for /healthz."""
        connected = self._connected.is_set()
        return {
            "healthy": connected,
            "mqtt_connected": connected,
            "store_ok": self.writer.store_ok,
            "spool_items": self.spool.items,
            "pending_messages": self.writer.pending + self._inbox.qsize(),
            "client_id": self.client_id,
        }

    # -- MQTT callbacks (thin: decode, dispatch; one failing handler never stops the loop) ----------------

    def _subscriptions(self) -> list[tuple[str, int]]:
        subs = []
        for site in self.settings.site_list() or [None]:
            vitals_filter = self.topics.chair_filter("vitals", site)
            if self.settings.shared_group:
                vitals_filter = f"$share/{self.settings.shared_group}/{vitals_filter}"
            subs.append((vitals_filter, 1))
            if self.alarms is not None or not self.settings.shared_group:
                subs += [(self.topics.chair_filter(kind, site), 1)
                         for kind in ("session", "status", "ack", "limits", "export")]
            if self.care is not None:
                subs.append((self.topics.chair_filter("record", site), 1))
        return subs

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", redact(self.settings.mqtt_url), reason_code)
            return
        self._generation += 1
        client.subscribe(self._subscriptions())
        self.metrics.mqtt_connected.set(1)
        self._connected.set()
        resumed = getattr(flags, "session_present", False)
        log.info("connected to %s (%s session)", redact(self.settings.mqtt_url), "resumed" if resumed else "new")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)
        if self._stopping:
            log.info("disconnected from broker")
        else:
            log.warning("disconnected from broker (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        # paho's receive thread does nothing else for us: receiving and PUBACK sending stay prompt.
        self._inbox.put((msg, self._generation))

    # -- the processing thread: one pass per message, shared work once per chunk ---------------------------

    def _process_loop(self) -> None:
        inbox = self._inbox
        while True:
            entry = inbox.get()
            if entry is None:
                return
            chunk = [entry]
            stop = False
            try:
                while len(chunk) < CHUNK_MAX:
                    entry = inbox.get_nowait()
                    if entry is None:
                        stop = True
                        break
                    chunk.append(entry)
            except queue.Empty:
                pass
            try:
                self._process(chunk)
            except Exception:  # a bug must not stop ingestion, nor go unseen; unacknowledged = redelivered
                log.exception("processing %d received messages failed", len(chunk))
            if stop:
                return

    def _process(self, chunk: list[tuple[paho.MQTTMessage, int]]) -> None:
        """Validate a chunk of received messages in order; readings go to the alarms and the writer together.

        Vitals messages are the hot path: parsed topic from a cache, the chair's byte budget, the C fast path
        of validation (the full validation only for payloads it declines, which words the refusals), one
        list of readings and one list of packet ids per chunk. Any other kind of message goes through its
        handler in ``_handlers`` (the plug-in point for new topics), after the readings before it were handed on.
        """
        received = time.monotonic()
        now = now_ms()
        readings: list[Reading] = []
        acks: list[tuple[int, int, int]] = []  # (generation, packet id, qos) of the messages in `readings`
        counts: dict[str, int] = {}
        budget = self.budget if self.budget.enabled else None
        cache = self._topic_cache
        for msg, generation in chunk:
            topic = msg.topic
            parsed = cache.get(topic)
            if parsed is None:
                try:
                    parsed = self.topics.parse_chair(topic)
                except TopicError as exc:
                    counts["bad_topic"] = counts.get("bad_topic", 0) + 1
                    self._refuse(topic, [Refusal("message", str(exc), code="bad_topic")], msg.payload)
                    acks.append((generation, msg.mid, msg.qos))
                    continue
                if len(cache) >= TOPIC_CACHE_MAX:
                    cache.clear()
                cache[topic] = parsed
            kind = parsed.kind
            counts[kind] = counts.get(kind, 0) + 1
            if kind != "vitals":
                self._hand_on(readings, acks, received)
                readings, acks = [], []
                self._dispatch(parsed, msg, generation)
                continue
            acks.append((generation, msg.mid, msg.qos))
            payload = msg.payload
            if budget is not None and not budget.allow(parsed.site, parsed.chair, len(payload), received):
                self._rate_limited(parsed.site, parsed.chair, msg)
                continue
            try:
                found = fast_readings(parsed.site, parsed.chair, payload, now)
                if found is None:
                    result = validate_payload_fully(parsed.site, parsed.chair, payload, now)
                    if result.refusals:
                        self._refuse(topic, result.refusals, payload)
                    found = result.readings
            except Exception as exc:  # a bug must not stop ingestion, nor go unseen
                log.exception("handling a message on %s failed", topic)
                self._refuse(topic, [Refusal("message", f"internal error while handling: {type(exc).__name__}",
                                             code="internal")], payload)
                continue
            readings += found
        self._hand_on(readings, acks, received)
        for kind, n in counts.items():
            counter = self._message_counters.get(kind)
            if counter is None:
                counter = self._message_counters[kind] = self.metrics.messages.labels(kind)
            counter.inc(n)

    def _hand_on(self, readings: list[Reading], acks: list[tuple[int, int, int]], received: float) -> None:
        """Evaluate a chunk's readings, then queue them for the store with the acknowledgement of their messages."""
        if not acks:
            return
        if readings:
            self.metrics.readings_received.inc(len(readings))
            if self.alarms is not None:
                try:
                    self.alarms.on_readings(readings)
                except Exception:  # stored all the same; a broken engine is logged loudly, never hidden
                    log.exception("the alarm engine failed on %d readings; they are stored", len(readings))
        self.writer.submit(Item(Batch(readings=readings), self._acks(acks), received, messages=len(acks)))

    def _acks(self, acks: list[tuple[int, int, int]]) -> Callable[[], None]:
        def ack() -> None:
            # After a reconnect the broker redelivers what was not acknowledged, with new packet ids;
            # acknowledging an old id on the new connection would confirm the wrong message.
            current = self._generation
            ack_many(self.client, [mid for generation, mid, qos in acks if generation == current and qos == 1])
            for generation, mid, qos in acks:
                if qos == 2 and generation == current:
                    self.client.ack(mid, qos)

        return ack

    def _dispatch(self, parsed: ChairTopic, msg: paho.MQTTMessage, generation: int) -> None:
        """Run the handler of a non-vitals message (``_handlers``); it submits its own writer item."""
        ack = self._acker(msg, generation)
        try:
            handler = self._handlers[parsed.kind]
            handler(self, parsed.site, parsed.chair, msg, ack)
        except Exception as exc:  # a bug must not stop ingestion, nor go unseen
            log.exception("handling a message on %s failed", msg.topic)
            self._refuse(msg.topic, [Refusal("message", f"internal error while handling: {type(exc).__name__}",
                                             code="internal")], msg.payload)
            self.writer.submit(Item(Batch(), ack))

    def _acker(self, msg: paho.MQTTMessage, generation: int) -> Callable[[], None] | None:
        if msg.qos == 0:
            return None
        mid, qos = msg.mid, msg.qos

        def ack() -> None:
            if generation == self._generation:  # see _acks
                self.client.ack(mid, qos)

        return ack

    def _handle_session(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        batch = Batch()
        if msg.payload:  # an empty retained message clears the topic: nothing to record
            try:
                session = Session.from_payload(site, chair, msg.payload)
            except RecordError as exc:
                self._refuse(msg.topic, [Refusal("message", str(exc), code="bad_session")], msg.payload)
            else:
                batch.sessions.append(session)
                if self.alarms is not None:
                    self.alarms.on_session(session)
                if self.care is not None:
                    self.care.on_session(session)
        self.writer.submit(Item(batch, ack))

    def _handle_status(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        if msg.payload:
            try:
                status = device_status(msg.payload)
            except RecordError as exc:
                self._refuse(msg.topic, [Refusal("message", str(exc), code="bad_status")], msg.payload)
            else:
                if self.alarms is not None:
                    self.alarms.on_status(site, chair, status)
        self.writer.submit(Item(Batch(), ack))

    def _handle_ack(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        try:
            command = AckCommand.from_payload(site, chair, msg.payload)
        except RecordError as exc:
            self._refuse(msg.topic, [Refusal("message", str(exc), code="bad_command")], msg.payload)
        else:
            if self.alarms is not None:
                self.alarms.on_command(command)
        self.writer.submit(Item(Batch(), ack))

    def _handle_limits(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        if self.alarms is not None:
            from ingest.alarms.rules import RulesError

            try:
                self.alarms.on_limits(site, chair, msg.payload)
            except RulesError as exc:
                self._refuse(msg.topic, [Refusal("message", str(exc), code="bad_limits")], msg.payload)
        self.writer.submit(Item(Batch(), ack))

    def _handle_export(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        if msg.payload:  # an empty retained message clears the topic
            try:
                status = ExportStatus.from_payload(msg.payload)
            except RecordError as exc:
                self._refuse(msg.topic, [Refusal("message", str(exc), code="bad_export")], msg.payload)
            else:
                if self.alarms is not None:
                    self.alarms.on_export(site, chair, status.state == "failing")
        self.writer.submit(Item(Batch(), ack))

    def _handle_record(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        batch = self.care.handle(site, chair, msg.topic, msg.payload) if self.care is not None else Batch()
        self.writer.submit(Item(batch, ack))

    def _care_service(self) -> Any:
        """Return the session-record service (ingest/care.py), which needs the alarm engine's single authority."""
        if self.alarms is None:
            return None
        from ingest.care import CareService

        care = CareService(self.settings, self.topics, self.store, publish=self._publish, refuse=self._refuse,
                           overdue=self.alarms.on_assessment_overdue)
        self.alarms.reading_listeners.append(care.on_readings)
        return care

    def _handle_other(self, site: str, chair: str, msg: paho.MQTTMessage, ack: Callable[[], None] | None) -> None:
        self.writer.submit(Item(Batch(), ack))  # our own retained alarm arrays, if a filter ever matches them

    # How each chair topic kind other than vitals is handled (vitals take the hot path in _process). To plug in
    # a new topic: a kind in vitals.topics.CHAIR_KINDS, a filter in _subscriptions, and a handler here with this
    # signature, which submits one writer Item (its records, if any, and the ack) for each message.
    _handlers: ClassVar[dict[str, Callable[..., None]]] = {
        "session": _handle_session,
        "status": _handle_status,
        "ack": _handle_ack,
        "alarms": _handle_other,
        "limits": _handle_limits,
        "effective_limits": _handle_other,
        "export": _handle_export,
        "record": _handle_record,
        "record_state": _handle_other,
    }

    # -- outputs ------------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _record(self, events: list, audit: list, on_durable: Callable[[], None] | None = None) -> None:
        self.writer.submit(Item(Batch(alarms=list(events), audit=list(audit)), on_durable, after_checkpoint=False))

    def _rate_limited(self, site: str, chair: str, msg: paho.MQTTMessage) -> None:
        """Count a message over its chair's budget; report it (through _refuse) at most once a second per chair."""
        if len(self._limited_report) > 100_000:  # bounded under a flood of made-up chair ids
            self._limited_report.clear()
        entry = self._limited_report.setdefault((site, chair), [0.0, 0])
        entry[1] += 1
        mono = time.monotonic()
        if mono - entry[0] < 1.0:
            self.metrics.refusals.labels("message", "rate_limited").inc()
            return
        refusal = Refusal("message", f"chair over its budget of {self.settings.chair_rate_kib_s:g} KiB/s "
                                     f"(burst {self.settings.chair_burst_kib:g} KiB): {int(entry[1])} messages "
                                     "refused since the last report", code="rate_limited")
        entry[0], entry[1] = mono, 0
        self._refuse(msg.topic, [refusal], msg.payload)

    def _refuse(self, topic: str, refusals: list[Refusal], payload: bytes) -> None:
        """Report a message's refusals once on the rejected topic, count each, and log (throttled per class)."""
        now = now_ms()
        for refusal in refusals:
            self.metrics.refusals.labels(refusal.scope, refusal.code).inc()
        report = refusals_report(topic, refusals, payload, now)
        self.client.publish(self.topics.rejected, json.dumps(report), qos=1)
        first = refusals[0]
        seen = self._refusal_log.setdefault(first.code, [0.0, 0])
        mono = time.monotonic()
        if mono - seen[0] >= REFUSAL_LOG_EVERY_S:
            suppressed = f" ({int(seen[1])} more of this kind since the last line)" if seen[1] else ""
            what = {"message": "refused message", "reading": "refused reading", "vital": "dropped value"}[first.scope]
            log.warning("%s on %s: %s%s", what, topic[:200], report["reason"][:500], suppressed)
            seen[0], seen[1] = mono, 0
        else:
            seen[1] += 1
