"""How many connections a download uses with ``connections="auto"``: a pure controller.

:class:`Autoscaler` is fed the number of connections running, the bytes written so far (and
whether the server just answered 429/503) and answers the number of connections to run: a
decision its owner (the transfer) applies to the scheduler, which keeps the count. It works
in steps of ``interval`` seconds; the rate of a step is measured after ``settle`` seconds,
once the connections it added are under way. A download starts with
:data:`~accel.options.AUTO_START` connections and, like TCP's slow start, the autoscaler
doubles them each step (4, 8, 16) while each addition pays: the total rate must grow by at
least :data:`EFFICIENCY` of what the added connections would bring if every connection were
as fast as the others (a per-connection throttle), and at least by :data:`MIN_GAIN`. The
first addition that does not pay is undone; from then on it tries one more connection every
:data:`RETRY_AFTER` seconds, and keeps it only if it pays. A step whose bytes came in bursts
with pauses between them (a server that paces each request in whole seconds, as nginx's
``limit_rate`` does: a rate over a fraction of a second between two bursts says nothing)
doubles on during the slow start (such a server paces each request: more connections pay),
and is measured over :data:`BURST_PERIOD` afterwards. A 429/503 takes one connection
away and stops the growth for as long as the scheduler holds its lower cap (it says until
when). It never goes above ``cap`` nor below one. No threads, no sockets; the clock is
injected.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Tuple

from accel._util.meter import RateWindow
from accel.options import AUTO_CAP

log = logging.getLogger(__name__)

#: Seconds per step: how long each count runs before it is judged.
INTERVAL = 0.4
#: Seconds after a change before the step's rate is measured (new requests get going).
SETTLE = 0.1
#: An addition must bring at least this share of a perfectly parallel gain...
EFFICIENCY = 0.5
#: ...and raise the total rate by at least this fraction.
MIN_GAIN = 0.1
#: Seconds at a steady count before one more connection is tried again.
RETRY_AFTER = 3.0
#: A step whose bytes came in bursts (no progress for at least this share of its time) ...
BURSTY_IDLE = 0.5
#: ... is measured over this many seconds instead: a server that paces in whole seconds
#: (nginx's ``limit_rate`` sends each second's worth at once) shows each connection's
#: rate only over a whole second, which holds exactly one of its bursts.
BURST_PERIOD = 1.0


class Autoscaler:
    """Decides the connection count of one download (see the module docstring); not
    thread-safe."""

    def __init__(
        self,
        cap: int = AUTO_CAP,
        *,
        interval: float = INTERVAL,
        settle: float = SETTLE,
        clock: Callable[[], float] = time.monotonic,
        written: int = 0,
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        if not 0 <= settle < interval:
            raise ValueError("settle must be >= 0 and shorter than interval")
        self.cap = cap
        self.interval = interval
        self.settle = settle
        self._clock = clock
        #: (count, bytes/s) of the last step judged: what the next count is compared with.
        self._base: Optional[Tuple[int, float]] = None
        self._slow_start = True  # doubling the count per step, until that fails
        self._growing = True
        self._retry_at = 0.0
        self._began = clock()  # the current step
        self._mark: Optional[RateWindow] = None  # the step's rate, once settled
        self._last = (self._began, written)  # the previous call's (time, written)
        self._idle = 0.0  # seconds of the measured step that brought no byte
        self._start = written  # the bytes written when the step began

    @property
    def growing(self) -> bool:
        """Whether the count is being raised step by step (False: holding steady)."""
        return self._growing

    def update(self, count: int, written: int, throttled_until: Optional[float] = None) -> int:
        """The count to run now, given the ``count`` running, the bytes ``written`` so far
        (never decreasing) and, if a 429/503 came since the last call, until when the
        scheduler keeps its lower cap (on this clock)."""
        now = self._clock()
        last, self._last = self._last, (now, written)
        if throttled_until is not None:
            return self._throttled(now, count, throttled_until)
        elapsed = now - self._began
        if self._mark is None:
            if elapsed >= self.settle:
                self._mark, self._idle = RateWindow(now, written), 0.0
            return count
        if written <= last[1]:
            self._idle += max(0.0, now - max(last[0], self._mark.oldest[0]))
        since = self._mark.oldest[0]
        if elapsed < self.interval or now <= since:
            return count
        rate = max(0.0, self._mark.rate(now, written))
        if self._idle < BURSTY_IDLE * (now - since) or written <= self._start:
            target = self._judge(now, count, rate)  # steady (or nothing at all)
        elif self._slow_start and self._growing and count < self.cap:
            # Bursts with pauses between them: a server pacing each request (nginx's
            # limit_rate sends each second's worth at once), where more connections pay
            # and a fraction of a second cannot tell by how much: on with the slow start.
            self._base = None
            target = count + self._step(count)
        elif now - since < BURST_PERIOD:
            return count  # measured over a whole period: one burst of each connection
        else:
            target = self._judge(now, count, rate)
        if target != count:
            log.debug("%d connections: %.0f bytes/s; now %d", count, rate, target)
            self._began, self._mark = now, None
        else:  # nothing new to wait for: the next step is measured from now
            self._began, self._mark = now - self.settle, RateWindow(now, written)
        self._idle, self._start = 0.0, written
        return target

    def _judge(self, now: float, count: int, rate: float) -> int:
        """The count after a step of ``count`` connections at ``rate`` bytes/s."""
        base = self._base
        if base is None or base[0] >= count:  # a step at a count already judged
            self._base = (count, rate)
            if count < self.cap and (self._growing or now >= self._retry_at):
                self._growing = True
                return count + self._step(count)
            return count
        before_count, before = base
        added = count - before_count
        need = max(MIN_GAIN, EFFICIENCY * added / before_count)
        if rate > 0 and rate >= before * (1 + need):
            self._base = (count, rate)
            if count < self.cap:
                return count + self._step(count)
            self._growing = False  # at the cap: nothing left to try
            self._retry_at = float("inf")
            return count
        # The addition did not pay: undo it and hold.
        self._slow_start = self._growing = False
        self._base = None  # measured again at the count we go back to
        self._retry_at = now + RETRY_AFTER
        return before_count

    def _step(self, count: int) -> int:
        step = count if self._slow_start else 1
        return min(step, self.cap - count)

    def _throttled(self, now: float, count: int, until: float) -> int:
        """The server is overloaded: one connection fewer, no growth ``until`` then."""
        self._slow_start = self._growing = False
        self._base = None
        self._retry_at = until
        self._began, self._mark = now, None
        return max(1, count - 1)
