"""Property tests of the pure range planner (accel._engine.plan): tiling, resume, work stealing."""

from __future__ import annotations

import random
from typing import List, Sequence, Tuple

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from accel._engine.plan import fresh_plan, missing, plan, resume_plan, steal_point
from accel._util.ranges import ALIGN, KiB, MiB, Range, Segment, check_tiling

sizes = st.integers(min_value=0, max_value=8 * 1024 * MiB)
small_sizes = st.integers(min_value=0, max_value=4 * MiB)
connections = st.integers(min_value=1, max_value=64)
min_segments = st.integers(min_value=1, max_value=16 * MiB)
aligned_min_segments = st.integers(min_value=1, max_value=256).map(lambda k: k * ALIGN)


def _pairs(ranges: Sequence[Range]) -> List[Tuple[int, int]]:
    return [(r.start, r.end) for r in ranges]


def _assert_tiles(size: int, spans: Sequence[Tuple[int, int]]) -> None:
    """Independent check (not check_tiling) that inclusive spans tile [0, size)."""
    cursor = 0
    for start, end in spans:
        assert start == cursor, f"gap or overlap at {start} (expected {cursor})"
        assert end >= start, f"empty or inverted span {start}-{end}"
        cursor = end + 1
    assert cursor == size


def _merge(intervals: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Half-open intervals merged into a sorted, disjoint, non-adjacent list."""
    out: List[Tuple[int, int]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _written(segments: Sequence[Segment]) -> List[Tuple[int, int]]:
    """The written bytes of ``segments`` as merged half-open intervals."""
    return _merge([(s.start, s.start + s.written) for s in segments])


# --- plan -------------------------------------------------------------------------------


@given(size=sizes, n=connections, min_segment=min_segments)
def test_plan_tiles_exactly(size: int, n: int, min_segment: int) -> None:
    ranges = plan(size, n, min_segment)
    _assert_tiles(size, _pairs(ranges))
    assert len(ranges) <= n
    check_tiling(size, _pairs(ranges))  # and the module's own check agrees


@given(size=sizes, n=connections, min_segment=aligned_min_segments)
def test_plan_respects_aligned_min_segment(size: int, n: int, min_segment: int) -> None:
    ranges = plan(size, n, min_segment)
    if size < min_segment:
        assert len(ranges) == (1 if size else 0)
    for r in ranges:
        assert r.length >= min_segment or len(ranges) == 1


@example(size=200 * KiB, n=2, min_segment=100 * KiB)
@given(
    size=st.integers(min_value=0, max_value=64 * MiB),
    n=connections,
    min_segment=st.integers(min_value=1, max_value=4 * MiB),
)
def test_plan_respects_any_min_segment(size: int, n: int, min_segment: int) -> None:
    """The docstring's promise holds for every min_segment, not only multiples of ALIGN.

    (Options.min_split, which becomes min_segment, may be any integer >= 1.)
    """
    ranges = plan(size, n, min_segment)
    for r in ranges:
        assert r.length >= min_segment or len(ranges) == 1, (
            f"plan({size}, {n}, {min_segment}) made a range of {r.length} bytes: {ranges}"
        )


@given(size=st.integers(min_value=1, max_value=8 * 1024 * MiB), n=connections)
def test_plan_uses_connections_when_file_is_large(size: int, n: int) -> None:
    min_segment = MiB
    ranges = plan(size, n, min_segment)
    assert len(ranges) == max(1, min(n, size // min_segment))


def test_plan_edge_cases() -> None:
    assert plan(0, 8) == []
    assert plan(1, 8) == [Range(0, 0)]
    assert plan(1, 1, 1) == [Range(0, 0)]
    assert plan(10 * KiB, 8) == [Range(0, 10 * KiB - 1)]  # small file: one connection
    assert plan(4 * MiB, 4, MiB) == [
        Range(0, MiB - 1),
        Range(MiB, 2 * MiB - 1),
        Range(2 * MiB, 3 * MiB - 1),
        Range(3 * MiB, 4 * MiB - 1),
    ]
    with pytest.raises(ValueError):
        plan(-1, 4)
    with pytest.raises(ValueError):
        plan(100, 0)


def test_range_length() -> None:
    assert Range(0, 99).length == 100
    assert Range(5, 5).length == 1


@given(size=sizes, n=connections, min_segment=min_segments)
def test_fresh_plan_segments_start_unwritten(size: int, n: int, min_segment: int) -> None:
    segs = fresh_plan(size, n, min_segment)
    assert [(s.start, s.end) for s in segs] == _pairs(plan(size, n, min_segment))
    assert all(s.written == 0 and not s.done for s in segs)


# --- check_tiling -----------------------------------------------------------------------


def test_check_tiling_accepts_exact_tilings() -> None:
    check_tiling(0, [])
    check_tiling(1, [(0, 0)])
    check_tiling(100, [(0, 49), (50, 99)])


@pytest.mark.parametrize(
    ("size", "ranges"),
    [
        (100, []),  # nothing covers a non-empty file
        (100, [(0, 49), (49, 99)]),  # overlap by one byte
        (100, [(0, 49), (51, 99)]),  # gap of one byte
        (100, [(1, 99)]),  # does not start at 0
        (100, [(0, 98)]),  # short
        (100, [(0, 100)]),  # long
        (100, [(50, 99), (0, 49)]),  # unsorted
        (100, [(0, 49), (50, 49), (50, 99)]),  # inverted (empty) range
        (0, [(0, 0)]),  # a range for an empty file
    ],
)
def test_check_tiling_rejects(size: int, ranges: List[Tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        check_tiling(size, ranges)


@given(
    size=st.integers(min_value=2, max_value=10**9),
    data=st.data(),
)
def test_check_tiling_rejects_any_shifted_boundary(size: int, data: st.DataObject) -> None:
    """Moving one interior boundary of a valid tiling by +-1 on one side only breaks it."""
    cut = data.draw(st.integers(min_value=1, max_value=size - 1))
    delta = data.draw(st.sampled_from([-1, 1]))
    check_tiling(size, [(0, cut - 1), (cut, size - 1)])
    with pytest.raises(ValueError):
        check_tiling(size, [(0, cut - 1 + delta), (cut, size - 1)])


# --- missing ----------------------------------------------------------------------------


def test_missing_examples() -> None:
    segs = [Segment(0, 99, 100), Segment(100, 199, 10), Segment(200, 299, 0), Segment(300, 399, 50)]
    # 110-199 and 200-299 are adjacent: coalesced.
    assert missing(segs) == [Range(110, 299), Range(350, 399)]
    assert missing(list(reversed(segs))) == [Range(110, 299), Range(350, 399)]
    assert missing([Segment(0, 9, 10)]) == []
    assert missing([]) == []


@st.composite
def tilings(draw: st.DrawFn, max_size: int = 4 * MiB) -> Tuple[int, List[Segment]]:
    """A size and segments tiling [0, size) with arbitrary written counts."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    cuts = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=size - 1), max_size=20))
        if size > 1
        else set()
    )
    bounds = [0, *cuts, size]
    segs = []
    for a, b in zip(bounds, bounds[1:]):
        length = b - a
        written = draw(
            st.one_of(st.just(0), st.just(length), st.integers(min_value=0, max_value=length))
        )
        segs.append(Segment(a, b - 1, written))
    return size, segs


@given(tilings())
def test_missing_is_exactly_the_unwritten_bytes(case: Tuple[int, List[Segment]]) -> None:
    size, segs = case
    holes = missing(segs)
    spans = [(r.start, r.end + 1) for r in holes]
    # sorted, disjoint and coalesced (never adjacent)
    for (_a1, b1), (a2, _b2) in zip(spans, spans[1:]):
        assert b1 < a2
    assert all(0 <= a < b <= size for a, b in spans)
    unwritten = _merge([(s.pos, s.end + 1) for s in segs])
    assert spans == unwritten


# --- resume_plan ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tilings(), connections, st.integers(min_value=1, max_value=2 * MiB))
def test_resume_plan_keeps_written_bytes(
    case: Tuple[int, List[Segment]], n: int, min_segment: int
) -> None:
    size, segs = case
    before = _written(segs)
    holes_before = len(missing(segs))
    result = resume_plan(size, [Segment(s.start, s.end, s.written) for s in segs], n, min_segment)
    _assert_tiles(size, [(s.start, s.end) for s in result])
    # Every written byte stays written, and no unwritten byte is claimed.
    assert _written(result) == before
    # Each segment is either complete or untouched: a worker fetches it from its start.
    assert all(s.written in (0, s.length) for s in result)
    todo = [s for s in result if not s.done]
    assert holes_before <= len(todo) <= max(n, holes_before)
    assert sum(s.length for s in todo) == size - sum(b - a for a, b in before)


def test_resume_plan_splits_a_single_hole() -> None:
    size = 8 * MiB
    result = resume_plan(size, [Segment(0, size - 1, 0)], 4, MiB)
    _assert_tiles(size, [(s.start, s.end) for s in result])
    assert len(result) == 4
    assert all(s.written == 0 for s in result)


def test_resume_plan_all_written_and_none_written() -> None:
    size = 3 * MiB
    done = resume_plan(size, [Segment(0, MiB - 1, MiB), Segment(MiB, size - 1, 2 * MiB)], 8)
    assert all(s.done for s in done)
    _assert_tiles(size, [(s.start, s.end) for s in done])
    assert missing(done) == []


def test_resume_plan_rejects_a_bad_tiling() -> None:
    with pytest.raises(ValueError):
        resume_plan(100, [Segment(0, 40), Segment(50, 99)], 4)


def test_resume_plan_does_not_split_below_min_segment() -> None:
    size = MiB
    result = resume_plan(size, [Segment(0, size - 1, 0)], 8, MiB)
    assert [(s.start, s.end, s.written) for s in result] == [(0, size - 1, 0)]


# --- steal_point ------------------------------------------------------------------------


@given(
    pos=st.integers(min_value=0, max_value=2**40),
    remaining=st.integers(min_value=0, max_value=64 * MiB),
    min_split=st.integers(min_value=1, max_value=4 * MiB),
)
def test_steal_point_bounds(pos: int, remaining: int, min_split: int) -> None:
    end = pos + remaining - 1
    point = steal_point(pos, end, min_split)
    if remaining < 2 * min_split:
        assert point is None
        return
    if point is None:
        return
    assert point >= pos + min_split  # the owner keeps at least one read of room
    assert point <= end  # the thief gets at least one byte
    assert end + 1 - point >= min_split // 2


@given(
    pos=st.integers(min_value=0, max_value=2**40),
    remaining=st.integers(min_value=0, max_value=64 * MiB),
    min_split=st.integers(min_value=2, max_value=4 * MiB),
)
def test_steal_point_splits_when_there_is_room(pos: int, remaining: int, min_split: int) -> None:
    assume(remaining >= 2 * min_split)
    assert steal_point(pos, pos + remaining - 1, min_split) is not None


def test_steal_point_examples() -> None:
    assert steal_point(0, 2 * MiB - 1, 64 * KiB) == MiB
    assert steal_point(0, 100, 64 * KiB) is None
    assert steal_point(0, 1000, 0) is None
    p = steal_point(10, 10 + 4 * ALIGN - 1, ALIGN)
    assert p is not None and p % ALIGN == 0  # aligned when that keeps both sides big enough


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=16 * MiB),
    n=st.integers(min_value=1, max_value=8),
    min_split=st.integers(min_value=1, max_value=512 * KiB),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_random_steals_and_progress_keep_the_tiling(
    size: int, n: int, min_split: int, seed: int
) -> None:
    """Simulate workers: progress in reads of at most min_split bytes, thieves split tails.

    Invariants after each step: the segments tile [0, size); written never exceeds the
    segment; a steal never moves an end below the owner's position plus an in-flight read.
    """
    rng = random.Random(seed)
    segs = fresh_plan(size, n, min_split)
    for _ in range(200):
        seg = rng.choice(segs)
        if rng.random() < 0.5:
            # The owner writes one read of up to min_split bytes.
            seg.written += min(seg.remaining, rng.randint(1, min_split))
        else:
            # The owner is mid-read (up to min_split bytes in flight) when a thief strikes.
            in_flight = min(seg.remaining, rng.randint(0, min_split))
            old_end, old_written = seg.end, seg.written
            point = steal_point(seg.pos, seg.end, min_split)
            if point is not None:
                seg.end = point - 1
                segs.append(Segment(point, old_end))
                segs.sort(key=lambda s: s.start)
                assert seg.pos + in_flight - 1 <= seg.end
                assert seg.written == old_written
                # Write the in-flight read; it fits in the shrunken segment.
                seg.written += in_flight
        _assert_tiles(size, [(s.start, s.end) for s in segs])
        for s in segs:
            assert 0 <= s.written <= s.length
            assert s.pos <= s.end + 1
    # Finishing every segment completes the file exactly once.
    for s in segs:
        s.written = s.length
    assert missing(segs) == []
    assert sum(s.length for s in segs) == size


def test_segment_properties() -> None:
    s = Segment(100, 199, 30)
    assert (s.pos, s.length, s.remaining, s.done) == (130, 100, 70, False)
    s.written = 100
    assert s.done and s.remaining == 0
