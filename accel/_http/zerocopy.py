"""Zero-copy bodies on Linux: socket -> pipe -> file with ``splice(2)``.

A plain-HTTP response body with a known length never enters user space: after
:func:`accel._util.remote.check_partial` accepted the headers, the bytes http.client already
buffered are written as usual, then each read moves socket pages into a pipe and from the
pipe to the file at the worker's offset. The response's remaining length is kept in step
with http.client's own, so a body read to its end leaves the connection reusable exactly as
an ordinary read would. TLS, chunked bodies, bodies of unknown length and other platforms
use the ordinary read path (:func:`copier` returns None).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import sys
import threading
import weakref
from typing import Any, Callable, Dict, Optional

from accel._disk.storage import WRITE_FAILED, pwrite_all
from accel.exceptions import local_error

log = logging.getLogger(__name__)

#: A copy step: ``copy(want, pos)`` moves up to ``want`` bytes of the body to offset
#: ``pos`` of the file and returns how many (0: the body ended). Network failures raise
#: ``OSError`` (socket.timeout included); write failures raise a LocalFileError.
Copy = Callable[[int, int], int]

AVAILABLE = sys.platform.startswith("linux") and hasattr(os, "splice")
#: The pipe size asked for: a read never moves more than this at once.
PIPE_SIZE = 1024 * 1024
#: Bodies shorter than this are read the ordinary way.
SPLICE_MIN = 256 * 1024
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python >= 3.10 names it)
_F_GETPIPE_SZ = 1032
_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)
#: Errors of splice(2) that mean "not for this pair of files": fall back to reads.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}

#: Cleared when the file system of an output refuses splice; kept off for the process.
_enabled = AVAILABLE and os.environ.get("ACCEL_NO_SPLICE", "") in ("", "0")


_locks: Dict[int, threading.Lock] = {}


def file_lock(fd: int) -> threading.Lock:
    """The lock that serialises spliced writes to ``fd`` from the workers of one download.

    The kernel serialises buffered writes to one file anyway (the inode lock); with
    several threads splicing, the waiting ones spin on it. Waiting here costs no CPU:
    measured on loopback (1 GiB, 8 connections, tmpfs) 1.04 s of CPU instead of 1.23 s,
    wall time unchanged. (The read path keeps writing unlocked: there the lock saved 5 %
    of CPU but cost 10 % of wall time, the copies out of the socket being in parallel.)
    """
    lock = _locks.get(fd)
    if lock is None:
        lock = _locks.setdefault(fd, threading.Lock())
    return lock


class Pipe:
    """One worker's pipe (both ends non-blocking), closed when the worker drops it."""

    def __init__(self) -> None:
        import fcntl

        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending = 0  # bytes in the pipe not yet in the file
        self._close = weakref.finalize(self, _close_pair, self.r, self.w)
        self._close.atexit = False  # at exit a daemon thread may still hold it; exit closes it
        try:
            self.size = int(fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE))
        except OSError:  # over the user's pipe-pages quota: keep the default size
            self.size = int(fcntl.fcntl(self.w, _F_GETPIPE_SZ))

    def close(self) -> None:
        """Close both ends now."""
        self._close()


def _close_pair(r: int, w: int) -> None:
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def socket_of(resp: Any) -> Any:
    """The socket (or TLS wrapper) a requests response ``resp`` is read from; None once
    its connection let go of it, or for None."""
    raw = getattr(resp, "raw", None)
    conn = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(conn, "sock", None)


def copier(resp: Any, fd: int, holder: Any) -> Optional[Copy]:
    """A splicing :data:`Copy` for the body of the requests response ``resp``, or None.

    ``holder`` keeps the worker's :class:`Pipe` in its ``pipe`` attribute across responses.
    """
    if not _enabled:
        return None
    hr = getattr(getattr(resp, "raw", None), "_fp", None)  # http.client's, under urllib3
    sock = socket_of(resp)
    # Plain TCP only (an SSLSocket is a subclass); a known length, not chunked, not HEAD.
    if type(sock) is not socket.socket or hr is None or getattr(hr, "fp", None) is None:
        return None
    if getattr(hr, "chunked", True) or not isinstance(getattr(hr, "length", None), int):
        return None
    if getattr(hr, "_method", "GET") != "GET" or hr.length < SPLICE_MIN:
        return None  # a small body: a pipe's set-up costs more than the copy it saves
    pipe = holder.pipe
    if pipe is None:
        try:
            pipe = holder.pipe = Pipe()
        except OSError as exc:  # out of file descriptors: read the ordinary way
            log.debug("no pipe for splice: %s", exc)
            return None
    return _Splicer(hr, sock, fd, pipe).copy


class _Splicer:
    """Moves one response's body into the file; see :func:`copier`."""

    __slots__ = (
        "buffered",
        "fd",
        "hr",
        "lock",
        "pipe",
        "poller",
        "sock",
        "sock_fd",
        "timeout",
    )

    def __init__(self, hr: Any, sock: socket.socket, fd: int, pipe: Pipe) -> None:
        self.hr = hr
        self.sock = sock
        self.sock_fd = sock.fileno()
        self.fd = fd
        self.lock = file_lock(fd)
        self.pipe = pipe
        timeout = sock.gettimeout()
        self.timeout = -1 if timeout is None else max(0, int(timeout * 1000))
        self.poller: Optional[Any] = None
        self.buffered = True  # http.client may hold the first body bytes in its buffer

    def copy(self, want: int, pos: int) -> int:
        hr = self.hr
        if hr.fp is None or not hr.length:
            return 0
        want = min(want, hr.length, self.pipe.size)
        if self.pipe.pending:  # an interrupted copy (KeyboardInterrupt): not this body's
            self._discard()
        if self.buffered:
            n = self._drain_buffer(want, pos)
            if n:
                return n
        got = self._fill(want)
        if got:
            self._to_file(got, pos)
            hr.length -= got
            if not hr.length:
                hr.readinto(bytearray(0))  # lets http.client mark the body read (reusable)
        return got

    def _drain_buffer(self, want: int, pos: int) -> int:
        """Write what http.client buffered past the headers (0: nothing, use the socket)."""
        reader = self.hr.fp
        # peek() returns the buffer when it holds anything, else reads the socket once.
        pending = len(reader.peek(1))
        if pending <= want:
            self.buffered = False
        data = self.hr.read(min(pending, want))
        pwrite_all(self.fd, data, pos)
        return len(data)

    def _fill(self, want: int) -> int:
        """Move up to ``want`` bytes from the socket into the (empty) pipe."""
        got = 0
        while got < want:
            try:
                n = os.splice(self.sock_fd, self.pipe.w, want - got, flags=_MOVE | _NONBLOCK)
            except BlockingIOError:
                if got:
                    break  # enough for one write; the socket refills meanwhile
                self._wait()
                continue
            except OSError:
                if got:
                    break  # write what came; the next read raises again
                raise
            if not n:
                break  # EOF: the caller sees a short or empty read
            got += n
            self.pipe.pending = got
        return got

    def _wait(self) -> None:
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(self.sock_fd, select.POLLIN | select.POLLPRI)
        if not self.poller.poll(self.timeout):
            raise socket.timeout("read timed out")

    def _to_file(self, n: int, pos: int) -> None:
        """Move ``n`` bytes from the pipe to the file at ``pos``."""
        global _enabled
        pipe = self.pipe
        done = 0
        try:
            with self.lock:
                while done < n:
                    done += os.splice(pipe.r, self.fd, n - done, offset_dst=pos + done)
                    pipe.pending = n - done
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                self._discard()
                raise local_error(exc, WRITE_FAILED) from exc
            # This file system does not take splice: the pipe's bytes go by read and write,
            # and later bodies are read the ordinary way.
            _enabled = False
            log.debug("splice to the output refused (%s): reading instead", exc)
            while done < n:
                data = os.read(pipe.r, n - done)
                pwrite_all(self.fd, data, pos + done)
                done += len(data)
                pipe.pending = n - done

    def _discard(self) -> None:
        """Empty the pipe of bytes that will not be written (it serves the next response)."""
        pipe = self.pipe
        while pipe.pending > 0:
            try:
                chunk = os.read(pipe.r, min(pipe.pending, 65536))
            except OSError:
                chunk = b""
            if not chunk:
                pipe.pending = 0
                return
            pipe.pending -= len(chunk)
