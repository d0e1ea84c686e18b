"""The FaultServer: a threaded HTTP/1.1 server on loopback with switchable faults.

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

import hashlib
import ipaddress
import os
import random
import socket
import threading
import time
import urllib.parse
from email.utils import formatdate
from typing import Any, Dict, List, Optional, Tuple, Union

from tests.servers.content import Part, Resource, Snapshot
from tests.servers.faults import Faults, RequestLog
from tests.servers.handler import FaultHandler, HTTPServer, HTTPServer6

__all__ = ["FaultServer"]

_LM_BASE = 1_600_000_000  # 2020-09-13; auto Last-Modified dates count up from here
_KEEP: Any = object()  # sentinel: keep the current setting


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
        self._files: Dict[str, Resource] = {}
        self._lm_gen = 0
        self._bytes_sent = 0
        self._per_path: Dict[str, int] = {}
        self._requests: List[RequestLog] = []
        self._connections = 0
        self._next_conn_id = 0
        self._open: Dict[int, Tuple[socket.socket, Optional[threading.Thread]]] = {}
        self._stopping = threading.Event()
        self._httpd: Optional[HTTPServer] = None
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
        cls = HTTPServer6 if self._ipv6 else HTTPServer
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

    def reset(self) -> None:
        """Make a started server as good as new for the next test, on the same port: abort
        open connections (in-flight handlers end as at stop()), then serve no files, switch
        every fault off, zero the counters and the errors, and number connections from 0."""
        self._stopping.set()
        open_conns = self.drop_connections()
        deadline = time.monotonic() + 3.0
        for _, thread in open_conns:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._files.clear()
            self._lm_gen = 0
            self.errors.clear()
            self._next_conn_id = 0
            self._open.clear()
        self.reset_counters()
        self.reset_faults()
        self._stopping.clear()

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
            self._files[path] = Resource(
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
            self._files[path] = Resource(
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

    def _snapshot(self, path: str) -> Snapshot:
        res = self._lookup(path)
        if res is None:
            raise KeyError(path)
        return Snapshot(res)

    @staticmethod
    def _check_path(path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")

    def _lookup(self, path: str) -> Optional[Resource]:
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

    def _take_trickle(self, parts: List[Part]) -> Optional[Tuple[int, float]]:
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
