"""The local spool: durable across reopen, oldest first, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Batch, Spool, SpoolFull
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session


def batch(start: int, n: int = 3) -> Batch:
    return Batch(readings=[Reading("s", "c", start + i, start + i, hr=70.0 + i, sys=120.0, dia=80.0) for i in range(n)])


def test_batches_survive_reopen_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 10_000_000)
    for start in (100, 200, 300):
        spool.append(batch(start))
    spool.close()
    again = Spool(tmp_path / "spool.db", 10_000_000)
    assert (again.batches, again.items) == (3, 9) and again.bytes > 0
    seen = []
    while (entry := again.oldest()) is not None:
        batch_id, b = entry
        seen.append(b.readings[0].ts_ms)
        again.remove(batch_id)
    assert seen == [100, 200, 300]
    assert (again.batches, again.items, again.bytes) == (0, 0, 0)


def test_every_record_kind_round_trips(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 10_000_000)
    original = Batch(
        readings=[Reading("s", "c", 1, None, spo2=97.0)],
        sessions=[Session("s", "c", "S1", "active", 5, None, "ketamine", 0.5, 40.0, "P-1")],
        alarms=[AlarmEvent("a1", "s", "c", "hr", "physiological", "high", "raised", 150.0, 140.0, 9, None, "HR 150")],
        audit=[AuditRecord(10, "acknowledge", "nurse", "s", "c", "a1", None)],
    )
    spool.append(original)
    _, restored = spool.oldest()  # type: ignore[misc]
    assert restored == original


def test_bound_is_enforced_but_one_batch_always_fits(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", len(batch(0).to_json()) + len(batch(10).to_json()))
    spool.append(batch(0))
    spool.append(batch(10))
    with pytest.raises(SpoolFull, match="bound"):
        spool.append(batch(20))
    tiny = Spool(tmp_path / "tiny.db", 1)
    tiny.append(batch(0))  # an empty spool takes any one batch, so nothing is ever stuck
    with pytest.raises(SpoolFull):
        tiny.append(batch(1))
