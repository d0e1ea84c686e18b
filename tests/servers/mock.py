"""A fake HTTP transport for unit tests of the engine: no sockets, in the spirit of httpx's
``MockTransport``.

A :class:`MockTransport` wraps a handler ``handler(request) -> MockResponse`` and is itself
the session factory (``accel.Downloader(url, out, session_factory=transport)``): each
:class:`MockSession` it makes sends requests to the handler and logs them. A handler may
raise what requests raises (``requests.exceptions.ConnectionError``...): accel maps it as
it maps the real thing. A :class:`MockResponse` body is read through ``raw.readinto``,
optionally in small chunks, cut short or failing after some bytes. :class:`RangedFile` is
a ready-made handler serving one file with ranges and validators like a real server; tests
wrap it to inject faults.

The engine sees these objects through :mod:`accel._http.base`'s protocols and the read
path of :mod:`accel._http.body` (the zero-copy path needs a real socket, so it steps aside).
"""

from __future__ import annotations

import http
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable, Iterable, List, Mapping, Optional, Tuple

from tests.servers.faults import CIDict

__all__ = ["MockRaw", "MockRequest", "MockResponse", "MockSession", "MockTransport", "RangedFile"]

#: A byte range as a request asks for it: (first, last), last None for "to the end".
Span = Tuple[int, Optional[int]]


@dataclass
class MockRequest:
    """One request as a :class:`MockSession` sent it (headers case-insensitive)."""

    method: str
    url: str
    headers: CIDict
    at: float = field(default_factory=time.monotonic)  # when it was sent (monotonic)
    response: Optional[MockResponse] = None  # what the handler answered (None: it raised)

    @property
    def range(self) -> Optional[Span]:
        """The ``Range`` asked for as (first, last), or None (no header, or not one range)."""
        return parse_range(self.headers.get("Range"))

    @property
    def start(self) -> Optional[int]:
        """The first byte the ``Range`` asks for (None without one)."""
        span = self.range
        return None if span is None else span[0]


class MockRaw:
    """A response body read the way accel reads one: ``readinto`` (or ``read``).

    ``chunk`` bounds each read; after ``cut_after`` bytes the body ends early (EOF);
    after ``fail_after`` bytes a read raises ``error`` (a reset connection by default).
    """

    def __init__(
        self,
        body: bytes,
        *,
        chunk: Optional[int] = None,
        cut_after: Optional[int] = None,
        fail_after: Optional[int] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        self.body = body
        self.chunk = chunk
        self.cut_after = cut_after
        self.fail_after = fail_after
        self.error = error
        self.sent = 0  # bytes handed to the reader so far
        self.closed = False

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with the next bytes of the body; 0 at its end (or its cut)."""
        if self.closed:
            raise ValueError("read of a closed response")  # as http.client says it
        limit = len(self.body)
        if self.cut_after is not None:
            limit = min(limit, self.cut_after)
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise self.error or ConnectionResetError(104, "Connection reset by peer")
        if self.fail_after is not None:
            limit = min(limit, self.fail_after)
        n = min(len(buffer), limit - self.sent, self.chunk or len(buffer))
        if n <= 0:
            return 0
        buffer[:n] = self.body[self.sent : self.sent + n]
        self.sent += n
        return n

    def read(self, amt: Optional[int] = None) -> bytes:
        """Up to ``amt`` bytes (all that is left when None)."""
        out = bytearray()
        want = len(self.body) if amt is None else amt
        buf = memoryview(bytearray(max(1, min(want, 64 * 1024))))
        while len(out) < want:
            n = self.readinto(buf[: want - len(out)])
            if not n:
                break
            out += buf[:n]
        return bytes(out)

    def close(self) -> None:
        """Let go of the body: later reads fail."""
        self.closed = True


class MockResponse:
    """A response as requests gives it with ``stream=True``: status, headers, final URL,
    reason, ``raw`` (:class:`MockRaw`), ``content`` and ``close()``.

    ``url`` defaults to the request's (set by the session). The body keywords are
    :class:`MockRaw`'s.
    """

    def __init__(
        self,
        status: int = 200,
        headers: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        *,
        url: str = "",
        reason: Optional[str] = None,
        chunk: Optional[int] = None,
        cut_after: Optional[int] = None,
        fail_after: Optional[int] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        self.status_code = status
        self.headers = CIDict((headers or {}).items())
        self.url = url
        self.reason = reason if reason is not None else _reason(status)
        self.raw = MockRaw(
            body, chunk=chunk, cut_after=cut_after, fail_after=fail_after, error=error
        )
        self.closed = False

    @property
    def content(self) -> bytes:
        """The rest of the body, read at once."""
        return self.raw.read()

    def close(self) -> None:
        """Close the response (idempotent)."""
        self.closed = True
        self.raw.close()


#: Answers one request; may raise what requests raises.
Handler = Callable[[MockRequest], MockResponse]


class MockSession:
    """A session of a :class:`MockTransport`: ``request()`` calls its handler."""

    def __init__(self, transport: MockTransport) -> None:
        self.transport = transport
        self.closed = False

    def request(
        self,
        method: str,
        url: str,
        headers: Optional[Mapping[str, str]] = None,
        *,
        stream: bool = False,
        timeout: object = None,
        allow_redirects: bool = True,
    ) -> MockResponse:
        """Send ``method url`` to the handler and log it (``stream`` etc. are accepted)."""
        if self.closed:
            raise RuntimeError("request on a closed MockSession")
        req = MockRequest(method, url, CIDict((headers or {}).items()))
        self.transport.log(req)
        resp = self.transport.handler(req)
        if not resp.url:
            resp.url = url
        req.response = resp
        return resp

    def close(self) -> None:
        """Close the session (a real one would hand its connection back to the pool)."""
        self.closed = True


class MockTransport:
    """A handler and the log of what was asked of it; call it for a new :class:`MockSession`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: List[MockRequest] = []
        self.sessions: List[MockSession] = []
        self._lock = threading.Lock()

    def __call__(self) -> MockSession:
        session = MockSession(self)
        with self._lock:
            self.sessions.append(session)
        return session

    def log(self, request: MockRequest) -> None:
        """Record ``request`` (sessions call this from any thread)."""
        with self._lock:
            self.requests.append(request)

    def gets(self) -> List[MockRequest]:
        """The GET requests so far, in the order they were sent."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    def delivered(self) -> List[Tuple[int, int]]:
        """The bytes each answered GET handed its reader, as (first offset, count)."""
        out = []
        for req in self.gets():
            resp = req.response
            if resp is None or resp.raw.sent == 0:
                continue
            first = 0
            if resp.status_code == 206:
                span = parse_content_range(resp.headers.get("Content-Range"))
                first = span[0] if span else 0
            out.append((first, resp.raw.sent))
        return out

    def all_closed(self) -> bool:
        """Whether every session and every response was closed."""
        with self._lock:
            responses = [r.response for r in self.requests if r.response is not None]
            return all(s.closed for s in self.sessions) and all(r.closed for r in responses)


class RangedFile:
    """A handler serving ``data`` like a real server: ``Accept-Ranges``, a strong ``ETag`` and
    ``Last-Modified``, one-range requests (``bytes=a-b``, ``a-``, ``-n``) as 206 with
    ``Content-Range``, 416 outside the file, and ``If-Range`` (a range only while the ETag or
    the date matches; else the whole file as 200). ``ranges=False``: always 200, the way a
    server without ranges answers. Change ``data`` or ``etag`` at any time (a new version).
    ``chunk`` bounds each read of a body.
    """

    def __init__(
        self,
        data: bytes,
        *,
        etag: Optional[str] = '"v1"',
        last_modified: Optional[str] = "Mon, 02 Jan 2023 03:04:05 GMT",
        ranges: bool = True,
        chunk: Optional[int] = 16 * 1024,
    ) -> None:
        self.data = data
        self.etag = etag
        self.last_modified = last_modified
        self.ranges = ranges
        self.chunk = chunk

    def __call__(self, req: MockRequest) -> MockResponse:
        data, size = self.data, len(self.data)
        headers = dict(self._validators())
        headers["Accept-Ranges"] = "bytes" if self.ranges else "none"
        status, first, last = 200, 0, size - 1
        asked = req.headers.get("Range")
        if self.ranges and asked is not None and req.method == "GET" and self._if_range(req):
            span = parse_range(asked, size)  # None: not one valid range, ignored
            if span is not None and span[0] >= size:
                headers["Content-Range"] = f"bytes */{size}"
                return MockResponse(416, headers, b"range not satisfiable")
            if span is not None:
                first, end = span
                last = size - 1 if end is None else min(end, size - 1)
                status = 206
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        body = data[first : last + 1]
        headers["Content-Length"] = str(len(body))
        if req.method == "HEAD":
            body = b""
        return MockResponse(status, headers, body, chunk=self.chunk)

    def _validators(self) -> Iterable[Tuple[str, str]]:
        yield "Date", formatdate(usegmt=True)  # later than Last-Modified: a strong date
        if self.etag is not None:
            yield "ETag", self.etag
        if self.last_modified is not None:
            yield "Last-Modified", self.last_modified

    def _if_range(self, req: MockRequest) -> bool:
        asked: Optional[str] = req.headers.get("If-Range")
        if asked is None:
            return True
        value = asked.strip()
        if self.etag is not None and not value.startswith("W/") and value == self.etag:
            return True
        return value == self.last_modified


def parse_range(value: Optional[str], size: Optional[int] = None) -> Optional[Span]:
    """``bytes=a-b`` / ``a-`` as (a, b or None); ``-n`` as the last n bytes (needs ``size``).
    None for anything else (no header, several ranges, junk)."""
    if value is None or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[len("bytes=") :].strip().partition("-")
    try:
        if not first:
            if size is None or not last:
                return None
            return max(0, size - int(last)), None
        span = int(first), int(last) if last else None
    except ValueError:
        return None
    return None if span[1] is not None and span[1] < span[0] else span


def parse_content_range(value: Optional[str]) -> Optional[Tuple[int, int]]:
    """(first, last) of ``bytes first-last/total``, or None."""
    if value is None or not value.startswith("bytes ") or "*" in value:
        return None
    span = value[len("bytes ") :].split("/")[0]
    first, _, last = span.partition("-")
    try:
        return int(first), int(last)
    except ValueError:
        return None


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
