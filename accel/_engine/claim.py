"""A worker's claim on a segment: what it fetches, and how far it got."""

from __future__ import annotations

from typing import Any, Optional

from accel._engine.sources import Source
from accel._engine.stragglers import Meter
from accel._engine.views import ClaimView
from accel._util.meter import rate_since
from accel._util.ranges import Segment
from accel.limits import SlotLease

#: The read size assumed for a worker whose buffer is not known yet (no read is larger).
DEFAULT_READ_MARGIN = 1024 * 1024


class Claim:
    """One worker's claim on a segment, from ``pos`` on.

    ``pos`` and ``last_progress`` are written only by the worker's thread (after each write
    returns; the scheduler, when the worker asks it to start a plain stream over) and read
    by anyone. ``buffer`` (anything with a ``size``) bounds the worker's read in flight;
    ``response`` is the worker's business (the transfer closes it to wake a blocked read;
    the scheduler tells a new request by it). The rest is the scheduler's, changed under its
    lock: ``abort`` makes the worker let go (``given_up`` too when the request was too slow:
    its remainder is requested again), ``meter`` is its measurement of the request,
    ``source`` and ``lease`` where the claim fetches from (:meth:`Scheduler.switch`).
    """

    __slots__ = (
        "abort",
        "base",
        "buffer",
        "given_up",
        "last_progress",
        "lease",
        "meter",
        "pos",
        "response",
        "seg",
        "source",
        "started",
        "until_eof",
    )

    def __init__(
        self,
        seg: Segment,
        pos: int,
        now: float,
        *,
        source: Optional[Source] = None,
        lease: Optional[SlotLease] = None,
        until_eof: bool = False,
    ) -> None:
        self.seg = seg
        self.pos = pos
        self.base = pos
        self.abort = False
        self.until_eof = until_eof
        self.source = source
        self.lease = lease
        self.buffer: Any = None
        self.response: Any = None
        self.started = self.last_progress = now
        self.given_up = False
        self.meter = Meter(now, pos)

    def rate(self, now: float) -> float:
        """Average bytes/s since the claim started (or was last re-based)."""
        return rate_since(self.started, self.base, now, self.pos)

    @property
    def read_margin(self) -> int:
        """The most the worker may be writing right now (its read size)."""
        buffer = self.buffer
        return int(buffer.size) if buffer is not None else DEFAULT_READ_MARGIN

    def view(self) -> ClaimView:
        """The claim as it is now, for the policies (taken under the scheduler's lock)."""
        meter = self.meter
        return ClaimView(
            self,
            self.pos,
            self.base,
            self.started,
            self.last_progress,
            self.abort,
            self.until_eof,
            self.response is not None,
            self.read_margin,
            meter.since,
            meter.start,
            meter.window.oldest,
            self.seg.end,
            meter.peak,
        )

    def __repr__(self) -> str:
        return f"Claim({self.seg!r}, pos={self.pos}, abort={self.abort})"
