"""The validated, immutable settings of one download."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from accel._util.checksum import parse_checksum
from accel._util.ranges import DEFAULT_MIN_SEGMENT
from accel._util.units import to_bytes
from accel._util.urls import check_url
from accel.exceptions import UsageError
from accel.limits import HostSlots, RateLimiter
from accel.retry import RetryPolicy

MAX_CONNECTIONS = 64
#: ``connections=AUTO``: the count follows the throughput (:mod:`accel._engine.autoscale`).
AUTO = "auto"
#: Connections an ``auto`` download starts with.
AUTO_START = 4
#: The most connections ``auto`` uses unless told otherwise (``max_connections``).
AUTO_CAP = 16
#: Headers accel manages itself; a caller may not set them.
RESERVED_HEADERS = frozenset({"range", "if-range", "accept-encoding", "host", "content-length"})


@dataclass(frozen=True)
class Options:
    """Settings for a :class:`accel.Downloader`; every field is checked on creation.

    This is the one place defaults live. Sizes and rates may be given as text, as on the
    command line (``limit_rate="20M"``, ``max_filesize="2G"``); ``headers`` may be a mapping.
    """

    #: Parallel connections, or ``"auto"``: start with a few and add more while that raises
    #: the total rate (up to ``max_connections``; see :mod:`accel._engine.autoscale`).
    connections: Union[int, str] = 8
    #: The most connections ``connections="auto"`` uses (ignored otherwise).
    max_connections: int = AUTO_CAP
    headers: Union[Tuple[Tuple[str, str], ...], Mapping[str, str]] = ()
    timeout: float = 30.0
    connect_timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    force: bool = False
    verify: Union[bool, str] = True
    min_split: int = DEFAULT_MIN_SEGMENT
    #: Seconds between sidecar saves (a crash of the process loses at most this much).
    commit_interval: float = 1.0
    #: Seconds between fdatasync calls that make progress survive power loss.
    sync_interval: float = 30.0
    #: The low-speed floor in bytes/s (curl's ``--speed-limit``; text such as ``"1K"`` is
    #: accepted; 0 turns it off). A connection slower than this for ``low_speed_time``
    #: seconds is replaced when another connection shows the floor can be reached (or when
    #: it is the only one); a download slower than this as a whole for ``low_speed_time``
    #: seconds stops with a :class:`~accel.NetworkError`, its state saved for a resume.
    #: The default is far below any real link's speed: only a trickle trips it.
    low_speed_limit: Union[int, str] = 1024
    low_speed_time: float = 60.0
    #: An idle worker races a segment when a typical connection would finish it this many
    #: seconds sooner (and in under half the time), or when it made no progress for a second.
    hedge_after: float = 0.25
    #: Global limit in bytes/s: a number or text such as ``"20M"`` makes a private limiter;
    #: a :class:`~accel.limits.RateLimiter` may be shared by several downloads.
    limit_rate: Optional[Union[int, str, RateLimiter]] = None
    #: Per-host connection cap shared with other downloads.
    host_slots: Optional[HostSlots] = None
    #: Mirror URLs serving the same file; segments are spread over all sources.
    mirrors: Tuple[str, ...] = ()
    #: Refuse files larger than this many bytes (or text such as ``"2G"``).
    max_filesize: Optional[Union[int, str]] = None
    #: Flush the data to stable storage before the final rename (costs a write of the file).
    fsync: bool = False
    #: Expected (algorithm, hex digest) of the complete file; ``"sha256=..."`` is accepted.
    checksum: Optional[Union[str, Tuple[str, str]]] = None

    def __post_init__(self) -> None:
        headers = normalize_headers(self.headers)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "mirrors", tuple(self.mirrors))
        object.__setattr__(self, "max_filesize", to_bytes(self.max_filesize, "max_filesize"))
        object.__setattr__(self, "low_speed_limit", speed_limit(self.low_speed_limit))
        if isinstance(self.limit_rate, str):
            object.__setattr__(self, "limit_rate", RateLimiter(self.limit_rate))
        object.__setattr__(self, "connections", _connections(self.connections))
        cap = self.max_connections
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CONNECTIONS:
            raise UsageError(f"max_connections must be an integer from 1 to {MAX_CONNECTIONS}")
        for name in ("timeout", "connect_timeout", "commit_interval", "sync_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise UsageError(f"{name} must be a positive number of seconds")
        if self.max_filesize is not None and self.max_filesize < 0:  # type: ignore[operator]
            raise UsageError("max_filesize must be >= 0")
        if self.min_split < 1:
            raise UsageError("min_split must be >= 1")
        for name in ("low_speed_time", "hedge_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UsageError(f"{name} must be a positive number of seconds")
        if isinstance(self.limit_rate, int) and not isinstance(self.limit_rate, bool):
            if self.limit_rate <= 0:
                raise UsageError("limit_rate must be positive")
            object.__setattr__(self, "limit_rate", RateLimiter(self.limit_rate))
        elif self.limit_rate is not None and not isinstance(self.limit_rate, RateLimiter):
            raise UsageError(
                "limit_rate must be bytes per second, a text like '2M' or a RateLimiter"
            )
        for mirror in self.mirrors:
            check_url(mirror)
        if isinstance(self.verify, str) and not os.path.isfile(self.verify):
            raise UsageError(f"CA bundle {self.verify} is not a file")
        if isinstance(self.checksum, str):
            object.__setattr__(self, "checksum", parse_checksum(self.checksum))
        for name, value in headers:
            if not name or any(c in name for c in ":\r\n ") or "\n" in value or "\r" in value:
                raise UsageError(f"invalid header {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise UsageError(f"header {name} is managed by accel and cannot be set")

    @property
    def auto(self) -> bool:
        """Whether the number of connections is chosen while the download runs."""
        return self.connections == AUTO

    @property
    def most_connections(self) -> int:
        """The most connections a download may use (what its segments are planned for)."""
        return self.max_connections if self.auto else int(self.connections)

    @property
    def initial_connections(self) -> int:
        """The connections a download starts with."""
        return min(AUTO_START, self.max_connections) if self.auto else int(self.connections)


#: Settings accepted beside the fields of :class:`Options`.
_SHORTHANDS = ("retries",)


def resolve(options: Optional[Options] = None, **settings: Any) -> Options:
    """``options`` (default: the defaults) with ``settings`` applied on top.

    ``settings`` are :class:`Options` fields, plus ``retries=N`` for
    ``retry=RetryPolicy(attempts=N)``. An unknown name is a :class:`UsageError`: no setting
    is ever dropped.
    """
    if not settings and isinstance(options, Options):
        return options  # (a Manager resolves once; each of its downloads asks again)
    base = options if options is not None else Options()
    if not isinstance(base, Options):
        raise UsageError(f"options must be an accel.Options, not {type(base).__name__}")
    names = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(settings) - names - set(_SHORTHANDS))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} (see accel.Options)")
    if "retries" in settings:
        retries = settings.pop("retries")
        if "retry" in settings:
            raise UsageError("give retries or retry, not both")
        if retries is not None:
            settings["retry"] = dataclasses.replace(base.retry, attempts=_count(retries))
    return dataclasses.replace(base, **settings) if settings else base


def _connections(value: Any) -> Union[int, str]:
    """A connection count: 1..MAX_CONNECTIONS, or "auto" (any case)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONNECTIONS:
        raise UsageError(f"connections must be an integer from 1 to {MAX_CONNECTIONS}, or 'auto'")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError("retries must be a whole number >= 0")
    return value


def speed_limit(value: Union[int, float, str], what: str = "low_speed_limit") -> int:
    """A low-speed floor in bytes/s: a number or text such as ``"1K"``; 0 turns it off."""
    if isinstance(value, str) and value.strip() == "0":
        return 0
    floor = to_bytes(value, what)
    if floor is None or floor < 0:
        raise UsageError(f"{what} must be bytes per second >= 0 (0: off)")
    return floor


def normalize_headers(
    headers: Optional[Union[Mapping[str, str], Sequence[Tuple[str, str]]]],
) -> Tuple[Tuple[str, str], ...]:
    """Headers as a tuple of (name, value) pairs."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k).strip(), str(v).strip()) for k, v in items)
