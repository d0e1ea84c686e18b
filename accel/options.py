"""The validated, immutable settings of one download."""

from __future__ import annotations

import dataclasses
import http.cookiejar
import netrc as netrc_module
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from accel._util.checksum import parse_checksum
from accel._util.cookies import load_cookies
from accel._util.proxies import noproxy_hosts, proxy_url
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
    #: Check the digest the server states of the file (``Repr-Digest``, ``Digest``,
    #: ``Content-MD5``, ``x-goog-hash``, ``x-amz-checksum-*``) before it gets its name;
    #: ``checksum`` wins when both are there.
    server_digest: bool = True
    #: The proxy for every request (curl's ``--proxy``): ``http://``, ``https://``,
    #: ``socks5://`` or ``socks5h://`` (these two need the ``socks`` extra), credentials in
    #: the URL; no scheme means ``http://``, no port 1080. None: the environment's
    #: (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``); ``""``: no proxy at all.
    proxy: Optional[str] = field(default=None, repr=False)
    #: Hosts reached without the proxy (curl's ``--noproxy``): names (each with the names
    #: under it), IP addresses, CIDR ranges, ``*`` for all; as text, comma-separated. Replaces
    #: ``NO_PROXY`` when given.
    noproxy: Optional[Union[str, Sequence[str]]] = None
    #: (user, password) for HTTP Basic authentication, sent only to the URL's own origin.
    auth: Optional[Tuple[str, str]] = field(default=None, repr=False)
    #: Credentials from a netrc file for hosts without others: True reads ``$NETRC`` or
    #: ``~/.netrc`` (as requests does), a path reads that file, False reads none.
    netrc: Union[bool, str, os.PathLike[str]] = True
    #: Cookies for the requests and from the answers: a :class:`http.cookiejar.CookieJar`
    #: (shared, updated in place) or the path of a Netscape cookies.txt loaded once into a
    #: :class:`~accel._util.cookies.CookiesTxt` (its ``save()`` writes it back). None: each
    #: download keeps the cookies its server sets for itself alone.
    cookies: Optional[Union[http.cookiejar.CookieJar, str, os.PathLike[str]]] = None

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
        self._check_network()

    def _check_network(self) -> None:
        """Normalise and check ``proxy``, ``noproxy``, ``auth``, ``netrc`` and ``cookies``."""
        if self.proxy is not None:
            object.__setattr__(self, "proxy", proxy_url(self.proxy))
        if self.noproxy is not None:
            object.__setattr__(self, "noproxy", noproxy_hosts(self.noproxy))
        if self.auth is not None:
            object.__setattr__(self, "auth", _auth(self.auth))
        if isinstance(self.netrc, (str, os.PathLike)):
            object.__setattr__(self, "netrc", _netrc_file(os.fspath(self.netrc)))
        elif not isinstance(self.netrc, bool):
            raise UsageError("netrc must be True, False or the path of a netrc file")
        if isinstance(self.cookies, (str, os.PathLike)):
            object.__setattr__(self, "cookies", load_cookies(self.cookies))
        elif self.cookies is not None and not isinstance(self.cookies, http.cookiejar.CookieJar):
            raise UsageError("cookies must be an http.cookiejar.CookieJar or a cookies.txt path")

    @property
    def auto(self) -> bool:
        """Whether the number of connections is chosen while the download runs."""
        return self.connections == AUTO

    @property
    def most_connections(self) -> int:
        """The most connections a download may use (what its segments are planned for)."""
        return self.max_connections if self.auto else int(self.connections)

    def capped(self, most: int) -> Options:
        """These options with at most ``most`` connections per download."""
        if self.auto:
            return dataclasses.replace(self, max_connections=min(most, self.max_connections))
        return dataclasses.replace(self, connections=min(most, int(self.connections)))

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


def _auth(value: Any) -> Tuple[str, str]:
    """(user, password) for HTTP Basic: two strings, no colon in the user (RFC 7617)."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
    ):
        raise UsageError("auth must be a (user, password) pair of strings")
    user, password = value
    if ":" in user:
        raise UsageError("the user name for auth cannot contain ':'")
    if any(c in user + password for c in "\r\n\0"):
        raise UsageError("auth cannot contain line breaks or NUL")
    return user, password


def _netrc_file(path: str) -> str:
    """``path`` if it is a readable netrc file, else a UsageError naming the file (and line)."""
    try:
        netrc_module.netrc(path)
    except netrc_module.NetrcParseError as exc:
        raise UsageError(f"invalid netrc file: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read netrc file {path}: {reason}") from None
    return path


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
