"""Typed lifecycle events and progress snapshots delivered to ``on_event`` callbacks.

Callbacks run on the thread that called :meth:`accel.Downloader.run` (or the download's own
thread after :meth:`~accel.Downloader.start`), one at a time, never concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True)
class Started(Event):
    """The transfer begins: ``resumed`` bytes were already on disk from an earlier run."""

    url: str
    path: Path
    size: Optional[int]
    resumed: int
    connections: int


@dataclass(frozen=True)
class SegmentCompleted(Event):
    """Every byte of ``[start, end]`` is written."""

    start: int
    end: int


@dataclass(frozen=True)
class Retrying(Event):
    """A range failed and will be fetched again after ``delay`` seconds."""

    start: int
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True)
class Restarted(Event):
    """Progress was discarded and the download starts over (remote changed, bad state...)."""

    reason: str


@dataclass(frozen=True)
class AlreadyComplete(Event):
    """The output file already matches the remote file; nothing was downloaded."""

    path: Path


@dataclass(frozen=True)
class Completed(Event):
    """The file is complete at ``path``."""

    path: Path
    size: int


@dataclass(frozen=True)
class Failed(Event):
    """The download stopped with ``error`` (its state is saved when resumable)."""

    error: BaseException


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running download."""

    written: int
    total: Optional[int]
    rate: float
    eta: Optional[float]
    connections: int
    #: One character per cell: "#" written, ">" in flight, "." missing.
    segment_map: str = ""


@dataclass(frozen=True)
class ManagerProgress:
    """A snapshot of a :class:`accel.Manager`: files by state, bytes and total rate."""

    done: int
    failed: int
    queued: int
    active: int
    #: Bytes received by all downloads in this run.
    received: int
    rate: float

    @property
    def finished(self) -> int:
        """Downloads that ended, successfully or not."""
        return self.done + self.failed
