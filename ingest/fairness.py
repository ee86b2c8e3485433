"""Per-chair byte budgets, so one flooding chair cannot starve the others (docs/reliability.md).

The broker delivers every chair's readings to the ingest in one queue. A device (or a compromised
gateway) publishing faster than the ingest validates would put every other chair's readings behind its
backlog. A token bucket per chair, charged with each message's payload size before it is parsed, lets a
chair send its burst (a backlog after a reconnect fits in it) and then its sustained rate, and refuses the
excess cheaply with the code ``rate_limited``.
"""

from __future__ import annotations


class ChairBudget:
    """Token buckets of payload bytes, one per (site, chair), refilled at a steady rate."""

    def __init__(self, rate_bytes_s: float, burst_bytes: float, max_chairs: int = 100_000) -> None:
        self.rate = rate_bytes_s
        self.burst = burst_bytes
        self.max_chairs = max_chairs
        self._buckets: dict[tuple[str, str], list[float]] = {}  # key -> [tokens, last refill (monotonic s)]

    @property
    def enabled(self) -> bool:
        """Return whether budgets are enforced (a rate of 0 turns them off)."""
        return self.rate > 0 and self.burst > 0

    def allow(self, site: str, chair: str, size: int, now: float) -> bool:
        """Charge ``size`` bytes to a chair at monotonic time ``now``; return False when over budget."""
        if not self.enabled:
            return True
        key = (site, chair)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_chairs:  # bounded memory under hostile chair ids
                self._buckets.clear()
            bucket = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < size:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - size
        return True
