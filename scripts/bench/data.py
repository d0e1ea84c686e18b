"""The files served to the tools: random data written once, with its SHA-256; URL lists."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from scripts.bench.common import MiB


@dataclass
class DataFile:
    """A source file served to the tools."""

    name: str
    path: Path
    size: int
    sha256: str


def make_file(path: Path, size: int, block: int = 16 * MiB) -> DataFile:
    """Write ``size`` random bytes to ``path`` in 16 MiB blocks and hash them on the way."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "wb") as fh:
        while remaining:
            chunk = os.urandom(min(block, remaining))
            digest.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    return DataFile(path.name, path, size, digest.hexdigest())


@dataclass
class FileSet:
    """Many small files in one directory of the server root (many-files)."""

    subdir: str
    files: list[DataFile]

    @property
    def size(self) -> int:
        """Total bytes."""
        return sum(f.size for f in self.files)


def make_fileset(root: Path, subdir: str, count: int, size: int) -> FileSet:
    """Write ``count`` random files of ``size`` bytes to ``root/subdir``."""
    directory = root / subdir
    directory.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(count - 1)))
    files = [make_file(directory / f"f{i:0{width}d}.bin", size) for i in range(count)]
    return FileSet(subdir, files)


def write_list(path: Path, urls: Sequence[str]) -> None:
    """One URL per line (the list of ``accel -i`` and ``aria2c -i``)."""
    with open(path, "w", encoding="utf-8") as fh:
        for url in urls:
            fh.write(url + "\n")


def clear_dir(path: Path) -> None:
    """Empty ``path`` (outputs, sidecars, control files) and create it if needed."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
