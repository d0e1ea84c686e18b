"""The sparse ``NAME.part`` file: positioned writes, flushes and the final rename."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Optional, Set, Tuple

from accel._util.units import human_size
from accel.exceptions import (
    FileTooLargeError,
    InsufficientSpaceError,
    LocalFileError,
    LockedError,
    OutputExistsError,
    local_error,
)

log = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


#: What a failed write of downloaded bytes says.
WRITE_FAILED = "cannot write the download"


def pwrite_all(fd: int, data: memoryview | bytes, offset: int, what: str = WRITE_FAILED) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (``pwrite`` may write less than asked);
    a failure is a :class:`LocalFileError` saying ``what``."""
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
    except OSError as exc:
        raise local_error(exc, what) from exc


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it is durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class PartFile:
    """An open ``.part`` file of a fixed size (or growing, when the size is unknown)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: Path, size: Optional[int]) -> PartFile:
        """Create ``path`` (replacing an old ``.part``) as a sparse file of ``size`` bytes."""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # never truncate through a planted symlink: remove the link
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as exc:
            raise local_error(exc, f"cannot create {path}") from exc
        try:
            if size:
                os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            raise local_error(exc, f"cannot size {path}") from exc
        return cls(path, fd)

    @classmethod
    def open_existing(cls, path: Path) -> PartFile:
        """Open an existing ``.part`` file for resuming, refusing symlinks."""
        try:
            fd = os.open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            raise local_error(exc, f"cannot open {path}") from exc
        return cls(path, fd)

    @property
    def fd(self) -> int:
        """The file descriptor (for ``os.pwrite`` in the hot path)."""
        return self._fd

    def sync(self) -> None:
        """Flush written data to stable storage."""
        try:
            if hasattr(os, "fdatasync"):
                os.fdatasync(self._fd)
            else:  # pragma: no cover - macOS
                os.fsync(self._fd)
        except OSError as exc:
            raise local_error(exc, f"cannot flush {self.path}") from exc

    def truncate(self, size: int) -> None:
        """Set the file's size (used when the final size of a stream becomes known)."""
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise local_error(exc, f"cannot size {self.path}") from exc

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def prepare_directory(directory: Optional[Path], parent: Path) -> None:
    """Create ``directory`` (the one asked for, if any); check ``parent`` can hold the file."""
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise local_error(exc, f"cannot create directory {directory}") from exc
    if not parent.is_dir():
        if os.path.lexists(parent):
            raise LocalFileError(f"cannot save into {parent}: not a directory")
        raise LocalFileError(f"directory {parent} does not exist")


def check_max_size(url: str, size: Optional[int], limit: Optional[int]) -> None:
    """Raise :class:`FileTooLargeError` if the file at ``url`` (shown) is over ``limit``."""
    if limit is not None and size is not None and size > limit:
        raise FileTooLargeError(
            f"{url} is {human_size(size)} ({size} bytes), more than the {human_size(limit)} allowed"
        )


def check_free_space(directory: Path, needed: int) -> None:
    """Raise :class:`InsufficientSpaceError` if ``directory`` cannot hold ``needed`` more bytes."""
    if needed <= 0:
        return
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < needed:
        raise InsufficientSpaceError(
            f"not enough space in {directory}: {human_size(needed)} needed, {human_size(free)} free"
        )


def finalize(
    part: Path,
    dest: Path,
    *,
    force: bool = False,
    mtime: Optional[float] = None,
    durable: bool = False,
) -> None:
    """Move the finished ``part`` to ``dest``; replace an existing ``dest`` only if ``force``.

    ``durable`` also flushes the directory, so the new name survives a power loss (as
    ``--fsync`` asks; curl, wget and aria2 do not, and neither does accel by default).
    """
    try:
        if force:
            os.replace(part, dest)
        else:
            _link_into_place(part, dest)
        if mtime is not None:
            os.utime(dest, (mtime, mtime), follow_symlinks=False)
        if durable:
            fsync_dir(dest.parent)
    except OSError as exc:
        raise local_error(exc, f"cannot move {part} to {dest}") from exc


def _link_into_place(part: Path, dest: Path) -> None:
    try:
        os.link(part, dest, follow_symlinks=False)
    except FileExistsError:
        if not _same_file(part, dest):
            raise OutputExistsError(f"{dest} already exists; use --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.EXDEV,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EMLINK,
        ):
            raise
        # No hard links here (FAT, some network file systems): check, then rename.
        if os.path.lexists(dest):
            raise OutputExistsError(f"{dest} already exists; use --force to replace it") from None
        os.rename(part, dest)
        return
    os.unlink(part)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def has_holes(path: Path) -> bool:
    """Whether the file has a hole (unallocated range) before its end (False if unknown)."""
    seek_hole = getattr(os, "SEEK_HOLE", None)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        return seek_hole is not None and size > 0 and os.lseek(fd, 0, seek_hole) < size
    except OSError:
        return False
    finally:
        os.close(fd)


def data_until(fd: int, start: int, end: int) -> int:
    """The first offset in ``[start, end)`` that is a hole of ``fd``'s file, else ``end``.

    Asks the file system with ``SEEK_HOLE``. Where it cannot tell (no ``SEEK_HOLE``, or a
    file system that reports every byte as data) the answer is ``end``: all data.
    """
    seek_hole = getattr(os, "SEEK_HOLE", None)
    if seek_hole is None or start >= end:
        return end
    try:
        hole = os.lseek(fd, start, seek_hole)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # start is at or past the end of the file
            return start
        log.debug("cannot look for holes (%s); trusting the file", exc.strerror)
        return end
    return max(start, min(hole, end))


#: (device, inode) of the lock files this process holds, to tell "another download" (here)
#: from "another process" when a lock is taken.
_HELD: Set[Tuple[int, int]] = set()
_HELD_LOCK = threading.Lock()


def _file_id(fd: int) -> Tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


class FileLock:
    """An exclusive, non-blocking lock file beside the download (``NAME.part.lock``).

    A second process that wants the same ``NAME`` gets :class:`LockedError` at once. The
    file is removed on release; a lock taken on a file that was removed meanwhile is
    retried, so two processes never both hold "the" lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._id = (0, 0)

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockedError`."""
        import fcntl

        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
            except OSError as exc:
                raise local_error(exc, f"cannot create lock {self.path}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                here = _file_id(fd) in _HELD
                os.close(fd)
                who = "another download" if here else "another accel process"
                raise LockedError(f"{who} is downloading to this file (lock {self.path})") from None
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                self._id = _file_id(fd)
                with _HELD_LOCK:
                    _HELD.add(self._id)
                return
            os.close(fd)  # the holder removed the file as we locked it: try again
        raise LockedError(f"cannot lock {self.path}")

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self._fd < 0:
            return
        with _HELD_LOCK:
            _HELD.discard(self._id)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
