"""HTTP sessions and the retry policy.

urllib3's :class:`~urllib3.util.Retry` only reconnects at once and follows redirects; every
patient retry (backoff, ``Retry-After``, 429/5xx, errors in the middle of a body) happens in
accel's own loops (:mod:`accel._engine.probe` and :mod:`accel._engine.worker`) with one
:class:`~accel.retry.RetryState` each, waiting on the cancel event.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from accel._http import base
from accel._util.urls import Origin, origin, redact
from accel.exceptions import InsecureRedirectError
from accel.retry import RetryPolicy
from accel.version import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"accel/{__version__}"
#: Headers that carry credentials: never sent to another origin after a redirect.
SENSITIVE_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")
#: Statuses worth another try (after a pause; 429/503 also mean "fewer connections").
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Makes a session for one worker thread (``session_factory=``): a requests session.
SessionFactory = Callable[[], requests.Session]


def silence_insecure_warnings() -> None:
    """Stop urllib3's warning on every unverified HTTPS request (the caller said it once)."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


def urllib3_retry(policy: RetryPolicy) -> Retry:
    """The urllib3 share of retrying: quick reconnects and redirects, nothing that sleeps.

    urllib3 sleeps cannot be interrupted, so backoff, ``Retry-After`` and retryable
    statuses are left to accel's own loops, which wait on the cancel event, lower the
    connection count after 429/503, and count attempts in one place.
    """
    return Retry(
        total=None,
        connect=min(policy.attempts, 2),
        read=0,
        redirect=20,
        status=0,
        other=0,
        allowed_methods=None,
        backoff_factor=0,
        raise_on_status=False,
        raise_on_redirect=False,
    )


class Session(requests.Session):
    """A requests session that is strict about credentials and redirects.

    The caller's credential headers (``Authorization``, ``Proxy-Authorization``,
    ``Cookie``) are kept apart in :attr:`credentials` and sent only on requests to
    :attr:`trusted_origin` (the download's own origin; by default the origin of the first
    request), never to a mirror or a redirect
    target elsewhere; a redirect that leaves the origin drops them, and a redirect from https
    to http is refused. ``verify`` is passed on every request, so an explicit CA bundle or
    ``verify=False`` wins over ``REQUESTS_CA_BUNDLE`` in the environment.
    """

    def __init__(self) -> None:
        super().__init__()
        self.credentials: Dict[str, str] = {}
        self.trusted_origin: Optional[Origin] = None
        #: The pool this session goes back to on :meth:`close`, and its key there.
        self.home: Optional[Tuple[SessionPool, Hashable]] = None
        self._environment: Dict[Hashable, Dict[str, Any]] = {}

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Dict[str, Any]:
        """requests' proxy and CA settings from the environment, looked up once per origin
        for the life of the session (requests scans the whole environment per request)."""
        key = (origin(url), tuple(sorted((proxies or {}).items())), stream, verify, cert)
        found = self._environment.get(key)
        if found is None:
            found = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            self._environment[key] = found
        return dict(found)

    def close(self) -> None:
        """Go back to the pool this session came from (kept alive), or close for good."""
        home, self.home = self.home, None
        if home is None or not home[0].put(home[1], self):
            super().close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.credentials and self.trusted_origin is None:
            self.trusted_origin = origin(url)  # unless told otherwise: the first one asked
        if self.credentials and self.trusted_origin == origin(url):
            kwargs["headers"] = {**self.credentials, **(kwargs.get("headers") or {})}
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, **kwargs)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        old, new = response.request.url or "", prepared_request.url or ""
        if urlsplit(old).scheme == "https" and urlsplit(new).scheme == "http":
            raise InsecureRedirectError(
                f"refusing redirect from https to http: {redact(new)}",
                status=response.status_code,
                url=redact(new),
            )
        if origin(old) != origin(new):
            # Proxy-Authorization is requests' own business (rebuild_proxies, run before).
            for name in ("Authorization", "Cookie"):
                prepared_request.headers.pop(name, None)
        else:
            # requests drops every Cookie header on a redirect and rebuilds it from the jar;
            # one the caller set explicitly still belongs to this origin.
            sent = response.request.headers.get("Cookie")
            if sent and "Cookie" not in prepared_request.headers:
                prepared_request.headers["Cookie"] = sent
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]


def new_session(
    *,
    headers: Optional[Mapping[str, str]] = None,
    verify: Union[bool, str] = True,
    retry: Optional[RetryPolicy] = None,
    trusted_origin: Optional[str] = None,
) -> requests.Session:
    """A session for one worker thread: keep-alive, identity encoding, retries.

    Credential headers among ``headers`` go only to ``trusted_origin`` (a URL).
    """
    session = Session()
    retries = urllib3_retry(retry or RetryPolicy())
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=retries)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    sensitive = {h.lower() for h in SENSITIVE_HEADERS}
    for name, value in (headers or {}).items():
        if name.lower() in sensitive:
            session.credentials[name] = value
        else:
            session.headers[name] = value
    session.trusted_origin = origin(trusted_origin) if trusted_origin else None
    # Bytes are stored exactly as served: never ask for a compressed encoding.
    session.headers["Accept-Encoding"] = "identity"
    session.verify = verify
    return session


class SessionPool:
    """Idle keep-alive sessions shared by many downloads (an :class:`accel.Manager`'s).

    A session is taken with :meth:`get` for a key (the settings it was made with and the
    origin it trusts) and comes back when it is closed, its connection still open, so the
    next file from the same host costs a request, not a new connection. At most
    ``max_idle`` sessions wait; the least recently used beyond that are closed.
    """

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: OrderedDict[Tuple[Hashable, int], Session] = OrderedDict()
        self._serial = 0
        self._closed = False

    def get(self, key: Hashable, make: Callable[[], base.Session]) -> base.Session:
        """An idle session for ``key``, or a new one from ``make()``."""
        with self._lock:
            found = next((k for k in reversed(self._idle) if k[0] == key), None)
            session = self._idle.pop(found) if found is not None else None
        if session is None:
            made = make()
            if not isinstance(made, Session):
                return made  # not ours to pool
            session = made
        session.cookies.clear()  # what one file's server set is not sent with the next
        session.home = (self, key)
        return session

    def put(self, key: Hashable, session: Session) -> bool:
        """Keep ``session`` for reuse; False when the pool is closed (close it then)."""
        extra: List[Session] = []
        with self._lock:
            if self._closed:
                return False
            self._serial += 1
            self._idle[(key, self._serial)] = session
            while len(self._idle) > self.max_idle:
                extra.append(self._idle.popitem(last=False)[1])
        for old in extra:
            requests.Session.close(old)
        return True

    def close(self) -> None:
        """Close every idle session; sessions closed later are not kept."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for session in idle:
            requests.Session.close(session)
