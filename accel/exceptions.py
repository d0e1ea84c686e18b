"""The errors accel raises.

Every error is an :class:`AccelError`; catch that to handle them all. Errors caused by
bad input also subclass :class:`ValueError`. The command line maps each branch to one
exit code (``accel.cli.main.EXIT_CODES``)::

    AccelError                       (exit 1)
    ├── UsageError, ValueError       (exit 2) bad option, URL, header, checksum spec, rate...
    ├── NetworkError                 (exit 3) DNS, refused, reset, timeout, after retries
    │   └── RemoteProtocolError               the server keeps answering with invalid responses
    ├── HTTPError                    (exit 4) a final HTTP error status (after retries)
    │   └── InsecureRedirectError             a redirect from https to http was refused
    ├── RemoteChangedError           (exit 1) the remote file kept changing during the download
    ├── VerificationError            (exit 5) checksum mismatch; mirrors disagree on the file
    ├── LocalFileError               (exit 6) cannot create/write/rename; disk full; unsafe path
    │   ├── OutputExistsError                 an unrelated file is in the way (use force)
    │   ├── InsufficientSpaceError            not enough free space for the file
    │   ├── FileTooLargeError        (exit 7) the remote file is larger than max_filesize
    │   └── LockedError                       another process is downloading to the same file
    └── CancelledError               (exit 130) the download was cancelled; its state is saved
"""

from __future__ import annotations

import errno
from typing import Optional

__all__ = [
    "AccelError",
    "CancelledError",
    "FileTooLargeError",
    "HTTPError",
    "InsecureRedirectError",
    "InsufficientSpaceError",
    "LocalFileError",
    "LockedError",
    "NetworkError",
    "OutputExistsError",
    "RemoteChangedError",
    "RemoteProtocolError",
    "UsageError",
    "VerificationError",
    "local_error",
]


class AccelError(Exception):
    """Root of every error accel raises."""


class UsageError(AccelError, ValueError):
    """Bad input: an invalid option value, URL, header or checksum specification."""


class NetworkError(AccelError):
    """The network failed (DNS, refused, reset, timeout) and retries were exhausted."""


class RemoteProtocolError(NetworkError):
    """The server kept sending responses that cannot be trusted (wrong range, bad length...)."""


class HTTPError(AccelError):
    """The server answered with a final HTTP error status."""

    def __init__(self, message: str, *, status: Optional[int] = None, url: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.url = url


class InsecureRedirectError(HTTPError):
    """A redirect from https to plain http was refused."""


class RemoteChangedError(AccelError):
    """The remote file changed again and again while it was being downloaded."""


class VerificationError(AccelError):
    """The downloaded file failed verification (checksum mismatch, mirrors disagree)."""


class LocalFileError(AccelError):
    """A local file problem: cannot create or write, disk full, unsafe path."""


class OutputExistsError(LocalFileError):
    """The output file already exists and is not this download; pass ``force`` to replace it."""


class InsufficientSpaceError(LocalFileError):
    """The target file system does not have room for the file."""


class FileTooLargeError(LocalFileError):
    """The remote file is larger than the configured maximum size."""


class LockedError(LocalFileError):
    """Another process is already downloading into the same file."""


class CancelledError(AccelError):
    """The download was cancelled; what was written is recorded and a new run resumes it."""


def local_error(exc: OSError, what: str) -> LocalFileError:
    """A one-line :class:`LocalFileError` for ``exc`` raised while doing ``what``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = "it is a symlink; refusing to follow it"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientSpaceError(f"{what}: {reason}")
    return LocalFileError(f"{what}: {reason}")
