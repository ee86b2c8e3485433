"""The writer's acknowledgement schedule, in process with a real SQLite store and spool (no broker needed).

The broker sends a subscriber at most its in-flight window of unacknowledged messages (mosquitto's
``max_inflight_messages`` for MQTT 3.1.1, EMQX's ``max_inflight``; a v5 client's own Receive Maximum); these tests
play that window with a feeder thread that submits a message only when an earlier one is acknowledged.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest.metrics import Metrics
from ingest.spool import Batch, Spool
from ingest.writer import CHECKPOINT_EVERY_S, STALL_MIN_HELD, Item, Writer
from vitals.reading import Reading
from vitals.store import open_store


def _reading(i: int) -> Reading:
    return Reading(site="s1", chair=f"c{i % 40}", ts_ms=1_700_000_000_000 + i, seq=i, hr=70.0)


@pytest.fixture
def writer(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    w = Writer(store, Spool(tmp_path / "spool.db", 10_000_000), Metrics(), max_items=5000, max_delay_s=0.05)
    w.checkpoints = 0  # type: ignore[attr-defined]

    def checkpoint() -> None:
        w.checkpoints += 1  # type: ignore[attr-defined]

    w.checkpoint = checkpoint
    w.start()
    yield w
    w.stop()
    store.close()


def _feed_window(writer: Writer, window: int, seconds: float) -> int:
    """Keep ``window`` messages unacknowledged, as the broker does for a backlog; return how many were acked."""
    free = threading.Semaphore(window)
    acked = [0]
    lock = threading.Lock()

    def ack() -> None:
        with lock:
            acked[0] += 1
        free.release()

    i = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if free.acquire(timeout=0.05):
            writer.submit(Item(Batch(readings=[_reading(i)]), ack=ack))
            i += 1
    with lock:
        return acked[0]


def test_a_full_in_flight_window_is_acknowledged_without_waiting_out_the_checkpoint_interval(writer: Writer) -> None:
    # The broker's window is full and sends nothing more until we acknowledge: the writer must notice the stall
    # and save the state then, not after the 50 ms batch delay and the 200 ms checkpoint interval. On the old
    # schedule each round trip of the window took about CHECKPOINT_EVERY_S: ~5 windows a second.
    window = 2 * STALL_MIN_HELD
    seconds = 2.0
    acked = _feed_window(writer, window, seconds)
    old_schedule = window * seconds / CHECKPOINT_EVERY_S
    assert acked >= 3 * old_schedule, f"{acked} acked in {seconds} s behind a {window}-message window"
    assert writer.checkpoints >= 3 * seconds / CHECKPOINT_EVERY_S  # type: ignore[attr-defined]


def test_a_light_load_keeps_the_coalesced_checkpoint_schedule(writer: Writer) -> None:
    # A few chairs at a time (fewer held messages than STALL_MIN_HELD): saves stay at one per CHECKPOINT_EVERY_S,
    # whatever the gaps between messages, so a small clinic does not fsync its state more often than before.
    acked = []
    seconds = 1.0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        writer.submit(Item(Batch(readings=[_reading(i)]), ack=lambda: acked.append(1)))
        i += 1
        time.sleep(0.02)
    assert writer.checkpoints <= seconds / CHECKPOINT_EVERY_S + 2  # type: ignore[attr-defined]
    deadline = time.monotonic() + 2
    while len(acked) < i and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acked) == i  # and nothing is left unacknowledged
