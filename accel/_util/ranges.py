"""Byte ranges and segments: the pure types that the plan, the scheduler and the sidecar share.

Ranges are inclusive, as in HTTP (``bytes=start-end``). A download of ``size`` bytes is a
list of segments that tile ``[0, size)`` exactly: sorted, no overlap, no gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

KiB = 1024
MiB = 1024 * KiB

#: Smallest segment the planner creates up front (a 10 KiB file gets one connection).
DEFAULT_MIN_SEGMENT = 1 * MiB
#: Split points are rounded to this, so writes stay page aligned.
ALIGN = 64 * KiB


@dataclass(frozen=True)
class Range:
    """An inclusive byte range ``[start, end]``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


class Segment:
    """A range being downloaded; ``written`` counts its leading bytes already on disk.

    ``end`` only ever shrinks (when another worker steals the tail) and ``written`` only
    grows (but for a plain stream that starts over from byte 0). A single attribute read is
    atomic, so a worker may read ``end`` without a lock; changes to either happen under the
    scheduler's lock, ``end`` at least one read ahead of the owner's position (see
    :func:`steal_point`).
    """

    __slots__ = ("end", "start", "written")

    def __init__(self, start: int, end: int, written: int = 0) -> None:
        self.start = start
        self.end = end
        self.written = written

    @property
    def pos(self) -> int:
        """Offset of the next byte to fetch."""
        return self.start + self.written

    @property
    def length(self) -> int:
        """Number of bytes the segment spans."""
        return self.end - self.start + 1

    @property
    def remaining(self) -> int:
        """Bytes still to fetch."""
        return max(0, self.end + 1 - self.pos)

    @property
    def done(self) -> bool:
        """True when every byte of the segment is written."""
        return self.pos > self.end

    def __repr__(self) -> str:
        return f"Segment({self.start}, {self.end}, written={self.written})"


def check_tiling(size: int, ranges: Sequence[Tuple[int, int]]) -> None:
    """Raise ValueError unless ``ranges`` (inclusive, sorted) tile ``[0, size)`` exactly."""
    expected = 0
    for start, end in ranges:
        if start != expected or end < start:
            raise ValueError(f"ranges do not tile [0, {size}): {start}-{end} after {expected}")
        expected = end + 1
    if expected != size:
        raise ValueError(f"ranges cover [0, {expected}) instead of [0, {size})")
