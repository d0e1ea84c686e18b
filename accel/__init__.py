"""accel: a multithreaded segmented download accelerator.

>>> import accel
>>> path = accel.download("https://example.org/big.iso", connections=8)  # doctest: +SKIP
"""

from __future__ import annotations

# First of all: a Ctrl-C while the accel command imports the rest exits 130 quietly.
from . import _startup  # noqa: F401  isort: skip

import logging
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    import os
    from pathlib import Path
    from typing import Union

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

# A library logs but never prints: without configuration, its records go nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Where each public name lives. ``import accel`` imports none of them: the network stack
#: (requests) loads when a name that needs it is first used, so ``accel --version`` and
#: ``--help`` start at once.
_HOMES = {
    "Downloader": "downloader",
    "Manager": "manager",
    "Options": "options",
    "RetryPolicy": "retry",
    "HostSlots": "limits",
    "RateLimiter": "limits",
    **dict.fromkeys(
        (
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
        ),
        "events",
    ),
    **dict.fromkeys(
        (
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
        ),
        "exceptions",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'accel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


def download(url: str, output: Union[str, os.PathLike[str], None] = None, **options: Any) -> Path:
    """Download ``url`` (see :class:`Downloader` for the options); return the file's path."""
    from .downloader import Downloader

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
