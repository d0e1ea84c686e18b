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
    """The transfer begins: ``resumed`` bytes were already on disk from an earlier run.

    ``ranged``: the server serves byte ranges (False: one connection, one stream from the
    first byte). ``resumable``: an interruption can be resumed later (ranges and a strong
    validator); False means a later run starts over.
    """

    url: str
    path: Path
    size: Optional[int]
    resumed: int
    connections: int
    ranged: bool = True
    resumable: bool = True


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
    """The file is complete at ``path``; ``digest`` names the check it passed, if any
    (``"sha256 (--checksum)"``, ``"Repr-Digest sha-256"``)."""

    path: Path
    size: int
    digest: Optional[str] = None


@dataclass(frozen=True)
class Failed(Event):
    """The download stopped with ``error`` (its state is saved when resumable).

    A cancel is not a failure: it ends with :class:`Cancelled` instead.
    """

    error: BaseException


@dataclass(frozen=True)
class Cancelled(Event):
    """The download was cancelled (:meth:`accel.Downloader.cancel`, or its Manager's).

    ``resumable``: what was written is kept and a new :class:`~accel.Downloader` for the
    same file resumes it; False when nothing useful could be kept (a server without ranges:
    the partial file was removed, so a new download starts over). ``message`` says which.
    """

    message: str
    resumable: bool = True


@dataclass(frozen=True)
class Progress:
    """A snapshot of a download: bytes ``written`` of ``total`` (None: unknown), the
    current ``rate`` in bytes/s, the ``eta`` in seconds (None: unknown), the number of live
    ``connections`` and the segment map. A finished download reports rate 0 and ETA 0."""

    written: int
    total: Optional[int]
    rate: float
    eta: Optional[float]
    connections: int
    #: One character per cell: "#" written, ">" in flight, "." missing.
    segment_map: str = ""
    #: Whether ``connections`` follows the throughput (``connections="auto"``).
    auto: bool = False


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
