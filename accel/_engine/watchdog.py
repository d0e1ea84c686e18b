"""The low-speed watchdog of one attempt: ``low_speed_limit`` bytes/s over ``low_speed_time``.

The download's speed is measured on a clock that runs only while a response is open and
the rate limit is not what holds it back; each connection's on the wall clock while it is
connected. The transfer owns a :class:`SpeedFloor`, calls :meth:`SpeedFloor.check` from its
run loop (or the inline worker's guard thread) with views of the live claims, and applies
the :class:`Verdict`: it replaces the slow connections, or ends the attempt with the error.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from accel._engine.views import ClaimView
from accel._util.meter import RateWindow
from accel._util.units import human_rate
from accel.exceptions import AccelError, NetworkError

log = logging.getLogger(__name__)

#: Samples per ``low_speed_time`` window that speeds are measured from.
SAMPLES = 16


class Verdict(NamedTuple):
    """What the watchdog decided: connections to replace (each lets go and its segment is
    claimed again from where it stopped, on a new connection), or the error that ends the
    attempt."""

    replace: List[ClaimView]
    error: Optional[AccelError] = None


#: Nothing to do.
FINE = Verdict([])


class SpeedFloor:
    """Watches one attempt's connections against the low-speed floor (see :meth:`check`).

    ``limit`` is the floor in bytes/s (0: none) over ``window`` seconds; ``written`` the
    bytes already written when the attempt starts; ``ranged`` whether a connection can be
    replaced (a plain stream would start over from byte 0); ``resumable`` whether a sidecar
    is kept (for the error's advice).
    """

    def __init__(
        self, limit: int, window: float, written: int, *, ranged: bool, resumable: bool
    ) -> None:
        self.limit = limit
        self.window = window
        self.ranged = ranged
        self.resumable = resumable
        self._watched = 0.0  # when the watchdog last looked
        self._active = 0.0  # the download's clock
        self._replaced_at = float("-inf")  # on the download's clock
        self._second_chance = True  # a lone slow connection is replaced once, then it ends
        self._speed: Optional[RateWindow] = None
        self._written = self._received = written
        self._speeds: Dict[Any, RateWindow] = {}  # by claim

    def start(self, now: float) -> None:
        """Start the wall clock of the watch at ``now`` (when the workers start)."""
        self._watched = now

    def check(
        self, now: float, live: Sequence[ClaimView], written: int, *, held: bool = False
    ) -> Verdict:
        """Look at the ``live`` claims and the bytes ``written``; what to do.

        A connection below the floor is replaced when another one shows that the floor can
        be reached; several connections all below it mean a slow link or server, where a new
        connection would only lose the read in flight. A download below the floor as a whole
        gets one new connection if it has only one, and then ends: the verdict has the error.
        A replacement always has a full window to help; time the rate limit holds the
        download back (``held``) does not count, nor time with no response open (connecting,
        waiting to retry: the retry policy's part).
        """
        limit = self.limit
        if not limit:
            return FINE
        window = self.window
        elapsed, self._watched = now - self._watched, now
        if held or not any(c.connected for c in live):
            self._speeds.clear()
            return FINE
        self._active += elapsed
        # Bytes received: a plain stream that starts over writes its first bytes again.
        self._received += max(0, written - self._written)
        self._written = written
        if self._speed is None:
            self._speed = self._window(self._active, self._received)
        else:
            self._speed.add(self._active, self._received)
        replace = self._slow(live, now)
        speed = self._speed
        if not speed.full(self._active):
            return Verdict(replace)
        if speed.rate(self._active, self._received) >= limit:
            self._second_chance = True
            return Verdict(replace)
        if replace or self._active - self._replaced_at < window:
            return Verdict(replace)
        if self._second_chance and len(live) == 1 and self.ranged:
            self._second_chance = False
            return Verdict(self._replace([live[0]]))
        return Verdict([], NetworkError(self._too_slow()))

    def _window(self, t: float, value: int) -> RateWindow:
        return RateWindow(t, value, span=self.window, every=self.window / SAMPLES)

    def _slow(self, live: Sequence[ClaimView], now: float) -> List[ClaimView]:
        """The connections below the floor, if another one is above it."""
        if not self.ranged:
            return []  # a plain stream would start over from byte 0
        limit = self.limit
        speeds: Dict[Any, RateWindow] = {}
        slow: List[ClaimView] = []
        reachable = False
        for claim in live:
            if claim.aborted:
                continue  # let go already (replaced, or lost a hedge race)
            speed = self._speeds.get(claim.ref)
            if not claim.connected or speed is None:
                speed = self._window(now, claim.pos)  # timed while connected
            else:
                speed.add(now, claim.pos)
            speeds[claim.ref] = speed
            full = speed.full(now)
            rate = speed.rate(now, claim.pos)
            if full and rate < limit:
                slow.append(claim)
            elif (full and rate >= limit) or claim.pos - speed.oldest[1] >= limit * self.window:
                reachable = True
        self._speeds = speeds
        return self._replace(slow) if reachable else []

    def _replace(self, claims: List[ClaimView]) -> List[ClaimView]:
        """Decide to replace ``claims`` (the replacements get a whole window to help)."""
        for claim in claims:
            log.info(
                "connection for bytes %d-%d below %s; reconnecting",
                claim.pos,
                claim.seg_end,
                human_rate(self.limit),
            )
            self._replaced_at = self._active
        return claims

    def _too_slow(self) -> str:
        then = "state saved, run again to resume" if self.resumable else "a new run starts over"
        return (
            f"transfer too slow: below {human_rate(self.limit)} for {self.window:g} s on every "
            f"connection (--speed-limit/--speed-time); {then}"
        )
