"""The FaultServer's request handler (one per TCP connection: ranges, If-Range, the
faults) and the threaded HTTP server class that numbers and tracks connections."""

from __future__ import annotations

import gzip
import hashlib
import os
import select
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from tests.servers.content import Part, Snapshot, parse_range
from tests.servers.data import KiB, MiB
from tests.servers.faults import CIDict, Faults, RequestLog

if TYPE_CHECKING:
    from tests.servers.server import FaultServer

__all__ = ["FaultHandler", "HTTPServer", "HTTPServer6"]

CHUNK = 256 * KiB  # largest single sendall()
SENDFILE_CHUNK = 4 * MiB  # largest single socket.sendfile() call on the fast path


class _Abort(Exception):
    """Stop handling this connection (deliberate cut, stop(), or peer gone)."""


def _is_network_error(exc: BaseException) -> bool:
    """True for errors that just mean the peer (or stop()) closed the connection."""
    return isinstance(exc, (_Abort, ConnectionError, TimeoutError, socket.timeout))


class FaultHandler(BaseHTTPRequestHandler):
    """Request handler; one instance per TCP connection."""

    protocol_version = "HTTP/1.1"
    server_version = "FaultServer/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: HTTPServer

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
            snap = Snapshot(res)
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

    def _serve_snapshot(self, snap: Snapshot, path: str, head: bool, faults: Faults) -> None:
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
        parts: List[Part] = [(0, size)] if size else []
        content_type = "application/octet-stream"
        range_value = self.headers.get("Range") if not head else None  # HEAD ignores Range
        if ranges_ok and range_value is not None and self._if_range_ok(etag, last_modified):
            parsed = parse_range(range_value, size)
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
                span: Part = (cr_start, max(0, body_end - cr_start + 1))
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
    def _materialize(snap: Snapshot, parts: List[Part]) -> Iterable[bytes]:
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
        self, snap: Snapshot, path: str, parts: List[Part], body_len: int, mode: str
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


class HTTPServer(ThreadingHTTPServer):
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


class HTTPServer6(HTTPServer):
    address_family = socket.AF_INET6
