"""Unit tests of the pure scheduler (accel._engine.scheduler) on a fake clock: no network, no
sleeping, no threads. Workers are simulated by taking claims, moving ``claim.pos`` forward,
advancing the clock and releasing the claims.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from accel._engine.plan import fresh_plan
from accel._engine.scheduler import (
    DEFAULT_READ_MARGIN,
    JUDGE_AFTER,
    MIN_STEAL_ETA,
    STALL_AFTER,
    THROTTLE_PERIOD,
    Claim,
    Scheduler,
    segment_map,
)
from accel._engine.sources import Source, SourcePool
from accel._engine.stragglers import JUDGE_FIRST, MAX_RESTARTS, min_piece
from accel._util.ranges import ALIGN, KiB, MiB, Segment, check_tiling
from accel._util.remote import Validators
from accel.limits import HostSlots, SlotLease
from tests.helpers import slots_in_use
from tests.servers import FakeClock

URL = "http://example.test/file.bin"
KEY = "example.test:80"  # the HostSlots key of URL
#: A read size small enough never to be the binding limit of a steal.
SMALL_READ = 64 * KiB


#: Where the fake clock starts.
START = 1000.0


def make_pool(size: Optional[int], slots: Optional[HostSlots] = None) -> SourcePool:
    """A pool with the single source URL (no redirect)."""
    return SourcePool([Source(URL, URL, Validators(size, '"etag"', None))], slots)


def make_scheduler(
    segments: Sequence[Segment],
    clock: FakeClock,
    *,
    connections: int = 4,
    min_split: int = MiB,
    slots: Optional[HostSlots] = None,
    **kwargs: object,
) -> Scheduler:
    """A Scheduler on ``clock`` over ``segments`` with a one-source pool."""
    size = max((s.end + 1 for s in segments), default=0)
    return Scheduler(
        segments,
        make_pool(size, slots),
        connections=connections,
        min_split=min_split,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def buffer(size: int) -> SimpleNamespace:
    """A stand-in for a worker's read buffer: only ``size`` matters to the scheduler."""
    return SimpleNamespace(size=size)


def take(sched: Scheduler) -> Claim:
    """``next_claim()``, asserting that there was one."""
    claim = sched.next_claim()
    assert claim is not None
    return claim


def progress(claim: Claim, clock: FakeClock, nbytes: int) -> None:
    """The worker wrote ``nbytes`` more (never past the segment's end), stamped now."""
    claim.pos = min(claim.pos + nbytes, claim.seg.end + 1)
    claim.last_progress = clock()


def finish(claim: Claim, clock: FakeClock) -> None:
    """The worker wrote the rest of its segment."""
    claim.pos = claim.seg.end + 1
    claim.last_progress = clock()


def spans(sched: Scheduler) -> List[Tuple[int, int]]:
    """(start, end) of every segment, in order."""
    return [(s.start, s.end) for s in sched.segments]


def assert_tiles(size: int, pairs: Sequence[Tuple[int, int]]) -> None:
    """Independent of check_tiling: sorted inclusive pairs cover [0, size) with no gap/overlap."""
    cursor = 0
    for start, end in pairs:
        assert start == cursor, f"gap or overlap at {cursor}: {pairs}"
        assert end >= start
        cursor = end + 1
    assert cursor == size


# -- claims of pending segments and the queries ---------------------------------------------


def test_pending_segments_are_handed_out_in_order() -> None:
    clock = FakeClock(START)
    segments = fresh_plan(8 * MiB, 4, MiB)
    sched = make_scheduler(segments, clock, connections=4)
    claims = [take(sched) for _ in range(4)]
    assert [c.seg for c in claims] == segments
    assert [c.pos for c in claims] == [0, 2 * MiB, 4 * MiB, 6 * MiB]
    for claim in claims:
        assert claim.base == claim.pos
        assert claim.started == claim.last_progress == clock()
        assert claim.source is sched.pool.main
        assert not claim.abort and not claim.until_eof
    assert not sched.has_work()
    assert sched.pool.main.active == 4
    assert sched.next_claim() is None  # every connection busy
    assert sorted(sched.live(), key=lambda c: c.pos) == claims


def test_a_pending_segment_resumes_at_its_written_position() -> None:
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, MiB - 1, 1000), Segment(MiB, 2 * MiB - 1, MiB)], clock)
    claim = take(sched)
    assert (claim.pos, claim.base) == (1000, 1000)
    assert sched.next_claim() is None  # the done segment is not handed out
    assert not sched.has_work()


def test_queries_written_rows_final_size_snapshot() -> None:
    clock = FakeClock(START)
    size = 8 * MiB
    sched = make_scheduler(fresh_plan(size, 4, MiB), clock, connections=4)
    c0, c1, c2, c3 = (take(sched) for _ in range(4))
    assert sched.written() == 0
    assert sched.snapshot(size, width=8) == (0, 4, ">>>>>>>>")

    clock.advance(1.0)
    finish(c0, clock)
    progress(c1, clock, MiB)
    # Live progress counts before any release.
    assert sched.written() == 3 * MiB
    assert sched.rows()[:2] == [(0, 2 * MiB - 1, 2 * MiB), (2 * MiB, 4 * MiB - 1, MiB)]

    completed, losers = sched.release(c0)
    assert completed is c0.seg and losers == []
    assert c0.seg.done
    completed, losers = sched.release(c3)  # gave up without a byte: queued again
    assert completed is None and losers == []
    assert sched.has_work()

    assert sched.written() == 3 * MiB
    assert sched.rows() == [
        (0, 2 * MiB - 1, 2 * MiB),
        (2 * MiB, 4 * MiB - 1, MiB),
        (4 * MiB, 6 * MiB - 1, 0),
        (6 * MiB, 8 * MiB - 1, 0),
    ]
    assert sched.final_size() == size
    assert not sched.all_done()
    # Each cell is 1 MiB: seg0 done, half of seg1 done, seg1's rest and seg2 in flight,
    # seg3 missing.
    assert sched.snapshot(size, width=8) == (3 * MiB, 2, "###>>>..")
    assert sched.snapshot(None) == (3 * MiB, 2, "")

    c3 = take(sched)
    for claim in (c1, c2, c3):
        finish(claim, clock)
        assert sched.release(claim)[0] is claim.seg
    assert sched.all_done()
    assert sched.written() == size
    assert sched.snapshot(size, width=8) == (size, 0, "########")
    assert sched.live() == []
    assert sched.pool.main.active == 0


def test_release_of_a_finished_segment_completes_it_only_once() -> None:
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, MiB - 1)], clock)
    claim = take(sched)
    finish(claim, clock)
    assert sched.release(claim) == (claim.seg, [])
    assert sched.release(claim) == (None, [])  # released twice: not completed again
    assert not sched.has_work()


def test_segment_map_cells() -> None:
    done, flying, missing = Segment(0, 99, 100), Segment(100, 199, 50), Segment(200, 399)
    segments = [done, flying, missing]
    claims: Dict[Segment, List[Claim]] = {flying: [Claim(flying, 150, 0.0)]}

    def written(seg: Segment) -> int:
        return seg.written

    assert segment_map(segments, claims, 400, written, width=8) == "###>...."
    assert segment_map(segments, {}, 400, written, width=8) == "###....."
    assert segment_map(segments, claims, 0, written) == ""
    assert len(segment_map(segments, claims, 400, written, width=3)) == 3
    # More cells than bytes: every cell still maps to a byte.
    tiny = [Segment(0, 0, 1), Segment(1, 1)]
    assert segment_map(tiny, {}, 2, written, width=4) == "##.."


def test_claim_rate_and_read_margin() -> None:
    claim = Claim(Segment(0, 10 * MiB - 1), 0, 100.0)
    assert claim.rate(100.0) == 0.0  # no time elapsed: no division by zero
    claim.pos = 3 * MiB
    assert claim.rate(102.0) == 1.5 * MiB
    assert claim.read_margin == DEFAULT_READ_MARGIN
    claim.buffer = buffer(12345)
    assert claim.read_margin == 12345


# -- work stealing --------------------------------------------------------------------------


def owner_after_one_second(
    owner_bytes: int, *, margin: int = SMALL_READ, end: int = 16 * MiB - 1, restarts: bool = False
) -> Tuple[Scheduler, Claim]:
    """Two connections: one finishes a 1 MiB segment at 1 MiB/s in a second, the owner of
    ``[1 MiB, end]`` writes ``owner_bytes`` in that second. Returns the owner's claim.

    Unless ``restarts``, none are left: a straggler is split as when they are used up."""
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, MiB - 1), Segment(MiB, end)], clock, connections=2)
    if not restarts:
        sched.restarts_left = 0
    first, owner = take(sched), take(sched)
    first.buffer, owner.buffer = buffer(SMALL_READ), buffer(margin)
    clock.advance(1.0)
    finish(first, clock)
    progress(owner, clock, owner_bytes)
    assert sched.release(first) == (first.seg, [])
    assert not sched.has_work()
    return sched, owner


def test_steal_between_equals_splits_the_rest_about_in_half() -> None:
    sched, owner = owner_after_one_second(MiB)
    victim = owner.seg
    old_end = victim.end
    thief = take(sched)
    new = thief.seg
    assert new is not victim
    assert new.end == old_end
    assert victim.end == new.start - 1
    assert (thief.pos, thief.base, new.written) == (new.start, new.start, 0)
    assert owner.pos < new.start  # the owner is not moved
    kept = new.start - owner.pos
    assert 0.45 <= kept / (old_end + 1 - owner.pos) <= 0.55
    assert new.start % ALIGN == 0
    check_tiling(16 * MiB, spans(sched))
    assert_tiles(16 * MiB, [(s, e) for s, e, _ in sched.rows()])
    assert new in sched.segments and len(sched.segments) == 3
    assert sched.written() == 2 * MiB  # no byte counted twice or lost
    assert sched.pool.main.active == 2


def test_a_straggler_keeps_little() -> None:
    sched, owner = owner_after_one_second(SMALL_READ)  # 64 KiB/s against 1 MiB/s
    old_end = owner.seg.end
    thief = take(sched)
    kept = thief.seg.start - owner.pos
    assert owner.seg.end == thief.seg.start - 1
    assert thief.seg.end == old_end
    assert SMALL_READ <= kept < 0.15 * (old_end + 1 - owner.pos)
    check_tiling(16 * MiB, spans(sched))


def test_steal_takes_from_the_slowest_live_claim() -> None:
    clock = FakeClock(START)
    segments = [Segment(0, MiB - 1), Segment(MiB, 9 * MiB - 1), Segment(9 * MiB, 17 * MiB - 1)]
    sched = make_scheduler(segments, clock, connections=3)
    quick, slow, fast = (take(sched) for _ in range(3))
    for claim in (quick, slow, fast):
        claim.buffer = buffer(SMALL_READ)
    clock.advance(1.0)
    finish(quick, clock)
    progress(slow, clock, 768 * KiB)  # slower than the others, not slow enough to restart
    progress(fast, clock, 2 * MiB)
    sched.release(quick)
    fast_end = fast.seg.end
    thief = take(sched)
    assert slow.seg.end == thief.seg.start - 1
    assert thief.seg.end == 9 * MiB - 1
    assert fast.seg.end == fast_end
    check_tiling(17 * MiB, spans(sched))


def test_no_steal_while_speeds_are_unknown() -> None:
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, 16 * MiB - 1)], clock, connections=2)
    owner = take(sched)
    owner.buffer = buffer(SMALL_READ)
    clock.advance(JUDGE_AFTER * 0.6)
    progress(owner, clock, 100 * KiB)
    assert sched.next_claim() is None  # too early to judge: no steal, no hedge
    assert spans(sched) == [(0, 16 * MiB - 1)]
    assert sched.live() == [owner]
    # Once the owner's speed is known, the same call steals.
    clock.advance(JUDGE_AFTER)
    progress(owner, clock, 100 * KiB)
    thief = take(sched)
    assert owner.seg.end == thief.seg.start - 1
    check_tiling(16 * MiB, spans(sched))


@pytest.mark.parametrize(("owner_bytes", "steals"), [(15 * MiB, False), (8 * MiB, True)])
def test_no_steal_when_the_owner_finishes_soon(owner_bytes: int, steals: bool) -> None:
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, 16 * MiB - 1)], clock, connections=2)
    owner = take(sched)
    owner.buffer = buffer(SMALL_READ)
    clock.advance(1.0)
    progress(owner, clock, owner_bytes)
    remaining = owner.seg.end + 1 - owner.pos
    eta = remaining / owner.rate(clock())
    assert (eta < MIN_STEAL_ETA) is not steals  # the parameters straddle the threshold
    thief = sched.next_claim()
    if steals:
        assert thief is not None and owner.seg.end == thief.seg.start - 1
    else:
        # 1 MiB left at 15 MiB/s: not split, and not worth racing either.
        assert thief is None
        assert spans(sched) == [(0, 16 * MiB - 1)]


@pytest.mark.parametrize("margin", [SMALL_READ, MiB, 4 * MiB])
def test_the_owner_keeps_at_least_its_read_margin(margin: int) -> None:
    sched, owner = owner_after_one_second(SMALL_READ, margin=margin)
    thief = take(sched)
    kept = thief.seg.start - owner.pos
    assert kept >= margin
    if margin >= MiB:  # a straggler would keep less: the margin is what binds
        assert kept < margin + ALIGN
    check_tiling(16 * MiB, spans(sched))


def test_the_default_read_margin_applies_before_the_buffer_is_known() -> None:
    sched, owner = owner_after_one_second(SMALL_READ)
    owner.buffer = None
    thief = take(sched)
    assert thief.seg.start - owner.pos >= DEFAULT_READ_MARGIN


def test_no_split_when_the_read_margin_leaves_no_piece_a_hedge_instead() -> None:
    # 15 MiB left: a 15 MiB read in flight leaves less than a piece to steal.
    sched, owner = owner_after_one_second(SMALL_READ, margin=15 * MiB)
    end = owner.seg.end
    racer = take(sched)
    assert owner.seg.end == end  # not cut under the read in flight
    assert racer.seg is owner.seg and racer.pos == owner.pos  # the straggler is raced
    assert len(sched.segments) == 2


def test_a_steal_without_a_free_host_slot_changes_nothing() -> None:
    slots = HostSlots(2)
    clock = FakeClock(START)
    sched = make_scheduler(
        [Segment(0, MiB - 1), Segment(MiB, 16 * MiB - 1)], clock, connections=3, slots=slots
    )
    first, owner = take(sched), take(sched)
    owner.buffer = buffer(SMALL_READ)
    clock.advance(1.0)
    finish(first, clock)
    progress(owner, clock, MiB)
    sched.release(first)
    other = slots.lease(KEY)  # another download takes the freed slot
    assert other is not None
    assert sched.next_claim() is None
    assert spans(sched) == [(0, MiB - 1), (MiB, 16 * MiB - 1)]
    assert sched.pool.main.active == 1
    other.release()
    thief = take(sched)
    assert owner.seg.end == thief.seg.start - 1
    assert slots_in_use(slots, KEY) == 2


def test_no_steal_from_a_plain_stream() -> None:
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, 16 * MiB - 1)], clock, connections=2, ranged=False)
    owner = take(sched)
    clock.advance(2 * STALL_AFTER)  # slow and stalled: still nothing to split or race
    assert sched.next_claim() is None
    assert sched.live() == [owner]


# -- hedging --------------------------------------------------------------------------------


def test_a_stalled_claim_is_raced_from_its_position() -> None:
    clock = FakeClock(START)
    # 1 MiB: too small to split under a 1 MiB read margin, so only a hedge can help.
    sched = make_scheduler([Segment(0, MiB - 1)], clock, connections=3)
    owner = take(sched)
    clock.advance(0.1)
    progress(owner, clock, 512 * KiB)
    clock.advance(STALL_AFTER / 2)
    assert sched.next_claim() is None  # slowed down, not stalled: no race yet
    clock.advance(STALL_AFTER / 2 + 0.01)
    racer = take(sched)
    assert racer.seg is owner.seg
    assert racer.pos == racer.base == owner.pos == 512 * KiB
    assert not owner.abort and not racer.abort
    assert len(sched.segments) == 1
    assert sched.next_claim() is None  # never a third racer on one segment


def slow_or_fast(fraction: float) -> Tuple[FakeClock, Scheduler, Claim]:
    """A connection finished 1 MiB at 1 MiB/s; the owner of an 8 MiB segment ran at
    ``fraction`` of that speed for a second with a read size too large to split under."""
    clock = FakeClock(START)
    segments = [Segment(0, MiB - 1), Segment(MiB, 9 * MiB - 1)]
    sched = make_scheduler(segments, clock, connections=2)
    first, owner = take(sched), take(sched)
    owner.buffer = buffer(64 * MiB)  # never split: only hedging is left
    clock.advance(1.0)
    finish(first, clock)
    progress(owner, clock, int(fraction * MiB))
    sched.release(first)
    return clock, sched, owner


@pytest.mark.parametrize(("fraction", "hedged"), [(0.3, True), (0.8, False), (1.0, False)])
def test_a_much_slower_claim_is_hedged(fraction: float, hedged: bool) -> None:
    _, sched, owner = slow_or_fast(fraction)
    racer = sched.next_claim()
    if hedged:
        assert racer is not None
        assert racer.seg is owner.seg and racer.pos == owner.pos
    else:
        assert racer is None
    assert spans(sched) == [(0, MiB - 1), (MiB, 9 * MiB - 1)]


@pytest.mark.parametrize("winner", ["racer", "owner"])
def test_the_first_racer_to_finish_wins_and_the_loser_is_stopped(winner: str) -> None:
    clock, sched, owner = slow_or_fast(0.3)
    racer = take(sched)
    seg = owner.seg
    clock.advance(1.0)
    progress(owner, clock, 100 * KiB)
    win, lose = (racer, owner) if winner == "racer" else (owner, racer)
    finish(win, clock)
    completed, losers = sched.release(win)
    assert completed is seg
    assert losers == [lose] and lose.abort
    assert not win.abort
    assert sched.all_done()
    # The loser lets go later: nothing is completed twice or queued again.
    assert sched.release(lose) == (None, [])
    assert not sched.has_work()
    assert sched.next_claim() is None
    assert sched.live() == []
    assert seg.written == seg.length
    assert sched.written() == 9 * MiB
    assert sched.pool.main.active == 0


def test_a_racer_that_gives_up_leaves_the_segment_to_the_other() -> None:
    clock, sched, owner = slow_or_fast(0.3)
    racer = take(sched)
    assert sched.release(racer) == (None, [])  # e.g. its request failed
    assert not sched.has_work()  # the owner still works on it: not queued
    assert sched.live() == [owner]
    finish(owner, clock)
    assert sched.release(owner) == (owner.seg, [])
    assert sched.all_done()


# -- release, close -------------------------------------------------------------------------


def test_release_of_an_unfinished_claim_queues_the_segment_again() -> None:
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2)
    first, second = take(sched), take(sched)
    clock.advance(0.5)
    progress(first, clock, 300 * KiB)
    assert sched.release(first) == (None, [])
    assert first.seg.written == 300 * KiB
    assert sched.has_work()
    again = take(sched)
    assert again.seg is first.seg
    assert again.pos == again.base == 300 * KiB  # resumes where the other stopped
    assert sched.live() == [second, again]


def test_after_close_a_released_segment_is_not_queued_again() -> None:
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2)
    first, _ = take(sched), take(sched)
    progress(first, clock, 300 * KiB)
    sched.close()
    assert sched.release(first) == (None, [])
    assert first.seg.written == 300 * KiB  # progress is still folded in
    assert not sched.has_work()
    assert sched.rows()[0] == (0, 2 * MiB - 1, 300 * KiB)


# -- the 429/503 cap ------------------------------------------------------------------------


def test_throttle_lowers_the_cap_for_a_while() -> None:
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(8 * MiB, 4, MiB), clock, connections=4)
    claims = [take(sched) for _ in range(3)]
    assert not sched.over_cap()
    # One fewer than the 3 live, for a while (the autoscaler is told until when).
    assert sched.throttle() == (2, clock() + THROTTLE_PERIOD)
    assert sched.over_cap()
    assert sched.next_claim() is None
    assert sched.has_work()  # the fourth segment waits
    sched.release(claims.pop())
    assert not sched.over_cap()
    assert sched.next_claim() is None  # 2 live: at the cap, none more
    clock.advance(THROTTLE_PERIOD - 0.5)
    assert sched.next_claim() is None
    clock.advance(0.5)
    assert take(sched).seg.start == 6 * MiB
    assert take(sched).seg.start == 4 * MiB
    assert sched.next_claim() is None  # back to 4 connections


def test_throttle_never_goes_below_one_and_extends_the_period() -> None:
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(8 * MiB, 4, MiB), clock, connections=4)
    take(sched)
    assert sched.throttle()[0] == 1
    assert sched.throttle()[0] == 1
    clock.advance(THROTTLE_PERIOD - 1)
    assert sched.throttle() == (1, clock() + THROTTLE_PERIOD)  # a new 429 starts it again
    clock.advance(2)
    assert sched.next_claim() is None
    clock.advance(THROTTLE_PERIOD)
    assert sched.next_claim() is not None


# -- host slots -----------------------------------------------------------------------------


def test_host_slots_refuse_a_second_claim_until_the_first_is_released() -> None:
    slots = HostSlots(1)
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2, slots=slots)
    first = take(sched)
    lease = first.lease
    assert isinstance(lease, SlotLease) and lease.held and lease.key == KEY
    assert slots_in_use(slots, KEY) == 1
    assert sched.next_claim() is None
    assert sched.has_work()  # refused for want of a slot, not lost
    assert sched.pool.main.active == 1
    sched.release(first)
    assert first.lease is None and not lease.held
    assert slots_in_use(slots, KEY) == 0
    # Released exactly once: a slot someone else takes now is not freed by a second release.
    other = slots.lease(KEY)
    assert other is not None
    sched.release(first)
    lease.release()
    assert slots_in_use(slots, KEY) == 1
    other.release()
    second = take(sched)
    assert second.seg.start == 2 * MiB
    assert slots_in_use(slots, KEY) == 1


def test_first_claim_keeps_the_probes_lease() -> None:
    slots = HostSlots(1)
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2, slots=slots)
    probe_lease = slots.lease(KEY)
    assert probe_lease is not None
    assert sched.first_claim(5, probe_lease) is None  # no pending segment starts there
    claim = sched.first_claim(2 * MiB, probe_lease)
    assert claim is not None
    assert claim.lease is probe_lease and probe_lease.held
    assert claim.seg.start == 2 * MiB
    assert slots_in_use(slots, KEY) == 1
    assert sched.next_claim() is None  # the probe's slot is the only one
    assert sched.first_claim(2 * MiB, None) is None  # claimed already
    sched.release(claim)
    assert not probe_lease.held and slots_in_use(slots, KEY) == 0
    assert take(sched).seg.start == 0


def test_first_claim_moves_a_lease_on_another_host() -> None:
    slots = HostSlots(1)
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2, slots=slots)
    elsewhere = slots.lease("redirector.test:443")
    assert elsewhere is not None
    claim = sched.first_claim(0, elsewhere)
    assert claim is not None
    assert not elsewhere.held and slots_in_use(slots, "redirector.test:443") == 0
    assert claim.lease is not None and claim.lease.key == KEY
    assert slots_in_use(slots, KEY) == 1


def test_first_claim_is_forced_past_a_full_host() -> None:
    slots = HostSlots(1)
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(4 * MiB, 2, MiB), clock, connections=2, slots=slots)
    other = slots.lease(KEY)
    assert other is not None
    claim = sched.first_claim(0, None)
    assert claim is not None and claim.lease is None
    assert slots_in_use(slots, KEY) == 1
    sched.release(claim)
    assert slots_in_use(slots, KEY) == 1 and other.held


# -- streams of unknown length --------------------------------------------------------------


UNKNOWN_END = 2**63 - 2


@pytest.mark.parametrize("length", [0, 1, 12345])
def test_end_at_eof_fixes_the_length_of_an_unknown_size_stream(length: int) -> None:
    clock = FakeClock(START)
    sched = Scheduler(
        [Segment(0, UNKNOWN_END)],
        make_pool(None),
        connections=4,
        min_split=MiB,
        ranged=False,
        until_eof=True,
        clock=clock,
    )
    claim = take(sched)
    assert claim.until_eof
    clock.advance(1.0)
    progress(claim, clock, length)
    assert sched.next_claim() is None  # one stream: nothing to share
    assert not sched.all_done()
    sched.end_at_eof(claim)
    assert claim.seg.end == length - 1
    assert sched.final_size() == length
    assert sched.all_done()
    # An empty body leaves an empty segment, done before its release: nothing to complete.
    assert sched.release(claim) == (claim.seg if length else None, [])
    assert sched.rows() == [(0, length - 1, length)]
    assert sched.written() == length
    assert not sched.has_work()


def test_end_at_eof_never_moves_the_end_before_the_start() -> None:
    clock = FakeClock(START)
    seg = Segment(100, UNKNOWN_END, 0)
    sched = make_scheduler([seg], clock, ranged=False, until_eof=True)
    claim = take(sched)
    claim.pos = 50  # cannot happen in practice; the end stays a valid empty range
    sched.end_at_eof(claim)
    assert seg.end == 99 and seg.length == 0


# -- a whole download, simulated ------------------------------------------------------------


def test_simulated_download_with_a_straggler_tiles_and_completes() -> None:
    """Four workers, one 20x slower than the others, 0.05 s ticks until every byte is in."""
    clock = FakeClock(START)
    size = 24 * MiB + 12345
    sched = make_scheduler(fresh_plan(size, 4, MiB), clock, connections=4)
    speeds = [4 * MiB, 4 * MiB, 4 * MiB, 200 * KiB]  # bytes/s per worker
    held: List[Optional[Claim]] = [None] * 4
    stopped: List[Claim] = []
    completions: List[Segment] = []
    steals = 0
    for _ in range(2000):
        for i in range(4):
            claim = held[i]
            if claim is not None and (claim.abort or claim.pos > claim.seg.end):
                completed, losers = sched.release(claim)
                if completed is not None:
                    completions.append(completed)
                stopped.extend(losers)
                held[i] = None
            if held[i] is None:
                ends = {id(c): (c, c.seg.end) for c in sched.live()}
                held[i] = sched.next_claim()
                for other, end in ends.values():
                    if other.seg.end != end:  # stolen from: one read ahead at least
                        assert other.seg.end + 1 - other.pos >= other.read_margin
                        steals += 1
                assert_tiles(size, spans(sched))
        if sched.all_done():
            break
        clock.advance(0.05)
        for i, claim in enumerate(held):
            if claim is not None and not claim.abort:
                progress(claim, clock, int(speeds[i] * 0.05))
    assert sched.all_done()
    for claim in held:
        if claim is not None:
            completed, _ = sched.release(claim)
            if completed is not None:
                completions.append(completed)
    assert sched.live() == []
    # Every segment was completed by exactly one release.
    assert sorted(id(s) for s in completions) == sorted(id(s) for s in sched.segments)
    assert sched.written() == size
    assert sched.final_size() == size
    assert all(s.done for s in sched.segments)
    check_tiling(size, spans(sched))
    assert steals > 0
    assert all(c.abort for c in stopped)
    # Straggler or not, the download takes about as long as 3 fast workers need.
    assert clock.now - 1000.0 < 1.5 * size / (3 * 4 * MiB)


def test_a_request_waiting_for_its_first_byte_is_raced_only_when_stalled() -> None:
    """A slow round trip is not a slow connection: a claim with no byte yet is not hedged by
    speed (it would double every first request on a high-latency link), only by the stall
    rule."""
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, MiB - 1)], clock, connections=3)
    owner = take(sched)
    owner.buffer = buffer(64 * MiB)  # never split: only hedging could take it
    sched.finished_rates.append(float(MiB))  # the typical connection is known and fast
    clock.advance(JUDGE_AFTER * 3)  # 0.45 s without a first byte
    assert sched.next_claim() is None
    clock.advance(STALL_AFTER)
    racer = take(sched)
    assert racer.seg is owner.seg and racer.pos == owner.pos == 0


# -- per-request stragglers: restarts, races, caps (accel._engine.stragglers) -----------------

FAST = 2 * MiB  # bytes/s of a fresh request in these tests; a slow one gets FAST / 8


def busy(
    count: int, clock: FakeClock, *, size: int = 16 * MiB, read: int = 16 * KiB
) -> Tuple[Scheduler, List[Claim]]:
    """``count`` connections, each busy with one of ``count`` segments (none idle)."""
    sched = make_scheduler(fresh_plan(size, count, MiB), clock, connections=count)
    claims = [take(sched) for _ in range(count)]
    for claim in claims:
        claim.buffer = buffer(read)
        claim.response = object()  # the request each worker sent
    return sched, claims


def run(
    claims: Sequence[Claim],
    clock: FakeClock,
    seconds: float,
    speeds: Sequence[float],
    sched: Optional[Scheduler] = None,
) -> List[Claim]:
    """Advance ``seconds`` in steps of 10 ms, each claim moving at its speed; with ``sched``,
    review it after each step (as the transfer does every tick). Returns the claims given up."""
    given_up: List[Claim] = []
    for _ in range(round(seconds / 0.01)):
        clock.advance(0.01)
        for claim, speed in zip(claims, speeds):
            if speed > 0 and not claim.abort:
                progress(claim, clock, int(speed * 0.01))
        if sched is not None:
            given_up += sched.review()
    return given_up


def test_a_slow_request_is_restarted_soon_without_an_idle_worker() -> None:
    clock = FakeClock(START)
    sched, claims = busy(4, clock)
    slow = claims[3]
    speeds = [FAST, FAST, FAST, FAST / 8]
    assert run(claims, clock, JUDGE_FIRST - 0.01, speeds, sched) == []  # too early to judge
    assert sched.first_read == pytest.approx(0.01)  # known to within a review
    assert run(claims, clock, 0.02, speeds, sched) == [slow]  # to be woken: a read may block
    assert slow.abort and slow.given_up
    assert not any(c.abort for c in claims[:3])
    assert sched.review() == []  # once
    assert sched.next_claim() is None  # every connection still busy
    # Its worker lets go; the segment is requested again from where it stopped, at once.
    assert sched.release(slow) == (None, [])
    assert sched.pending[0] is slow.seg
    again = take(sched)
    assert again.seg is slow.seg and again.pos == again.base == slow.pos
    assert spans(sched) == [(s.start, s.end) for s in fresh_plan(16 * MiB, 4, MiB)]
    assert sched.restarts[slow.seg] == 1


def test_a_straggler_is_taken_over_whole_by_an_idle_worker_not_split() -> None:
    sched, owner = owner_after_one_second(SMALL_READ, restarts=True)  # 64 KiB/s against 1 MiB/s
    racer = take(sched)
    assert owner.abort and owner.given_up  # told to let go
    assert racer.seg is owner.seg and racer.pos == owner.pos  # the rest, whole
    assert spans(sched) == [(0, MiB - 1), (MiB, 16 * MiB - 1)]
    # The straggler lets go later: the segment is neither queued again nor completed.
    assert sched.release(owner) == (None, [])
    assert not sched.has_work()
    assert sched.live() == [racer]
    assert sched.written() == MiB + SMALL_READ


def test_a_request_with_no_byte_yet_waits_for_a_typical_first_read() -> None:
    clock = FakeClock(START)
    sched, claims = busy(4, clock)
    late = claims[3]
    speeds = [FAST, FAST, FAST, 0.0]
    # The others' first reads come after 0.2 s (a long round trip): so may the late one's.
    assert run(claims, clock, 0.2, [0.0] * 4, sched) == []
    assert run(claims, clock, 0.4, speeds, sched) == []  # 0.6 s: a slow round trip
    assert sched.first_read == pytest.approx(0.21)
    assert run(claims, clock, 0.03, speeds, sched) == [late]  # past three first reads


def test_a_request_with_no_byte_and_no_typical_first_read_is_not_judged() -> None:
    clock = FakeClock(START)
    sched, claims = busy(2, clock)
    clock.advance(0.6)  # too late to tell when the other's first read came
    progress(claims[0], clock, int(0.6 * FAST))
    assert sched.review() == []
    assert sched.first_read == 0.0
    clock.advance(0.5)
    progress(claims[0], clock, int(0.5 * FAST))
    assert sched.review() == []  # left to the stall rule


@pytest.mark.parametrize(("read", "restarted"), [(MiB, False), (16 * KiB, True)])
def test_a_large_read_in_flight_is_not_taken_for_no_progress(read: int, restarted: bool) -> None:
    clock = FakeClock(START)
    sched, claims = busy(4, clock)
    claims[3].buffer = buffer(read)
    speeds = [FAST, FAST, FAST, 0.0]
    given_up = run(claims, clock, 0.2, speeds, sched)  # the typical first read: 10 ms
    # 1 MiB may be arriving at 5 MiB/s: it is not known to be slow; 16 KiB at 80 KiB/s is.
    assert given_up == ([claims[3]] if restarted else [])


def test_a_new_request_on_a_claim_is_measured_afresh() -> None:
    clock = FakeClock(START)
    sched, claims = busy(2, clock)
    assert run(claims, clock, 1.0, [FAST, FAST], sched) == []
    claims[1].response = object()  # the next request of the same claim (after the probe's)
    # Seen at the next review, judged JUDGE_FIRST later, though its average is still fine.
    assert run(claims, clock, JUDGE_FIRST + 0.02, [FAST, FAST / 8], sched) == [claims[1]]
    assert claims[1].rate(clock()) > FAST / 2


def test_two_slow_racers_the_newest_request_is_restarted() -> None:
    clock, sched, owner = slow_or_fast(0.1)
    racer = take(sched)  # a hedge
    owner.buffer = racer.buffer = buffer(16 * KiB)
    assert run([owner, racer], clock, 0.2, [0.1 * MiB, 0.15 * MiB], sched) == [racer]
    assert not owner.abort
    assert sched.release(racer) == (None, [])  # the owner keeps going: not queued again
    assert not sched.has_work()
    again = take(sched)  # the racer's worker requests the rest again
    assert again.seg is owner.seg and again.pos == max(owner.pos, racer.pos)
    assert sched.live() == [owner, again]


def test_restarts_are_capped_per_segment_and_per_download() -> None:
    clock = FakeClock(START)
    sched, claims = busy(2, clock)
    seg = claims[1].seg
    for i in range(MAX_RESTARTS + 1):
        given_up = run(claims, clock, 0.2, [FAST, FAST / 8], sched)
        if i == MAX_RESTARTS:
            assert given_up == []  # seven slow requests in a row: left alone
            break
        assert given_up == [claims[1]]
        sched.release(claims[1])
        claims[1] = take(sched)
        claims[1].buffer = buffer(16 * KiB)
    assert sched.restarts[seg] == MAX_RESTARTS
    # Per download: none left, none restarted (though the segment has restarts left).
    sched.restarts[seg] = 0
    sched.restarts_left = 0
    assert run(claims, clock, 0.2, [FAST, FAST / 8], sched) == []


def test_no_restarts_when_the_transfer_says_so() -> None:
    """E.g. under a rate limit shared by all connections a new request is no faster."""
    clock = FakeClock(START)
    sched = make_scheduler(fresh_plan(16 * MiB, 2, MiB), clock, connections=2, restarts=False)
    claims = [take(sched), take(sched)]
    for claim in claims:
        claim.buffer = buffer(16 * KiB)
    assert run(claims, clock, 0.5, [FAST, FAST / 8], sched) == []
    assert not claims[1].abort


@pytest.mark.parametrize(("remaining", "splits"), [(2 * MiB, False), (4 * MiB, True)])
def test_a_stolen_piece_is_worth_a_request(remaining: int, splits: bool) -> None:
    """At 8 MiB/s a piece is worth at least 0.2 s of it, more than the 256 KiB minimum."""
    clock = FakeClock(START)
    sched = make_scheduler([Segment(0, 8 * MiB - 1), Segment(8 * MiB, 32 * MiB - 1)], clock)
    first, owner = take(sched), take(sched)
    owner.buffer = buffer(SMALL_READ)
    clock.advance(1.0)
    finish(first, clock)
    progress(owner, clock, 8 * MiB)  # 8 MiB/s, as the other
    owner.seg.end = owner.pos + remaining - 1  # (the rest was stolen earlier)
    sched.release(first)
    assert sched.piece == 256 * KiB
    assert min_piece(sched.piece, 8 * MiB) > MiB
    thief = sched.next_claim()
    if splits:
        assert thief is not None and thief.seg.length >= min_piece(sched.piece, 8 * MiB)
    else:
        assert thief is None


def test_hedging_by_speed_stops_at_the_waste_cap_but_not_for_a_stall() -> None:
    clock, sched, owner = slow_or_fast(0.3)
    sched.restarts_left = 0  # only hedging is left
    sched.wasted = sched.waste_cap
    assert sched.next_claim() is None
    clock.advance(STALL_AFTER + 0.01)
    racer = take(sched)  # a stall is raced whatever it costs
    assert racer.seg is owner.seg


def test_the_bytes_fetched_twice_by_a_race_are_counted() -> None:
    clock, sched, owner = slow_or_fast(0.3)
    sched.restarts_left = 0
    racer = take(sched)
    assert racer.base == owner.pos
    progress(owner, clock, 100 * KiB)
    finish(racer, clock)
    sched.release(racer)
    assert sched.wasted == 100 * KiB  # what the loser fetched past where the racer began
    assert sched.waste_cap == int(0.1 * 9 * MiB)  # a small download: a tenth of it


def test_at_the_end_a_request_not_yet_shown_fast_is_raced() -> None:
    clock = FakeClock(START)
    sched, claims = busy(2, clock, size=4 * MiB)
    run(claims, clock, 0.3, [FAST, FAST], sched)  # the typical first read: 10 ms
    finish(claims[0], clock)
    sched.release(claims[0])
    # The other's next request, 512 KiB before its end, has its first read in flight.
    claims[1].base = claims[1].pos = claims[1].seg.end + 1 - 512 * KiB
    claims[1].buffer = buffer(256 * KiB)
    claims[1].response = object()
    sched.review()
    assert sched.next_claim() is None  # too young to tell, too small to split
    clock.advance(JUDGE_FIRST + 0.02)
    racer = take(sched)
    assert racer.seg is claims[1].seg and racer.pos == claims[1].pos


def test_simulated_per_request_stragglers_finish_near_the_ideal() -> None:
    """Eight workers on 32 MiB; each new request is 8x slower with probability 1/3 (seeded).
    With restarts the download takes at most 1.4x the straggler-free ideal."""

    def simulate(seed: int, *, restarts: bool) -> float:
        rng = random.Random(seed)
        clock = FakeClock(START)
        size, n = 32 * MiB, 8
        sched = make_scheduler(fresh_plan(size, n, MiB), clock, connections=n)
        if not restarts:
            sched.restarts_left = 0
        held: List[Optional[Claim]] = [None] * n
        speed = [0.0] * n
        for _ in range(3000):
            for claim in sched.review():
                assert claim.abort
            for i in range(n):
                claim = held[i]
                if claim is not None and (claim.abort or claim.pos > claim.seg.end):
                    sched.release(claim)
                    held[i] = claim = None
                if claim is None:
                    claim = held[i] = sched.next_claim()
                    if claim is not None:
                        claim.buffer = buffer(16 * KiB)
                        speed[i] = FAST / 8 if rng.random() < 1 / 3 else FAST
            if sched.all_done():
                break
            clock.advance(0.01)
            for i, claim in enumerate(held):
                if claim is not None and not claim.abort:
                    progress(claim, clock, int(speed[i] * 0.01))
        assert sched.all_done()
        assert_tiles(size, spans(sched))
        return (clock.now - 1000.0) / (size / (n * FAST))

    for seed in (1, 2, 3):
        assert simulate(seed, restarts=True) <= 1.4
    assert max(simulate(s, restarts=False) for s in (1, 2, 3)) > 1.4


def test_the_waste_cap_is_a_share_of_big_downloads_and_a_tenth_of_small_ones() -> None:
    from accel._engine.stragglers import waste_cap

    assert waste_cap(2 * MiB) == int(0.2 * MiB)  # not 1 MiB twice of a 2 MiB file
    assert waste_cap(32 * MiB) == MiB
    assert waste_cap(1024 * MiB) == int(0.03 * 1024 * MiB)
