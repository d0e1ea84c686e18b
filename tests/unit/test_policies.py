"""Unit tests of the engine's pure policies on plain values and a fake clock: the rate
estimator (accel._util.meter), the straggler policy's decisions (accel._engine.stragglers),
the low-speed watchdog's verdicts (accel._engine.watchdog) and the autoscaler's 429 hold.
No scheduler, no sockets, no threads, no sleeping."""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

import pytest

from accel._engine import stragglers as policy
from accel._engine.autoscale import INTERVAL, Autoscaler
from accel._engine.views import ClaimView, SegmentView
from accel._engine.watchdog import SpeedFloor
from accel._util.meter import RateMeter, RateWindow, rate_since
from accel._util.ranges import KiB, MiB
from accel.exceptions import NetworkError
from tests.servers import FakeClock

NOW = 1000.0


def claim(
    pos: int,
    *,
    base: int = 0,
    started: float = NOW - 1.0,
    last_progress: Optional[float] = None,
    aborted: bool = False,
    connected: bool = True,
    margin: int = 64 * KiB,
    since: Optional[float] = None,
    since_pos: Optional[int] = None,
    window: Optional[Tuple[float, int]] = None,
    seg_end: int = 16 * MiB - 1,
    ref: Any = None,
    peak: float = 0.0,
) -> ClaimView:
    """A view of a claim; its request and its window begin where the claim began."""
    since = started if since is None else since
    since_pos = base if since_pos is None else since_pos
    return ClaimView(
        ref if ref is not None else object(),
        pos,
        base,
        started,
        NOW if last_progress is None else last_progress,
        aborted,
        False,
        connected,
        margin,
        since,
        since_pos,
        window if window is not None else (since, since_pos),
        seg_end,
        peak,
    )


def segment(start: int, end: int, *claims: ClaimView, restarts: int = 0) -> SegmentView:
    """A view of a segment and the claims on it."""
    done = any(c.pos > end for c in claims)
    return SegmentView(object(), start, end, done, claims, False, restarts)


# -- the rate estimator -----------------------------------------------------------------------


def test_a_mark_is_the_average_since_one_moment() -> None:
    mark = RateWindow(10.0, 1000)
    assert mark.rate(10.0, 5000) == 0.0  # no time passed: no rate
    assert mark.rate(12.0, 5000) == 2000.0
    assert mark.rate(12.0, 5000, extra=1000) == 2500.0  # a read in flight counted
    mark.add(20.0, 9000)  # a mark keeps its one sample
    assert mark.oldest == (10.0, 1000) and not mark.full(1e9)
    assert rate_since(0.0, 0, 0.0, 10) == 0.0


def test_a_window_slides_keeping_a_sample_every_so_often() -> None:
    clock = FakeClock(0.0)
    window = RateWindow(clock(), 0, span=1.0, every=0.25)
    count = 0
    for _ in range(40):  # 100 bytes per 0.1 s for 4 s ...
        clock.advance(0.1)
        count += 100
        window.add(clock(), count)
    assert window.full(clock())
    t0, _ = window.oldest
    assert 1.0 <= clock() - t0 < 1.25 + 1e-9  # the newest sample at least a span old
    assert window.rate(clock(), count) == pytest.approx(1000.0)
    assert len(window.samples) <= 6  # not every add is kept
    for _ in range(20):  # ... then the count stops: the window forgets the old speed
        clock.advance(0.1)
        window.add(clock(), count)
    assert window.rate(clock(), count) == 0.0


def test_a_young_window_is_not_full() -> None:
    window = RateWindow(5.0, 0, span=2.0, every=0.5)
    window.add(6.0, 100)
    assert not window.full(6.9) and window.full(7.0)


def test_the_display_meter_is_renewed_once_per_window() -> None:
    clock = FakeClock(0.0)
    meter = RateMeter(0, window=0.5, clock=clock)
    clock.advance(0.25)
    assert meter.update(500) == 0.0  # the first window is not over
    clock.advance(0.25)
    assert meter.update(1000) == pytest.approx(2000.0)
    clock.advance(0.25)
    assert meter.update(5000) == pytest.approx(2000.0)  # held until the next window ends
    clock.advance(0.25)
    assert meter.update(2000) == pytest.approx(2000.0)
    clock.advance(0.5)
    assert meter.update(1500) == 0.0  # never negative


def test_the_display_meter_is_thread_safe() -> None:
    meter = RateMeter(0, window=0.0)
    errors: List[BaseException] = []

    def hammer() -> None:
        try:
            for i in range(2000):
                assert meter.update(i) >= 0.0
        except BaseException as exc:  # pragma: no cover - the failure is the report
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- the straggler policy ---------------------------------------------------------------------


def fast(pos: int, **kw: Any) -> ClaimView:
    """A claim at 1 MiB/s over its last second (its request judged long ago)."""
    return claim(pos, window=(NOW - 1.0, pos - MiB), **kw)


def test_review_gives_up_on_a_straggler_among_fast_requests() -> None:
    slow = claim(3 * MiB + 10 * KiB, base=3 * MiB, window=(NOW - 1.0, 3 * MiB))
    segs = [
        segment(0, 4 * MiB - 1, fast(MiB)),
        segment(4 * MiB, 8 * MiB - 1, fast(5 * MiB)),
        segment(8 * MiB, 12 * MiB - 1, slow),
    ]
    review = policy.review(segs, NOW, finished_rates=[], first_reads=[0.02], restarts_left=5)
    assert review.fresh == pytest.approx(MiB)
    assert review.first_read == pytest.approx(0.02)
    assert [g.claim for g in review.give_up] == [slow]
    assert review.give_up[0].segment is segs[2] and review.give_up[0].resume_at == slow.pos


def test_review_respects_the_caps_and_a_fast_racer() -> None:
    slow = claim(8 * MiB + 10 * KiB, base=8 * MiB, window=(NOW - 1.0, 8 * MiB))
    others = [segment(0, 4 * MiB - 1, fast(MiB)), segment(4 * MiB, 8 * MiB - 1, fast(5 * MiB))]

    def gives_up(seg: SegmentView, left: int = 5) -> bool:
        segs = [*others, seg]
        found = policy.review(segs, NOW, finished_rates=[], first_reads=[], restarts_left=left)
        return bool(found.give_up)

    assert gives_up(segment(8 * MiB, 12 * MiB - 1, slow))
    assert not gives_up(segment(8 * MiB, 12 * MiB - 1, slow), left=0)  # none left
    capped = segment(8 * MiB, 12 * MiB - 1, slow, restarts=policy.MAX_RESTARTS)
    assert not gives_up(capped)  # restarted enough: left alone (or raced)
    racing = segment(8 * MiB, 12 * MiB - 1, slow, fast(8 * MiB + 5 * KiB))
    assert not gives_up(racing)  # the racer is fast enough
    flight = claim(slow.pos, base=8 * MiB, window=(NOW - 1.0, 8 * MiB), margin=MiB)
    assert not gives_up(segment(8 * MiB, 12 * MiB - 1, flight))  # a large read in flight


def test_a_young_request_is_not_judged_before_a_typical_first_read() -> None:
    young = claim(8 * MiB, base=8 * MiB, started=NOW - 0.2)  # no byte after 0.2 s
    segs = [segment(0, 4 * MiB - 1, fast(MiB)), segment(8 * MiB, 12 * MiB - 1, young)]
    late = policy.review(segs, NOW, finished_rates=[], first_reads=[0.1], restarts_left=5)
    assert not late.give_up  # 3 x 0.1 s: not yet
    unknown = policy.review(segs, NOW, finished_rates=[], first_reads=[], restarts_left=5)
    assert not unknown.give_up  # no byte and nothing known of first reads: not judged
    due = policy.review(segs, NOW, finished_rates=[], first_reads=[0.05], restarts_left=5)
    assert [g.claim for g in due.give_up] == [young]


def test_typical_rate_is_the_median_of_finished_and_judged_claims() -> None:
    segs = [
        segment(0, 4 * MiB - 1, claim(MiB)),  # 1 MiB/s on average since it started
        segment(4 * MiB, 8 * MiB - 1, claim(4 * MiB + 1, base=4 * MiB, started=NOW - 0.1)),
    ]
    assert policy.typical_rate(segs, NOW, [3.0 * MiB, 0.0]) == pytest.approx(3.0 * MiB)
    assert policy.typical_rate(segs, NOW, [3.0 * MiB, 0.5 * MiB]) == pytest.approx(MiB)
    assert policy.typical_rate([], NOW, []) == 0.0


def test_steal_splits_between_equals_about_in_half() -> None:
    owner = claim(MiB, seg_end=17 * MiB - 1)  # 1 MiB/s, 16 MiB to go
    seg = segment(0, 17 * MiB - 1, owner)
    choice = policy.steal([seg], NOW, float(MiB), connections=2, piece=256 * KiB)
    assert choice is not None and choice.segment is seg
    assert abs(choice.point - 9 * MiB) <= 64 * KiB  # each keeps about 8 MiB


def test_no_steal_when_nothing_is_known_or_it_would_not_pay() -> None:
    young = claim(64 * KiB, started=NOW - 0.1)
    assert (
        policy.steal([segment(0, 16 * MiB - 1, young)], NOW, 0.0, connections=2, piece=MiB) is None
    )
    soon = claim(16 * MiB - 100 * KiB)  # done within 0.1 s
    assert (
        policy.steal(
            [segment(0, 16 * MiB - 1, soon)], NOW, float(MiB), connections=2, piece=64 * KiB
        )
        is None
    )
    raced = segment(0, 16 * MiB - 1, claim(MiB), claim(MiB))
    assert policy.steal([raced], NOW, float(MiB), connections=3, piece=64 * KiB) is None


def test_hedge_races_a_stalled_claim_even_past_the_waste_cap() -> None:
    stalled = claim(MiB, last_progress=NOW - 2.0)
    segs = [segment(0, 4 * MiB - 1, stalled), segment(4 * MiB, 8 * MiB - 1, fast(5 * MiB))]
    kw = {"fresh": float(MiB), "first_read": 0.01, "hedge_after": 0.25}
    assert policy.hedge(segs, NOW, float(MiB), wasted=MiB, waste_cap=MiB, **kw) is stalled
    calm = [segs[1]]
    assert policy.hedge(calm, NOW, float(MiB), wasted=0, waste_cap=MiB, **kw) is None


def test_hedge_races_an_unproven_request_while_affordable() -> None:
    slow = claim(MiB + 10 * KiB, base=MiB, window=(NOW - 1.0, MiB), seg_end=MiB + 200 * KiB)
    segs = [segment(MiB, MiB + 200 * KiB, slow)]
    kw = {"fresh": float(MiB), "first_read": 0.01, "hedge_after": 0.25}
    assert policy.hedge(segs, NOW, float(MiB), wasted=0, waste_cap=MiB, **kw) is slow
    assert policy.hedge(segs, NOW, float(MiB), wasted=MiB, waste_cap=MiB, **kw) is None


def test_overlap_and_min_piece() -> None:
    assert policy.overlap(300, 100, 200) == 100  # the loser's bytes past the winner's start
    assert policy.overlap(150, 100, 200) == 0
    assert policy.min_piece(256 * KiB, 0.0) == 256 * KiB
    assert policy.min_piece(256 * KiB, 10.0 * MiB) == 2 * MiB  # 0.2 s of a fast connection


def test_the_meter_measures_each_request_afresh() -> None:
    meter = policy.Meter(NOW, 0)
    first, second = object(), object()
    assert meter.observe(NOW + 0.01, 0, NOW, first) is None  # no byte yet
    assert meter.observe(NOW + 0.1, 4096, NOW + 0.05, first) == pytest.approx(0.05)
    assert meter.observe(NOW + 0.2, 8192, NOW + 0.15, first) is None  # known already
    meter.observe(NOW + 0.3, 8192, NOW + 0.15, second)  # a new request on the claim
    assert (meter.since, meter.start, meter.first_read) == (NOW + 0.3, 8192, None)
    assert meter.window.oldest == (NOW + 0.3, 8192)


# -- the low-speed watchdog -------------------------------------------------------------------


class Watch:
    """A SpeedFloor of ``limit`` bytes/s over 1 s, fed every 0.1 s by a fake clock."""

    def __init__(self, limit: int = 100 * KiB, *, ranged: bool = True) -> None:
        self.clock = FakeClock()
        self.floor = SpeedFloor(limit, 1.0, 0, ranged=ranged, resumable=True)
        self.floor.start(self.clock())
        self.refs = [object(), object()]

    def run(self, seconds: float, rates: List[float], *, held: bool = False) -> List[Any]:
        """Connections at ``rates`` bytes/s; every verdict's (replaced refs, error)."""
        pos = [0] * len(rates)
        seen: List[Any] = []
        for _ in range(round(seconds / 0.1)):
            self.clock.advance(0.1)
            pos = [p + int(r * 0.1) for p, r in zip(pos, rates)]
            live = [claim(p, ref=self.refs[i]) for i, p in enumerate(pos)]
            verdict = self.floor.check(self.clock(), live, sum(pos), held=held)
            seen.append(([v.ref for v in verdict.replace], verdict.error))
        return seen


def test_no_floor_no_verdict() -> None:
    watch = Watch(limit=0)
    assert all(not r and e is None for r, e in watch.run(3.0, [0.0]))


def test_a_slow_connection_is_replaced_when_another_reaches_the_floor() -> None:
    watch = Watch()
    verdicts = watch.run(1.5, [10.0 * KiB, 500.0 * KiB])
    replaced = [r for r, _ in verdicts if r]
    assert replaced and replaced[0] == [watch.refs[0]]
    assert all(e is None for _, e in verdicts)


def test_all_below_the_floor_ends_the_attempt_after_a_second_chance() -> None:
    lone = Watch()
    verdicts = lone.run(3.5, [10.0 * KiB])
    replaced = [i for i, (r, _) in enumerate(verdicts) if r]
    errors = [i for i, (_, e) in enumerate(verdicts) if e is not None]
    assert len(replaced) == 1 and errors  # one new connection, then the error ...
    assert errors[0] - replaced[0] >= 10  # ... a whole window later
    error = verdicts[errors[0]][1]
    assert isinstance(error, NetworkError) and "too slow" in str(error)
    both = Watch()
    verdicts = both.run(1.5, [10.0 * KiB, 10.0 * KiB])  # two slow: a slow link, no replacing
    assert not any(r for r, _ in verdicts) and any(e is not None for _, e in verdicts)


def test_time_held_by_the_rate_limit_does_not_count() -> None:
    watch = Watch()
    assert all(not r and e is None for r, e in watch.run(5.0, [0.0], held=True))
    plain = Watch(ranged=False)  # a plain stream is never replaced: it ends
    verdicts = plain.run(1.5, [10.0 * KiB])
    assert not any(r for r, _ in verdicts) and any(e is not None for _, e in verdicts)


# -- the autoscaler's hold after a 429 ---------------------------------------------------------


def test_the_autoscaler_holds_exactly_as_long_as_the_scheduler_says() -> None:
    clock = FakeClock()
    scaler = Autoscaler(16, clock=clock)
    count, written = 8, 0
    count = scaler.update(count, written, throttled_until=clock() + 2.0)
    assert count == 7
    grown_at: Optional[float] = None
    start = clock()
    while clock() - start < 4.0 and grown_at is None:
        clock.advance(0.05)
        written += int(count * MiB * 0.05)  # a per-connection throttle: more would pay
        count = scaler.update(count, written)
        if count > 7:
            grown_at = clock() - start
    assert grown_at is not None and 2.0 <= grown_at <= 2.0 + 2 * INTERVAL + 0.2


# -- requests that come in bursts (issue 22) ------------------------------------------------


def bursty(pos: int, **kw: Any) -> ClaimView:
    """A request paused since its last burst (nothing in its last second), whose peak was
    4 MiB/s: nginx's limit_rate sends each second's worth at once."""
    return claim(pos, window=(NOW - 1.0, pos), since=NOW - 2.0, peak=4.0 * MiB, **kw)


def test_a_request_shown_fast_is_not_restarted_between_its_bursts() -> None:
    paused = bursty(9 * MiB, base=8 * MiB, started=NOW - 2.0)
    never = claim(8 * MiB + 10 * KiB, base=8 * MiB, window=(NOW - 1.0, 8 * MiB))
    others = [segment(0, 4 * MiB - 1, fast(MiB)), segment(4 * MiB, 8 * MiB - 1, fast(5 * MiB))]
    for view, restarted in ((paused, False), (never, True)):
        segs = [*others, segment(8 * MiB, 12 * MiB - 1, view)]
        found = policy.review(segs, NOW, finished_rates=[], first_reads=[], restarts_left=5)
        assert bool(found.give_up) is restarted
    # Nor raced at the end as a request that has not shown it is fast.
    assert policy.unproven(never, NOW, MiB, 0.0)
    assert not policy.unproven(paused, NOW, MiB, 0.0)
    # The peak counts against what a new request may expect: a little is not enough.
    assert not paused._replace(peak=0.3 * MiB).shown_fast(MiB, policy.SLOW_SHARE)
    assert paused._replace(peak=0.4 * MiB).shown_fast(MiB, policy.SLOW_SHARE)


def test_the_meter_keeps_the_peak_of_windows_long_enough_to_judge() -> None:
    meter = policy.Meter(NOW, 0)
    meter.observe(NOW + 0.05, 200 * KiB, NOW + 0.05, None)  # one read: 4 MiB/s over 0.05 s
    assert meter.peak == 0.0  # too short a window to say anything of the request
    meter.observe(NOW + policy.PEAK_SPAN, 256 * KiB, NOW + 0.2, None)
    assert meter.peak == pytest.approx(256 * KiB / policy.PEAK_SPAN)
    t = NOW + policy.PEAK_SPAN
    for _ in range(20):  # then a pause: the peak stays
        t += policy.SAMPLE_EVERY
        meter.observe(t, 256 * KiB, NOW + 0.2, None)
    assert meter.window.rate(t, 256 * KiB) == 0.0
    assert meter.peak == pytest.approx(256 * KiB / policy.PEAK_SPAN)
    meter.observe(t + 0.05, 300 * KiB, t, object())
    meter.observe(t + 0.1, 400 * KiB, t, object())  # a new request: measured afresh
    assert meter.peak == 0.0
