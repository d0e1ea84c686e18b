"""The fake clock the unit tests inject instead of ``time.monotonic``."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock that only moves when told to: ``advance(dt)``, or by setting
    ``now``. Calling it returns ``now``; reads and advances are thread-safe (a fake wait on
    another thread may advance it)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self.lock:
            self.now += seconds
