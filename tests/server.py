"""A real, threaded, fault-injecting HTTP/1.1 server on loopback for the test suite.

Stdlib only.  Typical use::

    with FaultServer() as srv:
        srv.add_file("/f", make_data(1 << 20))
        srv.faults.rate = 512 * 1024          # switches may change at any time
        ...download srv.url("/f")...
        assert srv.bytes_sent_for("/f") >= 1 << 20

Normal behaviour follows RFC 9110 sections 13-15 for GET/HEAD, single byte ranges,
416, and If-Range.  Fault switches live in :class:`Faults` (``srv.faults``).

Counting rule: ``bytes_sent``, ``bytes_sent_for()`` and ``RequestLog.body_bytes_sent`` count
the *content* bytes of 200/206 responses for served files (after gzip, including multipart
framing, excluding chunked transfer framing).  Each chunk is counted just before its
``sendall`` and uncounted if that fails, so a client that has received a whole body never
sees a stale count.  Bodies of error/redirect responses (404, 401, 416, 503, 302 ...) are not
counted.  ``RequestLog.completed`` follows the same rule; ``RequestLog.ended`` is set once the
server is done with the request (sent, cut or aborted).
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import os
import random
import select
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

__all__ = ["CIDict", "FaultHandler", "FaultServer", "Faults", "RequestLog", "make_data"]

KiB = 1024
MiB = 1024 * 1024
CHUNK = 256 * KiB  # largest single sendall()
SENDFILE_CHUNK = 4 * MiB  # largest single socket.sendfile() call on the fast path
_LM_BASE = 1_600_000_000  # 2020-09-13; auto Last-Modified dates count up from here
_KEEP: Any = object()  # sentinel: keep the current setting


def make_data(size: int, seed: int = 0) -> bytes:
    """Return ``size`` deterministic pseudo-random bytes (fast even for tens of MiB)."""
    if size <= 0:
        return b""
    return random.Random(seed).randbytes(size)


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


@dataclass(frozen=True)
class _Resource:
    """A served file: in-memory ``data`` or a path on disk."""

    data: Optional[bytes]
    fs_path: Optional[str]
    etag_spec: Optional[str]
    lm_spec: Optional[str]
    content_disposition: Optional[str]
    auto_etag: Optional[str] = None  # precomputed for in-memory data
    auto_lm: Optional[str] = None


class _Snapshot:
    """The content of a resource as seen by one request (stable even if replaced)."""

    def __init__(self, res: _Resource) -> None:
        self.file: Optional[Any] = None
        self.data: Optional[memoryview] = None
        if res.data is not None:
            self.data = memoryview(res.data)
            self.size = len(res.data)
            auto_etag, auto_lm = res.auto_etag, res.auto_lm
        else:
            assert res.fs_path is not None
            self.file = open(res.fs_path, "rb", buffering=0)  # noqa: SIM115
            st = os.fstat(self.file.fileno())
            self.size = st.st_size
            key = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}".encode()
            auto_etag = '"' + hashlib.sha1(key).hexdigest()[:16] + '"'
            auto_lm = formatdate(st.st_mtime, usegmt=True)
        self.etag = auto_etag if res.etag_spec == "auto" else res.etag_spec
        self.last_modified = auto_lm if res.lm_spec == "auto" else res.lm_spec
        self.content_disposition = res.content_disposition

    def read(self, offset: int, n: int) -> Union[bytes, memoryview]:
        """Return up to ``n`` bytes at ``offset``."""
        if self.data is not None:
            return self.data[offset : offset + n]
        assert self.file is not None
        return os.pread(self.file.fileno(), n, offset)

    def close(self) -> None:
        """Release the file handle, if any."""
        if self.file is not None:
            self.file.close()


class _Abort(Exception):
    """Stop handling this connection (deliberate cut, stop(), or peer gone)."""


# A body is a list of parts: literal bytes, or an (offset, length) span of the snapshot.
_Part = Union[bytes, Tuple[int, int]]


def _parse_range(value: str, size: int) -> Union[str, Tuple[int, int], None]:
    """Parse a Range header against ``size``.

    Returns None to ignore it (malformed, other unit, several ranges), ``"unsatisfiable"``,
    or an inclusive ``(start, end)``.
    """
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first + last).isascii():
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if first:
        start = int(first)
        end = int(last) if last else None
        if end is not None and end < start:
            return None
        if start >= size:
            return "unsatisfiable"
        return start, size - 1 if end is None else min(end, size - 1)
    if not last:
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


def _is_network_error(exc: BaseException) -> bool:
    """True for errors that just mean the peer (or stop()) closed the connection."""
    return isinstance(exc, (_Abort, ConnectionError, TimeoutError, socket.timeout))


class FaultHandler(BaseHTTPRequestHandler):
    """Request handler; one instance per TCP connection."""

    protocol_version = "HTTP/1.1"
    server_version = "FaultServer/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def __init__(self, request: socket.socket, client_address: Any, server: Any, conn_id: int):
        self.connection_id = conn_id
        self._date: Optional[str] = None
        self.owner: FaultServer = server.owner
        self.log: Optional[RequestLog] = None
        super().__init__(request, client_address, server)

    # --- plumbing -----------------------------------------------------------------------

    def version_string(self) -> str:
        """The Server header value."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def handle_one_request(self) -> None:
        """Handle one request; a fresh log is created per GET/HEAD."""
        self.log = None
        super().handle_one_request()

    def handle(self) -> None:
        """Serve requests until close; client disconnects are not errors."""
        try:
            super().handle()
        except Exception as exc:
            if not (_is_network_error(exc) or self.owner._stopping.is_set()):
                self.owner._record_error(exc)
            self.close_connection = True

    def finish(self) -> None:
        """Flush and close, ignoring a connection that is already gone."""
        try:
            super().finish()
        except OSError:
            pass

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        """Send the status line (and Server/Date) and record the status."""
        if self.log is not None:
            self.log.status = code
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        """Queue a header and record it in the request log."""
        if self.log is not None:
            self.log.response_headers[keyword] = value
        super().send_header(keyword, value)

    def send_simple(
        self,
        status: int,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
        *,
        head: Optional[bool] = None,
    ) -> None:
        """Send a complete small response with Content-Length (keeps the connection)."""
        if head is None:
            head = self.command == "HEAD"
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body and not any(k.lower() == "content-type" for k in headers or {}):
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.log is not None:
            self.log.completed = True
        if body and not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        """Handle GET."""
        self._serve(head=False)

    def do_HEAD(self) -> None:
        """Handle HEAD."""
        self._serve(head=True)

    # --- request handling ---------------------------------------------------------------

    def _serve(self, head: bool) -> None:
        owner = self.owner
        target = self.path
        path = urllib.parse.urlsplit(target).path or "/"
        self._date = formatdate(time.time(), usegmt=True)
        self.log = log = RequestLog(
            method=self.command,
            path=path,
            headers=CIDict(self.headers.items()),
            connection_id=self.connection_id,
            target=target,
            range_header=self.headers.get("Range"),
        )
        owner._add_log(log)
        try:
            self._dispatch(log, path, head)
        finally:
            log.ended = time.monotonic()

    def _dispatch(self, log: RequestLog, path: str, head: bool) -> None:
        owner = self.owner
        faults = owner.faults
        if faults.on_request is not None and faults.on_request(self, log):
            return
        if owner._take("status_times"):
            extra = {} if faults.retry_after is None else {"Retry-After": faults.retry_after}
            self.send_simple(faults.status_code, b"error", extra)
            return
        location = (faults.redirects or {}).get(path)
        if location is not None:
            self.send_simple(faults.redirect_status, b"", {"Location": location})
            return
        need = faults.require_header
        if need is not None and self.headers.get(need[0]) != need[1]:
            self.send_simple(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="accel"'})
            return
        res = owner._lookup(path)
        if res is None:
            self.send_simple(404, b"not found")
            return
        try:
            snap = _Snapshot(res)
        except OSError:
            self.send_simple(404, b"not found")
            return
        try:
            self._serve_snapshot(snap, path, head, faults)
        finally:
            snap.close()

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        """The Date header: one value per request (Last-Modified may be compared with it)."""
        if timestamp is None and self._date is not None:
            return self._date
        return super().date_time_string(timestamp)

    def _if_range_ok(self, etag: Optional[str], last_modified: Optional[str]) -> bool:
        """RFC 9110 13.1.5: a strong ETag, or a strong Last-Modified date, must match.

        A date is strong only when it is at least a second older than this response's
        Date (8.8.2.2); otherwise the condition is false and Range is ignored.
        """
        value = self.headers.get("If-Range")
        if value is None:
            return True
        value = value.strip()
        if etag is not None and value == etag and not value.startswith("W/"):
            return True
        if last_modified is None or value != last_modified:
            return False
        try:
            modified = parsedate_to_datetime(last_modified).timestamp()
            now = parsedate_to_datetime(self.date_time_string()).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        return modified <= now - 1

    def _serve_snapshot(self, snap: _Snapshot, path: str, head: bool, faults: Faults) -> None:
        owner = self.owner
        size = snap.size
        common: List[Tuple[str, str]] = []
        if faults.accept_ranges_none:
            common.append(("Accept-Ranges", "none"))
            ranges_ok = False
        elif faults.ignore_range:
            ranges_ok = False
        else:
            common.append(("Accept-Ranges", "bytes"))
            ranges_ok = True
        etag, last_modified = snap.etag, snap.last_modified
        if etag is not None and not etag.startswith("W/") and owner._take("weak_etag_times"):
            etag = "W/" + etag
        if last_modified is not None and faults.last_modified_now:
            last_modified = self.date_time_string()
        if etag is not None:
            common.append(("ETag", etag))
        if last_modified is not None:
            common.append(("Last-Modified", last_modified))
        if snap.content_disposition is not None:
            common.append(("Content-Disposition", snap.content_disposition))

        status = 200
        parts: List[_Part] = [(0, size)] if size else []
        content_type = "application/octet-stream"
        range_value = self.headers.get("Range") if not head else None  # HEAD ignores Range
        if ranges_ok and range_value is not None and self._if_range_ok(etag, last_modified):
            parsed = _parse_range(range_value, size)
            if parsed == "unsatisfiable":
                headers = dict(common)
                headers["Content-Range"] = f"bytes */{size}"
                self.send_simple(416, b"range not satisfiable", headers)
                return
            if isinstance(parsed, tuple):
                status = 206
                start, end = parsed
                cr_start, cr_end, total = start, end, size
                if owner._take("wrong_content_range_times"):
                    cr_start, cr_end = start + 1, end + 1
                if owner._take("wrong_total_times"):
                    total = size + 1
                body_end = min(cr_end, size - 1)
                span: _Part = (cr_start, max(0, body_end - cr_start + 1))
                content_range = f"bytes {cr_start}-{cr_end}/{total}"
                if faults.multipart:
                    boundary = "accel" + hashlib.sha1(os.urandom(8)).hexdigest()[:20]
                    prefix = (
                        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                        f"Content-Range: {content_range}\r\n\r\n"
                    ).encode()
                    parts = [prefix, span, f"\r\n--{boundary}--\r\n".encode()]
                    content_type = f"multipart/byteranges; boundary={boundary}"
                else:
                    common.append(("Content-Range", content_range))
                    parts = [span]

        if faults.gzip:
            raw = b"".join(self._materialize(snap, parts))
            parts = [gzip.compress(raw, mtime=0)]
            common.append(("Content-Encoding", "gzip"))
        body_len = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)

        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in common:
            self.send_header(key, value)
        if faults.chunked:
            mode = "chunked"
            self.send_header("Transfer-Encoding", "chunked")
        elif faults.no_content_length and status == 200:
            mode = "close"
            self.send_header("Connection", "close")
        else:
            mode = "length"
            self.send_header("Content-Length", str(body_len))
        self.end_headers()
        if head:
            assert self.log is not None
            self.log.completed = True
            return
        self._send_body(snap, path, parts, body_len, mode)

    @staticmethod
    def _materialize(snap: _Snapshot, parts: List[_Part]) -> Iterable[bytes]:
        for part in parts:
            if isinstance(part, bytes):
                yield part
                continue
            offset, length = part
            while length > 0:
                data = bytes(snap.read(offset, min(length, CHUNK)))
                if not data:
                    raise _Abort("file shrank")
                yield data
                offset += len(data)
                length -= len(data)

    def _rate(self) -> Optional[float]:
        """Current throttle for this request in bytes/s (None: unlimited)."""
        faults = self.owner.faults
        rate = faults.rate if faults.rate and faults.rate > 0 else None
        k = faults.straggler_every
        if k and k > 0 and self.connection_id % k == k - 1:
            if rate is None:
                rate = faults.straggler_rate
            else:
                rate /= max(faults.straggler_factor, 1e-9)
        if self.log is not None and self.log.slow:
            if rate is None:
                rate = faults.straggler_rate
            else:
                rate /= max(faults.slow_request_factor, 1e-9)
        return rate

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.owner._stopping.wait(seconds):
            raise _Abort("server stopping")

    def _peer_closed(self) -> bool:
        """True if the client has closed its end (EOF or reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _stall(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._sleep(min(0.05, remaining))
            if self._peer_closed():
                raise _Abort("peer closed during stall")

    def _cut(self, rst: bool) -> None:
        """Abruptly close the connection mid-body."""
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass
        sock.close()
        self.close_connection = True
        raise _Abort("cut")

    def _send_body(
        self, snap: _Snapshot, path: str, parts: List[_Part], body_len: int, mode: str
    ) -> None:
        owner = self.owner
        log = self.log
        assert log is not None
        log.slow = owner._draw_slow()
        cut = owner._take_cut(body_len)
        stall = owner._take_stall(body_len)
        trickle = owner._take_trickle(parts)
        sock = self.connection
        sent = 0
        next_t = time.monotonic()
        for part in parts:
            is_bytes = isinstance(part, bytes)
            if is_bytes:
                view = memoryview(part)  # type: ignore[arg-type]
                base, plen = 0, len(view)
            else:
                base, plen = part  # type: ignore[misc]
            pos = 0
            while pos < plen:
                if stall is not None and sent >= stall[0]:
                    self._stall(stall[1])
                    stall = None
                if cut is not None and sent >= cut[0]:
                    self._cut(cut[1])
                rate = self._rate()
                offset = None if is_bytes else base + pos  # of the file
                if trickle is not None and offset is not None and offset >= trickle[0]:
                    rate = trickle[1]
                limit = CHUNK if rate is None else max(1, min(CHUNK, int(rate / 20)))
                fast = (
                    not is_bytes
                    and snap.file is not None
                    and rate is None
                    and cut is None
                    and stall is None
                    and trickle is None
                    and mode != "chunked"
                    and owner.faults.change_after_bytes is None
                )
                n = min(plen - pos, SENDFILE_CHUNK if fast else limit)
                if cut is not None:
                    n = min(n, cut[0] - sent)
                if stall is not None:
                    n = min(n, stall[0] - sent)
                if trickle is not None and offset is not None and offset < trickle[0]:
                    n = min(n, trickle[0] - offset)
                t_before = time.monotonic()
                data = None
                if not fast:
                    data = view[pos : pos + n] if is_bytes else snap.read(base + pos, n)
                    n = len(data)
                if n == 0:
                    raise _Abort("file shrank")
                # Count (and mark completion) *before* the bytes can reach the client, so a
                # client that has read everything never sees stale counters; undo on failure.
                owner._count(path, log, n)
                log.completed = mode != "chunked" and sent + n == body_len
                try:
                    if data is None:
                        done = sock.sendfile(snap.file, base + pos, n)
                        if done < n:
                            owner._count(path, log, done - n)
                            log.completed = False
                            n = done
                            if n == 0:
                                raise _Abort("file shrank")
                    elif mode == "chunked":
                        sock.sendall(b"%x\r\n" % n + bytes(data) + b"\r\n")
                    else:
                        sock.sendall(data)
                except BaseException:
                    owner._count(path, log, -n)
                    log.completed = False
                    raise
                pos += n
                sent += n
                if rate is not None:
                    next_t = max(next_t, t_before) + n / rate
                    self._sleep(next_t - time.monotonic())
        log.completed = True
        if mode == "chunked":
            try:
                sock.sendall(b"0\r\n\r\n")
            except BaseException:
                log.completed = False
                raise


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with connection ids, tracking and no reverse DNS."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    owner: FaultServer

    def server_bind(self) -> None:
        """Bind without HTTPServer's getfqdn() lookup."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a daemon thread per connection, numbering connections in accept order."""
        conn_id = self.owner._new_connection(request)
        thread = threading.Thread(
            target=self._run, args=(request, client_address, conn_id), daemon=True
        )
        self.owner._set_thread(conn_id, thread)
        thread.start()

    def _run(self, request: Any, client_address: Any, conn_id: int) -> None:
        try:
            FaultHandler(request, client_address, self, conn_id)
        except Exception as exc:
            if not (_is_network_error(exc) or isinstance(exc, OSError)):
                self.owner._record_error(exc)
        finally:
            self.shutdown_request(request)
            self.owner._connection_done(conn_id)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """No tracebacks on stderr."""


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class FaultServer:
    """Threaded HTTP/1.1 server on loopback with switchable faults (see :class:`Faults`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"FaultServer binds loopback only, not {host!r}") from None
        if not ip.is_loopback:
            raise ValueError(f"FaultServer binds loopback only, not {host!r}")
        self.host = host
        self._requested_port = port
        self._ipv6 = ip.version == 6
        self.faults = Faults()
        self.errors: List[BaseException] = []  # unexpected handler exceptions (bugs)
        self._lock = threading.RLock()
        self._files: Dict[str, _Resource] = {}
        self._lm_gen = 0
        self._bytes_sent = 0
        self._per_path: Dict[str, int] = {}
        self._requests: List[RequestLog] = []
        self._connections = 0
        self._next_conn_id = 0
        self._open: Dict[int, Tuple[socket.socket, Optional[threading.Thread]]] = {}
        self._stopping = threading.Event()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._port: Optional[int] = None
        self._slow_rng: Optional[random.Random] = None
        self._slow_key: Optional[Tuple[int, int]] = None  # (id(faults), seed) of the RNG
        self._slow_count = 0  # responses with a body since the draws restarted

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Bind and start serving in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        cls = _HTTPServer6 if self._ipv6 else _HTTPServer
        httpd = cls((self.host, self._requested_port), FaultHandler)  # type: ignore[arg-type]
        httpd.owner = self
        self._httpd = httpd
        self._port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort open connections and wait briefly for handler threads."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        open_conns = self.drop_connections()
        deadline = time.monotonic() + 3.0
        for _, thread in open_conns:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(1.0)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._port is None:
            raise RuntimeError("FaultServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (after start())."""
        host = f"[{self.host}]" if self._ipv6 else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        """``base_url + path``; ``path`` starts with "/"."""
        return self.base_url + path

    # --- content ------------------------------------------------------------------------

    def _auto_lm(self, path: str, etag: str) -> str:
        """Next auto Last-Modified for ``path``; unchanged if the content is unchanged."""
        old = self._files.get(path)
        if old is not None and old.auto_lm is not None and old.auto_etag == etag:
            return old.auto_lm
        self._lm_gen += 1
        return formatdate(_LM_BASE + self._lm_gen * 3600, usegmt=True)

    def _store(
        self,
        path: str,
        data: bytes,
        etag: Optional[str],
        last_modified: Optional[str],
        content_disposition: Optional[str],
    ) -> None:
        data = bytes(data)
        auto_etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        with self._lock:
            self._files[path] = _Resource(
                data=data,
                fs_path=None,
                etag_spec=etag,
                lm_spec=last_modified,
                content_disposition=content_disposition,
                auto_etag=auto_etag,
                auto_lm=self._auto_lm(path, auto_etag),
            )

    def add_file(
        self,
        path: str,
        data: bytes,
        *,
        etag: Optional[str] = "auto",
        last_modified: Optional[str] = "auto",
        content_disposition: Optional[str] = None,
    ) -> None:
        """Serve ``data`` at ``path``.

        ``etag``: "auto" (strong, from a SHA-1 of the content), None (no header) or an exact
        header value such as ``'W/"x"'``.  ``last_modified``: "auto" (a fixed HTTP-date that
        changes whenever the content changes), None, or an exact header value.
        """
        self._check_path(path)
        self._store(path, data, etag, last_modified, content_disposition)

    def add_path(
        self,
        path: str,
        fs_path: Union[str, os.PathLike],
        *,
        etag: Optional[str] = "auto",
        last_modified: Optional[str] = "auto",
        content_disposition: Optional[str] = None,
    ) -> None:
        """Serve a file from disk at ``path`` (streamed, never read whole).

        The file is re-opened per request.  Auto ETag derives from (inode, size, mtime);
        auto Last-Modified is the file's mtime.
        """
        self._check_path(path)
        with self._lock:
            self._files[path] = _Resource(
                data=None,
                fs_path=os.fspath(fs_path),
                etag_spec=etag,
                lm_spec=last_modified,
                content_disposition=content_disposition,
            )

    def set_file(
        self,
        path: str,
        data: bytes,
        *,
        etag: Optional[str] = _KEEP,
        last_modified: Optional[str] = _KEEP,
        content_disposition: Optional[str] = _KEEP,
    ) -> None:
        """Replace the content at ``path`` atomically (auto ETag/Last-Modified change).

        Settings not given are kept from the previous file (an explicit ETag stays as is).
        """
        with self._lock:
            old = self._files.get(path)
            if old is None:
                raise KeyError(path)
            self._store(
                path,
                data,
                old.etag_spec if etag is _KEEP else etag,
                old.lm_spec if last_modified is _KEEP else last_modified,
                old.content_disposition if content_disposition is _KEEP else content_disposition,
            )

    def remove_file(self, path: str) -> None:
        """Stop serving ``path`` (404 afterwards)."""
        with self._lock:
            self._files.pop(path, None)

    def etag(self, path: str) -> Optional[str]:
        """The ETag header value currently sent for ``path``."""
        snap = self._snapshot(path)
        try:
            return snap.etag
        finally:
            snap.close()

    def last_modified(self, path: str) -> Optional[str]:
        """The Last-Modified header value currently sent for ``path``."""
        snap = self._snapshot(path)
        try:
            return snap.last_modified
        finally:
            snap.close()

    def _snapshot(self, path: str) -> _Snapshot:
        res = self._lookup(path)
        if res is None:
            raise KeyError(path)
        return _Snapshot(res)

    @staticmethod
    def _check_path(path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")

    def _lookup(self, path: str) -> Optional[_Resource]:
        with self._lock:
            res = self._files.get(path)
            if res is None:
                res = self._files.get(urllib.parse.unquote(path))
            return res

    # --- counters -----------------------------------------------------------------------

    @property
    def bytes_sent(self) -> int:
        """Total content bytes sent (see module docstring for what counts)."""
        with self._lock:
            return self._bytes_sent

    def bytes_sent_for(self, path: str) -> int:
        """Content bytes sent for ``path``."""
        with self._lock:
            return self._per_path.get(path, 0)

    @property
    def requests(self) -> List[RequestLog]:
        """A snapshot list of the request logs (entries keep updating while in flight)."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """TCP connections accepted since start / the last reset_counters()."""
        with self._lock:
            return self._connections

    def reset_counters(self) -> None:
        """Zero bytes_sent, per-path counts, requests and connections.

        Connection ids keep increasing (they are never reused).
        """
        with self._lock:
            self._bytes_sent = 0
            self._per_path.clear()
            self._requests.clear()
            self._connections = 0

    def drop_connections(self) -> List[Tuple[socket.socket, Optional[threading.Thread]]]:
        """Abort every open connection at once (the listener stays), as a restart would;
        returns them with their handler threads."""
        with self._lock:
            open_conns = list(self._open.values())
        for sock, _ in open_conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return open_conns

    def reset_faults(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self.faults = Faults()
            self._slow_rng = None
            self._slow_count = 0

    def restart_slow_draws(self) -> None:
        """Start the slow-request draws again from ``faults.slow_request_seed`` (and the
        count of ``faults.slow_request_every`` from zero)."""
        with self._lock:
            self._slow_rng = None
            self._slow_count = 0

    # --- internals used by the handler ----------------------------------------------------

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _add_log(self, log: RequestLog) -> None:
        with self._lock:
            self._requests.append(log)

    def _new_connection(self, sock: socket.socket) -> int:
        with self._lock:
            conn_id = self._next_conn_id
            self._next_conn_id += 1
            self._connections += 1
            self._open[conn_id] = (sock, None)
            return conn_id

    def _set_thread(self, conn_id: int, thread: threading.Thread) -> None:
        with self._lock:
            if conn_id in self._open:
                self._open[conn_id] = (self._open[conn_id][0], thread)

    def _connection_done(self, conn_id: int) -> None:
        with self._lock:
            self._open.pop(conn_id, None)

    def _take(self, name: str) -> bool:
        """Consume one unit of the counter ``faults.<name>``; True if one was available."""
        with self._lock:
            faults = self.faults
            count = getattr(faults, name)
            if count and count > 0:
                setattr(faults, name, count - 1)
                return True
            return False

    def _draw_slow(self) -> bool:
        """Whether the response about to be sent is slow (one draw per response with a body)."""
        with self._lock:
            f = self.faults
            self._slow_count += 1
            periodic = f.slow_request_every > 0 and self._slow_count % f.slow_request_every == 0
            if f.slow_request_probability <= 0:
                return periodic
            key = (id(f), f.slow_request_seed)
            if self._slow_rng is None or self._slow_key != key:
                self._slow_rng = random.Random(f.slow_request_seed)
                self._slow_key = key
            return self._slow_rng.random() < f.slow_request_probability or periodic

    def _take_cut(self, body_len: int) -> Optional[Tuple[int, bool]]:
        """Arm a cut for a body of ``body_len`` bytes: (cut_at, rst) or None."""
        with self._lock:
            f = self.faults
            if f.cut_after is None or f.cut_times <= 0 or body_len <= f.cut_after:
                return None
            armed = (max(0, f.cut_after), f.cut_rst)
            f.cut_times -= 1
            if f.cut_times <= 0:
                f.cut_after, f.cut_times = None, 1
            return armed

    def _take_stall(self, body_len: int) -> Optional[Tuple[int, float]]:
        """Arm a stall for a body of ``body_len`` bytes: (after_bytes, seconds) or None."""
        with self._lock:
            f = self.faults
            after = max(0, f.stall_after_bytes)
            if f.stall_seconds <= 0 or f.stall_times <= 0 or body_len <= after:
                return None
            armed = (after, f.stall_seconds)
            f.stall_times -= 1
            if f.stall_times <= 0:
                f.stall_seconds, f.stall_times = 0.0, 1
            return armed

    def _take_trickle(self, parts: List[_Part]) -> Optional[Tuple[int, float]]:
        """Arm a trickle for a body of ``parts``: (from_offset, rate) or None."""
        with self._lock:
            f = self.faults
            start = f.trickle_from
            if start is None or f.trickle_rate <= 0:
                return None
            if not any(not isinstance(p, bytes) and p[0] + p[1] > start for p in parts):
                return None  # the body ends before the trickle would start
            if f.trickle_times is not None:
                if f.trickle_times <= 0:
                    return None
                f.trickle_times -= 1
                if f.trickle_times <= 0:
                    f.trickle_from, f.trickle_times = None, None
            return start, f.trickle_rate

    def _count(self, path: str, log: RequestLog, n: int) -> None:
        """Add ``n`` (may be negative, to undo) content bytes sent for ``path``."""
        with self._lock:
            self._bytes_sent = max(0, self._bytes_sent + n)
            total = max(0, self._per_path.get(path, 0) + n)
            self._per_path[path] = total
            log.body_bytes_sent = max(0, log.body_bytes_sent + n)
            f = self.faults
            if (
                f.change_after_bytes is not None
                and f.change_to is not None
                and (f.change_path is None or f.change_path == path)
                and total >= f.change_after_bytes
                and path in self._files
            ):
                f.change_after_bytes = None
                self.set_file(path, f.change_to)
