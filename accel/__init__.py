"""accel: a multithreaded segmented download accelerator.

>>> import accel
>>> path = accel.download("https://example.org/big.iso", connections=8)  # doctest: +SKIP
"""

from __future__ import annotations

# First of all: a Ctrl-C while the accel command imports the rest exits 130 quietly.
from . import _startup  # noqa: F401  isort: skip

import logging
from typing import TYPE_CHECKING, Any

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
from .options import Options
from .retry import RetryPolicy
from .version import __version__

if TYPE_CHECKING:  # for type checkers; at run time these load on first use
    import os
    from pathlib import Path
    from typing import Union

    from .downloader import Downloader
    from .manager import Manager

# A library logs but never prints: without configuration, its records go nowhere.
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: The names that need the network stack (requests): ``import accel`` does not load them
#: until first used, so ``accel --version`` and ``--help`` start at once (PEP 562).
_LAZY = {"Downloader": "downloader", "Manager": "manager"}


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
