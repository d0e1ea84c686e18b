"""The FaultServer's fault switches (:class:`Faults`) and its record of each request
(:class:`RequestLog`, with case-insensitive headers in :class:`CIDict`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

from tests.servers.data import MiB

if TYPE_CHECKING:
    from tests.servers.handler import FaultHandler

__all__ = ["CIDict", "Faults", "RequestLog"]


class CIDict(Dict[str, str]):
    """A dict with case-insensitive string keys (stored lower-case); repeats are joined."""

    def __init__(self, items: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__()
        for key, value in items:
            if key in self:
                value = f"{self[key]}, {value}"
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Case-insensitive ``dict.get``."""
        return super().get(key.lower(), default)


@dataclass
class Faults:
    """Fault-injection switches; all off by default.  Change fields at any time.

    ``*_times`` fields are counters consumed one per affected response.  When the cut or
    stall budget is used up, ``cut_after`` goes back to None / ``stall_seconds`` to 0 and
    their ``*_times`` back to 1, so simply setting ``cut_after``/``stall_seconds`` again
    arms exactly one more fault.
    """

    rate: Optional[float] = None  # bytes/s per connection (None or <= 0: unlimited)
    straggler_every: int = 0  # every k-th connection (id % k == k-1) is slow
    straggler_factor: float = 8.0  # slow connections get rate / factor ...
    straggler_rate: float = 1.0 * MiB  # ... or this rate if ``rate`` is None
    # Each response with a body (200/206 to a GET) is slow with this probability, drawn per
    # request (a CDN that routes some requests through a congested edge), from a
    # random.Random(``slow_request_seed``): the same seed and request order give the same
    # slow requests. The draws restart when the seed changes and at restart_slow_draws().
    slow_request_probability: float = 0.0
    # Or periodically: every k-th response with a body (the k-th, 2k-th, ... since the draws
    # last restarted) is slow (a server whose every k-th request hits a cold cache).
    slow_request_every: int = 0
    slow_request_factor: float = 8.0  # a slow request gets rate / factor (or straggler_rate)
    slow_request_seed: int = 0
    cut_after: Optional[int] = None  # send only this many body bytes, then close
    cut_times: int = 1  # ... for this many GET responses whose body is longer
    cut_rst: bool = False  # close with RST (SO_LINGER 0) instead of FIN
    ignore_range: bool = False  # 200 full body, no Accept-Ranges header
    accept_ranges_none: bool = False  # "Accept-Ranges: none", always 200 full body
    wrong_content_range_times: int = 0  # next N 206s: range (and body) shifted by +1
    wrong_total_times: int = 0  # next N 206s: complete-length is size + 1
    multipart: bool = False  # ranged answers as multipart/byteranges (one part)
    status_times: int = 0  # next N requests get ``status_code``
    status_code: int = 503
    retry_after: Optional[str] = None  # Retry-After value sent with ``status_code``
    stall_seconds: float = 0.0  # pause this long inside the body ...
    stall_times: int = 1  # ... for this many GET responses whose body is longer than
    stall_after_bytes: int = 0  # ... this many bytes (where the pause happens)
    gzip: bool = False  # Content-Encoding: gzip of the (ranged) body
    no_content_length: bool = False  # 200s: no Content-Length, Connection: close
    chunked: bool = False  # 200/206: Transfer-Encoding: chunked (wins over the above)
    redirects: Dict[str, str] = field(default_factory=dict)  # path -> Location
    redirect_status: int = 302
    require_header: Optional[Tuple[str, str]] = None  # else 401
    on_request: Optional[Callable[[FaultHandler, RequestLog], bool]] = None
    change_after_bytes: Optional[int] = None  # after this many bytes sent for a path ...
    change_to: Optional[bytes] = None  # ... replace its content with this (one-shot)
    change_path: Optional[str] = None  # restrict the change to this path (None: any)
    # Last-Modified is each response's own Date (an mtime ahead of the server's clock, which
    # Apache caps at "now"): never a strong validator (RFC 9110 8.8.2.2).
    last_modified_now: bool = False
    # The next N responses send the ETag weak (W/ prefixed), as Apache does for a file
    # changed within the last second; later ones send it as configured.
    weak_etag_times: int = 0
    # File bytes from offset ``trickle_from`` on are sent at ``trickle_rate`` bytes/s (a
    # middlebox that lets the first MiB through, then one byte a second), by the next
    # ``trickle_times`` responses that reach that offset (None: by every one). When the
    # budget is used up, ``trickle_from`` goes back to None and ``trickle_times`` to None.
    trickle_from: Optional[int] = None
    trickle_rate: float = 1.0
    trickle_times: Optional[int] = None


@dataclass
class RequestLog:
    """One received request and what was answered."""

    method: str
    path: str  # request path without query string
    headers: CIDict  # request headers, case-insensitive
    connection_id: int  # per TCP connection, from 0 in accept order
    target: str = ""  # raw request target as received
    range_header: Optional[str] = None
    status: Optional[int] = None
    body_bytes_sent: int = 0
    response_headers: CIDict = field(default_factory=CIDict)
    completed: bool = False  # the whole response was sent
    slow: bool = False  # drawn slow by ``Faults.slow_request_probability`` or ``_every``
    started: float = field(default_factory=time.monotonic)
    ended: Optional[float] = None  # monotonic time the server finished (or aborted) it
