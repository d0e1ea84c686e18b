"""huge-list (6): 100,000 [2,000] URLs of distinct names, all one 64-byte file; accel only.

``accel -i LIST -j 8 -d DIR -q``, one run: peak RSS, RSS at 10/50/90 % of the list, wall and
CPU seconds, time to the first finished file.  With ``--outdir-kind auto`` the outputs go to
tmpfs (/dev/shm) when it has room, else under ``--tmpdir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

from scripts.bench.common import KiB, MiB
from scripts.bench.data import clear_dir, write_list
from scripts.bench.endpoints import NginxEndpoint
from scripts.bench.process import proc_status_kib, run_process
from scripts.bench.records import Record
from scripts.bench.scenarios.base import Scenario
from scripts.bench.tools import child_env, huge_list_command
from scripts.bench.verify import verify_tiny_outputs
from scripts.bench.workspace import Workspace

TINY_SIZE = 64  # the one file behind every URL
PROGRESS = (10, 50, 90)  # % of the list at which the RSS is reported


class ListWatcher:
    """Samples a list download: finished outputs in its directory and the child's RSS.

    Called by :func:`run_process` every 10 ms; it looks every 0.1 s until the first output
    exists, then every second (a directory of 100,000 names takes some ms to list).
    """

    def __init__(self, directory: Path, suffix: str) -> None:
        self.directory = directory
        self.suffix = suffix
        self.samples: list[tuple[float, int, Optional[int]]] = []  # (s, done, VmRSS KiB)
        self.first_file: Optional[float] = None
        self._next = 0.0

    def count(self) -> int:
        """Finished outputs now (names ending in ``suffix``; ``.part`` files do not)."""
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for entry in entries if entry.name.endswith(self.suffix))
        except FileNotFoundError:
            return 0

    def __call__(self, pid: int, elapsed: float) -> None:
        if elapsed < self._next:
            return
        done = self.count()
        if done and self.first_file is None:
            self.first_file = elapsed
        self.samples.append((elapsed, done, proc_status_kib(pid, "VmRSS")))
        self._next = elapsed + (0.1 if self.first_file is None else 1.0)

    def rss_at(self, percent: int, total: int) -> Optional[float]:
        """RSS (MiB) at the first sample with at least ``percent`` % of ``total`` done."""
        for _elapsed, done, rss_kib in self.samples:
            if rss_kib is not None and done * 100 >= percent * total:
                return rss_kib * KiB / MiB
        return None


class HugeList(Scenario):
    """accel's memory with a huge queue (a failed or timed-out run still has figures)."""

    name = "huge-list"
    number = "6"
    kind = "memory"
    summary = "100,000 [2,000] URLs of one 64-byte file, accel only: RSS along the list"
    prefers_tmpfs = True

    nginx: NginxEndpoint

    def unavailable(self, have_nginx: bool, why_nginx: str) -> Optional[str]:
        return None if have_nginx else f"it needs nginx ({why_nginx})"

    def choose_tools(self, tools: Sequence[str], notes: list[str]) -> list[str]:
        if "accel" in tools:
            return ["accel"]
        notes.append(f"scenario {self.name} skipped: it measures accel only")
        return []

    def runs(self) -> int:
        return 1

    def output_space(self) -> tuple[int, int]:
        return self.options.urls * 8 * KiB, 2 * self.options.urls

    def setup(self, ws: Workspace) -> None:
        super().setup(ws)
        self.body = os.urandom(TINY_SIZE)
        (ws.data / "tiny.bin").write_bytes(self.body)
        self.nginx = ws.start(
            lambda: NginxEndpoint(
                ws.data,
                extra_location="            rewrite ^ /tiny.bin break;",
                note=f", every path served from one {TINY_SIZE}-byte file",
            )
        )
        self.endpoint = self.nginx
        self.names = [f"{i:06d}.bin" for i in range(self.options.urls)]
        self.listfile = ws.lists / "huge.txt"
        write_list(self.listfile, [self.nginx.url(f"u/{name}") for name in self.names])

    def timeout(self) -> float:
        """Generous: 20 ms per URL (accel took about 4 ms per tiny file before issue 11)."""
        return 120.0 + 0.02 * self.options.urls

    def title(self) -> str:
        return (
            f"Huge list: {self.options.urls:,} URLs of distinct {TINY_SIZE}-byte files, "
            f"{self.options.jobs} at a time (memory)"
        )

    def params(self) -> dict[str, Any]:
        return {
            "count": self.options.urls,
            "jobs": self.options.jobs,
            "list_bytes": self.listfile.stat().st_size,
        }

    def run_once(self, tool: str, seed: Optional[int]) -> Record:
        """Run accel over the huge list once, sampling its memory."""
        outdir = self.workspace().outdir(tool)
        clear_dir(outdir)
        cmd = huge_list_command(self.listfile, outdir, self.options.jobs)
        watcher = ListWatcher(outdir, ".bin")
        mark = self.nginx.mark()
        try:
            outcome = run_process(cmd, timeout=self.timeout(), env=child_env(), monitor=watcher)
            done = watcher.count()
            problem = (
                verify_tiny_outputs(outdir, self.names, self.body)
                if outcome.exit_code == 0
                else None
            )
            sent, requests = self.nginx.since(mark)
        finally:
            clear_dir(outdir)
        error = outcome.failure(problem)
        count = self.options.urls
        return Record(
            ok=not error,
            error=error,
            wall=outcome.wall,
            cpu=outcome.cpu,
            rss=outcome.peak_rss_mib,
            server_bytes=sent,
            requests=requests,
            files_done=done,
            first_file=watcher.first_file,
            rss_by_progress={p: v for p in PROGRESS if (v := watcher.rss_at(p, count)) is not None},
        )
