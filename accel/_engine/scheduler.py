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

The scheduler owns the claims and segments and changes them only under its lock: the
policies get views of them (:mod:`accel._engine.views`) and answer decisions it applies;
a worker changes its claim only through the scheduler's methods, but for its progress
(``pos``, ``last_progress``: one lock-free attribute write per read) and what it reads with
(``buffer``, ``response``). A segment's ``end`` only shrinks under the lock, at least one read
ahead of its owner. The scheduler also owns the number of connections the download runs
(:attr:`Scheduler.connections`, :meth:`Scheduler.resize`) and the cap a 429/503 puts on it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from accel._disk.state import Row
from accel._engine import stragglers as policy
from accel._engine.claim import DEFAULT_READ_MARGIN as DEFAULT_READ_MARGIN
from accel._engine.claim import Claim as Claim
from accel._engine.sources import SourcePool
from accel._engine.stragglers import JUDGE_AFTER as JUDGE_AFTER
from accel._engine.stragglers import (
    MIN_STEAL_ETA as MIN_STEAL_ETA,  # re-exported: the policy's constants
)
from accel._engine.stragglers import STALL_AFTER as STALL_AFTER
from accel._engine.views import ClaimView, SegmentView
from accel._util.ranges import ALIGN, Segment
from accel._util.units import human_rate
from accel.limits import SlotLease

log = logging.getLogger(__name__)

#: How long a 429/503 keeps the number of connections lowered.
THROTTLE_PERIOD = 30.0


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
        #: The connections to run ("auto" changes it: :meth:`resize`).
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
        self._throttled: Optional[Tuple[int, float]] = None  # (cap, until) after a 429/503
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

    def views(self) -> Tuple[List[ClaimView], int]:
        """Views of every claim being worked on, and the bytes written (for the watchdog)."""
        with self.lock:
            views = [c.view() for cs in self.claims.values() for c in cs]
            return views, sum(self._written(s) for s in self.segments)

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

    def _segment_views(self) -> List[SegmentView]:
        return [
            SegmentView(
                seg,
                seg.start,
                seg.end,
                seg.done,
                tuple(c.view() for c in cs),
                seg in self.restarting,
                self.restarts.get(seg, 0),
            )
            for seg, cs in self.claims.items()
        ]

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
            now = self.clock()
            if self._over_cap(now, extra=1):
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
            views = self._review(now)
            typical = policy.typical_rate(views, now, self.finished_rates)
            taken = self._take_over() or self._steal(views, now, typical)
            return taken or self._hedge(views, now, typical)

    def review(self) -> List[Claim]:
        """Judge the live requests: stragglers are told to let go, to be requested again.

        Returns them, for the caller to wake (a read on a slow request may block a while).
        Meant to be called every tick; :meth:`next_claim` does it too.
        """
        given_up: List[Claim] = []
        with self.lock:
            self._review(self.clock(), given_up)
        return given_up

    def _review(self, now: float, given_up: Optional[List[Claim]] = None) -> List[SegmentView]:
        """Measure every claim, apply the policy's restarts; the views after them."""
        if not self.ranged or self.closed:
            return self._segment_views()
        for c in [c for cs in self.claims.values() for c in cs]:
            first_read = c.meter.observe(now, c.pos, c.last_progress, c.response)
            if first_read is not None:
                self.first_reads.append(first_read)
        views = self._segment_views()
        verdict = policy.review(
            views,
            now,
            finished_rates=self.finished_rates,
            first_reads=self.first_reads,
            restarts_left=self.restarts_left,
        )
        self.fresh, self.first_read = verdict.fresh, verdict.first_read
        for restart in verdict.give_up:
            claim, seg = restart.claim.ref, restart.segment.ref
            claim.abort = claim.given_up = True
            self.restarting[seg] = restart.resume_at
            self.restarts[seg] = self.restarts.get(seg, 0) + 1
            self.restarts_left -= 1
            if given_up is not None:
                given_up.append(claim)
            log.info(
                "request for bytes %d-%d at %s, a new one may get %s; reconnecting",
                restart.claim.pos,
                seg.end,
                human_rate(restart.claim.window_rate(now)),
                human_rate(verdict.fresh),
            )
        return self._segment_views() if verdict.give_up else views

    def _take_over(self) -> Optional[Claim]:
        """A new request for the rest of a segment whose straggler was given up."""
        for seg, pos in list(self.restarting.items()):
            if seg.done:
                del self.restarting[seg]
                continue
            pos = max([pos, seg.pos, *(c.pos for c in self.claims.get(seg, ()))])
            claim = self.claim_at(seg, pos)
            if claim is not None:
                del self.restarting[seg]
            return claim
        return None

    def _steal(self, views: List[SegmentView], now: float, typical: float) -> Optional[Claim]:
        """Split the tail of the slowest segment for an idle worker (the policy's choice)."""
        choice = policy.steal(views, now, typical, connections=self.connections, piece=self.piece)
        if choice is None:
            return None
        victim, point = choice.segment.ref, choice.point
        new = Segment(point, victim.end)
        stolen = self.claim_at(new)
        if stolen is None:
            return None
        victim.end = point - 1
        self.segments.append(new)
        self.segments.sort(key=lambda s: s.start)
        log.debug("stole %d-%d from segment at %d", new.start, new.end, victim.start)
        return stolen

    def _hedge(self, views: List[SegmentView], now: float, typical: float) -> Optional[Claim]:
        """Race a straggling tail from its current position (the policy's choice)."""
        choice = policy.hedge(
            views,
            now,
            typical,
            fresh=self.fresh,
            first_read=self.first_read,
            hedge_after=self.hedge_after,
            wasted=self.wasted,
            waste_cap=self.waste_cap,
        )
        if choice is None:
            return None
        victim: Claim = choice.ref
        log.debug("hedging segment %d-%d from %d", victim.seg.start, victim.seg.end, victim.pos)
        return self.claim_at(victim.seg, victim.pos)

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
                        self.wasted += policy.overlap(other.pos, other.base, claim.base)
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

    def let_go(self, claim: Claim) -> None:
        """Tell ``claim`` to let go (a let-go, not a failure: its worker counts no retry and
        its segment is claimed again from where it stopped); the caller wakes its read."""
        with self.lock:
            claim.abort = True

    def switch(self, claim: Claim, exc: BaseException) -> bool:
        """Move ``claim`` to another source after ``exc``, if one is left."""
        with self.lock:
            assert claim.source is not None
            got = self.pool.switch(claim.source, claim.lease, exc)
            if got is None:
                return False
            claim.source, claim.lease = got
            return True

    def start_over(self, claim: Claim) -> None:
        """A plain stream (no ranges) is to be fetched again from byte 0 by ``claim``'s
        worker: nothing of it counts as written any more."""
        with self.lock:
            claim.pos = claim.base = 0
            claim.seg.written = 0

    def end_at_eof(self, claim: Claim) -> None:
        """A stream of unknown length ended at ``claim.pos``: its length is now known."""
        with self.lock:
            claim.seg.end = max(claim.pos - 1, claim.seg.start - 1)

    def close(self) -> None:
        """The transfer is winding down: released segments are not queued again."""
        with self.lock:
            self.closed = True

    # -- connection count ---------------------------------------------------------------------

    def resize(self, connections: int) -> None:
        """Run ``connections`` from now on (the cap after a 429/503 still holds)."""
        with self.lock:
            self.connections = connections

    def throttle(self) -> Tuple[int, float]:
        """The server said 429/503: use one connection fewer for ``THROTTLE_PERIOD``.

        Returns the cap and until when it holds (on the scheduler's clock).
        """
        with self.lock:
            now = self.clock()
            live = sum(len(cs) for cs in self.claims.values())
            current = self._cap(now)
            cap = max(1, min(current, live) - 1)
            if cap < current:
                log.info("server is overloaded (429/503): using at most %d connections", cap)
            self._throttled = (cap, now + THROTTLE_PERIOD)
            return self._throttled

    def over_cap(self) -> bool:
        """Whether more connections are live than the current cap allows."""
        with self.lock:
            return self._over_cap(self.clock())

    def _cap(self, now: float) -> int:
        """The connections allowed at ``now``: the count, or less after a 429/503."""
        throttled = self._throttled
        if throttled is not None:
            if now < throttled[1]:
                return throttled[0]
            self._throttled = None
        return self.connections

    def _over_cap(self, now: float, extra: int = 0) -> bool:
        return sum(len(cs) for cs in self.claims.values()) + extra > self._cap(now)


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
