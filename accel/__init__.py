"""accel: a multithreaded segmented download accelerator.

>>> import accel
>>> path = accel.download("https://example.org/big.iso", connections=8)  # doctest: +SKIP
"""

from __future__ import annotations

# First of all: a Ctrl-C while the accel command imports the rest exits 130 quietly.
from . import _startup  # noqa: F401  isort: skip

import logging
import os
from pathlib import Path
from typing import Any, Union

from .downloader import Downloader
from .events import (
    AlreadyComplete,
    Cancelled,
    Completed,
    Event,
    Failed,
    ManagerProgress,
    Progress,
    Restarted,
    Retrying,
    SegmentCompleted,
    Started,
)
from .exceptions import (
    AccelError,
    CancelledError,
    FileTooLargeError,
    HTTPError,
    InsecureRedirectError,
    InsufficientSpaceError,
    LocalFileError,
    LockedError,
    NetworkError,
    OutputExistsError,
    RemoteChangedError,
    RemoteProtocolError,
    UsageError,
    VerificationError,
)
from .limits import HostSlots, RateLimiter
from .manager import Manager
from .options import Options
from .retry import RetryPolicy
from .version import __version__

# A library logs but never prints: without configuration, its records go nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def download(url: str, output: Union[str, os.PathLike[str], None] = None, **options: Any) -> Path:
    """Download ``url`` (see :class:`Downloader` for the options); return the file's path."""
    return Downloader(url, output, **options).run()


__all__ = [
    "AccelError",
    "AlreadyComplete",
    "Cancelled",
    "CancelledError",
    "Completed",
    "Downloader",
    "Event",
    "Failed",
    "FileTooLargeError",
    "HTTPError",
    "HostSlots",
    "InsecureRedirectError",
    "InsufficientSpaceError",
    "LocalFileError",
    "LockedError",
    "Manager",
    "ManagerProgress",
    "NetworkError",
    "Options",
    "OutputExistsError",
    "Progress",
    "RateLimiter",
    "RemoteChangedError",
    "RemoteProtocolError",
    "Restarted",
    "RetryPolicy",
    "Retrying",
    "SegmentCompleted",
    "Started",
    "UsageError",
    "VerificationError",
    "__version__",
    "download",
]
