"""Run a real nginx on 127.0.0.1 for integration tests and benchmarks.

Everything nginx writes (config, pid file, logs, temp directories) lives in a private
temporary prefix directory, so no root privileges and no system nginx configuration are
needed.  As root the worker processes keep running as root (``user`` directive), so files in
private temporary directories (mode 0700) stay readable.

Usage::

    with Nginx(root_dir, limit_rate="4m") as ngx:
        requests.get(ngx.url("file.bin"), headers={"Range": "bytes=0-99"})
        ngx.access_log()  # [{"request": "GET /file.bin HTTP/1.1", "status": 206, ...}]

Pytest fixtures (``tests/conftest.py`` imports them for the whole suite):

* ``nginx_bin``: the nginx binary path; skips the test when nginx is missing, fails instead
  when the environment variable ``CI`` is ``"true"``.
* ``nginx_factory``: ``nginx_factory(root, **options) -> Nginx`` starts a server, all of them
  are stopped at teardown.
* ``nginx``: a started server with default options whose root is a fresh ``tmp_path``
  directory (``nginx.root``); put files there before requesting them.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote

import pytest

from tests.servers.ports import free_port

__all__ = [
    "Nginx",
    "NginxError",
    "nginx",
    "nginx_bin",
    "nginx_binary",
    "nginx_factory",
    "require_nginx",
]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

LOG_FORMAT = '$request $status $body_bytes_sent "$http_range" $connection $request_time'
_LOG_LINE = re.compile(
    r'^(?P<request>.*) (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<range>[^"]*)"'
    r" (?P<connection>\d+) (?P<request_time>[\d.]+)$"
)


class NginxError(RuntimeError):
    """nginx could not be started (the message includes the error log)."""


def nginx_binary() -> Optional[str]:
    """Return the path of the nginx executable, or ``None`` if it is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_nginx() -> str:
    """Return the nginx binary; skip the current test if missing (fail when ``CI=true``)."""
    binary = nginx_binary()
    if binary is None:
        reason = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    return binary


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _build_info(binary: str) -> tuple[tuple[int, ...], str]:
    """Return (version tuple, configure arguments) of an nginx binary."""
    proc = subprocess.run(
        [binary, "-V"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    text = proc.stdout + proc.stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    version = tuple(int(x) for x in match.groups()) if match else (0, 0, 0)
    return version, text


def _quote_conf(value: str | os.PathLike[str]) -> str:
    """Quote a path or value for nginx.conf."""
    text = os.fspath(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Nginx:
    """A throw-away nginx serving ``root`` on a free 127.0.0.1 port."""

    def __init__(
        self,
        root: Path | str,
        *,
        max_ranges: int | None = None,
        limit_rate: str | None = None,
        limit_rate_after: str | None = None,
        extra_http: str = "",
        extra_location: str = "",
        worker_processes: int | str = 1,
        binary: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.max_ranges = max_ranges
        self.limit_rate = limit_rate
        self.limit_rate_after = limit_rate_after
        self.extra_http = extra_http
        self.extra_location = extra_location
        self.worker_processes = worker_processes
        self.binary = binary
        self.port = 0
        self.base_url = ""
        self.prefix: Path | None = None
        self.conf_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- configuration -----------------------------------------------------------------

    def _config(self, prefix: Path, port: int, configure_args: str) -> str:
        lines = []
        if os.geteuid() == 0:
            user = pwd.getpwuid(0).pw_name
            group = grp.getgrgid(0).gr_name
            lines.append(f"user {user} {group};")
        lines += [
            f"worker_processes {self.worker_processes};",
            f"pid {_quote_conf(prefix / 'nginx.pid')};",
            f"error_log {_quote_conf(prefix / 'error.log')} warn;",
            "events { worker_connections 1024; }",
            "http {",
            "    default_type application/octet-stream;",
            f"    log_format accel_test '{LOG_FORMAT}';",
            f"    access_log {_quote_conf(prefix / 'access.log')} accel_test;",
            "    sendfile on;",
            "    tcp_nopush on;",
            "    tcp_nodelay on;",
            "    keepalive_timeout 65;",
            "    keepalive_requests 10000;",
            "    server_tokens off;",
            f"    client_body_temp_path {_quote_conf(prefix / 'tmp' / 'body')};",
        ]
        for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
            if f"--without-http_{module}_module" not in configure_args:
                path = prefix / "tmp" / module
                lines.append(f"    {module}_temp_path {_quote_conf(path)};")
        if self.extra_http:
            lines.append(self.extra_http)
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{port};",
            "        server_name localhost;",
            "        location / {",
            f"            root {_quote_conf(self.root)};",
            "            etag on;",
        ]
        if self.max_ranges is not None:
            lines.append(f"            max_ranges {int(self.max_ranges)};")
        if self.limit_rate is not None:
            lines.append(f"            limit_rate {self.limit_rate};")
        if self.limit_rate_after is not None:
            lines.append(f"            limit_rate_after {self.limit_rate_after};")
        if self.extra_location:
            lines.append(self.extra_location)
        lines += ["        }", "    }", "}", ""]
        return "\n".join(lines)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Nginx:
        """Start nginx and wait until its port accepts connections."""
        if self.process is not None:
            raise NginxError("nginx is already running")
        binary = self.binary or nginx_binary()
        if binary is None:
            raise NginxError("nginx is not installed")
        version, configure_args = _build_info(binary)
        self._tmp = tempfile.TemporaryDirectory(prefix="accel-nginx-")
        prefix = Path(self._tmp.name)
        (prefix / "tmp").mkdir()
        self.prefix = prefix
        self.conf_path = prefix / "nginx.conf"
        last_error = ""
        for _attempt in range(5):  # a freshly picked free port may be taken before nginx binds
            port = free_port()
            self.conf_path.write_text(self._config(prefix, port, configure_args))
            cmd = [binary, "-c", str(self.conf_path), "-p", str(prefix) + "/"]
            if version >= (1, 19, 5):  # -e: startup errors go to our log, not /var/log/nginx
                cmd += ["-e", str(prefix / "error.log")]
            cmd += ["-g", "daemon off;"]
            stderr_path = prefix / "stderr.log"
            with open(stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    cwd=prefix,
                    start_new_session=True,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if _port_answers(port):
                    self.port = port
                    self.base_url = f"http://127.0.0.1:{port}"
                    return self
                time.sleep(0.02)
            last_error = self._error_text()
            self._kill()
            if "Address already in use" not in last_error:
                break
        self._cleanup()
        raise NginxError(f"nginx did not start within {START_TIMEOUT:.0f} s:\n{last_error}")

    def _error_text(self) -> str:
        parts = []
        if self.prefix is not None:
            for name in ("stderr.log", "error.log"):
                path = self.prefix / name
                with contextlib.suppress(OSError):
                    text = path.read_text(errors="replace").strip()
                    if text:
                        parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts) or "(error log is empty)"

    def error_log(self) -> str:
        """Return the contents of nginx's error log."""
        return self._error_text()

    def _kill(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.prefix = None

    def stop(self) -> None:
        """Stop nginx and delete its prefix directory (config, logs, temp files)."""
        self._kill()
        self._cleanup()

    def __enter__(self) -> Nginx:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------

    def url(self, name: str) -> str:
        """Return the URL of ``name`` (a path relative to ``root``)."""
        if not self.base_url:
            raise NginxError("nginx is not running")
        return f"{self.base_url}/{quote(name.lstrip('/'))}"

    def access_log(self) -> list[dict[str, Any]]:
        """Return the parsed access log, oldest request first.

        Each entry has ``request`` (e.g. ``"GET /f HTTP/1.1"``), ``status`` (int),
        ``body_bytes_sent`` (int), ``range`` (the Range request header or ``None``),
        ``connection`` (nginx connection serial number, int) and ``request_time`` (float s).
        A request is logged when nginx finishes it (also when the client aborted).
        """
        if self.prefix is None:
            raise NginxError("nginx is not running")
        path = self.prefix / "access.log"
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            match = _LOG_LINE.match(line)
            if match is None:
                continue
            rng = match["range"]
            entries.append(
                {
                    "request": match["request"],
                    "status": int(match["status"]),
                    "body_bytes_sent": int(match["body_bytes_sent"]),
                    "range": None if rng == "-" else rng,
                    "connection": int(match["connection"]),
                    "request_time": float(match["request_time"]),
                }
            )
        return entries

    def bytes_sent(self) -> int:
        """Total response body bytes nginx has logged so far."""
        return sum(entry["body_bytes_sent"] for entry in self.access_log())

    def __repr__(self) -> str:
        state = self.base_url or "stopped"
        return f"Nginx(root={str(self.root)!r}, {state})"


# -- pytest fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    """The nginx binary (skip when missing; fail when CI=true)."""
    return require_nginx()


@pytest.fixture
def nginx_factory(nginx_bin: str) -> Iterator[Callable[..., Nginx]]:
    """``nginx_factory(root, **options)`` starts an :class:`Nginx`; all stop at teardown."""
    servers: list[Nginx] = []

    def factory(root: Path | str, **options: Any) -> Nginx:
        options.setdefault("binary", nginx_bin)
        server = Nginx(root, **options)
        servers.append(server)
        return server.start()

    yield factory
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def nginx(nginx_factory: Callable[..., Nginx], tmp_path: Path) -> Nginx:
    """A running default nginx whose root is the empty directory ``nginx.root``."""
    root = tmp_path / "nginx-root"
    root.mkdir()
    return nginx_factory(root)
