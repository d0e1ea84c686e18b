"""The one thread that looks after every inline transfer of the process.

A transfer that runs its only connection in the caller's thread (see
:meth:`accel._engine.transfer.Transfer._run_inline`) has nobody to apply the watchdog, the
sidecar commits and the progress ticks while the caller reads: this guard calls each watched
transfer's ``guard(now)`` every ``TICK`` and ends after a second with nothing to watch.
"""

from __future__ import annotations

import threading
import time
from typing import Optional, Protocol, Set

from accel._engine.worker import TICK


class Guarded(Protocol):
    """What the guard looks after: ``guard(now)`` does one round and says whether it ended."""

    def guard(self, now: float) -> bool: ...


class _Guard:
    """The thread that looks after every inline transfer of the process, every ``TICK``
    (see :meth:`Transfer._run_inline`); it ends after a second with nothing to watch."""

    IDLE_EXIT = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: Set[Guarded] = set()
        self._thread: Optional[threading.Thread] = None

    def watch(self, transfer: Guarded) -> None:
        """Look after ``transfer`` until :meth:`forget`."""
        with self._lock:
            self._watched.add(transfer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="accel-guard", daemon=True)
                self._thread.start()

    def forget(self, transfer: Guarded) -> None:
        """Stop looking after ``transfer``."""
        with self._lock:
            self._watched.discard(transfer)

    def _run(self) -> None:
        idle = 0.0
        while True:
            time.sleep(TICK)
            if self._round():
                idle = 0.0
                continue
            idle += TICK
            with self._lock:
                if idle >= self.IDLE_EXIT and not self._watched:
                    self._thread = None
                    return

    def _round(self) -> bool:
        """Guard each watched transfer once; False if there was none. Its locals end with
        it: an idle guard keeps no ended transfer (nor its Downloader) alive."""
        with self._lock:
            watched = list(self._watched)
        now = time.monotonic()
        for transfer in watched:
            if transfer.guard(now):
                self.forget(transfer)
        return bool(watched)


#: The one guard thread of the process (started when an inline transfer needs it).
GUARD = _Guard()
