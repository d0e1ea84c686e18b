"""Pure planning of byte ranges: no I/O, no clocks, no threads.

Ranges are inclusive, as in HTTP (``bytes=start-end``). A download of ``size`` bytes is a
list of segments that tile ``[0, size)`` exactly: sorted, no overlap, no gap. Each segment
knows how many of its leading bytes are written; work stealing splits the unwritten tail
of one segment into two.
"""

from __future__ import annotations

from typing import Iterable, List, Optional

from accel._util.ranges import (
    ALIGN,
    DEFAULT_MIN_SEGMENT,
    Range,
    Segment,
    check_tiling,
)

#: The end of a stream of unknown length (read until the server ends it).
_UNKNOWN_END = 2**63 - 2


def plan(size: int, connections: int, min_segment: int = DEFAULT_MIN_SEGMENT) -> List[Range]:
    """Split ``size`` bytes into at most ``connections`` near-equal ranges.

    No range is smaller than ``min_segment`` unless the whole file is. A 0-byte file has
    no ranges.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    if connections < 1:
        raise ValueError("connections must be >= 1")
    if size == 0:
        return []
    count = max(1, min(connections, size // max(1, min_segment)))
    bounds = [_align(size * i // count) for i in range(count)] + [size]
    if any(b - a < min(min_segment, size) for a, b in zip(bounds, bounds[1:])):
        bounds = [size * i // count for i in range(count)] + [size]  # alignment cost too much
    return [Range(a, b - 1) for a, b in zip(bounds, bounds[1:]) if b > a]


def _align(offset: int) -> int:
    return offset - offset % ALIGN if offset > ALIGN else offset


def missing(segments: Iterable[Segment]) -> List[Range]:
    """The unwritten ranges of ``segments``, sorted and coalesced."""
    holes: List[Range] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.done:
            continue
        if holes and holes[-1].end + 1 == seg.pos:
            holes[-1] = Range(holes[-1].start, seg.end)
        else:
            holes.append(Range(seg.pos, seg.end))
    return holes


def resume_plan(
    size: int,
    segments: Iterable[Segment],
    connections: int,
    min_segment: int = DEFAULT_MIN_SEGMENT,
) -> List[Segment]:
    """Segments for a new run that continues ``segments`` from an earlier one.

    Written bytes become completed segments (coalesced); the holes are split further until
    there are ``connections`` of them or they reach ``min_segment``. The result tiles
    ``[0, size)``.
    """
    segments = sorted(segments, key=lambda s: s.start)
    check_tiling(size, [(s.start, s.end) for s in segments])
    holes = missing(segments)
    # Split the largest hole while that gives connections something to do.
    while len(holes) < connections:
        largest = max(holes, key=lambda r: r.length, default=None)
        if largest is None or largest.length < 2 * min_segment:
            break
        mid = _align(largest.start + largest.length // 2)
        if mid <= largest.start:
            break
        i = holes.index(largest)
        holes[i : i + 1] = [Range(largest.start, mid - 1), Range(mid, largest.end)]
    result: List[Segment] = []
    cursor = 0
    for hole in holes:
        if hole.start > cursor:
            result.append(_done(cursor, hole.start - 1))
        result.append(Segment(hole.start, hole.end))
        cursor = hole.end + 1
    if cursor < size:
        result.append(_done(cursor, size - 1))
    return result


def _done(start: int, end: int) -> Segment:
    return Segment(start, end, end - start + 1)


def fresh_plan(
    size: int, connections: int, min_segment: int = DEFAULT_MIN_SEGMENT
) -> List[Segment]:
    """Segments for a new download."""
    return [Segment(r.start, r.end) for r in plan(size, connections, min_segment)]


def initial_plan(
    size: Optional[int],
    connections: int,
    min_segment: int = DEFAULT_MIN_SEGMENT,
    *,
    ranged: bool,
    body: bool = True,
    max_size: Optional[int] = None,
) -> List[Segment]:
    """Segments for the first run of a download of ``size`` bytes (None: unknown).

    With ranges, :func:`fresh_plan`; without them one segment for the whole file; with no
    ``body`` to read (or nothing to fetch), none. A stream of unknown length reads to its
    end, or to one byte past ``max_size`` (the largest allowed), to notice it is too long.
    """
    if size == 0 or not body:
        return []
    if ranged:
        assert size is not None
        return fresh_plan(size, connections, min_segment)
    if size is not None:
        return [Segment(0, size - 1)]
    return [Segment(0, _UNKNOWN_END if max_size is None else max_size)]


def steal_point(
    pos: int,
    end: int,
    min_split: int,
    *,
    margin: Optional[int] = None,
    share: float = 0.5,
) -> Optional[int]:
    """Where to split the unwritten ``[pos, end]`` of a segment for another worker, or None.

    The owner keeps about ``share`` of the remaining bytes, and never fewer than ``margin``
    (default ``min_split``): an owner in the middle of a read of at most ``margin`` bytes
    never crosses its new end. The thief gets ``[point, end]``, at least ``min_split // 2``
    bytes (``min_split`` when the split can be aligned to :data:`ALIGN`).
    """
    margin = min_split if margin is None else margin
    remaining = end + 1 - pos
    if min_split < 1 or remaining < margin + min_split:
        return None
    keep = max(margin, int(remaining * min(max(share, 0.0), 1.0)))
    point = _align_up(pos + keep)
    if end + 1 - point < min_split:
        point = pos + keep
    if point - pos < margin or end + 1 - point < max(1, min_split // 2):
        return None
    return point


def _align_up(offset: int) -> int:
    return offset + (-offset % ALIGN)
