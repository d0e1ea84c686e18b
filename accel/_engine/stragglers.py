"""The scheduler's policy for slow requests: restarting, stealing and hedging.

Slowness may belong to one request rather than to a connection (a CDN routing some requests
through a congested edge): a new request for the same bytes is then likely to be fast. So a
request is judged soon after it starts, on the most its progress could mean, and a straggler
is *restarted*: it lets go and its remainder is requested again whole (never split into ever
smaller pieces; a stolen piece is worth a request). At the end, an idle worker races a request
that has not shown yet that it is fast. Restarts are capped per segment and per download,
races by speed by the bytes they fetch twice. Pure functions of claims, rates and a time; the
ones taking a :class:`~accel._engine.scheduler.Scheduler` are called under its lock.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import TYPE_CHECKING, Any, Deque, Iterable, List, Optional, Tuple

from accel._engine.plan import steal_point
from accel._util.ranges import ALIGN, MiB, Segment
from accel._util.units import human_rate

if TYPE_CHECKING:
    from accel._engine.scheduler import Claim, Scheduler

log = logging.getLogger(__name__)

#: Seconds a connection must have run before its speed is trusted for stealing and hedging.
JUDGE_AFTER = 0.15
#: A segment expected to finish sooner than this (seconds) is not split.
MIN_STEAL_ETA = 0.25
#: Seconds without progress after which a connection counts as stalled.
STALL_AFTER = 1.0
#: Seconds a new request runs before its speed is judged for a restart ...
JUDGE_FIRST = 0.1
#: ... or this many times a typical request's first read, if longer.
FIRST_READ_FACTOR = 3.0
#: A request at most this share of a fresh one's speed (even counting its read in flight)
#: is a straggler.
SLOW_SHARE = 0.35
#: A restart must be expected to save at least this many seconds.
RESTART_GAIN = 0.2
#: Restarts of one segment (seven slow requests in a row: then it is left alone or raced).
MAX_RESTARTS = 6
#: Restarts per connection over a whole download.
RESTARTS_PER_CONNECTION = 4
#: Speed is measured over about this many recent seconds (a claim may span two requests).
WINDOW = 0.5
#: Seconds between two samples of a claim's position.
SAMPLE_EVERY = 0.05
#: Hedges by speed stop once the bytes fetched twice exceed this share of the download ...
WASTE_SHARE = 0.03
#: ... or this many bytes, whichever is more ...
MIN_WASTE_CAP = 1 * MiB
#: ... but at most this share of a small download.
SMALL_SHARE = 0.1
#: A stolen piece is worth at least this many seconds of a typical connection.
STEAL_MIN_SECONDS = 0.2


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of the positive ``values``; 0.0 when there are none."""
    ranked = sorted(v for v in values if v > 0)
    if not ranked:
        return 0.0
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))]


def fresh_rate(rates: Iterable[float]) -> float:
    """What a new request may expect: the upper quartile of the speeds seen.

    Not the median: when a third of all requests are slow, most of them may be at once.
    """
    return quantile(rates, 0.75)


class Meter:
    """What the scheduler measured of a claim's current request (kept under its lock).

    A claim may span several requests (the probe's response, then the rest; a retry): a
    new ``claim.response`` starts a new measurement.
    """

    __slots__ = ("first_read", "response", "samples", "since", "start")

    def __init__(self, now: float, pos: int, response: Any = None) -> None:
        self.since = now  # when the request started (or was first seen)
        self.start = pos  # the offset it started at
        self.response = response
        self.first_read: Optional[float] = None  # seconds from ``since`` to its first write
        self.samples: Deque[Tuple[float, int]] = collections.deque([(now, pos)])


def observe(claim: Claim, now: float) -> Optional[float]:
    """Sample ``claim``'s position; returns its first read's time the first time it is seen
    (only when seen within ``WINDOW``: later, the time would say little)."""
    meter = claim.meter
    response = claim.response
    if response is not None and response is not meter.response:
        if meter.response is not None:  # a new request on the same claim
            claim.meter = meter = Meter(now, claim.pos)
        meter.response = response
    samples = meter.samples
    if now - samples[-1][0] >= SAMPLE_EVERY:
        samples.append((now, claim.pos))
    while len(samples) > 2 and now - samples[1][0] >= WINDOW:
        samples.popleft()
    if meter.first_read is None and claim.pos > meter.start:
        meter.first_read = max(0.0, min(claim.last_progress, now) - meter.since)
        if now - meter.since <= WINDOW:
            return meter.first_read
    return None


def window_rate(claim: Claim, now: float, extra: int = 0) -> float:
    """Bytes/s of the current request over the last ``WINDOW`` seconds or so.

    ``extra`` bytes are counted as if written (the read in flight, for an upper bound).
    """
    since, pos = claim.meter.samples[0]
    elapsed = now - since
    return (claim.pos - pos + extra) / elapsed if elapsed > 0 else 0.0


def judgeable(claim: Claim, now: float, first_read: float) -> bool:
    """Whether ``claim``'s request ran long enough to judge its speed: ``JUDGE_FIRST``, or
    ``FIRST_READ_FACTOR`` times a typical ``first_read`` if longer (a slow round trip is not
    a slow request). One with no byte yet is not judged while ``first_read`` is unknown (0).
    """
    age = now - claim.meter.since
    if age < max(JUDGE_FIRST, FIRST_READ_FACTOR * first_read):
        return False
    return claim.pos > claim.meter.start or first_read > 0


def straggling(claim: Claim, now: float, fresh: float, first_read: float, remaining: int) -> bool:
    """Whether restarting ``claim`` on a new request should finish its ``remaining`` bytes
    clearly sooner than it would, when a new request runs at ``fresh`` bytes/s.

    It is judged (see :func:`judgeable`) on an upper bound of its speed: its read in flight
    counted as done (a large read on a slow link is not mistaken for no progress).
    """
    if fresh <= 0 or not judgeable(claim, now, first_read):
        return False
    if window_rate(claim, now, claim.read_margin) >= SLOW_SHARE * fresh:
        return False
    rate = window_rate(claim, now)
    eta = remaining / rate if rate > 0 else math.inf
    return eta - (remaining / fresh + JUDGE_FIRST) > RESTART_GAIN


def overlap(loser: Claim, winner: Claim) -> int:
    """Bytes two claims racing on one segment both fetched (``loser`` stopped at its pos)."""
    return max(0, loser.pos - max(loser.base, winner.base))


def waste_cap(size: int) -> int:
    """How many duplicate bytes hedging by speed may cost a download of ``size`` bytes:
    ``WASTE_SHARE`` of it, or ``MIN_WASTE_CAP`` if more, but never above ``SMALL_SHARE`` of
    a small download (a 2 MiB file may not cost 1 MiB twice)."""
    return max(int(WASTE_SHARE * size), min(MIN_WASTE_CAP, int(SMALL_SHARE * size)))


def min_piece(piece: int, typical: float) -> int:
    """The smallest piece worth a new request: ``piece``, or more on a fast connection."""
    worth = int(typical * STEAL_MIN_SECONDS) if typical > 0 else 0
    return max(piece, worth - worth % ALIGN)


def review(sched: Scheduler, now: float) -> List[Claim]:
    """Measure every claim; give up on the stragglers that are worth restarting."""
    if not sched.ranged or sched.closed:
        return []
    rates = list(sched.finished_rates)
    for cs in sched.claims.values():
        for claim in cs:
            first_read = observe(claim, now)
            if first_read is not None:
                sched.first_reads.append(first_read)
            if not claim.abort and now - claim.meter.since >= JUDGE_FIRST:
                rates.append(window_rate(claim, now))
    fresh = sched.fresh = fresh_rate(rates)
    # Each first read is known to within a review's period: the lower quartile is typical.
    first_read = sched.first_read = quantile(sched.first_reads, 0.25)
    given_up: List[Claim] = []
    for seg, cs in sched.claims.items():
        active = [c for c in cs if not c.abort]
        if not active or seg.done or seg in sched.restarting or active[0].until_eof:
            continue
        if sched.restarts_left <= 0 or sched.restarts.get(seg, 0) >= MAX_RESTARTS:
            continue
        remaining = seg.end + 1 - max(c.pos for c in active)
        if not all(straggling(c, now, fresh, first_read, remaining) for c in active):
            continue  # one of them (racing) is fast enough
        claim = max(active, key=lambda c: c.meter.since)  # the newest request goes
        claim.abort = claim.given_up = True
        sched.restarting[seg] = max(c.pos for c in cs)
        sched.restarts[seg] = sched.restarts.get(seg, 0) + 1
        sched.restarts_left -= 1
        given_up.append(claim)
        log.info(
            "request for bytes %d-%d at %s, a new one may get %s; reconnecting",
            claim.pos,
            seg.end,
            human_rate(window_rate(claim, now)),
            human_rate(fresh),
        )
    return given_up


def take_over(sched: Scheduler) -> Optional[Claim]:
    """A new request for the rest of a segment whose straggler was given up."""
    for seg, pos in list(sched.restarting.items()):
        if seg.done:
            del sched.restarting[seg]
            continue
        pos = max([pos, seg.pos, *(c.pos for c in sched.claims.get(seg, ()))])
        claim = sched.claim_at(seg, pos)
        if claim is not None:
            del sched.restarting[seg]
        return claim
    return None


def typical_rate(sched: Scheduler, now: float) -> float:
    """The median speed of a connection: finished claims and live ones old enough to judge."""
    rates = list(sched.finished_rates)
    rates += [
        c.rate(now) for cs in sched.claims.values() for c in cs if now - c.started > JUDGE_AFTER
    ]
    rates = [r for r in rates if r > 0]
    return sorted(rates)[len(rates) // 2] if rates else 0.0


def steal(sched: Scheduler, now: float, typical: float) -> Optional[Claim]:
    """Split the tail of the slowest segment for an idle worker.

    The owner keeps what it can fetch in about the time the thief needs for the rest
    (an even split between equals; a straggler keeps little), and at least one read; the
    thief gets at least :func:`min_piece`.
    """
    live = [
        (seg, cs[0])
        for seg, cs in sched.claims.items()
        if len(cs) == 1 and not cs[0].abort and not seg.done
    ]
    # Workers without a claim (this thief included) will share what the victim gives up.
    idle = max(1, sched.connections - sum(len(cs) for cs in sched.claims.values()))
    piece = min_piece(sched.piece, typical)
    best: Optional[Tuple[float, Segment, int]] = None
    for seg, claim in live:
        young = now - claim.started <= JUDGE_AFTER  # too early to judge its speed
        if young and typical <= 0:
            continue  # nothing known about speeds yet: splitting now would be a guess
        rate = typical if young else claim.rate(now)
        thieves = idle * (typical if typical > 0 else 1.0)
        share = rate / (rate + thieves) if rate > 0 else 1.0 / (1 + idle)
        point = steal_point(claim.pos, seg.end, piece, margin=claim.read_margin, share=share)
        if point is None or seg.end + 1 - point < piece:
            continue  # no piece worth a request
        eta = (seg.end + 1 - claim.pos) / rate if rate > 0 else float("inf")
        if eta < MIN_STEAL_ETA:
            continue  # done before a new request would even get its first byte
        if best is None or eta > best[0]:
            best = (eta, seg, point)
    if best is None:
        return None
    _, victim, point = best
    new = Segment(point, victim.end)
    stolen = sched.claim_at(new)
    if stolen is None:
        return None
    victim.end = point - 1
    sched.segments.append(new)
    sched.segments.sort(key=lambda s: s.start)
    log.debug("stole %d-%d from segment at %d", new.start, new.end, victim.start)
    return stolen


def unproven(sched: Scheduler, claim: Claim, now: float) -> bool:
    """Whether ``claim``'s request could be judged but has not shown it is no straggler."""
    if sched.fresh <= 0 or not judgeable(claim, now, sched.first_read):
        return False
    return window_rate(claim, now) < SLOW_SHARE * sched.fresh


def hedge(sched: Scheduler, now: float, typical: float) -> Optional[Claim]:
    """Race a straggling tail from its current position with an idle worker.

    A segment is raced when it made no progress for a second (or ``hedge_after``, if
    longer); or, while the bytes fetched twice are under the cap: when its request could be
    judged but has not shown yet that it is fast (at the end: nothing else is left to do,
    and a race needs no restart), or when a typical connection would finish what is left
    more than ``hedge_after`` seconds sooner (and in under half the time).
    """
    best: Optional[Tuple[float, Claim]] = None
    for seg, cs in sched.claims.items():
        if len(cs) != 1 or cs[0].abort or seg.done:
            continue
        claim = cs[0]
        remaining = seg.end + 1 - claim.pos
        stalled = now - claim.last_progress
        if stalled < max(STALL_AFTER, sched.hedge_after):
            if sched.wasted >= sched.waste_cap:
                continue  # racing by speed has cost enough
            affordable = sched.wasted + remaining <= sched.waste_cap
            if affordable and unproven(sched, claim, now):
                eta = remaining / (SLOW_SHARE * sched.fresh)  # at most that fast
            elif now - claim.started < JUDGE_AFTER or claim.pos == claim.base:
                # Too early to judge its speed; a request still waiting for its first
                # byte is raced only once it counts as stalled (a slow round trip is
                # not a slow connection).
                continue
            else:
                rate = claim.rate(now)
                eta = remaining / rate if rate > 0 else float("inf")
                fresh = remaining / typical if typical > 0 else 0.0
                if eta - fresh < sched.hedge_after or eta < 2 * fresh:
                    continue  # a new connection would not finish clearly sooner
        else:
            eta = float("inf")
        if best is None or eta > best[0]:
            best = (eta, claim)
    if best is None:
        return None
    victim = best[1]
    log.debug("hedging segment %d-%d from %d", victim.seg.start, victim.seg.end, victim.pos)
    return sched.claim_at(victim.seg, victim.pos)
