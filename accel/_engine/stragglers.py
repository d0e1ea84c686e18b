"""The scheduler's policy for slow requests: restarting, stealing and hedging.

Slowness may belong to one request rather than to a connection (a CDN routing some requests
through a congested edge): a new request for the same bytes is then likely to be fast. So a
request is judged soon after it starts, on the most its progress could mean, and a straggler
is *restarted*: it lets go and its remainder is requested again whole (never split into ever
smaller pieces; a stolen piece is worth a request). At the end, an idle worker races a request
that has not shown yet that it is fast. Restarts are capped per segment and per download,
races by speed by the bytes they fetch twice.

Pure functions of plain values: views of the claims and segments (:mod:`accel._engine.views`),
rates and a time. They answer decisions (:class:`Review`'s restarts, a :class:`Steal`, a claim
to race); the scheduler takes the views under its lock and applies the decisions. Only
:class:`Meter`, the scheduler's measurement of one request, keeps state (its owner's lock).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from accel._engine.plan import steal_point
from accel._engine.views import ClaimView, SegmentView
from accel._util.meter import RateWindow
from accel._util.ranges import ALIGN, MiB

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
#: A request's speed over a window at least this long counts towards its peak (shorter
#: ones say more about one read than about the request).
PEAK_SPAN = 0.25
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
    new response starts a new measurement. ``window`` is the request's recent speed, ``peak``
    the fastest it was over a window of ``PEAK_SPAN`` seconds or more.
    """

    __slots__ = ("first_read", "peak", "response", "since", "start", "window")

    def __init__(self, now: float, pos: int, response: Any = None) -> None:
        self._begin(now, pos, response)

    def _begin(self, now: float, pos: int, response: Any) -> None:
        self.since = now  # when the request started (or was first seen)
        self.start = pos  # the offset it started at
        self.response = response
        self.first_read: Optional[float] = None  # seconds from ``since`` to its first write
        self.window = RateWindow(now, pos, span=WINDOW, every=SAMPLE_EVERY)
        self.peak = 0.0

    def observe(self, now: float, pos: int, last_progress: float, response: Any) -> Optional[float]:
        """Sample the claim's ``pos`` (its request: ``response``); returns its first read's
        time the first time it is seen (only when seen within ``WINDOW``: later, the time
        would say little)."""
        if response is not None and response is not self.response:
            if self.response is not None:  # a new request on the same claim
                self._begin(now, pos, response)
            self.response = response
        window = self.window
        window.add(now, pos)
        if now - window.oldest[0] >= PEAK_SPAN:
            self.peak = max(self.peak, window.rate(now, pos))
        if self.first_read is None and pos > self.start:
            self.first_read = max(0.0, min(last_progress, now) - self.since)
            if now - self.since <= WINDOW:
                return self.first_read
        return None


def judgeable(claim: ClaimView, now: float, first_read: float) -> bool:
    """Whether ``claim``'s request ran long enough to judge its speed: ``JUDGE_FIRST``, or
    ``FIRST_READ_FACTOR`` times a typical ``first_read`` if longer (a slow round trip is not
    a slow request). One with no byte yet is not judged while ``first_read`` is unknown (0).
    """
    age = now - claim.since
    if age < max(JUDGE_FIRST, FIRST_READ_FACTOR * first_read):
        return False
    return claim.pos > claim.since_pos or first_read > 0


def straggling(
    claim: ClaimView, now: float, fresh: float, first_read: float, remaining: int
) -> bool:
    """Whether restarting ``claim`` on a new request should finish its ``remaining`` bytes
    clearly sooner than it would, when a new request runs at ``fresh`` bytes/s.

    It is judged (see :func:`judgeable`) on an upper bound of its speed: its read in flight
    counted as done (a large read on a slow link is not mistaken for no progress). A request
    that has shown it can be fast (:meth:`ClaimView.shown_fast`) is never a straggler: it is
    judged on its own early rate, not only on its latest window.
    """
    if fresh <= 0 or not judgeable(claim, now, first_read):
        return False
    if claim.shown_fast(fresh, SLOW_SHARE):
        return False  # a pause between bursts, not a slow request
    if claim.window_rate(now, claim.read_margin) >= SLOW_SHARE * fresh:
        return False
    rate = claim.window_rate(now)
    eta = remaining / rate if rate > 0 else math.inf
    return eta - (remaining / fresh + JUDGE_FIRST) > RESTART_GAIN


def overlap(loser_pos: int, loser_base: int, winner_base: int) -> int:
    """Bytes two claims racing on one segment both fetched (the loser stopped at its pos)."""
    return max(0, loser_pos - max(loser_base, winner_base))


def waste_cap(size: int) -> int:
    """How many duplicate bytes hedging by speed may cost a download of ``size`` bytes:
    ``WASTE_SHARE`` of it, or ``MIN_WASTE_CAP`` if more, but never above ``SMALL_SHARE`` of
    a small download (a 2 MiB file may not cost 1 MiB twice)."""
    return max(int(WASTE_SHARE * size), min(MIN_WASTE_CAP, int(SMALL_SHARE * size)))


def min_piece(piece: int, typical: float) -> int:
    """The smallest piece worth a new request: ``piece``, or more on a fast connection."""
    worth = int(typical * STEAL_MIN_SECONDS) if typical > 0 else 0
    return max(piece, worth - worth % ALIGN)


class GiveUp(NamedTuple):
    """Restart ``claim``, the newest request on ``segment``: it lets go, and its remainder
    is requested again from ``resume_at`` (the furthest any claim on it got)."""

    claim: ClaimView
    segment: SegmentView
    resume_at: int


class Review(NamedTuple):
    """What a review found: what a new request may expect (``fresh`` bytes/s), a typical
    request's ``first_read`` (seconds to its first write, 0 if unknown), whom to restart."""

    fresh: float
    first_read: float
    give_up: List[GiveUp]


def review(
    segments: Sequence[SegmentView],
    now: float,
    *,
    finished_rates: Iterable[float],
    first_reads: Iterable[float],
    restarts_left: int,
) -> Review:
    """Judge the live requests: the stragglers worth restarting (at most ``restarts_left``,
    and ``MAX_RESTARTS`` per segment), given the speeds of finished claims and the first-read
    times seen."""
    rates = list(finished_rates)
    for seg in segments:
        for claim in seg.claims:
            if not claim.aborted and now - claim.since >= JUDGE_FIRST:
                rates.append(claim.window_rate(now))
    fresh = fresh_rate(rates)
    # Each first read is known to within a review's period: the lower quartile is typical.
    first_read = quantile(first_reads, 0.25)
    given_up: List[GiveUp] = []
    for seg in segments:
        active = [c for c in seg.claims if not c.aborted]
        if not active or seg.done or seg.restarting or active[0].until_eof:
            continue
        if restarts_left <= 0 or seg.restarts >= MAX_RESTARTS:
            continue
        remaining = seg.end + 1 - max(c.pos for c in active)
        if not all(straggling(c, now, fresh, first_read, remaining) for c in active):
            continue  # one of them (racing) is fast enough
        claim = max(active, key=lambda c: c.since)  # the newest request goes
        given_up.append(GiveUp(claim, seg, max(c.pos for c in seg.claims)))
        restarts_left -= 1
    return Review(fresh, first_read, given_up)


def typical_rate(segments: Sequence[SegmentView], now: float, finished: Iterable[float]) -> float:
    """The median speed of a connection: ``finished`` claims' and live ones old enough to
    judge."""
    rates = list(finished)
    rates += [c.rate(now) for s in segments for c in s.claims if now - c.started > JUDGE_AFTER]
    rates = [r for r in rates if r > 0]
    return sorted(rates)[len(rates) // 2] if rates else 0.0


class Steal(NamedTuple):
    """Split ``segment`` at ``point``: a new request takes ``point`` to its end."""

    segment: SegmentView
    point: int


def steal(
    segments: Sequence[SegmentView],
    now: float,
    typical: float,
    *,
    connections: int,
    piece: int,
) -> Optional[Steal]:
    """Where to split the tail of the slowest segment for an idle worker.

    The owner keeps what it can fetch in about the time the thief needs for the rest
    (an even split between equals; a straggler keeps little), and at least one read; the
    thief gets at least :func:`min_piece` of ``piece``. ``connections`` is the count the
    download runs.
    """
    live = [
        (seg, seg.claims[0])
        for seg in segments
        if len(seg.claims) == 1 and not seg.claims[0].aborted and not seg.done
    ]
    # Workers without a claim (this thief included) will share what the victim gives up.
    idle = max(1, connections - sum(len(seg.claims) for seg in segments))
    piece = min_piece(piece, typical)
    best: Optional[Tuple[float, SegmentView, int]] = None
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
    return Steal(best[1], best[2])


def unproven(claim: ClaimView, now: float, fresh: float, first_read: float) -> bool:
    """Whether ``claim``'s request could be judged but has not shown it is no straggler."""
    if fresh <= 0 or not judgeable(claim, now, first_read):
        return False
    if claim.shown_fast(fresh, SLOW_SHARE):
        return False
    return claim.window_rate(now) < SLOW_SHARE * fresh


def hedge(
    segments: Sequence[SegmentView],
    now: float,
    typical: float,
    *,
    fresh: float,
    first_read: float,
    hedge_after: float,
    wasted: int,
    waste_cap: int,
) -> Optional[ClaimView]:
    """The claim to race from its current position with an idle worker, if any.

    A segment is raced when it made no progress for a second (or ``hedge_after``, if
    longer); or, while the bytes fetched twice (``wasted``) are under ``waste_cap``: when
    its request could be judged but has not shown yet that it is fast (at the end: nothing
    else is left to do, and a race needs no restart), or when a ``typical`` connection would
    finish what is left more than ``hedge_after`` seconds sooner (and in under half the time).
    """
    best: Optional[Tuple[float, ClaimView]] = None
    for seg in segments:
        if len(seg.claims) != 1 or seg.claims[0].aborted or seg.done:
            continue
        claim = seg.claims[0]
        remaining = seg.end + 1 - claim.pos
        stalled = now - claim.last_progress
        if stalled < max(STALL_AFTER, hedge_after):
            if wasted >= waste_cap:
                continue  # racing by speed has cost enough
            affordable = wasted + remaining <= waste_cap
            if affordable and unproven(claim, now, fresh, first_read):
                eta = remaining / (SLOW_SHARE * fresh)  # at most that fast
            elif now - claim.started < JUDGE_AFTER or claim.pos == claim.base:
                # Too early to judge its speed; a request still waiting for its first
                # byte is raced only once it counts as stalled (a slow round trip is
                # not a slow connection).
                continue
            else:
                rate = claim.rate(now)
                eta = remaining / rate if rate > 0 else float("inf")
                typical_eta = remaining / typical if typical > 0 else 0.0
                if eta - typical_eta < hedge_after or eta < 2 * typical_eta:
                    continue  # a new connection would not finish clearly sooner
        else:
            eta = float("inf")
        if best is None or eta > best[0]:
            best = (eta, claim)
    return best[1] if best is not None else None
