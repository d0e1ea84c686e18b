"""A transfer rate measured over windows of about half a second (injectable clock)."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateMeter:
    """Bytes per second of a growing byte count, updated at most every ``window`` seconds."""

    def __init__(
        self, total: int = 0, *, window: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = clock()
        self._mark = total
        self.rate = 0.0

    def update(self, total: int) -> float:
        """Record the count ``total`` now; return the current rate."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._stamp
            if elapsed >= self.window:
                self.rate = max(0.0, (total - self._mark) / elapsed)
                self._stamp, self._mark = now, total
            return self.rate
