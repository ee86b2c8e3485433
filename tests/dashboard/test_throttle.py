"""The login throttle: atomic counting, bounded concurrent checks, per (user, address) delays, never a hard lock."""

from __future__ import annotations

import threading

from dashboard.throttle import (
    ADDRESS_FREE_FAILURES,
    FORGET_AFTER_S,
    MAX_CONCURRENT_CHECKS,
    MAX_DELAY_S,
    PAIR_FREE_FAILURES,
    Attempt,
    LoginThrottle,
    Refusal,
    delay_after,
)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, user: str, address: str) -> Attempt | Refusal:
    """Make one attempt that fails its password check (when admitted)."""
    attempt = throttle.admit(user, address)
    if isinstance(attempt, Attempt):
        attempt.finish(False)
    return attempt


def test_delays_double_from_the_free_failures_up_to_the_cap() -> None:
    assert [delay_after(n, 3) for n in range(1, 6)] == [0.0, 0.0, 1.0, 2.0, 4.0]
    assert delay_after(40, 3) == MAX_DELAY_S


def test_concurrent_attempts_are_counted_before_any_is_checked() -> None:
    throttle = LoginThrottle()
    barrier = threading.Barrier(30)
    results: list[Attempt | Refusal] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        got = throttle.admit("nurse.kim", "10.0.0.9")
        with lock:
            results.append(got)

    threads = [threading.Thread(target=attempt) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = [r for r in results if isinstance(r, Attempt)]
    assert len(admitted) == 1  # one check at a time per address; the rest answered at once
    # Counted at once, before any check ended: past the free failures the pair is already slowed down.
    assert throttle.failures("nurse.kim", "10.0.0.9") == PAIR_FREE_FAILURES
    assert throttle.refused == {"busy": PAIR_FREE_FAILURES - 1, "slow_down": 30 - PAIR_FREE_FAILURES}
    admitted[0].finish(False)
    assert isinstance(throttle.admit("nurse.kim", "10.0.0.9"), Refusal)  # the right password, last: refused


def test_concurrent_checks_are_bounded_across_addresses() -> None:
    throttle = LoginThrottle()
    held = [throttle.admit(f"user{i}", f"10.0.0.{i}") for i in range(MAX_CONCURRENT_CHECKS)]
    assert all(isinstance(a, Attempt) for a in held)
    over = throttle.admit("nurse.kim", "10.0.0.200")
    assert isinstance(over, Refusal) and over.reason == "busy"
    assert throttle.failures("nurse.kim", "10.0.0.200") == 0  # others filling the slots costs nurse.kim nothing
    held[0].finish(False)  # type: ignore[union-attr]
    assert isinstance(throttle.admit("nurse.kim", "10.0.0.200"), Attempt)


def test_failures_slow_their_pair_only_and_never_lock() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(PAIR_FREE_FAILURES):
        assert isinstance(fail(throttle, "nurse.kim", "10.0.0.66"), Attempt)
    slowed = throttle.admit("nurse.kim", "10.0.0.66")
    assert isinstance(slowed, Refusal) and slowed.reason == "slow_down" and slowed.retry_after_s == 1.0
    other_address = throttle.admit("nurse.kim", "10.0.0.1")  # the nurse at her station
    assert isinstance(other_address, Attempt)
    other_address.finish(True)
    other_user = throttle.admit("admin.lee", "10.0.0.66")
    assert isinstance(other_user, Attempt)
    other_user.finish(True)
    clock.now += 1.0
    assert isinstance(fail(throttle, "nurse.kim", "10.0.0.66"), Attempt)  # the delay passed: one more try
    for _ in range(40):  # an attacker keeps going: at most one try per MAX_DELAY_S, never locked for good
        clock.now += MAX_DELAY_S
        assert isinstance(fail(throttle, "nurse.kim", "10.0.0.66"), Attempt)
    assert isinstance(throttle.admit("nurse.kim", "10.0.0.66"), Refusal)
    clock.now += FORGET_AFTER_S + 1
    assert isinstance(throttle.admit("nurse.kim", "10.0.0.66"), Attempt)


def test_a_success_forgets_its_pair() -> None:
    throttle = LoginThrottle(Clock())
    for _ in range(PAIR_FREE_FAILURES - 1):
        fail(throttle, "nurse.kim", "10.0.0.5")
    ok = throttle.admit("nurse.kim", "10.0.0.5")
    assert isinstance(ok, Attempt)
    ok.finish(True)
    assert throttle.failures("nurse.kim", "10.0.0.5") == 0


def test_an_address_spraying_names_is_slowed_for_every_name_from_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(ADDRESS_FREE_FAILURES):
        assert isinstance(fail(throttle, f"guess{i}", "10.0.0.66"), Attempt)
    refused = throttle.admit("someone.new", "10.0.0.66")
    assert isinstance(refused, Refusal) and refused.reason == "slow_down"
    assert isinstance(throttle.admit("someone.new", "10.0.0.67"), Attempt)  # the next address is not


def test_the_docs_state_the_throttles_numbers() -> None:
    from pathlib import Path

    from dashboard.throttle import BASE_DELAY_S, MAX_CHECKS_PER_ADDRESS

    doc = (Path(__file__).parents[2] / "docs" / "dashboard.md").read_text()
    section = doc.split("## Login throttling", 1)[1].split("\n## ", 1)[0]
    for fact in (f"At most {MAX_CONCURRENT_CHECKS} password checks", f"at most {MAX_CHECKS_PER_ADDRESS} per client",
                 f"{PAIR_FREE_FAILURES} are free, then\n   {BASE_DELAY_S:g} s", f"up to {MAX_DELAY_S:g} s",
                 f"{ADDRESS_FREE_FAILURES} free", f"no failure for {FORGET_AFTER_S / 60:g} minutes"):
        assert fact in section, fact
