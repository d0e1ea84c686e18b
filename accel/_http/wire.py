"""Keep-alive HTTP/1.1 connections driven by one event loop, for the many-small-files path.

A requests :class:`~accel._http.session.Session` configures an origin once (:class:`Dialer`):
the request headers it would send (``User-Agent``, the caller's headers, credentials only
for the download's own origin, netrc), proxies from the environment, and TLS verification,
CA bundle and client certificate through its adapter's urllib3 connection pool. urllib3's
connection then makes the socket (DNS, TCP, TLS handshake and verification, the plain-HTTP
proxy), and the loop drives that socket without blocking. Responses are parsed by a
well-kept HTTP/1.1 parser, never by hand: ``httptools`` (llhttp, C) when it is installed,
else ``h11`` (pure Python); ``ACCEL_PARSER=h11`` or ``=httptools`` forces one.

HTTPS through a proxy (a CONNECT tunnel) is not driven here: :meth:`Dialer.make` returns
None and the download takes the regular path.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union, cast

import requests
from requests.utils import select_proxy

from accel._util.urls import origin

log = logging.getLogger(__name__)

#: The largest read from a socket.
RECV = 256 * 1024


class Headers(Dict[str, str]):
    """Response header fields, looked up case-insensitively (repeated fields joined with
    ", " as urllib3 does); keys are stored lower-case."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


#: URLs that need no quoting and end in no empty query: requests sends path and query as
#: they are (anything else goes through requests' own preparation).
_PLAIN_TARGET = re.compile(
    r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=]*[A-Za-z0-9\-._~:/\[\]@!$&'()*+,;=]"
).fullmatch


class WireError(Exception):
    """The connection broke or the server broke HTTP/1.1 (the message says which)."""


class Sink(Protocol):
    """Who hears one response: its head, its body in pieces, its end."""

    def on_head(self, status: int, reason: str, headers: Headers) -> None: ...
    def on_body(self, data: Union[bytes, bytearray]) -> None: ...
    def on_end(self) -> None: ...


class _Parser(Protocol):
    sink: Optional[Sink]

    def request(self, target: bytes, headers: List[Tuple[bytes, bytes]]) -> bytes: ...
    def feed(self, data: memoryview) -> bool: ...
    @property
    def reusable(self) -> bool: ...


def parser_name() -> Optional[str]:
    """The parser the loop uses (None: none is installed, the loop is not used)."""
    forced = os.environ.get("ACCEL_PARSER", "").strip().lower()
    names = [forced] if forced else ["httptools", "h11"]
    for name in names:
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return None


def _head(status: int, reason: bytes, pairs: List[Tuple[bytes, bytes]], sink: Sink) -> None:
    headers = Headers()
    for raw_name, raw_value in pairs:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        old = dict.get(headers, name)
        dict.__setitem__(headers, name, value if old is None else f"{old}, {value}")
    sink.on_head(status, reason.decode("latin-1"), headers)


class _H11:
    """h11's state machine: it frames requests and responses (Content-Length, chunked)."""

    def __init__(self) -> None:
        import h11

        self._h11 = h11
        self._conn = h11.Connection(h11.CLIENT)
        self.sink: Optional[Sink] = None

    def request(self, target: bytes, headers: List[Tuple[bytes, bytes]]) -> bytes:
        h11 = self._h11
        if self._conn.our_state is h11.DONE:
            self._conn.start_next_cycle()
        head = self._conn.send(h11.Request(method=b"GET", target=target, headers=headers))
        tail = self._conn.send(h11.EndOfMessage())
        return (head or b"") + (tail or b"")

    def feed(self, data: memoryview) -> bool:
        """Parse ``data`` (empty: the peer closed); True when the response ended."""
        h11 = self._h11
        conn = self._conn
        sink = self.sink
        assert sink is not None
        try:
            conn.receive_data(cast(bytes, data))  # copied into h11's buffer (bytes-like)
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    sink.on_body(event.data)  # (a bytearray h11 made: not the loop's buffer)
                elif event is h11.NEED_DATA:
                    return False
                elif isinstance(event, h11.Response):
                    _head(event.status_code, event.reason, list(event.headers), sink)
                elif isinstance(event, h11.EndOfMessage):
                    sink.on_end()
                    return True
                elif isinstance(event, h11.ConnectionClosed):
                    raise WireError("the server closed the connection")
                elif event is h11.PAUSED:  # pragma: no cover - only after EndOfMessage
                    return True
                # InformationalResponse (1xx): wait for the final response
        except h11.RemoteProtocolError as exc:
            raise WireError(f"bad HTTP from the server: {exc}") from exc

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request (both sides said keep-alive)."""
        h11 = self._h11
        conn = self._conn
        done = conn.our_state is h11.DONE and conn.their_state is h11.DONE
        return bool(done and not conn.trailing_data[0])  # bytes past the end: spoilt


class _Llhttp:
    """httptools' binding of llhttp, the parser of Node.js."""

    def __init__(self) -> None:
        import httptools

        self._errors = (httptools.HttpParserError,)
        self._parser = httptools.HttpResponseParser(self)
        self._pairs: List[Tuple[bytes, bytes]] = []
        self._reason = b""
        self._ended = False
        self._keep = False
        self.sink: Optional[Sink] = None

    def request(self, target: bytes, headers: List[Tuple[bytes, bytes]]) -> bytes:
        # Writing a request is not parsing: the names and values were checked by requests.
        lines = [b"GET ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    # llhttp's callbacks
    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._pairs.append((name, value))

    def on_headers_complete(self) -> None:
        pairs, self._pairs = self._pairs, []
        assert self.sink is not None
        _head(self._parser.get_status_code(), self._reason, pairs, self.sink)

    def on_body(self, body: bytes) -> None:
        assert self.sink is not None
        self.sink.on_body(body)

    def on_message_complete(self) -> None:
        self._ended = True
        self._keep = bool(self._parser.should_keep_alive())
        assert self.sink is not None
        self.sink.on_end()

    def feed(self, data: memoryview) -> bool:
        self._ended = False
        try:
            if data:
                self._parser.feed_data(data)
            elif not self._ended:
                # EOF ends a body of unknown length; otherwise the response was cut short.
                raise WireError("the server closed the connection")
        except self._errors as exc:
            if self._ended:  # bytes after the end of the response: the connection is spoilt
                self._keep = False
                return True
            raise WireError(f"bad HTTP from the server: {exc}") from exc
        return self._ended

    @property
    def reusable(self) -> bool:
        return bool(self._keep)


class Connection:
    """One non-blocking keep-alive connection and its parser."""

    __slots__ = ("_conn", "_parser", "dialer", "requests", "sock")

    def __init__(self, dialer: Dialer, conn: Any, parser: _Parser) -> None:
        self.dialer = dialer
        self._conn = conn  # urllib3's connection object: it owns the socket
        self.sock: socket.socket = conn.sock
        self.sock.setblocking(False)
        self._parser = parser
        #: Requests sent on this connection so far.
        self.requests = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, target: bytes, extra: List[Tuple[bytes, bytes]], sink: Sink) -> bytes:
        """Start a GET of ``target`` for ``sink``; return what is left to write."""
        self._parser.sink = sink
        data = self._parser.request(target, self.dialer.headers + extra)
        self.requests += 1
        return self.write(data)

    def write(self, data: bytes) -> bytes:
        """Write what the socket takes now; return the rest."""
        try:
            n = self.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return data
        except OSError as exc:
            raise WireError(f"cannot send: {exc.strerror or exc}") from exc
        return data[n:]

    def read(self, buffer: memoryview) -> Optional[bool]:
        """Read into ``buffer`` (the loop's one buffer: the parser copies what it keeps)
        and feed the parser: True when the response ended, False when it needs more, None
        when nothing could be read yet (TLS)."""
        sock = self.sock
        try:
            n = sock.recv_into(buffer)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError as exc:
            raise WireError(f"connection lost: {exc.strerror or exc}") from exc
        ended = self._parser.feed(buffer[:n])
        pending = getattr(sock, "pending", None)
        while not ended and n and pending is not None and pending():
            n = sock.recv_into(buffer)  # TLS: bytes already decrypted wait in the SSL object
            ended = self._parser.feed(buffer[:n])
        return ended

    @property
    def reusable(self) -> bool:
        return self._parser.reusable

    def done(self) -> None:
        """The response's download is over: drop the reference to it."""
        self._parser.sink = None

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:  # pragma: no cover - closing a broken socket
            pass


class Dialer:
    """An origin as a requests session configures it, and the connections to it.

    ``headers`` are sent with every request (Host first); ``target(url)`` is the request
    target (an absolute URL through a plain-HTTP proxy).
    """

    def __init__(
        self,
        pool: Any,
        headers: List[Tuple[bytes, bytes]],
        target: Callable[[str], bytes],
        parser: Callable[[], _Parser],
        timeout: Tuple[float, float],
    ) -> None:
        self._pool = pool
        self.headers = headers
        self.target = target
        self._parser = parser
        self._timeout = timeout

    @classmethod
    def make(
        cls, session: requests.Session, url: str, timeout: Tuple[float, float]
    ) -> Optional[Dialer]:
        """The origin of ``url`` as ``session`` configures it; None when the loop cannot
        drive it (HTTPS through a proxy, no parser installed)."""
        name = parser_name()
        if name is None:
            return None
        prep = session.prepare_request(requests.Request("GET", url))
        credentials = getattr(session, "credentials", None)
        if credentials and getattr(session, "trusted_origin", None) in (None, origin(url)):
            for key, value in credentials.items():
                prep.headers.setdefault(key, value)
        settings = session.merge_environment_settings(
            prep.url, {}, True, session.verify, session.cert
        )
        proxies = settings.get("proxies") or {}
        proxy = select_proxy(url, proxies)
        scheme = url.split(":", 1)[0].lower()
        if proxy and scheme == "https":
            return None
        adapter: Any = session.get_adapter(url)
        verify, cert = settings.get("verify", True), settings.get("cert")
        if hasattr(adapter, "get_connection_with_tls_context"):  # requests >= 2.32.2
            pool = adapter.get_connection_with_tls_context(prep, verify, proxies, cert)
        else:  # pragma: no cover - older requests
            pool = adapter.get_connection(url, proxies)
            adapter.cert_verify(pool, url, verify, cert)
        head = [(b"Host", _host_header(url))]
        extra = dict(prep.headers)
        if proxy:
            extra.update(adapter.proxy_headers(proxy))
        for key, value in extra.items():
            if key.lower() not in ("host", "content-length"):
                head.append((key.encode("latin-1"), str(value).encode("latin-1")))

        def target(url: str) -> bytes:
            if not proxy and _PLAIN_TARGET(url):
                # What requests sends for a URL that needs no quoting: path and query.
                rest = url.split("://", 1)[1].split("#", 1)[0]
                slash = rest.find("/")
                query = rest.find("?")
                at = slash if query < 0 or 0 <= slash < query else query
                path = "/" if at < 0 else rest[at:]
                return (path if path[0] == "/" else "/" + path).encode("ascii")
            one = requests.models.PreparedRequest()
            one.prepare_url(url, None)
            return (one.url if proxy else one.path_url).encode("ascii")  # type: ignore[union-attr]

        parser: Callable[[], _Parser] = _H11 if name == "h11" else _Llhttp
        return cls(pool, head, target, parser, timeout)

    def dial(self) -> Connection:
        """A new connection (blocking: DNS, TCP, TLS). Raises :class:`WireError`."""
        conn: Any = None
        try:
            conn = self._pool._new_conn()
            conn.timeout = self._timeout[0]
            conn.connect()
            conn.sock.settimeout(None)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception as exc:  # DNS, refused, TLS: the regular path reports it exactly
            if conn is not None:
                conn.close()
            raise WireError(f"cannot connect: {exc}") from exc
        return Connection(self, conn, self._parser())


def _host_header(url: str) -> bytes:
    scheme, host, port = origin(url)
    name = f"[{host}]" if ":" in host else host
    raw = name.encode("ascii") if name.isascii() else name.encode("idna")
    if port == (443 if scheme == "https" else 80):
        return raw
    return raw + b":" + str(port).encode("ascii")
