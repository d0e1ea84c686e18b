"""HTTP sessions and the retry policy.

urllib3's :class:`~urllib3.util.Retry` only reconnects at once and follows redirects; every
patient retry (backoff, ``Retry-After``, 429/5xx, errors in the middle of a body) happens in
accel's own loops (:mod:`accel._engine.probe` and :mod:`accel._engine.worker`) with one
:class:`~accel.retry.RetryState` each, waiting on the cancel event.
"""

from __future__ import annotations

import base64
import http.cookiejar
import logging
import netrc
import threading
import urllib.request
from collections import OrderedDict
from typing import (
    Any,
    Callable,
    Dict,
    Hashable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import unquote, urlsplit

import requests
import requests.utils
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar
from urllib3.util.retry import Retry

from accel._http import base
from accel._util.proxies import bypasses
from accel._util.urls import Origin, origin, redact
from accel.exceptions import InsecureRedirectError
from accel.options import Options
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


#: A netrc source: True for requests' own lookup ($NETRC, ~/.netrc), False for none, or a path.
NetrcSource = Union[bool, str]


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic for ``user`` and ``password`` (UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def netrc_auth(url: str, source: NetrcSource) -> Optional[Tuple[str, str]]:
    """The (login, password) a netrc file holds for the host of ``url`` (its ``default``
    entry otherwise), or None. ``source`` as in :data:`NetrcSource`."""
    if source is False:
        return None
    if source is True:
        return requests.utils.get_netrc_auth(url)
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        found = netrc.netrc(source).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        log.warning("cannot read netrc file %s: %s", source, exc)
        return None
    if not found or not any(found):
        return None
    return (found[0] or found[1] or ""), (found[2] or "")


class _AsIs(AuthBase):
    """Auth that leaves the request alone (keeps requests from adding netrc or URL auth)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


_AS_IS = _AsIs()


class SharedCookies(RequestsCookieJar):
    """A session's view of a cookie jar shared by several sessions and threads.

    requests iterates a session's jar for every request (to pick the cookies that match
    it) while other threads store what their answers set; iterating here takes a snapshot
    under the jar's lock, and cookies are stored in the shared jar.
    """

    def __init__(self, jar: http.cookiejar.CookieJar) -> None:
        super().__init__()
        self.jar = jar

    def _snapshot(self) -> List[http.cookiejar.Cookie]:
        with self.jar._cookies_lock:  # type: ignore[attr-defined]
            return list(self.jar)

    def __iter__(self) -> Iterator[http.cookiejar.Cookie]:  # type: ignore[override]
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def set_cookie(self, cookie: http.cookiejar.Cookie, *args: Any, **kwargs: Any) -> None:
        self.jar.set_cookie(cookie)

    def extract_cookies(self, response: Any, request: Any) -> None:
        self.jar.extract_cookies(response, request)

    def clear(
        self, domain: Optional[str] = None, path: Optional[str] = None, name: Optional[str] = None
    ) -> None:
        self.jar.clear(domain, path, name)


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

    Other hosts get the credentials :attr:`netrc` holds for them (netrc is per host, as in
    curl), the download's origin too unless the caller gave an ``Authorization``. Requests
    go through :attr:`proxy` (None: the environment's; ``""``: none) except to the hosts of
    :attr:`noproxy`; a proxy's credentials go only to the proxy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.credentials: Dict[str, str] = {}
        self.trusted_origin: Optional[Origin] = None
        #: The pool this session goes back to on :meth:`close`, and its key there.
        self.home: Optional[Tuple[SessionPool, Hashable]] = None
        self.proxy: Optional[str] = None
        self.noproxy: Optional[Tuple[str, ...]] = None
        self.netrc: NetrcSource = True
        self._environment: Dict[Hashable, Dict[str, Any]] = {}
        self._netrc_found: Dict[str, Optional[Tuple[str, str]]] = {}

    def proxies_for(self, url: str) -> Dict[str, str]:
        """The proxy mapping for a request to ``url`` under :attr:`proxy` and :attr:`noproxy`
        (only when one of them is set; otherwise requests reads the environment)."""
        parts = urlsplit(url)
        chosen: Optional[str]
        if self.proxy is not None:
            chosen = self.proxy or None
        else:
            env = urllib.request.getproxies()
            chosen = env.get(parts.scheme) or env.get("all")
        if chosen and self.noproxy is not None and bypasses(parts.hostname, self.noproxy):
            chosen = None
        return {parts.scheme: chosen} if chosen else {}

    def netrc_auth(self, url: str) -> Optional[Tuple[str, str]]:
        """What :attr:`netrc` holds for the host of ``url`` (read once per host)."""
        host = (urlsplit(url).hostname or "").lower()
        if host not in self._netrc_found:
            self._netrc_found[host] = netrc_auth(url, self.netrc)
        return self._netrc_found[host]

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Dict[str, Any]:
        """requests' proxy and CA settings from the environment, looked up once per origin
        for the life of the session (requests scans the whole environment per request)."""
        key = (origin(url), tuple(sorted((proxies or {}).items())), stream, verify, cert)
        found = self._environment.get(key)
        if found is None:
            found = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            if self.proxy is not None or self.noproxy is not None:
                found["proxies"] = self.proxies_for(url)
            self._environment[key] = found
        return dict(found)

    def rebuild_proxies(
        self, prepared_request: requests.PreparedRequest, proxies: Optional[Dict[str, str]]
    ) -> Dict[str, str]:
        """The proxies for a redirect target; never a ``Proxy-Authorization`` header in it.

        requests would put the proxy's credentials into a plain-http request itself, even
        one going through a SOCKS tunnel to the origin; urllib3 already sends them to an
        HTTP proxy (and only to it), so the header is dropped here.
        """
        if self.proxy is not None or self.noproxy is not None:
            found = self.proxies_for(prepared_request.url or "")
        else:
            found = super().rebuild_proxies(prepared_request, proxies)  # type: ignore[no-untyped-call]
        prepared_request.headers.pop("Proxy-Authorization", None)
        return found

    def close(self) -> None:
        """Go back to the pool this session came from (kept alive), or close for good."""
        home, self.home = self.home, None
        if home is None or not home[0].put(home[1], self):
            super().close()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.credentials and self.trusted_origin is None:
            self.trusted_origin = origin(url)  # unless told otherwise: the first one asked
        trusted = bool(self.credentials) and self.trusted_origin == origin(url)
        if trusted:
            kwargs["headers"] = {**self.credentials, **(kwargs.get("headers") or {})}
        if "auth" not in kwargs:
            kwargs["auth"] = self._auth_for(url, trusted)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, **kwargs)

    def _auth_for(self, url: str, trusted: bool) -> Any:
        """The caller's Authorization (at its origin), else the URL's user:password, else
        netrc's entry for the host; requests' own netrc lookup never runs."""
        if trusted and any(k.lower() == "authorization" for k in self.credentials):
            return _AS_IS
        parts = urlsplit(url)
        if parts.username is not None:
            return unquote(parts.username), unquote(parts.password or "")
        return self.netrc_auth(url) or _AS_IS

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
            # Proxy-Authorization is dropped by rebuild_proxies (run before). The Cookie
            # header here is what the jar holds for the new URL (requests rebuilt it), unless
            # it still is the caller's own.
            prepared_request.headers.pop("Authorization", None)
            explicit = next((v for k, v in self.credentials.items() if k.lower() == "cookie"), None)
            if explicit is not None and prepared_request.headers.get("Cookie") == explicit:
                prepared_request.headers.pop("Cookie", None)
            # netrc is per host (as in curl): the new host gets its own entry, if any.
            found = self.netrc_auth(new)
            if found is not None:
                prepared_request.prepare_auth(found)
        else:
            # requests drops every Cookie header on a redirect and rebuilds it from the jar;
            # one the caller set explicitly still belongs to this origin.
            sent = response.request.headers.get("Cookie")
            if sent and "Cookie" not in prepared_request.headers:
                prepared_request.headers["Cookie"] = sent


def new_session(
    *,
    headers: Optional[Mapping[str, str]] = None,
    verify: Union[bool, str] = True,
    retry: Optional[RetryPolicy] = None,
    trusted_origin: Optional[str] = None,
    proxy: Optional[str] = None,
    noproxy: Optional[Sequence[str]] = None,
    auth: Optional[Tuple[str, str]] = None,
    netrc: NetrcSource = True,
    cookies: Optional[http.cookiejar.CookieJar] = None,
) -> requests.Session:
    """A session for one worker thread: keep-alive, identity encoding, retries.

    Credential headers among ``headers`` and ``auth`` (HTTP Basic) go only to
    ``trusted_origin`` (a URL); ``proxy``, ``noproxy`` and ``netrc`` as on :class:`Session`
    (already checked by :class:`accel.Options`); ``cookies`` is a jar the session shares.
    """
    session = Session()
    session.proxy = proxy
    session.noproxy = tuple(noproxy) if noproxy is not None else None
    session.netrc = netrc
    if cookies is not None:
        session.cookies = SharedCookies(cookies)
    if auth is not None:
        session.credentials["Authorization"] = basic_auth(*auth)
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


def options_session(
    options: Options, url: str, cookies: Optional[http.cookiejar.CookieJar]
) -> requests.Session:
    """A new session with one download's settings, trusting ``url``'s origin with its
    credentials and sharing ``cookies``."""
    return new_session(
        headers=dict(options.headers),
        verify=options.verify,
        retry=options.retry,
        trusted_origin=url,
        proxy=options.proxy,
        noproxy=options.noproxy,
        auth=options.auth,
        netrc=options.netrc,  # type: ignore[arg-type]  # a str once checked
        cookies=cookies,
    )


def download_session(
    options: Options,
    url: str,
    cookies: Optional[http.cookiejar.CookieJar],
    *,
    pool: Optional[SessionPool] = None,
    factory: Optional[SessionFactory] = None,
) -> base.Session:
    """A session for one of a download's worker threads: the caller's ``factory``'s, or one
    from ``pool`` (shared with the pool's other downloads of the same settings and origin: a
    closed session goes back to the pool with its connection open), or a new one."""
    if factory is not None:
        return factory()
    if pool is None:
        return options_session(options, url, cookies)
    key = (options.headers, options.verify, options.retry, origin(url))
    network = (options.proxy, options.noproxy, options.auth, options.netrc)
    return pool.get((key, network), lambda: options_session(options, url, cookies), cookies)


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

    def get(
        self,
        key: Hashable,
        make: Callable[[], base.Session],
        cookies: Optional[http.cookiejar.CookieJar] = None,
    ) -> base.Session:
        """An idle session for ``key``, or a new one from ``make()``; it shares ``cookies``
        (by default it has none: what one file's server set is not sent with the next)."""
        with self._lock:
            found = next((k for k in reversed(self._idle) if k[0] == key), None)
            session = self._idle.pop(found) if found is not None else None
        if session is None:
            made = make()
            if not isinstance(made, Session):
                return made  # not ours to pool
            session = made
        if cookies is not None:
            session.cookies = SharedCookies(cookies)
        else:
            session.cookies = RequestsCookieJar()
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
