"""Rates of growing byte counts: one estimator (:class:`RateWindow`), reused by the engine.

A :class:`RateWindow` keeps samples ``(time, count)`` of a count that only grows, and answers
the bytes per second since its oldest sample. Its ``span`` bounds how old that sample may be
(a sliding window), ``every`` how often a sample is kept; with neither, it is a mark: the
average since one moment. The times are given by the caller (an injectable clock).
:class:`RateMeter` is a thread-safe rate for displays, renewed every ``window`` seconds.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Callable, Deque, Tuple


def rate_since(t0: float, v0: int, t: float, value: int) -> float:
    """Bytes/s from ``v0`` at ``t0`` to ``value`` at ``t`` (0.0 when no time passed)."""
    elapsed = t - t0
    return (value - v0) / elapsed if elapsed > 0 else 0.0


class RateWindow:
    """Bytes per second of a growing count over about the last ``span`` seconds.

    Created with the first sample ``(t, value)``; :meth:`add` records more (one every
    ``every`` seconds is kept) and drops those older than needed: the oldest one kept is the
    newest at least ``span`` seconds old. Not thread-safe (its owner's lock, if any).
    """

    __slots__ = ("every", "samples", "span")

    def __init__(
        self, t: float, value: int, *, span: float = math.inf, every: float = math.inf
    ) -> None:
        self.span = span
        self.every = every
        self.samples: Deque[Tuple[float, int]] = collections.deque([(t, value)])

    @property
    def oldest(self) -> Tuple[float, int]:
        """The sample the rate is measured from: ``(time, value)``."""
        return self.samples[0]

    def add(self, t: float, value: int) -> None:
        """Record ``value`` at ``t``."""
        samples = self.samples
        if t - samples[-1][0] >= self.every:
            samples.append((t, value))
        while len(samples) > 1 and t - samples[1][0] >= self.span:
            samples.popleft()

    def rate(self, t: float, value: int, extra: int = 0) -> float:
        """Bytes/s from the oldest sample to ``value`` at ``t`` (0.0 when no time passed);
        ``extra`` bytes are counted as if they were in ``value`` (for an upper bound)."""
        t0, v0 = self.samples[0]
        return rate_since(t0, v0, t, value + extra)

    def full(self, t: float) -> bool:
        """Whether the oldest sample is ``span`` seconds old (a whole window is measured)."""
        return t - self.samples[0][0] >= self.span


class RateMeter:
    """Bytes per second of a growing byte count, renewed at most every ``window`` seconds
    (the average over the last whole window); thread-safe."""

    def __init__(
        self, total: int = 0, *, window: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._mark = RateWindow(clock(), total)
        self.rate = 0.0

    def update(self, total: int) -> float:
        """Record the count ``total`` now; return the current rate."""
        with self._lock:
            now = self._clock()
            if now - self._mark.oldest[0] >= self.window:
                self.rate = max(0.0, self._mark.rate(now, total))
                self._mark = RateWindow(now, total)
            return self.rate
