"""Where a run keeps its files: data and lists under ``--tmpdir``, outputs on disk or tmpfs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TypeVar

from scripts.bench.common import MiB
from scripts.bench.endpoints import Endpoint
from scripts.bench.options import RunOptions

SHM = Path("/dev/shm")
SPARE = 256 * MiB  # room left free on any file system the benchmark writes to

E = TypeVar("E", bound=Endpoint)


def tmpfs_room(need_bytes: int, need_inodes: int = 0) -> Optional[Path]:
    """/dev/shm if it is a writable directory with room for the outputs, else None."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK | os.X_OK):
        return None
    try:
        free = shutil.disk_usage(SHM).free
        inodes = os.statvfs(SHM).f_favail
    except OSError:
        return None
    if free < need_bytes + SPARE or inodes < need_inodes:
        return None
    return SHM


def fs_type(path: Path) -> str:
    """The file system type of ``path`` (longest mount point in /proc/self/mounts)."""
    best, kind = "", "?"
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            mount = fields[1].replace("\\040", " ")
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fields[2]
    return kind


@dataclass
class Outputs:
    """Where the tools write: ``base/TOOL``; ``kind`` is "tmpfs" or "disk"."""

    kind: str
    base: Path
    description: str  # e.g. '/dev/shm (tmpfs)' or '/tmp (ext4)'


@dataclass
class Workspace:
    """One scenario's directories and the servers to stop when it is done."""

    options: RunOptions
    root: Path  # WORKDIR/SCENARIO: removed when the scenario ends
    outputs: Outputs
    have_nginx: bool
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def data(self) -> Path:
        """The server root."""
        return self.root / "data"

    @property
    def lists(self) -> Path:
        """URL lists and curl configs."""
        return self.root / "lists"

    def outdir(self, tool: str) -> Path:
        """The output directory of ``tool`` (emptied before and after each run)."""
        return self.outputs.base / tool

    def start(self, make: Callable[[], E]) -> E:
        """Start a server now; it is stopped when the scenario ends."""
        endpoint = make()

        def stop() -> None:
            with contextlib.suppress(Exception):
                endpoint.stop()

        self.stack.callback(stop)
        return endpoint


def open_workspace(
    options: RunOptions, workdir: Path, name: str, kind: str, have_nginx: bool
) -> Workspace:
    """Create WORKDIR/NAME with data/ and lists/, outputs on ``kind`` ("tmpfs" or "disk")."""
    root = workdir / name
    (root / "data").mkdir(parents=True)
    (root / "lists").mkdir()
    stack = contextlib.ExitStack()
    stack.callback(shutil.rmtree, root, True)
    if kind == "tmpfs":
        shm = stack.enter_context(tempfile.TemporaryDirectory(prefix="accel-bench-", dir=SHM))
        outputs = Outputs("tmpfs", Path(shm), f"{SHM} (tmpfs)")
    else:
        outputs = Outputs("disk", root / "out", f"{workdir.parent} ({fs_type(workdir)})")
    outputs.base.mkdir(exist_ok=True)
    return Workspace(options, root, outputs, have_nginx, stack)
