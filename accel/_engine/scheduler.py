"""The pure scheduler: which bytes each connection fetches next.

One lock, an injected clock, no sockets and no threads of its own. It keeps the segments
of one download, the claims workers hold on them, and decides:

- a free worker takes the next pending segment (:meth:`Scheduler.next_claim`);
- a request much slower than a fresh one would be is *restarted*: told to let go, its
  remainder requested again whole, by a free worker or by its own (:meth:`Scheduler.review`;
  the policy and its caps are in :mod:`accel._engine.stragglers`);
- with nothing pending it *steals* the tail of the slowest segment, sized so both finish
  together (an even split between equals; a straggler keeps little), never a piece too small
  to be worth a request;
- failing that it *hedges*: races a stalled or straggling segment, or one whose request has
  not shown yet that it is fast, from its current position, and the first to finish wins
  (:meth:`Scheduler.release` returns the losers to stop); races by speed stop once the
  bytes fetched twice reach a cap;
- after a 429/503 it runs fewer connections for a while (:meth:`Scheduler.throttle`).

Workers update their :class:`Claim`'s ``pos`` lock-free (one attribute write per read); a
segment's ``end`` only shrinks under the lock, at least one read ahead of its owner.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from accel._disk.state import Row
from accel._engine import stragglers as policy
from accel._engine.sources import Source, SourcePool
from accel._engine.stragglers import JUDGE_AFTER as JUDGE_AFTER
from accel._engine.stragglers import (
    MIN_STEAL_ETA as MIN_STEAL_ETA,  # re-exported: the policy's constants
)
from accel._engine.stragglers import STALL_AFTER as STALL_AFTER
from accel._util.ranges import ALIGN, Segment
from accel.limits import SlotLease

log = logging.getLogger(__name__)

#: How long a 429/503 keeps the number of connections lowered.
THROTTLE_PERIOD = 30.0
#: The read size assumed for a worker whose buffer is not known yet (no read is larger).
DEFAULT_READ_MARGIN = 1024 * 1024


class Claim:
    """One worker's claim on a segment, from ``pos`` on.

    ``pos`` and ``last_progress`` are written only by the worker (after each write returns)
    and read by anyone. ``abort`` is set by the scheduler to make the worker let go
    (``given_up`` too when the request was too slow: its remainder is requested again).
    ``buffer`` (anything with a ``size``) bounds the worker's read in flight; ``response``
    is the worker's business (the transfer closes it to wake a blocked read; the scheduler
    tells a new request by it). ``meter`` is the scheduler's measurement of the request.
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
        self.meter = policy.Meter(now, pos)

    def rate(self, now: float) -> float:
        """Average bytes/s since the claim started (or was last re-based)."""
        elapsed = now - self.started
        return (self.pos - self.base) / elapsed if elapsed > 0 else 0.0

    @property
    def read_margin(self) -> int:
        """The most the worker may be writing right now (its read size)."""
        buffer = self.buffer
        return int(buffer.size) if buffer is not None else DEFAULT_READ_MARGIN

    def __repr__(self) -> str:
        return f"Claim({self.seg!r}, pos={self.pos}, abort={self.abort})"


class Scheduler:
    """Segments and claims of one download (thread-safe; pure but for ``clock``)."""

    def __init__(
        self,
        segments: Iterable[Segment],
        pool: SourcePool,
        *,
        connections: int,
        min_split: int,
        ranged: bool = True,
        until_eof: bool = False,
        hedge_after: float = 0.25,
        restarts: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.Lock()
        self.segments: List[Segment] = sorted(segments, key=lambda s: s.start)
        self.pool = pool
        self.connections = connections
        self.ranged = ranged
        self.until_eof = until_eof
        self.hedge_after = hedge_after
        self.clock = clock
        self.claims: Dict[Segment, List[Claim]] = {}
        self.pending: Deque[Segment] = collections.deque(s for s in self.segments if not s.done)
        self.finished_rates: Deque[float] = collections.deque(maxlen=16)
        # Stolen tail pieces may be smaller than planned segments, down to 256 KiB.
        self.piece = max(min(min_split, 4 * ALIGN), min_split // 4)
        self.cap = connections  # lowered for a while after 429/503
        self.cap_until = 0.0
        self.closed = False
        self.restarts: Dict[Segment, int] = {}  # stragglers restarted, per segment
        self.restarting: Dict[Segment, int] = {}  # given up on, to request again from there
        # No restarts where a new request cannot be faster (e.g. under a shared rate limit).
        self.restarts_left = policy.RESTARTS_PER_CONNECTION * connections if restarts else 0
        self.first_reads: Deque[float] = collections.deque(maxlen=16)
        self.fresh = 0.0  # what a new request may expect (bytes/s), as last reviewed
        self.first_read = 0.0  # typical seconds to a request's first write (0: unknown)
        self.wasted = 0  # bytes fetched twice by racing claims
        self.waste_cap = policy.waste_cap(sum(s.remaining for s in self.segments))

    # -- queries ------------------------------------------------------------------------------

    def _written(self, seg: Segment) -> int:
        best = seg.written
        for claim in self.claims.get(seg, ()):
            best = max(best, claim.pos - seg.start)
        return min(best, seg.length)

    def all_done(self) -> bool:
        """Whether every byte of every segment is written."""
        with self.lock:
            return all(self._written(s) >= s.length for s in self.segments)

    def written(self) -> int:
        """Bytes written so far, live claims included."""
        with self.lock:
            return sum(self._written(s) for s in self.segments)

    def rows(self) -> List[Row]:
        """(start, end, written) of every segment, in order: what a sidecar may record."""
        with self.lock:
            return [(s.start, s.end, self._written(s)) for s in self.segments]

    def live(self) -> List[Claim]:
        """Every claim being worked on."""
        with self.lock:
            return [c for cs in self.claims.values() for c in cs]

    def final_size(self) -> int:
        """The size of the file once every segment is done."""
        with self.lock:
            return max((s.end + 1 for s in self.segments), default=0)

    def has_work(self) -> bool:
        """Whether any segment is waiting for a worker."""
        with self.lock:
            return bool(self.pending)

    def snapshot(self, total: Optional[int], width: int = 32) -> Tuple[int, int, str]:
        """(bytes written, live connections, segment map) for a progress display."""
        with self.lock:
            written = sum(self._written(s) for s in self.segments)
            live = sum(len(cs) for cs in self.claims.values())
            cells = segment_map(self.segments, self.claims, total, self._written, width)
        return written, live, cells

    # -- claims -------------------------------------------------------------------------------

    def claim_at(
        self,
        seg: Segment,
        pos: Optional[int] = None,
        *,
        force: bool = False,
        lease: Optional[SlotLease] = None,
    ) -> Optional[Claim]:
        """A claim on ``seg`` (under lock), or None when no source has a free slot."""
        got = self.pool.acquire(force=force, lease=lease)
        if got is None:
            return None
        source, lease = got
        claim = Claim(
            seg,
            seg.pos if pos is None else pos,
            self.clock(),
            source=source,
            lease=lease,
            until_eof=self.until_eof,
        )
        self.claims.setdefault(seg, []).append(claim)
        return claim

    def first_claim(self, start: int, lease: Optional[SlotLease]) -> Optional[Claim]:
        """Claim the pending segment at ``start`` for the probe's open response, or None."""
        with self.lock:
            seg = next((s for s in self.pending if s.pos == start), None)
            if seg is None:
                return None
            self.pending.remove(seg)
            return self.claim_at(seg, force=True, lease=lease)

    def next_claim(self) -> Optional[Claim]:
        """Work for a free worker: a pending segment, a stolen tail, a hedge, or None."""
        with self.lock:
            if self._over_cap(extra=1):
                return None
            while self.pending:
                seg = self.pending[0]
                if seg.done or self.claims.get(seg):
                    self.pending.popleft()
                    continue
                claim = self.claim_at(seg)
                if claim is not None:
                    self.pending.popleft()
                return claim
            if not self.ranged:
                return None
            now = self.clock()
            policy.review(self, now)
            typical = policy.typical_rate(self, now)
            return (
                policy.take_over(self)
                or policy.steal(self, now, typical)
                or policy.hedge(self, now, typical)
            )

    def review(self) -> List[Claim]:
        """Judge the live requests: stragglers are told to let go, to be requested again.

        Returns them, for the caller to wake (a read on a slow request may block a while).
        Meant to be called every tick; :meth:`next_claim` does it too.
        """
        with self.lock:
            return policy.review(self, self.clock())

    def release(self, claim: Claim) -> Tuple[Optional[Segment], List[Claim]]:
        """The worker lets go of ``claim``: fold its progress into the segment.

        Returns the segment if this release completed it, and the claims racing it that lost
        (already told to abort; the caller wakes their connections).
        """
        seg = claim.seg
        losers: List[Claim] = []
        completed = None
        with self.lock:
            was_done = seg.done
            seg.written = max(seg.written, min(claim.pos, seg.end + 1) - seg.start)
            claims = self.claims.get(seg, [])
            if claim in claims:
                claims.remove(claim)
                now = self.clock()
                judged = now - claim.started > JUDGE_AFTER
                if judged and not claim.abort and claim.pos > claim.base:
                    self.finished_rates.append(claim.rate(now))
                if claim.source is not None:
                    self.pool.release(claim.source, claim.lease)
                    claim.lease = None
            if not claims:
                self.claims.pop(seg, None)
            if seg.done:
                for other in claims:  # a hedge race is over: stop the loser
                    if not other.abort:
                        self.wasted += policy.overlap(other, claim)
                    other.abort = True
                    losers.append(other)
                if not was_done:
                    completed = seg
            elif not claims and not self.closed:
                if self.restarting.pop(seg, None) is not None:
                    self.pending.appendleft(seg)  # requested again straight away
                else:
                    self.pending.append(seg)
        return completed, losers

    def end_at_eof(self, claim: Claim) -> None:
        """A stream of unknown length ended at ``claim.pos``: its length is now known."""
        with self.lock:
            claim.seg.end = max(claim.pos - 1, claim.seg.start - 1)

    def close(self) -> None:
        """The transfer is winding down: released segments are not queued again."""
        with self.lock:
            self.closed = True

    # -- connection count ---------------------------------------------------------------------

    def throttle(self) -> int:
        """The server said 429/503: use one connection fewer for a while. Returns the cap."""
        with self.lock:
            live = sum(len(cs) for cs in self.claims.values())
            cap = max(1, min(self.cap, live) - 1)
            if cap < self.cap:
                log.info("server is overloaded (429/503): using at most %d connections", cap)
            self.cap = cap
            self.cap_until = self.clock() + THROTTLE_PERIOD
            return cap

    def over_cap(self) -> bool:
        """Whether more connections are live than the current cap allows."""
        with self.lock:
            return self._over_cap()

    def _over_cap(self, extra: int = 0) -> bool:
        if self.cap < self.connections and self.clock() >= self.cap_until:
            self.cap = self.connections
        return sum(len(cs) for cs in self.claims.values()) + extra > self.cap


def segment_map(
    segments: Sequence[Segment],
    claims: Dict[Segment, List[Claim]],
    total: Optional[int],
    written: Callable[[Segment], int],
    width: int = 32,
) -> str:
    """A row of cells: ``#`` written, ``>`` in flight, ``.`` missing."""
    if not total:
        return ""
    cells = []
    for i in range(width):
        lo, hi = total * i // width, max(total * (i + 1) // width - 1, total * i // width)
        state = "#"
        for seg in segments:
            if seg.end < lo or seg.start > hi:
                continue
            done_to = seg.start + written(seg) - 1
            if done_to < min(hi, seg.end):
                state = ">" if seg in claims else "."
                if state == ".":
                    break
        cells.append(state)
    return "".join(cells)
