"""Body readers: one worker's read buffer, and the copy step that moves a body into a file.

:func:`copier` picks the fastest way a validated response's body can reach the file: the
zero-copy path of :mod:`accel._http.zerocopy` where it applies, else ``readinto`` a reusable
buffer and ``pwrite`` it. Either way a failing connection raises :class:`ConnectionLost`.
"""

from __future__ import annotations

from typing import Any, Optional

from accel._disk.storage import pwrite_all
from accel._http import zerocopy
from accel._http.fetch import NETWORK_ERRORS, reason
from accel._util.remote import Retryable

#: Largest read a worker's buffer grows to. Measured on loopback (1 GiB, 8 connections):
#: 1 MiB buffers (8 MiB in all) fall out of the CPU caches between recv and pwrite, and the
#: copy into the page cache sometimes doubles the run time; 192 KiB buffers stay warm.
READ_MAX = 192 * 1024

Copy = zerocopy.Copy


class ConnectionLost(Retryable):
    """The connection failed while a body was being read (what arrived before is written)."""


class ReadBuffer:
    """One worker's reusable read buffer, sized to the connection's speed.

    Reads fill the buffer completely (no allocation per read), so the size adapts: it
    doubles while reads complete quickly and halves when one takes long, keeping each
    read near a tenth of a second (progress, watchdog and cancel stay responsive on slow
    links; fast links get large reads and few system calls). The memory is taken on first
    use: a worker whose bodies are spliced (:mod:`accel._http.zerocopy`) uses its ``pipe`` instead.
    """

    MIN = 16 * 1024
    FAST, SLOW = 0.02, 0.15

    def __init__(self, cap: int = READ_MAX) -> None:
        self.cap = max(1, cap)  # the most one read may bring (steal margin, rate limit)
        self.limit = min(self.cap, READ_MAX)
        self.floor = min(self.MIN, self.limit)
        self.size = self.floor  # grows within a few reads on a fast link
        self.pipe: Optional[zerocopy.Pipe] = None
        self._view: Optional[memoryview] = None

    @property
    def view(self) -> memoryview:
        """The buffer's memory (allocated on first use)."""
        if self._view is None:
            self._view = memoryview(bytearray(self.limit))
        return self._view

    def close(self) -> None:
        """Let go of the pipe now (the worker ended); the memory goes with the object."""
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None

    def use(self, limit: int) -> None:
        """Let reads grow to ``limit`` (within the cap): READ_MAX or a pipe's size."""
        self.limit = min(self.cap, limit)
        self.size = min(self.size, self.limit)

    def adapt(self, elapsed: float, filled: bool) -> None:
        """Resize after a read that took ``elapsed`` seconds (``filled``: it got all it asked)."""
        if filled and elapsed < self.FAST:
            self.size = min(self.limit, self.size * 2)
        elif elapsed > self.SLOW:
            self.size = max(self.floor, self.size // 2)


def copier(resp: Any, fd: int, buffer: ReadBuffer) -> Copy:
    """The copy step for ``resp``'s body into ``fd``: ``copy(want, pos)`` -> bytes moved.

    Sizes ``buffer``'s reads for the path chosen (a pipe's size when spliced, else
    :data:`READ_MAX`). A failing connection raises :class:`ConnectionLost`.
    """
    copy = zerocopy.copier(resp, fd, buffer)
    if copy is not None:
        assert buffer.pipe is not None
        buffer.use(buffer.pipe.size)  # no user-space buffer: reads as large as the pipe
    else:
        buffer.use(READ_MAX)
        copy = _read_copy(resp, fd, buffer)
    inner = copy

    def guarded(want: int, pos: int) -> int:
        try:
            return inner(want, pos)
        except NETWORK_ERRORS as exc:
            raise ConnectionLost(f"connection lost at byte {pos}: {reason(exc)}") from exc

    return guarded


def _read_copy(resp: Any, fd: int, buffer: ReadBuffer) -> zerocopy.Copy:
    """The ordinary :data:`~accel._http.zerocopy.Copy`: ``readinto`` the buffer, ``pwrite`` it."""
    # http.client's response under urllib3: readinto() fills our buffer with no copies.
    readinto = getattr(getattr(resp.raw, "_fp", None), "readinto", None)
    if readinto is None:  # pragma: no cover - another transport
        readinto = resp.raw.readinto
    view = buffer.view

    def copy(want: int, pos: int) -> int:
        n: int = readinto(view[:want])
        pwrite_all(fd, view[:n], pos)
        return n

    return copy
