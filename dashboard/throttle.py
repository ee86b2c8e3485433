"""Login throttling that cannot be raced and cannot be turned into a lockout of staff (docs/dashboard.md,
"Login throttling").

- An attempt is admitted and counted in one step under one lock, before its password is checked: thirty
  simultaneous attempts cannot all pass a check that runs before the failures are recorded.
- At most ``MAX_CONCURRENT_CHECKS`` password checks run at once (argon2id holds 64 MiB each), and at most one
  per client address; an attempt over either bound is answered 429 at once, never queued.
- Failures slow down the (user, address) pair that made them (an attempt refused because the same address
  already has a check running counts as one), and
  an address that fails for many names, with delays that double up to a cap: never a hard lock, and never for
  a user on another address.
- Nothing here touches a session: an existing login keeps working whatever happens at the sign-in form.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# argon2id (argon2-cffi defaults) holds 64 MiB and ~0.13 s of CPU per check on a 2-core station PC: two at
# once bound the memory of sign-in to ~128 MiB whatever arrives, and leave a core for the live screens.
MAX_CONCURRENT_CHECKS = 2
# One check at a time per client address: one address cannot take every slot from the others.
MAX_CHECKS_PER_ADDRESS = 1
# Failures of one (user, address) pair before they cost a delay: a few typos are free.
PAIR_FREE_FAILURES = 3
# Failures of one address across all names before they cost a delay (a spray of names from one place).
ADDRESS_FREE_FAILURES = 10
# The first delay, doubled at each further failure, never longer than the cap: a nurse who mistyped waits
# seconds, an attacker gets one guess per minute per pair, and nobody is ever locked out for good.
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
# A pair or address with no failure for this long starts afresh.
FORGET_AFTER_S = 15 * 60.0
# Bound on remembered keys (a spray of names from many addresses); the stalest are dropped first.
MAX_KEYS = 50_000


def delay_after(failures: int, free: int) -> float:
    """Return the wait before the next attempt after this many failures (0 while within the free ones)."""
    if failures < free:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * math.pow(2, failures - free))


@dataclass(slots=True)
class _Record:
    failures: int = 0
    not_before: float = 0.0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt was not admitted and when to try again."""

    reason: str  # "busy" (bound on concurrent checks) or "slow_down" (delay after failures)
    retry_after_s: float

    def message(self) -> str:
        """Return what the sign-in form says."""
        if self.reason == "busy":
            return "The server is checking other sign-ins; try again in a moment."
        return f"Too many failed sign-ins from here; try again in {max(1, math.ceil(self.retry_after_s))} s."


class Attempt:
    """An admitted login attempt, already counted as a failure; ``finish(True)`` clears it after a success."""

    def __init__(self, throttle: LoginThrottle, pair: str, address: str) -> None:
        self._throttle = throttle
        self.pair = pair
        self.address = address
        self._done = False

    def finish(self, success: bool) -> None:
        """Release the check slot; on success forget the pair's failures."""
        if not self._done:
            self._done = True
            self._throttle._finish(self, success)


class LoginThrottle:
    """Admits login attempts: per (user, address) and per address delays, and bounded concurrent checks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_checks: int = MAX_CONCURRENT_CHECKS) -> None:
        self.clock = clock
        self.max_checks = max_checks
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._checking = 0
        self._per_address: dict[str, int] = {}
        self.refused = {"busy": 0, "slow_down": 0}

    def admit(self, user: str, address: str) -> Attempt | Refusal:
        """Admit and count an attempt atomically, or say why not; the caller must ``finish`` an Attempt."""
        pair = f"pair:{user.lower()}|{address}"
        addr = f"addr:{address}"
        with self._lock:
            now = self.clock()
            wait = max(self._wait(pair, now), self._wait(addr, now))
            if wait > 0:
                self.refused["slow_down"] += 1
                return Refusal("slow_down", wait)
            if self._per_address.get(address, 0) >= MAX_CHECKS_PER_ADDRESS:
                # A burst from one address: counted for its pair as if checked and failed, so a burst of guesses
                # costs the delay it would have cost checked one by one (that pair only: nobody else waits).
                self._count(pair, PAIR_FREE_FAILURES, now)
                self.refused["busy"] += 1
                return Refusal("busy", 1.0)
            if self._checking >= self.max_checks:  # others' checks fill the slots: not counted against anyone
                self.refused["busy"] += 1
                return Refusal("busy", 1.0)
            self._checking += 1
            self._per_address[address] = self._per_address.get(address, 0) + 1
            self._count(pair, PAIR_FREE_FAILURES, now)
            self._count(addr, ADDRESS_FREE_FAILURES, now)
            return Attempt(self, pair, address)

    def _wait(self, key: str, now: float) -> float:
        record = self._records.get(key)
        if record is None:
            return 0.0
        if now - record.last > FORGET_AFTER_S:
            del self._records[key]
            return 0.0
        return max(0.0, record.not_before - now)

    def _count(self, key: str, free: int, now: float) -> None:
        record = self._records.get(key)
        if record is None:
            if len(self._records) >= MAX_KEYS:
                self._prune(now)
            record = self._records[key] = _Record()
        record.failures += 1
        record.last = now
        record.not_before = now + delay_after(record.failures, free)

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if now - r.last > FORGET_AFTER_S]:
            del self._records[key]
        if len(self._records) >= MAX_KEYS:
            for key in sorted(self._records, key=lambda k: self._records[k].last)[: MAX_KEYS // 2]:
                del self._records[key]

    def _finish(self, attempt: Attempt, success: bool) -> None:
        with self._lock:
            self._checking -= 1
            left = self._per_address.get(attempt.address, 1) - 1
            if left > 0:
                self._per_address[attempt.address] = left
            else:
                self._per_address.pop(attempt.address, None)
            if success:
                self._records.pop(attempt.pair, None)
                record = self._records.get(f"addr:{attempt.address}")
                if record is not None:  # the success was counted as a failure of its address: take it back
                    record.failures = max(0, record.failures - 1)
                    record.not_before = record.last + delay_after(record.failures, ADDRESS_FREE_FAILURES)

    def failures(self, user: str, address: str) -> int:
        """Return the failures counted for a (user, address) pair."""
        with self._lock:
            record = self._records.get(f"pair:{user.lower()}|{address}")
            return record.failures if record else 0

    def checking(self) -> int:
        """Return how many password checks run now."""
        with self._lock:
            return self._checking
