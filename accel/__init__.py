"""accel: a multithreaded segmented download accelerator.

>>> import accel
>>> path = accel.download("https://example.org/big.iso", connections=8)  # doctest: +SKIP
"""

from __future__ import annotations

# First of all: a Ctrl-C while the accel command imports the rest exits 130 quietly.
from accel.cli import _startup  # noqa: F401  isort: skip

import logging
from typing import TYPE_CHECKING, Any

from accel.exceptions import (
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
from accel.version import __version__

if TYPE_CHECKING:  # for type checkers; at run time these load on first use
    import os
    from pathlib import Path
    from typing import Callable, Union

    from accel.aio import AsyncDownload, AsyncManager, adownload
    from accel.downloader import Downloader
    from accel.events import (
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
    from accel.limits import HostSlots, RateLimiter
    from accel.manager import Manager
    from accel.options import Options
    from accel.retry import RetryPolicy

# A library logs but never prints: without configuration, its records go nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EVENTS = (
    "AlreadyComplete",
    "Cancelled",
    "Completed",
    "Event",
    "Failed",
    "ManagerProgress",
    "Progress",
    "Restarted",
    "Retrying",
    "SegmentCompleted",
    "Started",
)
#: Where each name that is not an exception lives. ``import accel`` loads none of them
#: until first used (PEP 562), so ``accel --version`` and ``--help`` start at once; the
#: ``TYPE_CHECKING`` imports above are the same names for type checkers.
_LAZY = {
    "AsyncDownload": "aio",
    "AsyncManager": "aio",
    "adownload": "aio",
    "Downloader": "downloader",
    "HostSlots": "limits",
    "Manager": "manager",
    "Options": "options",
    "RateLimiter": "limits",
    "RetryPolicy": "retry",
    **{name: "events" for name in _EVENTS},
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'accel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def download(
    url: Union[str, Callable[[], str]],
    output: Union[str, os.PathLike[str], None] = None,
    **options: Any,
) -> Path:
    """Download ``url`` (a URL, or a callable returning one: see :class:`Downloader`, also
    for the options); return the file's path."""
    from accel.downloader import Downloader

    return Downloader(url, output, **options).run()


__all__ = [
    "AccelError",
    "AlreadyComplete",
    "AsyncDownload",
    "AsyncManager",
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
    "adownload",
    "download",
]
