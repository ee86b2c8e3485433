"""Per-chair payload budgets: a burst passes, a sustained flood is cut to the rate, other chairs untouched."""

from __future__ import annotations

from ingest.fairness import ChairBudget


def test_a_chair_gets_its_burst_then_its_rate_and_others_are_untouched() -> None:
    budget = ChairBudget(rate_bytes_s=1000, burst_bytes=10_000)
    assert all(budget.allow("s", "flood", 1000, now=0.0) for _ in range(10))
    assert not budget.allow("s", "flood", 1000, now=0.0)
    assert budget.allow("s", "quiet", 1000, now=0.0)  # another chair has its own bucket
    assert not budget.allow("s", "flood", 1000, now=0.5)  # half a second refills 500 bytes only
    assert budget.allow("s", "flood", 1000, now=1.0)
    sent = sum(budget.allow("s", "flood", 100, now=2.0 + k / 100) for k in range(1000))  # 10 s of 10 kB/s
    assert 95 <= sent <= 115  # ~1,000 bytes/s of budget: 100-byte messages, about 10 a second


def test_a_1_hz_device_and_a_reconnect_backlog_are_never_limited_at_the_defaults() -> None:
    budget = ChairBudget(rate_bytes_s=16 * 1024, burst_bytes=1024 * 1024)
    one_reading = 90  # bytes of {"ts": ..., "seq": ..., "hr": ..., "spo2": ..., "rr": ...}
    assert all(budget.allow("s", "c", one_reading, now=0.0) for _ in range(3 * 3600))  # 3 h backlog at once
    assert all(budget.allow("s", "c", one_reading, now=100 + t) for t in range(7200))  # then 1 Hz for 2 h


def test_zero_rate_disables_and_memory_is_bounded() -> None:
    assert ChairBudget(0, 0).allow("s", "c", 10**9, now=0.0)
    budget = ChairBudget(1, 10, max_chairs=100)
    for i in range(1000):
        budget.allow("s", f"c{i}", 1, now=0.0)
    assert len(budget._buckets) <= 100
