"""The single writer thread: batches, writes to the store or the spool, then acknowledges.

Overflow policy (docs/reliability.md):
- store up: each batch goes to the store; its messages are acknowledged after the write returns.
- store down: batches go to the durable local spool and are acknowledged; the spool drains oldest first
  once the store answers again (new batches keep going straight to the store meanwhile).
- spool full: nothing more is acknowledged. The broker's in-flight window fills, so it stops sending and
  queues for this client (bounded by its ``max_queued_messages``); ``ingest_backpressure`` is 1 and an
  error is logged every minute. Nothing is dropped by the ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.metrics import Metrics
from ingest.spool import Batch, Spool, SpoolFull
from vitals.store import Store, StoreError, StoreRejected

log = logging.getLogger("ingest.writer")

# Backoff between store retries while it is down: quick at first, at most this long.
STORE_RETRY_MAX_S = 5.0
# Spooled batches drained per loop turn, so live batches are never stuck behind a long drain.
DRAIN_PER_TURN = 4
# How often the writer looks for more items while a batch waits for its deadline. Blocking on the queue for
# each item instead would wake this thread (and hand it the GIL) once per message: 3-5 % of the CPU per
# reading at 11k readings/s (benchmarks/findings.md).
COLLECT_TICK_S = 0.005
# Acknowledgements wait for the alarm state to be saved after the messages they confirm were evaluated, so a
# crash never leaves the broker believing a reading was handled while the alarm engine forgot it. Saving is
# coalesced to at most once per this interval (12 ms of JSON at 2,000 chairs: about 6 % of a core at 200 ms).
CHECKPOINT_EVERY_S = 0.2
# ...unless the inflow has stalled: nothing new for STALL_S while at least STALL_MIN_HELD messages wait for their
# acknowledgement. That is the broker's in-flight window full: it sends nothing more until we acknowledge, so
# waiting out the batch delay and the checkpoint interval would idle a backlog drain. The window is small where
# the broker sets it: mosquitto's max_inflight_messages (default 20) for an MQTT 3.1.1 ingest, EMQX's
# max_inflight (default 32); a v5 ingest on mosquitto asks for 65,535 (vitals/mqtt.py). Then the batch is
# written and the state saved at once (at most every CHECKPOINT_MIN_GAP_S). A light load (fewer held messages)
# keeps the coalesced schedule, so a small clinic does not save its state more often than before.
STALL_S = 2 * COLLECT_TICK_S
STALL_MIN_HELD = 16
CHECKPOINT_MIN_GAP_S = 0.01


@dataclass(slots=True)
class Item:
    """One received message (or a record from the alarm service), waiting to be persisted."""

    batch: Batch
    ack: Callable[[], None] | None = None  # acknowledges the MQTT message; None for internal records
    received: float = field(default_factory=time.monotonic)
    # False for internal records whose "ack" only reports durability (the alarm outbox): called at once.
    after_checkpoint: bool = True
    messages: int = 1  # MQTT messages this item stands for (a chunk of vitals messages is one item)


class Writer:
    """Persists items in arrival order and acknowledges each only once it is durable."""

    def __init__(self, store: Store, spool: Spool, metrics: Metrics, *, max_items: int, max_delay_s: float) -> None:
        self.store = store
        self.spool = spool
        self.metrics = metrics
        self.max_items = max_items
        self.max_delay_s = max_delay_s
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._stopping = threading.Event()
        self._store_ok = True
        self._retry_at = 0.0
        self._retry_delay = 0.25
        self._held: list[Item] = []  # a batch neither store nor spool could take (back-pressure)
        # Set by the ingest when an alarm engine runs: saves its state; acks wait for it (CHECKPOINT_EVERY_S).
        self.checkpoint: Callable[[], None] | None = None
        self._awaiting: list[Item] = []  # durable, waiting for the next checkpoint to be acknowledged
        self._last_checkpoint = 0.0
        self._last_full_log = 0.0
        # Each counter is written by one thread only (submitted: the MQTT thread; done: the writer), so
        # their difference is exact where a shared "pending += / -=" would drift under load.
        self._submitted = 0
        self._done = 0
        self._update_spool_gauges()

    # -- public ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, item: Item) -> None:
        """Queue an item; never blocks (the broker's in-flight limit bounds what can be pending)."""
        self._submitted += item.messages
        self._queue.put(item)

    def stop(self, timeout: float = 30.0) -> None:
        """Persist everything queued (store or spool), acknowledge it, and stop."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("writer did not finish within %.0f s; unacknowledged messages will be redelivered", timeout)

    @property
    def pending(self) -> int:
        """Return how many submitted messages are not yet acknowledged."""
        return self._submitted - self._done

    @property
    def store_ok(self) -> bool:
        """Return whether the last store write succeeded."""
        return self._store_ok

    # -- the loop ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items, stop, stalled = self._collect()
            if self._held:
                items = self._held + items
                self._held = []
            if items:
                self._persist(items)
            self._drain()
            self._flush_awaiting(force=stop, stalled=stalled)
            if stop and not self._held:
                return
            if stop and self._held:
                # Shutting down with a full spool and no store: leave these unacknowledged for redelivery.
                log.error("stopping with %d messages not persisted; the broker will redeliver them", len(self._held))
                return

    def _collect(self) -> tuple[list[Item], bool, bool]:
        """Gather items until the batch is full, its first item is max_delay old, the inflow stalls, or stop is asked.

        Returns (items, stop, stalled); stalled: nothing arrived for STALL_S while STALL_MIN_HELD messages or more
        wait for their acknowledgement (the broker's in-flight window is full).
        """
        items: list[Item] = []
        count = 0
        idle_wait = 0.2 if (self.spool.batches or self._held) else 1.0
        if self._awaiting:
            due = self._last_checkpoint + CHECKPOINT_EVERY_S - time.monotonic()
            idle_wait = min(idle_wait, max(0.001, due), STALL_S if self.pending >= STALL_MIN_HELD else idle_wait)
        try:
            first = self._queue.get(timeout=idle_wait)
        except queue.Empty:
            return items, self._stopping.is_set(), self.pending >= STALL_MIN_HELD
        if first is None:
            return items, True, False
        items.append(first)
        count += len(first.batch)
        deadline = first.received + self.max_delay_s
        arrived = time.monotonic()
        while count < self.max_items:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                now = time.monotonic()
                if now >= deadline:
                    break
                if now - arrived >= STALL_S and self.pending >= STALL_MIN_HELD:
                    return items, False, True
                time.sleep(min(deadline - now, COLLECT_TICK_S))
                continue
            if item is None:
                return items, True, False
            arrived = time.monotonic()
            items.append(item)
            count += len(item.batch)
        return items, False, False

    def _persist(self, items: list[Item]) -> None:
        batch = Batch()
        for item in items:
            batch.extend(item.batch)
        if not len(batch):  # only refusals, status changes or commands: nothing to persist
            self._durable(items)
            return
        if self._write_store(batch):
            self.metrics.readings_stored.inc(len(batch.readings))
            self.metrics.backpressure.set(0)  # whatever was held is now in the store
            self._durable(items)
            return
        try:
            self.spool.append(batch)
        except SpoolFull as exc:
            self._held = items
            self.metrics.backpressure.set(1)
            now = time.monotonic()
            if now - self._last_full_log > 60:
                self._last_full_log = now
                log.error(
                    "store unreachable and %s: holding %d messages unacknowledged; the broker now queues for this "
                    "client up to its max_queued_messages and drops beyond it. Restore the store or raise spool_max_mb.",
                    exc, len(items),
                )
            time.sleep(0.2)
            return
        self.metrics.backpressure.set(0)
        self.metrics.spooled.inc(len(batch.readings))
        self._update_spool_gauges()
        self._durable(items)

    def _write_store(self, batch: Batch) -> bool:
        """Write a batch to the store; return False (and schedule a retry) when it is unreachable."""
        if not self._store_ok and time.monotonic() < self._retry_at:
            return False
        started = time.monotonic()
        try:
            for records, write in ((batch.readings, self.store.write_readings),
                                   (batch.sessions, self.store.write_sessions),
                                   (batch.alarms, self.store.write_alarm_events),
                                   (batch.audit, self.store.write_audit),
                                   (batch.care, self.store.write_care_records)):
                if not records:
                    continue
                try:
                    write(records)  # type: ignore[operator]
                except StoreRejected as exc:
                    # Kept for good by nobody: say so loudly and move on, or the spool would retry it forever.
                    self.metrics.store_rejected.inc(exc.dropped)
                    log.error("the store refused %d of %d records for good; they are not stored: %s",
                              exc.dropped, len(records), exc)
        except StoreError as exc:
            if self._store_ok:
                log.error("store write failed, spooling locally until it answers again: %s", exc)
            self._store_ok = False
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, STORE_RETRY_MAX_S)
            self.metrics.store_up.set(0)
            return False
        if not self._store_ok:
            log.warning("store answers again; draining %d spooled records", self.spool.items)
        self._store_ok = True
        self._retry_delay = 0.25
        self.metrics.store_up.set(1)
        self.metrics.write_latency.observe(time.monotonic() - started)
        self.metrics.batch_size.observe(len(batch.readings))
        return True

    def _drain(self) -> None:
        for _ in range(DRAIN_PER_TURN):
            if not self.spool.batches:
                return
            if not self._store_ok and time.monotonic() < self._retry_at:
                return
            entry = self.spool.oldest()
            if entry is None:
                return
            batch_id, batch = entry
            if not self._write_store(batch):
                return
            self.metrics.readings_stored.inc(len(batch.readings))
            self.spool.remove(batch_id)
            self._update_spool_gauges()
            if not self.spool.batches:
                log.warning("spool drained; all readings are in the store")

    def _durable(self, items: list[Item]) -> None:
        """Acknowledge durable items now, or after the next alarm-state checkpoint when one is set."""
        if self.checkpoint is None:
            self._acknowledge(items)
            return
        now = [item for item in items if not item.after_checkpoint]
        if now:
            self._acknowledge(now)
        self._awaiting.extend(item for item in items if item.after_checkpoint)
        self._flush_awaiting(force=False)

    def _flush_awaiting(self, force: bool, stalled: bool = False) -> None:
        """Save the alarm state (at most every CHECKPOINT_EVERY_S, or CHECKPOINT_MIN_GAP_S when the inflow has
        stalled), then acknowledge what waited for it."""
        if not self._awaiting or self.checkpoint is None:
            return
        now = time.monotonic()
        gap = CHECKPOINT_MIN_GAP_S if stalled else CHECKPOINT_EVERY_S
        if not force and now - self._last_checkpoint < gap:
            return
        try:
            self.checkpoint()
        except Exception:  # holding acks forever would stop ingestion; the readings themselves are durable
            log.exception("saving the alarm state failed; acknowledging anyway (readings are stored)")
        self._last_checkpoint = now
        items, self._awaiting = self._awaiting, []
        self._acknowledge(items)

    def _acknowledge(self, items: list[Item]) -> None:
        now = time.monotonic()
        done = 0
        for item in items:
            if item.ack is not None:
                try:
                    item.ack()
                except Exception:  # one failed ack must not stop the writer; the broker will redeliver
                    log.exception("acknowledging a message failed; it will be redelivered and stored again (idempotent)")
            self.metrics.store_lag.observe(now - item.received)  # once per item: a chunk of messages, or one
            done += item.messages
        self._done += done
        self.metrics.pending.set(self.pending)

    def _update_spool_gauges(self) -> None:
        self.metrics.spool_items.set(self.spool.items)
        self.metrics.spool_bytes.set(self.spool.bytes)
