"""The low-speed watchdog of one attempt: ``low_speed_limit`` bytes/s over ``low_speed_time``.

The download's speed is measured on a clock that runs only while a response is open and
the rate limit is not what holds it back; each connection's on the wall clock while it is
connected. The transfer owns a :class:`SpeedFloor` and calls :meth:`SpeedFloor.check` from
its run loop (or the inline worker's guard thread).
"""

from __future__ import annotations

import collections
import logging
from typing import Deque, Dict, List, Optional, Tuple

from accel._engine.scheduler import Claim, Scheduler
from accel._http.fetch import interrupt
from accel._util.units import human_rate
from accel.exceptions import AccelError, NetworkError
from accel.limits import RateLimiter
from accel.options import Options

log = logging.getLogger(__name__)

#: Samples per ``low_speed_time`` window that speeds are measured from.
SAMPLES = 16


class SpeedFloor:
    """Watches one attempt's connections against the low-speed floor (see :meth:`check`).

    ``written`` is the bytes already written when the attempt starts; ``ranged`` whether a
    connection can be replaced (a plain stream would start over from byte 0);
    ``resumable`` whether a sidecar is kept (for the error's advice).
    """

    def __init__(self, options: Options, written: int, *, ranged: bool, resumable: bool) -> None:
        self.options = options
        self.ranged = ranged
        self.resumable = resumable
        self._watched = 0.0  # when the watchdog last looked
        self._active = 0.0  # the download's clock
        self._replaced_at = float("-inf")  # on the download's clock
        self._second_chance = True  # a lone slow connection is replaced once, then it ends
        self._speed: Optional[_Window] = None
        self._written = self._received = written
        self._speeds: Dict[Claim, _Window] = {}

    def start(self, now: float) -> None:
        """Start the wall clock of the watch at ``now`` (when the workers start)."""
        self._watched = now

    def check(self, now: float, scheduler: Scheduler) -> Optional[AccelError]:
        """Look at the ``scheduler``'s live claims and bytes written; the error or None.

        A connection below the floor is replaced (it re-requests its range from where it
        stopped) when another one shows that the floor can be reached; several connections
        all below it mean a slow link or server, where a new connection would only lose the
        read in flight. A download below the floor as a whole gets one new connection if it
        has only one, and then ends: the error is returned. A replacement always has a full
        window to help; time the rate limit holds the download back does not count, nor
        time with no response open (connecting, waiting to retry: the retry policy's part).
        """
        opts = self.options
        limit = int(opts.low_speed_limit)
        if not limit:
            return None
        window = opts.low_speed_time
        elapsed, self._watched = now - self._watched, now
        live, written = scheduler.live(), scheduler.written()
        limiter = opts.limit_rate
        held = isinstance(limiter, RateLimiter) and limiter.reserve(0) > 0
        if held or not any(c.response is not None for c in live):
            self._speeds.clear()
            return None
        self._active += elapsed
        # Bytes received: a plain stream that starts over writes its first bytes again.
        self._received += max(0, written - self._written)
        self._written = written
        if self._speed is None:
            self._speed = _Window(window, self._active, self._received)
        else:
            self._speed.add(self._active, self._received)
        self._replace_slow(live, now, limit, window)
        rate = self._speed.rate(self._active, self._received)
        if rate is None:
            return None
        if rate >= limit:
            self._second_chance = True
            return None
        if self._active - self._replaced_at < window:
            return None
        if self._second_chance and len(live) == 1 and self.ranged:
            self._second_chance = False
            self._replace(live[0])
            return None
        return NetworkError(self._too_slow(limit, window))

    def _replace_slow(self, live: List[Claim], now: float, limit: int, window: float) -> None:
        """Replace the connections below the floor while another one is above it."""
        if not self.ranged:
            return  # a plain stream would start over from byte 0
        speeds: Dict[Claim, _Window] = {}
        slow: List[Claim] = []
        reachable = False
        for claim in live:
            if claim.abort:
                continue  # let go already (replaced, or lost a hedge race)
            speed = self._speeds.get(claim)
            if claim.response is None or speed is None:
                speed = _Window(window, now, claim.pos)  # timed while connected
            else:
                speed.add(now, claim.pos)
            speeds[claim] = speed
            rate = speed.rate(now, claim.pos)
            if rate is not None and rate < limit:
                slow.append(claim)
            elif (rate or 0) >= limit or claim.pos - speed.start >= limit * window:
                reachable = True
        self._speeds = speeds
        if reachable:
            for claim in slow:
                self._replace(claim)

    def _replace(self, claim: Claim) -> None:
        """Close ``claim``'s connection: its segment is claimed again from where it stopped
        (by any free worker, its own first), on a new connection."""
        log.info(
            "connection for bytes %d-%d below %s; reconnecting",
            claim.pos,
            claim.seg.end,
            human_rate(int(self.options.low_speed_limit)),
        )
        self._replaced_at = self._active
        claim.abort = True  # a let-go, not a failure: no retry is counted
        interrupt(claim.response)

    def _too_slow(self, limit: int, window: float) -> str:
        then = "state saved, run again to resume" if self.resumable else "a new run starts over"
        return (
            f"transfer too slow: below {human_rate(limit)} for {window:g} s on every "
            f"connection (--speed-limit/--speed-time); {then}"
        )


class _Window:
    """Bytes per second over the last ``span`` seconds, from samples of a growing count."""

    def __init__(self, span: float, t: float, value: int) -> None:
        self.span = span
        self.start = value
        self.samples: Deque[Tuple[float, int]] = collections.deque([(t, value)])

    def add(self, t: float, value: int) -> None:
        """Record ``value`` at ``t`` (a sample every ``span / SAMPLES`` is kept)."""
        samples = self.samples
        if t - samples[-1][0] >= self.span / SAMPLES:
            samples.append((t, value))
        while len(samples) > 1 and samples[1][0] <= t - self.span:
            samples.popleft()
        self.start = samples[0][1]

    def rate(self, t: float, value: int) -> Optional[float]:
        """The rate over the last ``span`` seconds (a little more); None before that long."""
        t0, v0 = self.samples[0]
        if t - t0 < self.span:
            return None
        return (value - v0) / (t - t0)
