"""many-files (5): 1,000 [100] files of 64 KiB from nginx into an empty directory, ``-j 8``.

``accel -i LIST -j 8 -n N -d DIR -q`` against ``curl -Z --parallel-max 8`` (URLs from a
``-K`` config) and ``aria2c -i LIST -j 8 -d DIR``; every run checks all files (names, sizes,
SHA-256) and that nothing else is left in DIR.  After each successful accel run the same
accel command runs again on the finished directory; recorded is what nginx sent in that
re-run (body bytes, and response bytes with headers from a second log).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

from scripts.bench.common import KiB, log
from scripts.bench.data import FileSet, clear_dir, make_fileset, write_list
from scripts.bench.endpoints import NginxEndpoint
from scripts.bench.process import run_process
from scripts.bench.records import Record, Rerun
from scripts.bench.scenarios.base import Scenario
from scripts.bench.tools import child_env, list_command, list_tool_available, write_curl_config
from scripts.bench.verify import verify_fileset
from scripts.bench.workspace import Workspace

MANY_FILE_SIZE = 64 * KiB


class ManyFiles(Scenario):
    """A list of small files, ``--jobs`` at a time; accel's re-run costs per file."""

    name = "many-files"
    number = "5"
    kind = "many"
    summary = "1,000 [100] x 64 KiB from nginx, -j 8, checked; accel re-runs the finished list"

    fileset: FileSet
    nginx: NginxEndpoint

    def unavailable(self, have_nginx: bool, why_nginx: str) -> Optional[str]:
        return None if have_nginx else f"it needs nginx ({why_nginx})"

    def choose_tools(self, tools: Sequence[str], notes: list[str]) -> list[str]:
        chosen = []
        for tool in tools:
            ok, why = list_tool_available(tool)
            if ok:
                chosen.append(tool)
            else:
                notes.append(f"{tool} not run in scenario {self.name}: {why}")
        return chosen

    def data_bytes(self) -> int:
        return self.options.files * (MANY_FILE_SIZE + 4 * KiB)

    def output_space(self) -> tuple[int, int]:
        return self.options.files * (MANY_FILE_SIZE + 4 * KiB), 2 * self.options.files

    def setup(self, ws: Workspace) -> None:
        super().setup(ws)
        count = self.options.files
        log(f"writing {count} files of {MANY_FILE_SIZE // KiB} KiB")
        self.fileset = make_fileset(ws.data, "many", count, MANY_FILE_SIZE)
        self.nginx = ws.start(lambda: NginxEndpoint(ws.data, wire_log=ws.root / "nginx-wire.log"))
        self.endpoint = self.nginx
        self.listfile = ws.lists / "many.txt"
        write_list(self.listfile, self.urls())

    def urls(self) -> list[str]:
        """The URLs in list order."""
        return [self.nginx.url(f"{self.fileset.subdir}/{f.name}") for f in self.fileset.files]

    def timeout(self) -> float:
        """Generous per-run timeout (0.1 s per file; the issue measured 15 ms)."""
        return 120.0 + 0.1 * len(self.fileset.files)

    def title(self) -> str:
        return (
            f"Many files: {self.options.files:,} x {MANY_FILE_SIZE // KiB} KiB, "
            f"{self.options.jobs} at a time, into an empty directory"
        )

    def params(self) -> dict[str, Any]:
        return {
            "count": len(self.fileset.files),
            "size": self.fileset.size,
            "jobs": self.options.jobs,
            "connections": self.options.connections,
        }

    def run_once(self, tool: str, seed: Optional[int]) -> Record:
        """Run ``tool`` over the list once, check every file; accel then runs again on them."""
        ws = self.workspace()
        outdir = ws.outdir(tool)
        clear_dir(outdir)
        curl_config = ws.lists / "many.curlrc"
        if tool == "curl":
            write_curl_config(curl_config, self.urls(), outdir)
        opts = self.options
        cmd = list_command(tool, self.listfile, curl_config, outdir, opts.connections, opts.jobs)
        try:
            record, _ = self._measure(cmd, outdir)
            if tool == "accel" and record.ok:
                again, wire = self._measure(cmd, outdir, wire=True)
                record.rerun = Rerun(
                    ok=again.ok,
                    error=again.error,
                    wall=again.wall,
                    cpu=again.cpu,
                    body_bytes=again.server_bytes,
                    requests=again.requests,
                    wire_bytes=None if wire is None else wire[0],
                    request_bytes=None if wire is None else wire[1],
                )
            return record
        finally:
            clear_dir(outdir)

    def _measure(
        self, cmd: list[str], outdir: Path, *, wire: bool = False
    ) -> tuple[Record, Optional[tuple[int, int]]]:
        """One run of ``cmd``, all files checked; with ``wire``, also nginx's wire bytes."""
        os.sync()
        mark = self.nginx.mark()
        outcome = run_process(cmd, timeout=self.timeout(), env=child_env())
        problem = verify_fileset(outdir, self.fileset) if outcome.exit_code == 0 else None
        sent, requests = self.nginx.since(mark)
        wire_bytes = self.nginx.wire_since(mark) if wire else None
        error = outcome.failure(problem)
        record = Record(
            ok=not error,
            error=error,
            wall=outcome.wall,
            cpu=outcome.cpu,
            rss=outcome.peak_rss_mib,
            server_bytes=sent,
            requests=requests,
        )
        return record, wire_bytes
