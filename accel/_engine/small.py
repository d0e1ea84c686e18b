"""One file that one response may bring whole: the checks, the ``.part``, the final name.

:class:`SmallFile` hears one response to ``Range: bytes=0-(window-1)`` (the regular probe's
request) through :class:`accel._http.wire.Sink` and decides:

* a 206 whose total fits the window, or a 200 whose Content-Length does: the body goes to
  ``NAME.part`` and the file is moved into place (no lock file, no sidecar: a crash leaves
  a ``.part`` holding the bytes received so far, which the next run fetches again);
* a 206 for a bigger file with a strong validator: the window is written, the ``.part``
  sized and a sidecar saved as if an earlier run had fetched the first segment, so the
  segmented engine continues without fetching it again (:attr:`resume`);
* anything else (other statuses, a 200 too long or of unknown length, a bad Content-Range,
  a file or ``.part`` already there): :attr:`verdict` says why, nothing of the body is
  kept, and the download takes the regular path, which asks again and reports exactly.

Every method runs on the loop's thread and never raises: problems become a verdict.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Protocol, Tuple, Union

from accel import events as ev
from accel._disk import state
from accel._disk.storage import FileLock, check_free_space, finalize
from accel._http.fetch import raise_for_status
from accel._http.wire import Headers
from accel._util.digests import server_digests
from accel._util.names import content_disposition_name, name_from_url
from accel._util.remote import (
    BadResponse,
    RangesUnsupported,
    RemoteFile,
    Retryable,
    check_partial,
    content_length,
    describe,
    http_date_to_timestamp,
)
from accel._util.urls import redact
from accel.exceptions import AccelError, LockedError, local_error
from accel.limits import HostSlots, RateLimiter
from accel.retry import RetryState

log = logging.getLogger(__name__)

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


class Snapshots(Protocol):
    """What :meth:`accel.Downloader.progress` asks of a running download."""

    def snapshot(self) -> ev.Progress: ...


@dataclass(eq=False)
class SmallJob:
    """A download offered to the loop, with what it tells its owner."""

    url: str
    directory: Path
    folder: str  # the same, as text
    force: bool
    max_size: Optional[int]
    timeouts: Tuple[float, float]
    #: The first request asks for bytes 0 to window - 1 (the regular probe's range).
    window: int
    #: Which connections it may share (settings and origin).
    key: Any
    #: Makes the requests session that configures the origin (called once per key).
    session: Callable[[], Any]
    slots: Optional[HostSlots]
    slot: str
    limiter: Optional[RateLimiter]
    #: The owner's ends: complete, failed, cancelled (resumable), regular path (server name).
    done: Callable[[Path, int], None]
    failed: Callable[[BaseException], None]
    cancelled: Callable[[bool], None]
    #: The regular path takes over (the server's name for the file, bytes kept for it).
    regular: Callable[[Optional[str], int], None]
    #: Tries of a retryable status so far (the loop's share of the retry policy).
    tries: RetryState
    #: Whether a digest the server states must be checked (the regular path does it).
    server_digest: bool = True
    #: Hears the file when it starts (the owner's progress snapshots come from it).
    started: Optional[Callable[[Snapshots], None]] = None
    emit: Optional[Callable[[ev.Event], None]] = None
    report: Optional[Callable[[int], None]] = None


class SmallFile:
    """One response's worth of one download (see the module's docstring)."""

    __slots__ = (
        "again",
        "dest",
        "ended",
        "error",
        "expect",
        "fd",
        "headers",
        "job",
        "lock",
        "name",
        "name_",
        "part",
        "ranged",
        "remote",
        "resume",
        "since",
        "total",
        "verdict",
        "window",
        "written",
    )

    def __init__(self, job: SmallJob) -> None:
        self.job = job
        self.window = job.window
        self.name: Optional[str] = None  # the server's name, if it gave one
        self.name_ = _url_name(job.url)
        self.dest = os.path.join(job.folder, self.name_)  # str: paths are made once per file
        self.part = self.dest + ".part"
        self.fd = -1
        self.expect = -1  # body bytes this response must bring
        self.total: Optional[int] = None
        self.written = 0
        self.remote: Optional[RemoteFile] = None  # described when needed
        self.headers: Optional[Headers] = None
        self.ranged = False
        self.resume = False  # big: continue in the segmented engine from the sidecar
        self.lock: Optional[FileLock] = None
        self.ended = False
        #: Why the regular path must take over (None: all well so far).
        self.verdict: Optional[str] = None
        self.error: Optional[AccelError] = None  # a final error status: the download fails
        self.again: Optional[Retryable] = None  # 429, 5xx: worth another try
        self.since = 0.0
        if job.started is not None:
            self.since = time.monotonic()
            job.started(self)

    def snapshot(self) -> ev.Progress:
        """Progress for :meth:`accel.Downloader.progress` (one connection, no segments)."""
        elapsed = time.monotonic() - self.since
        rate = self.written / elapsed if elapsed > 0 else 0.0
        left = None if self.total is None else self.total - self.written
        eta = left / rate if left is not None and rate > 0 else None
        return ev.Progress(self.written, self.total, rate, eta, 0 if self.ended else 1)

    # -- before the request -------------------------------------------------------------

    def open(self) -> bool:
        """Claim ``NAME.part`` (False: a file or an earlier ``.part`` is there)."""
        if not self.job.force and os.path.lexists(self.dest):
            self.verdict = "the file exists"
            return False
        try:
            self.fd = os.open(self.part, _FLAGS, 0o644)
        except OSError as exc:
            self.verdict = f"cannot create {self.part}: {exc.strerror}"
            if exc.errno not in (errno.EEXIST, errno.ENOENT, errno.EACCES, errno.ELOOP):
                log.debug("%s", self.verdict)
            return False
        return True

    # -- the response (wire.Sink) -------------------------------------------------------

    def on_head(self, status: int, reason: str, headers: Headers) -> None:
        url = self.job.url
        if status >= 400:
            try:  # the regular path's own mapping: a final error, or one worth a retry
                raise_for_status(_Head(status, reason, headers, url))
            except Retryable as exc:
                self.again = exc
            except AccelError as exc:
                self.error = exc
            return self._regular(f"status {status}")
        try:
            if status == 206:
                total = check_partial(status, headers, 0, self.window - 1, None)
                self.total = total
                self.expect = min(total, self.window)
                if total > self.window:
                    if not self._remote(headers, True).validators.resumable:
                        return self._regular("a big file without a strong validator")
                    self._big(total)
            elif status == 200:
                size = content_length(headers)
                chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
                if size is None or chunked or size > self.window:
                    return self._regular("a whole-file answer of unknown or large length")
                self.total = self.expect = size
            else:
                return self._regular(f"status {status}")
        except (BadResponse, RangesUnsupported) as exc:
            return self._regular(str(exc))
        if self.job.max_size is not None and self.total > self.job.max_size:
            return self._regular("larger than allowed")
        if self.verdict is not None:
            return None
        if self.job.server_digest and server_digests(headers, whole_body=status == 200):
            return self._regular("the server states a digest of the file")
        self.headers = headers
        self.ranged = status == 206
        if "content-disposition" in headers:
            name = content_disposition_name(headers.get("Content-Disposition"))
            if name and name != self.name_:
                self._rename(name)
        if self.verdict is None and not self.resume and self.job.emit is not None:
            v = self._remote(headers, self.ranged).validators
            self.job.emit(
                ev.Started(
                    redact(url),
                    Path(self.dest),
                    self.total,
                    0,
                    1,
                    ranged=self.ranged,
                    resumable=self.ranged and v.resumable,
                )
            )

    def _big(self, total: int) -> None:
        """A file bigger than the window: its first window is kept for the segmented engine,
        under the lock the engine takes (a second process gets LockedError, as there)."""
        if self.job.max_size is not None and total > self.job.max_size:
            return None  # the regular path says so (after on_head)
        try:
            check_free_space(Path(self.job.folder), total)
            lock = FileLock(Path(self.part + ".lock"))
            lock.acquire()
        except AccelError as exc:
            self.error = exc
            return self._regular(str(exc))
        self.lock = lock
        self.resume = True  # the segmented engine says Started
        return None

    def _remote(self, headers: Headers, ranges: bool) -> RemoteFile:
        if self.remote is None:
            self.remote = describe(self.job.url, headers, self.total, ranges=ranges)
        return self.remote

    def on_body(self, data: Union[bytes, bytearray]) -> None:
        if self.verdict is not None:
            return
        n = len(data)
        if self.written + n > self.expect:  # never with Content-Length framing
            self._regular("a body longer than its length")
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self._regular(f"cannot write {self.part}: {exc.strerror}")
            return
        self.written += n
        if self.job.report is not None:
            self.job.report(n)

    def on_end(self) -> None:
        self.ended = True
        if self.verdict is not None:
            return
        if self.written != self.expect:
            self._regular(f"the body ended at byte {self.written} of {self.expect}")

    # -- the ends -----------------------------------------------------------------------

    def finish(self) -> Optional[BaseException]:
        """Move the complete file into place (or, big, save its state for the segmented
        engine); the error that ends the download, if any."""
        assert self.headers is not None and self.total is not None
        fd, self.fd = self.fd, -1
        try:
            if self.resume:
                os.ftruncate(fd, self.total)
            ours = os.fstat(fd)
            os.close(fd)
            there = os.lstat(self.part)
        except OSError as exc:
            self._unlock()
            return local_error(exc, f"cannot write {self.part}")
        if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino):
            # Another process took NAME.part over (it found no lock file): it is its now.
            return LockedError(f"another accel process is downloading to this file ({self.part})")
        if self.resume:
            try:
                self._save(self.written)
            except AccelError as exc:
                return exc
            finally:
                self._unlock()
            return None
        mtime = _mtime(self.headers.get("Last-Modified"))
        try:
            _into_place(self.part, self.dest, self.job.force, mtime)
        except AccelError as exc:
            return exc
        return None

    def keep(self) -> bool:
        """Cancelled: keep what arrived for a resume (True) or remove it (False)."""
        headers = self.headers
        remote = self._remote(headers, self.ranged) if headers is not None else None
        resumable = (
            remote is not None and remote.ranges and remote.validators.resumable and self.written
        )
        if resumable and self.total is not None and self.fd >= 0:
            try:
                os.ftruncate(self.fd, self.total)
                self._save(self.written)
            except (OSError, AccelError) as exc:
                log.warning("cannot keep %s: %s", self.part, exc)
            else:
                fd, self.fd = self.fd, -1
                os.close(fd)
                self._unlock()
                return True
        self.discard()
        return False

    def discard(self) -> None:
        """Close and remove the ``.part`` this file created (before the regular path)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
            try:
                os.unlink(self.part)
            except OSError:
                pass
        self._unlock()

    def _unlock(self) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()

    def _save(self, written: int) -> None:
        """The sidecar of a ``.part`` holding ``written`` bytes from the start."""
        assert self.remote is not None and self.total is not None
        v = self.remote.validators
        total, first = self.total, min(self.window, self.total)
        rows = [(0, first - 1, min(written, first), 0)]
        if total > first:
            rows.append((first, total - 1, 0, 0))
        record = state.Record(
            redact(self.job.url),
            total,
            v.etag,
            v.last_modified if v.strong_date else None,
            rows,
            state.boot_id(),
        )
        state.save(state.sidecar_path(Path(self.part)), record)

    def _rename(self, name: str) -> None:
        """The server named the file: claim that name's ``.part`` instead."""
        dest = os.path.join(self.job.folder, name)
        part = dest + ".part"
        self.name = self.name_ = name
        if not self.job.force and os.path.lexists(dest):
            return self._regular("the file exists")
        try:
            os.link(self.part, part, follow_symlinks=False)
        except OSError:
            return self._regular("an earlier .part is there")
        os.unlink(self.part)
        self.dest, self.part = dest, part

    def _regular(self, why: str) -> None:
        if self.verdict is None:
            self.verdict = why


def _into_place(part: str, dest: str, force: bool, mtime: Optional[float]) -> None:
    """:func:`accel._disk.storage.finalize` for the common case (a hard link where nothing
    is in the way, then the mtime); anything else goes through it."""
    if not force:
        try:
            os.link(part, dest, follow_symlinks=False)
        except OSError:
            finalize(Path(part), Path(dest), force=False, mtime=mtime)  # exists, no links...
            return
        try:
            os.unlink(part)
            if mtime is not None:
                os.utime(dest, (mtime, mtime), follow_symlinks=False)
        except OSError as exc:
            raise local_error(exc, f"cannot move {part} to {dest}") from exc
        return
    finalize(Path(part), Path(dest), force=True, mtime=mtime)


#: The last path segment of a URL made of unreserved characters only: nothing to decode.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,200}").fullmatch


def _url_name(url: str) -> str:
    """:func:`accel._util.names.name_from_url`, quicker for the common plain URL."""
    rest = url.split("://", 1)[-1]
    if "?" not in rest and "#" not in rest and "/" in rest:
        segment = rest.rsplit("/", 1)[1]
        if _PLAIN_NAME(segment) and set(segment) != {"."}:
            return segment
    return name_from_url(url)


class _Head:
    """What :func:`accel._http.fetch.raise_for_status` reads of a response."""

    __slots__ = ("headers", "reason", "status_code", "url")
    content = b""

    def __init__(self, status: int, reason: str, headers: Headers, url: str) -> None:
        self.status_code, self.reason, self.headers, self.url = status, reason, headers, url

    def close(self) -> None:
        """Nothing to close (the loop owns the connection)."""


_MTIMES: Dict[str, Optional[float]] = {}


def _mtime(last_modified: Optional[str]) -> Optional[float]:
    """The timestamp of a Last-Modified value (the files of one server often share one)."""
    if last_modified is None:
        return None
    found = _MTIMES.get(last_modified, -1.0)
    if found == -1.0:
        if len(_MTIMES) > 256:
            _MTIMES.clear()
        found = _MTIMES[last_modified] = http_date_to_timestamp(last_modified)
    return found
