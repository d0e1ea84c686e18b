"""Tests of accel.limits: the token-bucket RateLimiter (fake clock and wait, no sleeping),
parse_rate, and the per-host connection caps of HostSlots across threads.
"""

from __future__ import annotations

import threading
from typing import List, Optional, Tuple

import pytest

from accel.exceptions import UsageError
from accel.limits import HostSlots, RateLimiter, parse_rate
from tests.helpers import KiB, MiB, slots_in_use
from tests.servers import FakeClock


class RecordingWait:
    """A fake ``wait``: records each (seconds, cancel) and optionally advances a clock."""

    def __init__(self, clock: Optional[FakeClock] = None) -> None:
        self.calls: List[Tuple[float, Optional[threading.Event]]] = []
        self.clock = clock
        self.lock = threading.Lock()

    def __call__(self, seconds: float, cancel: Optional[threading.Event]) -> None:
        with self.lock:
            self.calls.append((seconds, cancel))
        if self.clock is not None:
            self.clock.advance(seconds)

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.calls)


def make(rate: float, burst: Optional[float], clock: FakeClock, wait: RecordingWait) -> RateLimiter:
    return RateLimiter(rate, burst=burst, clock=clock, wait=wait)


# -- reserve / consume arithmetic -------------------------------------------------------------


def test_burst_passes_without_wait_then_debt_is_rate_proportional() -> None:
    clock, wait = FakeClock(), RecordingWait()
    lim = make(1000, 500, clock, wait)
    assert lim.reserve(500) == 0.0  # the whole burst is available at once
    assert lim.reserve(100) == pytest.approx(0.1)  # 100 bytes of debt at 1000 B/s
    assert lim.reserve(200) == pytest.approx(0.3)  # debt accumulates: 300 bytes owed


def test_tokens_refill_with_time() -> None:
    clock, wait = FakeClock(), RecordingWait()
    lim = make(1000, 500, clock, wait)
    assert lim.reserve(700) == pytest.approx(0.2)  # 200 bytes owed
    clock.advance(0.2)  # the debt is paid off exactly
    assert lim.reserve(0) == pytest.approx(0.0, abs=1e-9)
    clock.advance(0.1)  # 100 tokens earned
    assert lim.reserve(100) == pytest.approx(0.0, abs=1e-9)
    assert lim.reserve(50) == pytest.approx(0.05)


def test_refill_is_capped_at_burst_after_idle() -> None:
    clock, wait = FakeClock(), RecordingWait()
    lim = make(1000, 500, clock, wait)
    lim.reserve(500)
    clock.advance(3600.0)  # a long idle period earns no more than the burst
    assert lim.reserve(500) == 0.0
    assert lim.reserve(1000) == pytest.approx(1.0)


def test_debt_accumulated_by_several_consumers() -> None:
    """Consumers at the same instant queue behind each other: each waits for all before it."""
    clock, wait = FakeClock(), RecordingWait()
    lim = make(1000, 0, clock, wait)
    delays = [lim.reserve(1000) for _ in range(4)]
    assert delays == pytest.approx([1.0, 2.0, 3.0, 4.0])
    clock.advance(2.5)  # 2500 bytes earned of 4000 owed
    assert lim.reserve(500) == pytest.approx(2.0)


def test_consume_waits_only_when_in_debt_and_passes_cancel() -> None:
    clock, wait = FakeClock(), RecordingWait()
    lim = make(1000, 1000, clock, wait)
    cancel = threading.Event()
    lim.consume(600, cancel)
    lim.consume(400, cancel)
    assert wait.calls == []  # still within the burst
    lim.consume(250, cancel)
    assert len(wait.calls) == 1
    seconds, passed = wait.calls[0]
    assert seconds == pytest.approx(0.25)
    assert passed is cancel


def test_average_rate_over_many_calls_equals_configured_rate() -> None:
    """Waiting off each debt (the fake wait moves the clock) yields exactly ``rate`` on average."""
    clock = FakeClock()
    wait = RecordingWait(clock)
    rate, burst = 200 * KiB, 20 * KiB
    lim = make(rate, burst, clock, wait)
    start = clock()
    total = 0
    for i in range(2000):
        n = 1000 + (i * 37) % 9000  # irregular read sizes
        lim.consume(n)
        total += n
    elapsed = clock() - start
    assert elapsed == pytest.approx((total - burst) / rate, rel=1e-6)
    assert total / elapsed == pytest.approx(rate, rel=0.01)


def test_defaults_burst_and_read_size() -> None:
    clock, wait = FakeClock(), RecordingWait()
    small = RateLimiter(1000, clock=clock, wait=wait)
    assert small.burst == 16 * KiB  # at least 16 KiB
    big = RateLimiter(10 * MiB, clock=clock, wait=wait)
    assert big.burst == pytest.approx(MiB)  # a tenth of a second of data
    assert small.read_size == 4096  # never below 4 KiB
    assert big.read_size == MiB  # about 0.1 s of data, at most 1 MiB
    assert RateLimiter(100 * MiB, clock=clock, wait=wait).read_size == MiB


@pytest.mark.parametrize("rate", [0, -1, -0.5])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(UsageError):
        RateLimiter(rate)


def test_thread_safety_total_wait_is_exact() -> None:
    """Many threads reserving at one frozen instant: no lost updates, debts are all distinct.

    With the clock frozen, the k-th reservation of ``n`` bytes must return exactly
    ``(k * n - burst) / rate`` (when positive), whichever thread made it.
    """
    clock = FakeClock()
    wait = RecordingWait()
    rate, burst, n = 1_000_000.0, 10_000.0, 1000
    lim = make(rate, burst, clock, wait)
    threads_n, per_thread = 8, 500
    barrier = threading.Barrier(threads_n)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            lim.consume(n)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)

    count = threads_n * per_thread
    expected = [(k * n - burst) / rate for k in range(1, count + 1) if k * n > burst]
    got = sorted(s for s, _ in wait.calls)
    assert len(got) == len(expected)
    assert got == pytest.approx(expected, abs=1e-9)
    assert wait.total == pytest.approx(sum(expected))
    # The final debt is the whole amount minus the burst, at the configured rate.
    assert max(got) == pytest.approx((count * n - burst) / rate)


def test_default_wait_returns_at_once_when_cancelled() -> None:
    """The default wait honours the cancel event instead of sleeping off the debt."""
    lim = RateLimiter(100_000, burst=0)
    cancel = threading.Event()
    cancel.set()  # an already-cancelled wait returns at once
    lim.consume(1_000_000, cancel)  # 10 s of debt, but cancelled
    # Reached here without sleeping 10 s; the debt is still recorded.
    assert lim.reserve(0) > 9.0


# -- parse_rate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("200K", 200 * 1024),
        ("200k", 200 * 1024),
        ("1M", 1024**2),
        ("2m", 2 * 1024**2),
        ("1G", 1024**3),
        ("1.5K", 1536),
        ("0.5M", 512 * 1024),
        ("2.25G", int(2.25 * 1024**3)),
        ("500KB", 500 * 1024),
        ("500KiB/s", 500 * 1024),
        (" 64K ", 64 * 1024),
    ],
)
def test_parse_rate_accepts(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "K", "abc", "10X", "1T", "-1", "-5K", "0", "0K", "0.0", "0.0001", "1,5K", "1e3", "1 2K"],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_rate(text)


def test_parse_rate_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate("fast")


# -- HostSlots --------------------------------------------------------------------------------


def test_host_slots_cap_per_host_and_release() -> None:
    slots = HostSlots(2)
    assert slots.try_acquire("a.example")
    assert slots.try_acquire("a.example")
    assert not slots.try_acquire("a.example")  # capped
    assert slots_in_use(slots, "a.example") == 2
    assert slots.try_acquire("b.example")  # another host has its own cap
    assert slots_in_use(slots, "b.example") == 1
    slots.release("a.example")
    assert slots_in_use(slots, "a.example") == 1
    assert slots.try_acquire("a.example")
    assert not slots.try_acquire("a.example")


def test_host_slots_release_never_goes_negative() -> None:
    slots = HostSlots(1)
    slots.release("x")
    assert slots_in_use(slots, "x") == 0
    assert slots.try_acquire("x")
    assert not slots.try_acquire("x")  # an extra release earlier gave no extra slot


@pytest.mark.parametrize("cap", [0, -1])
def test_host_slots_cap_must_be_positive(cap: int) -> None:
    with pytest.raises(UsageError):
        HostSlots(cap)


def test_host_slots_cap_holds_across_threads() -> None:
    cap = 3
    slots = HostSlots(cap)
    lock = threading.Lock()
    live = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}
    acquired = {"a": 0, "b": 0}
    start = threading.Barrier(16)

    def worker(host: str) -> None:
        start.wait()
        for _ in range(200):
            if not slots.try_acquire(host):
                continue
            with lock:
                live[host] += 1
                peak[host] = max(peak[host], live[host])
                acquired[host] += 1
            with lock:
                live[host] -= 1
            slots.release(host)

    threads = [threading.Thread(target=worker, args=("ab"[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    for host in "ab":
        assert 1 <= peak[host] <= cap
        assert acquired[host] > 0
        assert slots_in_use(slots, host) == 0  # every slot came back


def test_host_slots_blocked_until_released_by_another_thread() -> None:
    slots = HostSlots(1)
    assert slots.try_acquire("h")
    got = threading.Event()

    def taker() -> None:
        while not slots.try_acquire("h"):
            threading.Event().wait(0.001)
        got.set()

    t = threading.Thread(target=taker, daemon=True)
    t.start()
    assert not got.wait(0.1)  # the only slot is taken
    slots.release("h")
    assert got.wait(5)
    t.join(5)
    assert slots_in_use(slots, "h") == 1
