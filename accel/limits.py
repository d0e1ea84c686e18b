"""Limits shared by connections and downloads: a global rate limit and per-host connection caps.

Both are thread-safe objects that several :class:`accel.Downloader` instances may share.
The rate limiter takes an injectable clock, so its arithmetic is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable, Optional, Union

from accel._util.units import parse_size
from accel.exceptions import UsageError


def parse_rate(text: str) -> int:
    """``"500K"`` -> 512000 bytes/s (K/M/G are powers of 1024, as in curl and wget)."""
    return parse_size(text, "rate")


class RateLimiter:
    """A token bucket for bytes, shared by every connection that uses it.

    Callers take tokens *after* receiving data (:meth:`consume`) and sleep off any debt,
    so the average rate over all threads stays at ``rate`` bytes/s while TCP flow control
    slows the senders. ``burst`` bytes may pass without waiting after an idle period.
    """

    def __init__(
        self,
        rate: Union[float, str],
        *,
        burst: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Optional[Callable[[float, Optional[threading.Event]], None]] = None,
    ) -> None:
        if isinstance(rate, str):
            rate = parse_size(rate, "rate")
        elif isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise UsageError(f"rate must be bytes per second or a text like '2M', not {rate!r}")
        if rate <= 0:
            raise UsageError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(16 * 1024, rate / 10))
        self._clock = clock
        self._wait = wait or _event_wait
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    @property
    def read_size(self) -> int:
        """A read size that keeps each wait short (about a tenth of a second of data)."""
        return max(4096, min(1024 * 1024, int(self.rate / 10)))

    def reserve(self, n: int) -> float:
        """Take ``n`` tokens now; return how many seconds the caller must wait (no sleeping)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def consume(self, n: int, cancel: Optional[threading.Event] = None) -> None:
        """Account for ``n`` bytes received; sleep as long as the budget requires."""
        delay = self.reserve(n)
        if delay > 0:
            self._wait(delay, cancel)


def _event_wait(seconds: float, cancel: Optional[threading.Event]) -> None:
    if cancel is not None:
        cancel.wait(seconds)
    else:
        time.sleep(seconds)


class SlotLease:
    """One connection slot to a host, held until :meth:`release` (idempotent)."""

    __slots__ = ("_slots", "key")

    def __init__(self, slots: HostSlots, key: str) -> None:
        self._slots: Optional[HostSlots] = slots
        self.key = key

    @property
    def held(self) -> bool:
        """Whether the slot is still held."""
        return self._slots is not None

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release(self.key)

    def __repr__(self) -> str:
        return f"SlotLease({self.key!r}, held={self.held})"


class HostSlots:
    """At most ``per_host`` live connections to one host, across every download sharing this.

    :meth:`lease` hands out :class:`SlotLease` objects: a slot is released exactly once,
    by whoever holds the lease.
    """

    def __init__(self, per_host: int) -> None:
        if isinstance(per_host, bool) or not isinstance(per_host, int) or per_host < 1:
            raise UsageError("per-host connection cap must be >= 1")
        self.per_host = per_host
        self._lock = threading.Lock()
        self._used: Counter[str] = Counter()

    def lease(self, host: str) -> Optional[SlotLease]:
        """A lease on a slot for ``host`` if one is free, else None."""
        return SlotLease(self, host) if self.try_acquire(host) else None

    def wait_lease(
        self, host: str, cancel: threading.Event, poll: float = 0.05
    ) -> Optional[SlotLease]:
        """Wait for a slot for ``host``; None if ``cancel`` is set first."""
        while True:
            lease = self.lease(host)
            if lease is not None or cancel.wait(poll):
                return lease

    def try_acquire(self, host: str) -> bool:
        """Take a slot for ``host`` if one is free."""
        with self._lock:
            if self._used[host] >= self.per_host:
                return False
            self._used[host] += 1
            return True

    def release(self, host: str) -> None:
        """Give a slot back."""
        with self._lock:
            if self._used[host] > 0:
                self._used[host] -= 1
