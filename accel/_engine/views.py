"""What the policies see of a download's claims and segments: plain values.

The scheduler takes these views under its lock and hands them to the policies
(:mod:`accel._engine.stragglers`, the speed floor in :mod:`accel._engine.watchdog`); the
policies answer with decisions naming views, which the scheduler (or the transfer) applies
to the claims the views were taken of (``ref``). A view never changes: the claim moves on.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Tuple

from accel._util.meter import rate_since


class ClaimView(NamedTuple):
    """One claim as it was at the time of the view."""

    ref: Any  # the claim itself, opaque to the policies
    pos: int  # the next offset to write
    base: int  # where the claim started (its average speed is measured from there)
    started: float  # when the claim started
    last_progress: float  # when its last write returned
    aborted: bool  # told to let go already
    until_eof: bool  # a stream of unknown length
    connected: bool  # a response is open
    read_margin: int  # the most its read in flight may write
    since: float  # when its current request started (or was first seen)
    since_pos: int  # the offset that request started at
    window: Tuple[float, int]  # (time, pos): where its recent speed is measured from
    seg_end: int  # the last offset of its segment
    peak: float = 0.0  # the fastest its current request has been over a judged window

    def shown_fast(self, fresh: float, share: float) -> bool:
        """Whether its current request has run at ``share`` of ``fresh`` or faster over a
        judged window: then it is no slow request, whatever it does now (a server that sends
        in bursts, as nginx's ``limit_rate`` does once a second, pauses between them)."""
        return fresh > 0 and self.peak >= share * fresh

    def rate(self, now: float) -> float:
        """Average bytes/s since the claim started."""
        return rate_since(self.started, self.base, now, self.pos)

    def window_rate(self, now: float, extra: int = 0) -> float:
        """Bytes/s of the current request over its recent window; ``extra`` bytes are
        counted as if written (the read in flight, for an upper bound)."""
        since, pos = self.window
        return rate_since(since, pos, now, self.pos + extra)


class SegmentView(NamedTuple):
    """One segment with claims on it, and what the scheduler knows of its restarts."""

    ref: Any  # the segment itself, opaque to the policies
    start: int
    end: int
    done: bool
    claims: Tuple[ClaimView, ...]
    restarting: bool  # its straggler was given up: a new request is to take over
    restarts: int  # how many times a straggler of it was restarted
