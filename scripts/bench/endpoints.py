"""Loopback servers with byte accounting: nginx and the Python FaultServer."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.data import DataFile
from scripts.bench.servers import FaultServer, Nginx
from scripts.bench.tools import tool_version

#: What :meth:`Endpoint.since` counts from: nginx's log length, or the FaultServer's counters.
Mark = Any


class Endpoint:
    """A loopback server and its byte accounting."""

    description = "server"
    kind = "server"

    def url(self, name: str) -> str:
        """URL of ``name``."""
        raise NotImplementedError

    def mark(self) -> Mark:
        """An opaque position for :meth:`since`."""
        raise NotImplementedError

    def since(self, mark: Mark) -> tuple[Optional[int], Optional[int]]:
        """(body bytes sent, requests) since ``mark``; None where unknown."""
        raise NotImplementedError

    def prepare_run(self) -> None:
        """Called right before each tool run."""

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError


def _nginx_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class NginxEndpoint(Endpoint):
    """nginx from the test helpers; bytes come from its access log.

    ``wire_log``: also log every response's size with headers (``$bytes_sent``) and the
    request's size (``$request_length``) to this file, line for line beside the access log
    (see :meth:`wire_since`).  ``extra_location``/``note`` go to the ``location /`` block and
    to the description.
    """

    kind = "nginx"

    def __init__(
        self,
        root: Path,
        limit_rate: Optional[str] = None,
        *,
        extra_location: str = "",
        wire_log: Optional[Path] = None,
        note: str = "",
    ) -> None:
        self.wire_log = wire_log
        extra_http = ""
        if wire_log is not None:
            # A second access_log at the http level: nginx writes both for every request.
            extra_http = (
                "    log_format accel_bench_wire '$bytes_sent $request_length';\n"
                f"    access_log {_nginx_quote(str(wire_log))} accel_bench_wire;"
            )
        self.server = Nginx(
            root,
            limit_rate=limit_rate,
            worker_processes="auto",
            extra_http=extra_http,
            extra_location=extra_location,
        ).start()
        rate = f", limit_rate {limit_rate} per connection" if limit_rate else ""
        self.description = f"{tool_version('nginx')} (sendfile on{rate}{note})"

    def url(self, name: str) -> str:
        return self.server.url(name)

    def _settled_log(self) -> list[dict[str, Any]]:
        # Aborted requests are logged once nginx notices the closed connection.
        entries = self.server.access_log()
        stable_since = time.monotonic()
        deadline = stable_since + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.server.access_log()
            if len(now) != len(entries):
                entries = now
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= 0.25:
                break
        return entries

    def mark(self) -> int:
        return len(self._settled_log())

    def since(self, mark: Mark) -> tuple[Optional[int], Optional[int]]:
        entries = self._settled_log()[mark:]
        return sum(int(e["body_bytes_sent"]) for e in entries), len(entries)

    def wire_since(self, mark: int) -> Optional[tuple[int, int]]:
        """(response bytes with headers, request bytes) since ``mark``; call after since().

        Both logs get one line per request in the same order, so the access log's position
        is valid here too once the log has settled.
        """
        if self.wire_log is None:
            return None
        try:
            lines = self.wire_log.read_text(errors="replace").splitlines()[mark:]
        except OSError:
            return None
        sent = received = 0
        for line in lines:
            fields = line.split()
            with contextlib.suppress(ValueError, IndexError):
                sent += int(fields[0])
                received += int(fields[1])
        return sent, received

    def stop(self) -> None:
        self.server.stop()


def _rate_text(rate: int) -> str:
    return f"{rate / MiB:g} MiB/s" if rate % MiB == 0 else f"{rate / 1e6:g} MB/s"


class FaultEndpoint(Endpoint):
    """The Python FaultServer: optional per-connection rate, slow connections or requests."""

    kind = "fault"

    def __init__(
        self,
        files: Sequence[DataFile],
        *,
        rate: Optional[int] = None,
        straggler_every: Optional[int] = None,
        straggler_factor: float = 8.0,
        slow_request_probability: Optional[float] = None,
        slow_request_factor: float = 8.0,
        slow_request_every: Optional[int] = None,
    ) -> None:
        self.seed: Optional[int] = None  # per-request slowness: the next run's seed
        self.server = FaultServer().start()
        try:
            for data in files:
                self.server.add_path("/" + data.name, data.path)
            faults = self.server.faults
            parts = []
            if rate is not None:
                faults.rate = rate
                parts.append(f"{_rate_text(rate)} per connection")
            if straggler_every is not None:
                faults.straggler_every = straggler_every
                faults.straggler_factor = straggler_factor
                parts.append(f"every {straggler_every}rd connection {straggler_factor:g}x slower")
            if slow_request_probability is not None:
                faults.slow_request_probability = slow_request_probability
                faults.slow_request_factor = slow_request_factor
                parts.append(
                    f"each request {slow_request_factor:g}x slower with probability "
                    f"{slow_request_probability:.2g}, seeded"
                )
            if slow_request_every is not None:
                faults.slow_request_every = slow_request_every
                faults.slow_request_factor = slow_request_factor
                parts.append(
                    f"every {slow_request_every}th request {slow_request_factor:g}x slower"
                )
        except BaseException:
            self.server.stop()
            raise
        self.description = "Python FaultServer" + (f" ({', '.join(parts)})" if parts else "")

    def url(self, name: str) -> str:
        return str(self.server.url("/" + name))

    def _counters(self) -> tuple[int, int]:
        return int(self.server.bytes_sent), len(self.server.requests)

    def mark(self) -> Mark:
        time.sleep(0.2)
        return self._counters()

    def since(self, mark: Mark) -> tuple[Optional[int], Optional[int]]:
        time.sleep(0.3)
        sent, requests = self._counters()
        return sent - mark[0], requests - mark[1]

    def slow_drawn(self) -> bool:
        """Whether responses are drawn slow (seeded or periodic per-request slowness)."""
        return self.seed is not None or self.server.faults.slow_request_every > 0

    def slow_since(self, mark: Mark) -> int:
        """Responses drawn slow (per-request slowness) since ``mark``."""
        return sum(1 for r in self.server.requests[mark[1] :] if getattr(r, "slow", False))

    def prepare_run(self) -> None:
        """Restart the slow-request draws from ``seed``; align the straggler phase: the run's
        first connection gets an id = 0 mod k.

        The FaultServer numbers connections in accept order for its whole life, so idle
        connections are opened and closed until the next id is a multiple of k; every tool
        then meets the slow connections at the same positions (3rd, 6th, ...). Likewise every
        tool run with one seed meets slow requests at the same positions in its request order.
        """
        if self.seed is not None:
            self.server.faults.slow_request_seed = self.seed
        if self.seed is not None or self.server.faults.slow_request_every:
            self.server.restart_slow_draws()  # the K-th request of every run is slow
        every = self.server.faults.straggler_every or 0
        if every <= 1:
            return
        for _ in range((-self.server.connections) % every):
            before = self.server.connections
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=5):
                deadline = time.monotonic() + 5
                while self.server.connections == before and time.monotonic() < deadline:
                    time.sleep(0.005)

    def stop(self) -> None:
        self.server.stop()
