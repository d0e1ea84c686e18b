"""``accel --demo``: a self-contained showcase on loopback, and the server behind it.

:class:`DemoServer` is a small HTTP/1.1 file server for 127.0.0.1 with byte ranges, strong
validators and a per-connection throttle, so the gain of several connections is visible on
one machine (``scripts/serve.py`` is a command line for it). :func:`main` starts one in a
temporary directory, generates a file, downloads it with 1 and then 8 connections, prints
the speed-up, interrupts a third download half way and resumes it, verifies the checksum,
and removes everything it made. It needs no network and takes about 10 seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from accel._util.units import human_rate, human_size
from accel.downloader import Downloader
from accel.exceptions import CancelledError

__all__ = ["DemoServer", "main"]

MiB = 1024 * 1024
#: The demo's file and the server's per-connection rate: 1 connection takes ~6 s.
DEMO_SIZE = 6 * MiB
DEMO_RATE = 1 * MiB
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo's output is accel's."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        entry = self.server.files.get(path)
        if entry is None:
            self._simple(404, b"not found\n")
            return
        file, etag, mtime = entry
        size = file.stat().st_size
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == etag):
            m = _RANGE.fullmatch(wanted.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start = max(0, size - int(m.group(2)))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(mtime, usegmt=True))
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head:
            self._body(file, start, end - start + 1)

    def _body(self, file: Path, offset: int, length: int) -> None:
        rate = self.server.rate
        began, sent = time.monotonic(), 0
        with open(file, "rb") as f:
            f.seek(offset)
            while sent < length:
                chunk = f.read(min(64 * 1024, length - sent))
                if not chunk:
                    return
                try:
                    self.wfile.write(chunk)
                except OSError:  # the client went away (a cancel, a stolen range)
                    self.close_connection = True
                    return
                sent += len(chunk)
                if rate:
                    ahead = began + sent / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

    def _simple(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: Dict[str, Tuple[Path, str, float]]
    rate: Optional[float]


class DemoServer:
    """Serve files over HTTP on loopback with ranges and a per-connection ``rate`` (bytes/s,
    None: unthrottled). ``add(path)`` serves a file as ``/NAME``; use it as a context manager
    or :meth:`start` and :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate: Optional[float] = None):
        self._server = _Server((host, port), _Handler)
        self._server.files = {}
        self._server.rate = rate
        self._thread: Optional[threading.Thread] = None

    def add(self, path: Path) -> str:
        """Serve ``path`` (a regular file); return its URL."""
        st = path.stat()
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        # A strong Last-Modified: at least a second older than any response's Date.
        mtime = min(st.st_mtime, time.time() - 2)
        url_path = "/" + urllib.parse.quote(path.name)
        self._server.files[urllib.parse.unquote(url_path)] = (path, etag, mtime)
        return self.url(url_path)

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def start(self) -> DemoServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: The command line run in this process: ``command(argv)`` -> exit code.
Command = Callable[[List[str]], int]


def main(
    command: Command,
    out: Optional[TextIO] = None,
    size: int = DEMO_SIZE,
    rate: float = DEMO_RATE,
) -> int:
    """Run the demonstration with ``command`` (the real command line, in this process);
    return an exit code (0: every step worked)."""

    def _timed(argv: Sequence[str]) -> Tuple[int, float]:
        began = time.monotonic()
        code = command(list(argv))
        return code, time.monotonic() - began

    stream = out or sys.stderr  # where accel's own lines go too, so they stay in order

    def say(text: str) -> None:
        stream.write(f"demo: {text}\n")
        stream.flush()

    with tempfile.TemporaryDirectory(prefix="accel-demo-") as tmp:
        root = Path(tmp)
        served = root / "served"
        got = root / "downloads"
        served.mkdir()
        source = served / "demo.bin"
        with open(source, "wb") as f:
            f.write(os.urandom(size))
        digest = _sha256(source)
        with DemoServer(rate=rate) as server:
            url = server.add(source)
            say(
                f"serving a {human_size(size)} file at {url}, throttled to "
                f"{human_rate(rate)} per connection (like a busy server far away)"
            )
            say("1) one connection, as curl or wget would:")
            code, one = _timed([url, "-n", "1", "-d", str(got), "-o", "one.bin"])
            if code:
                return code
            say("2) eight connections:")
            code, eight = _timed([url, "-n", "8", "-d", str(got), "-o", "eight.bin"])
            if code:
                return code
            say(
                f"1 connection: {one:.1f} s, 8 connections: {eight:.1f} s: "
                f"{one / max(eight, 1e-6):.1f}x faster"
            )
            say("3) eight connections again, interrupted half way...")
            part = Downloader(url, "resumed.bin", directory=got, connections=8).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not part.done:
                snap = part.progress()
                if snap is not None and snap.written >= size // 2:
                    break
                time.sleep(0.05)
            part.cancel()
            try:
                part.result(timeout=10)
                say("(it finished before the interruption: the machine is fast)")
            except CancelledError:
                snap = part.progress()
                kept = snap.written if snap is not None else 0
                say(f"interrupted with {human_size(kept)} of {human_size(size)} on disk")
            say("...and resumed: the same command fetches only what is missing")
            code, _ = _timed(
                [url, "-n", "8", "-d", str(got), "-o", "resumed.bin", "--checksum",
                 f"sha256={digest}"]
            )  # fmt: skip
            if code:
                return code
            for name in ("one.bin", "eight.bin", "resumed.bin"):
                if _sha256(got / name) != digest:
                    say(f"checksum MISMATCH for {name}")
                    return 5
            say(f"all three files match the original (sha256 {digest[:16]}...)")
    say("done; the temporary files are removed")
    return 0
