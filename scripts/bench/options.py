"""The options of one benchmark run (parsed by :mod:`scripts.bench.cli`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

OUTDIR_KINDS = ("auto", "tmpfs", "disk")


@dataclass
class RunOptions:
    """What to run and how big; ``None`` sizes mean the scenario's default (or quick) size."""

    quick: bool = False
    runs: int = 5
    size_gib: Optional[float] = None  # big-file size
    connections: int = 8
    jobs: int = 8  # files at once in many-files and huge-list
    files: int = 1000  # many-files
    urls: int = 100_000  # huge-list
    tools: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)  # names, in run order
    throttle_server: str = "nginx"  # "nginx" or "python": throttled and resume-waste
    outdir_kind: str = "auto"  # where outputs go: auto (per scenario), tmpfs or disk
    tmpdir: Optional[Path] = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        data["tmpdir"] = None if self.tmpdir is None else str(self.tmpdir)
        return data
