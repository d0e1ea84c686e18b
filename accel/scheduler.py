"""The pure scheduler: which bytes each connection fetches next.

One lock, an injected clock, no sockets and no threads of its own. It keeps the segments
of one download, the claims workers hold on them, and decides:

- a free worker takes the next pending segment (:meth:`Scheduler.next_claim`);
- with nothing pending it *steals* the tail of the slowest segment, sized so both finish
  together (an even split between equals; a straggler keeps little);
- failing that it *hedges*: races a straggling or stalled segment from its current position,
  and the first to finish wins (:meth:`Scheduler.release` returns the losers to stop);
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

from .limits import SlotLease
from .planner import ALIGN, Segment, steal_point
from .sources import Source, SourcePool

log = logging.getLogger(__name__)

#: Seconds a connection must have run before its speed is trusted for stealing and hedging.
JUDGE_AFTER = 0.15
#: A segment expected to finish sooner than this (seconds) is not split.
MIN_STEAL_ETA = 0.25
#: Seconds without progress after which a connection counts as stalled.
STALL_AFTER = 1.0
#: How long a 429/503 keeps the number of connections lowered.
THROTTLE_PERIOD = 30.0
#: The read size assumed for a worker whose buffer is not known yet (no read is larger).
DEFAULT_READ_MARGIN = 1024 * 1024

Row = Tuple[int, int, int]


class Claim:
    """One worker's claim on a segment, from ``pos`` on.

    ``pos`` and ``last_progress`` are written only by the worker (after each write returns)
    and read by anyone. ``abort`` is set by the scheduler to make the worker let go.
    ``buffer`` (anything with a ``size``) bounds the worker's read in flight; ``response``
    is the worker's business (the transfer closes it to wake a blocked read).
    """

    __slots__ = (
        "abort",
        "base",
        "buffer",
        "last_progress",
        "lease",
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

    def _claim(
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
            return self._claim(seg, force=True, lease=lease)

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
                claim = self._claim(seg)
                if claim is not None:
                    self.pending.popleft()
                return claim
            if not self.ranged:
                return None
            now = self.clock()
            typical = self._typical_rate(now)
            return self._steal(now, typical) or self._hedge(now, typical)

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
                if claim.pos > claim.base and now - claim.started > JUDGE_AFTER:
                    self.finished_rates.append(claim.rate(now))
                if claim.source is not None:
                    self.pool.release(claim.source, claim.lease)
                    claim.lease = None
            if not claims:
                self.claims.pop(seg, None)
            if seg.done:
                for other in claims:  # a hedge race is over: stop the loser
                    other.abort = True
                    losers.append(other)
                if not was_done:
                    completed = seg
            elif not claims and not self.closed:
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

    # -- stealing and hedging (under lock) ----------------------------------------------------

    def _typical_rate(self, now: float) -> float:
        """The median speed of a connection: finished claims and live ones old enough to judge."""
        rates = list(self.finished_rates)
        rates += [
            c.rate(now) for cs in self.claims.values() for c in cs if now - c.started > JUDGE_AFTER
        ]
        rates = [r for r in rates if r > 0]
        return sorted(rates)[len(rates) // 2] if rates else 0.0

    def _steal(self, now: float, typical: float) -> Optional[Claim]:
        """Split the tail of the slowest segment for an idle worker.

        The owner keeps what it can fetch in about the time the thief needs for the rest
        (an even split between equals; a straggler keeps little), and at least one read.
        """
        live = [
            (seg, cs[0])
            for seg, cs in self.claims.items()
            if len(cs) == 1 and not cs[0].abort and not seg.done
        ]
        # Workers without a claim (this thief included) will share what the victim gives up.
        idle = max(1, self.connections - sum(len(cs) for cs in self.claims.values()))
        best: Optional[Tuple[float, Segment, int]] = None
        for seg, claim in live:
            young = now - claim.started <= JUDGE_AFTER  # too early to judge its speed
            if young and typical <= 0:
                continue  # nothing known about speeds yet: splitting now would be a guess
            rate = typical if young else claim.rate(now)
            thieves = idle * (typical if typical > 0 else 1.0)
            share = rate / (rate + thieves) if rate > 0 else 1.0 / (1 + idle)
            point = steal_point(
                claim.pos, seg.end, self.piece, margin=claim.read_margin, share=share
            )
            if point is None:
                continue
            eta = (seg.end + 1 - claim.pos) / rate if rate > 0 else float("inf")
            if eta < MIN_STEAL_ETA:
                continue  # done before a new request would even get its first byte
            if best is None or eta > best[0]:
                best = (eta, seg, point)
        if best is None:
            return None
        _, victim, point = best
        new = Segment(point, victim.end)
        stolen = self._claim(new)
        if stolen is None:
            return None
        victim.end = point - 1
        self.segments.append(new)
        self.segments.sort(key=lambda s: s.start)
        log.debug("stole %d-%d from segment at %d", new.start, new.end, victim.start)
        return stolen

    def _hedge(self, now: float, typical: float) -> Optional[Claim]:
        """Race a straggling tail from its current position with an idle worker.

        A segment is raced when a typical connection would finish what is left more than
        ``hedge_after`` seconds sooner (and in under half the time), or when it made no
        progress for a second (or ``hedge_after``, if longer).
        """
        best: Optional[Tuple[float, Claim]] = None
        for seg, cs in self.claims.items():
            if len(cs) != 1 or cs[0].abort or seg.done:
                continue
            claim = cs[0]
            remaining = seg.end + 1 - claim.pos
            stalled = now - claim.last_progress
            if stalled < max(STALL_AFTER, self.hedge_after):
                if now - claim.started < JUDGE_AFTER or claim.pos == claim.base:
                    # Too early to judge its speed; a request still waiting for its first
                    # byte is raced only once it counts as stalled (a slow round trip is
                    # not a slow connection).
                    continue
                rate = claim.rate(now)
                eta = remaining / rate if rate > 0 else float("inf")
                fresh = remaining / typical if typical > 0 else 0.0
                if eta - fresh < self.hedge_after or eta < 2 * fresh:
                    continue  # a new connection would not finish clearly sooner
            else:
                eta = float("inf")
            if best is None or eta > best[0]:
                best = (eta, claim)
        if best is None:
            return None
        victim = best[1]
        log.debug("hedging segment %d-%d from %d", victim.seg.start, victim.seg.end, victim.pos)
        return self._claim(victim.seg, victim.pos)


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
