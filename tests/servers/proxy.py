"""Proxies on loopback for the tests: a small HTTP forward proxy and Debian's microsocks.

:class:`ForwardProxy` is a real HTTP/1.1 proxy (stdlib only): absolute-form requests
(``GET http://host/path``) are forwarded to the origin, ``CONNECT host:port`` opens a tunnel;
it reaches loopback addresses only, may require Basic credentials (407 otherwise) and logs
every request with its headers. :class:`Microsocks` runs the ``microsocks`` SOCKS5 server
(``apt-get install microsocks``); :func:`require_microsocks` skips a test where it is
missing, and fails instead when ``CI=true``, as :func:`tests.nginx.require_nginx` does.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import ipaddress
import os
import select
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

#: Hop-by-hop headers a proxy does not forward (RFC 9110 7.6.1), and its own credentials.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class ProxyLog:
    """One request the proxy received: ``GET http://...`` or ``CONNECT host:port``."""

    method: str
    target: str
    headers: Dict[str, str]  # lower-case names
    status: int = 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> ProxyLog:
        entry = ProxyLog(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.server.owner.lock:
            self.server.owner.log.append(entry)
        return entry

    def _authorized(self, entry: ProxyLog) -> bool:
        want = self.server.owner.auth
        if want is None:
            return True
        token = base64.b64encode(f"{want[0]}:{want[1]}".encode()).decode()
        if entry.headers.get("proxy-authorization") == f"Basic {token}":
            return True
        entry.status = 407
        body = b"proxy authentication required"
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def _refuse(self, entry: ProxyLog, status: int, text: str) -> None:
        entry.status = status
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_CONNECT(self) -> None:
        entry = self._record()
        if not self._authorized(entry):
            return
        host, _, port = self.path.rpartition(":")
        if not _loopback(host) or not port.isdigit():
            self._refuse(entry, 403, "loopback only")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self._refuse(entry, 502, "cannot connect")
            return
        entry.status = 200
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True
        _relay(self.connection, upstream)

    def _forward(self) -> None:
        entry = self._record()
        if not self._authorized(entry):
            return
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname or not _loopback(parts.hostname):
            self._refuse(entry, 403, "absolute http:// URLs to loopback only")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        try:
            conn.request(
                self.command,
                parts.path + (f"?{parts.query}" if parts.query else ""),
                headers=headers,
            )
            resp = conn.getresponse()
        except OSError:
            conn.close()
            self._refuse(entry, 502, "bad gateway")
            return
        entry.status = resp.status
        try:
            self.send_response(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for name, value in resp.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if length is None and self.command != "HEAD" and resp.status not in (204, 304):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                while True:
                    chunk = resp.read(64 * 1024)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
            if length is not None and not resp.isclosed():
                self.close_connection = True  # the origin cut the body short
        except OSError:
            self.close_connection = True
        finally:
            conn.close()

    do_GET = _forward
    do_HEAD = _forward


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        socks = [a, b]
        while True:
            ready, _, _ = select.select(socks, [], [], 30)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(256 * 1024)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ForwardProxy


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1 (``with ForwardProxy(auth=("u", "p")) as p:``)."""

    def __init__(self, auth: Optional[Tuple[str, str]] = None) -> None:
        self.auth = auth
        self.log: List[ProxyLog] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, credentials: bool = True) -> str:
        """``http://[user:password@]127.0.0.1:PORT``."""
        userinfo = f"{self.auth[0]}:{self.auth[1]}@" if self.auth and credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def require_microsocks() -> str:
    """The microsocks binary; skip the test if it or PySocks is missing (fail when
    ``CI=true``)."""
    found = shutil.which("microsocks")
    reason = ""
    if importlib.util.find_spec("socks") is None:
        reason = "PySocks is not installed (pip install -e '.[test]')"
    elif found is None:
        reason = "microsocks is not installed (apt-get install microsocks)"
    if reason or found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Microsocks:
    """microsocks on 127.0.0.1 (optionally with a user and password); :meth:`connects` reads
    its log of where clients connected (``localhost:PORT`` with socks5h, the address with
    socks5)."""

    def __init__(self, log: Path, auth: Optional[Tuple[str, str]] = None) -> None:
        self.binary = require_microsocks()
        self.auth = auth
        self.port = _free_port()
        self.log_path = log
        self._proc: Optional[subprocess.Popen[bytes]] = None

    def url(self, scheme: str = "socks5") -> str:
        userinfo = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    def connects(self) -> List[str]:
        """The targets clients asked for, in order (``host:port``)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line.rsplit(" ", 1)[-1] for line in text.splitlines() if "connected to" in line]

    def __enter__(self) -> Microsocks:
        argv = [self.binary, "-i", "127.0.0.1", "-p", str(self.port)]
        if self.auth:
            argv += ["-u", self.auth[0], "-P", self.auth[1]]
        out = open(self.log_path, "wb")
        self._proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self._proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"microsocks did not start: {self.log_path.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
