"""The single-file scenarios' common part: one file, N connections, output checked.

Subclasses choose the size, the server and the rate; ``resume`` scenarios interrupt the tool
at about half the file and run it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Optional

from scripts.bench.common import MiB, log
from scripts.bench.data import DataFile, clear_dir, make_file
from scripts.bench.endpoints import Endpoint, FaultEndpoint, Mark, NginxEndpoint
from scripts.bench.process import proc_wchar, run_process
from scripts.bench.records import Record
from scripts.bench.scenarios.base import Scenario
from scripts.bench.tools import (
    auto_cap,
    auto_count,
    child_env,
    tool_command,
    tool_connections,
)
from scripts.bench.verify import verify
from scripts.bench.workspace import Workspace

RATE = 4 * MiB  # per-connection limit of the throttled scenarios (nginx "4m" = 4 MiB/s)


def plain_endpoint(ws: Workspace, data: DataFile) -> Endpoint:
    """nginx when installed, else the FaultServer, unthrottled."""
    if ws.have_nginx:
        return ws.start(lambda: NginxEndpoint(ws.data))
    return ws.start(lambda: FaultEndpoint([data]))


def throttled_endpoint(ws: Workspace, data: DataFile) -> Endpoint:
    """``RATE`` per connection: nginx's limit_rate, or the FaultServer's strict pacing
    (``--throttle-server python``, or no nginx)."""
    if ws.have_nginx and ws.options.throttle_server == "nginx":
        return ws.start(lambda: NginxEndpoint(ws.data, limit_rate=f"{RATE // MiB}m"))
    return ws.start(lambda: FaultEndpoint([data], rate=RATE))


class DownloadScenario(Scenario):
    """One file, ``--connections`` connections; wall, CPU, peak RSS, server bytes."""

    kind = "download"
    filename: ClassVar[str]
    rate: ClassVar[Optional[int]] = None  # per-connection rate limit, bytes/s
    slow_factor: ClassVar[float] = 1.0  # the slowest connection's share of ``rate``
    resume: ClassVar[bool] = False

    data: DataFile

    def size(self) -> int:
        """Bytes of the file."""
        raise NotImplementedError

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        """Start the server of ``self.data``."""
        raise NotImplementedError

    def data_bytes(self) -> int:
        return self.size()

    def output_space(self) -> tuple[int, int]:
        return self.size() + 4 * MiB, 16

    def setup(self, ws: Workspace) -> None:
        super().setup(ws)
        size = self.size()
        log(f"writing {size / MiB:.0f} MiB of random data to {self.filename}")
        self.data = make_file(ws.data / self.filename, size)
        self.endpoint = self.make_endpoint(ws)

    def ideal(self, tool: str) -> Optional[float]:
        """Wall seconds at exactly the rate limit on every connection the tool opens."""
        if self.rate is None:
            return None
        return self.data.size / (tool_connections(tool, self.options.connections) * self.rate)

    def timeout(self) -> float:
        """Generous per-run timeout."""
        if self.rate is None:
            return 120.0 + self.data.size / (20 * MiB)
        return 60.0 + 2.0 * self.data.size / (self.rate / self.slow_factor)

    def params(self) -> dict[str, Any]:
        tools = self.options.tools
        ideal = {t: v for t in tools if (v := self.ideal(t)) is not None}
        kind = "" if self.endpoint is None else self.endpoint.kind
        return {
            "size": self.data.size,
            "rate": self.rate,
            "connections": self.options.connections,
            "ideal": ideal,
            "server_kind": kind,
        }

    def _endpoint(self) -> Endpoint:
        if self.endpoint is None:
            raise RuntimeError(f"scenario {self.name} was not set up")
        return self.endpoint

    def run_once(self, tool: str, seed: Optional[int]) -> Record:
        """Run ``tool`` once and check its output (resume: twice, SIGINT in the first)."""
        endpoint = self._endpoint()
        outdir = self.workspace().outdir(tool)
        clear_dir(outdir)
        out = outdir / self.data.name
        url = endpoint.url(self.data.name)
        os.sync()
        mark = endpoint.mark()
        if isinstance(endpoint, FaultEndpoint):
            endpoint.seed = seed
        endpoint.prepare_run()
        try:
            if self.resume:
                return self._resumed(tool, url, out, mark)
            return self._single(tool, url, out, mark)
        finally:
            clear_dir(outdir)

    def _single(self, tool: str, url: str, out: Path, mark: Mark) -> Record:
        endpoint = self._endpoint()
        cmd = tool_command(tool, url, out, self.options.connections)
        outcome = run_process(cmd, timeout=self.timeout(), env=child_env())
        problem = verify(out, self.data) if outcome.exit_code == 0 else None
        sent, requests = endpoint.since(mark)
        seed = slow = None
        if isinstance(endpoint, FaultEndpoint) and endpoint.slow_drawn():
            seed, slow = endpoint.seed, endpoint.slow_since(mark)
        error = outcome.failure(problem)
        return Record(
            ok=not error,
            error=error,
            wall=outcome.wall,
            cpu=outcome.cpu,
            rss=outcome.peak_rss_mib,
            server_bytes=sent,
            requests=requests,
            seed=seed,
            slow_requests=slow,
            auto_connections=auto_count(outcome.stderr) if tool == "accel-auto" else None,
        )

    def _resumed(self, tool: str, url: str, out: Path, mark: Mark) -> Record:
        """SIGINT at ~50 % (by bytes written, else by time), then run to completion."""
        endpoint = self._endpoint()
        size = self.data.size
        time_trigger = 0.2 + (self.ideal(tool) or 1.0) / 2  # 0.2 s for process start-up
        if tool == "accel-auto" and self.rate is not None:
            # It may run up to its cap: at -n 8's pace it would be done before the trigger.
            time_trigger = 0.2 + size / (auto_cap() * self.rate) / 2

        def halfway(pid: int, elapsed: float) -> bool:
            written = proc_wchar(pid)
            return elapsed >= time_trigger or (written is not None and written >= size // 2)

        conns = self.options.connections
        first = run_process(
            tool_command(tool, url, out, conns),
            timeout=self.timeout(),
            env=child_env(),
            interrupt=halfway,
        )
        first_sent, _ = endpoint.since(mark)
        if first.timed_out or first.killed:
            return Record(ok=False, error="first run: " + first.failure())
        second = run_process(
            tool_command(tool, url, out, conns, resume=True),
            timeout=self.timeout(),
            env=child_env(),
        )
        problem = verify(out, self.data) if second.exit_code == 0 else None
        sent, requests = endpoint.since(mark)
        error = second.failure(problem)
        if not error and first.interrupted_at is None:
            error = "finished before SIGINT"
        return Record(
            ok=not error,
            error=error,
            wall=second.wall,
            cpu=first.cpu + second.cpu,
            rss=max(first.peak_rss_mib, second.peak_rss_mib),
            server_bytes=sent,
            requests=requests,
            stop_fraction=None if first_sent is None else first_sent / size,
            first_wall=first.wall,
        )
