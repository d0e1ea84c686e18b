"""Checking the tools' outputs: sizes and SHA-256, and nothing left over in the directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.data import DataFile, FileSet


def _some(names: Sequence[str], limit: int = 3) -> str:
    more = ", ..." if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def verify(out: Path, source: DataFile) -> Optional[str]:
    """Return None if ``out`` equals ``source`` (size and SHA-256), else what is wrong."""
    try:
        size = out.stat().st_size
    except FileNotFoundError:
        return "no output file"
    if size != source.size:
        return f"size {size} != {source.size}"
    digest = hashlib.sha256()
    with open(out, "rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    if digest.hexdigest() != source.sha256:
        return "sha256 mismatch"
    return None


def verify_fileset(outdir: Path, fileset: FileSet) -> Optional[str]:
    """None if ``outdir`` holds exactly the files of ``fileset``, byte-identical, else what not.

    Every file is hashed (64 MiB for 1,000 x 64 KiB take about 0.2 s); any other entry
    (a ``.part``, a sidecar, a ``.aria2`` control file) is reported as a leftover.
    """
    expected = {f.name: f for f in fileset.files}
    try:
        present = set(os.listdir(outdir))
    except FileNotFoundError:
        return "no output directory"
    problems = []
    missing = sorted(expected.keys() - present)
    if missing:
        problems.append(f"{len(missing)} of {len(expected)} files missing ({_some(missing)})")
    extra = sorted(present - expected.keys())
    if extra:
        problems.append(f"{len(extra)} leftover entries ({_some(extra)})")
    bad: list[str] = []
    for name in sorted(expected.keys() & present):
        problem = verify(outdir / name, expected[name])
        if problem is not None:
            bad.append(f"{name}: {problem}")
    if bad:
        problems.append(f"{len(bad)} files differ ({_some(bad, 2)})")
    return "; ".join(problems) or None


def verify_tiny_outputs(outdir: Path, names: Sequence[str], body: bytes) -> Optional[str]:
    """None if ``outdir`` holds an output of ``body`` for each of ``names`` and nothing else.

    Sizes are checked for all; the contents of every 1,000th file.
    """
    sizes: dict[str, int] = {}
    try:
        with os.scandir(outdir) as entries:
            for entry in entries:
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return "no output directory"
    problems = []
    missing = [name for name in names if name not in sizes]
    if missing:
        problems.append(f"{len(missing)} of {len(names)} files missing ({_some(missing)})")
    extra = sorted(sizes.keys() - set(names))
    if extra:
        problems.append(f"{len(extra)} leftover entries ({_some(extra)})")
    wrong = [name for name in names if sizes.get(name, len(body)) != len(body)]
    wrong += [
        name
        for name in names[::1000]
        if name in sizes and name not in wrong and (outdir / name).read_bytes() != body
    ]
    if wrong:
        problems.append(f"{len(wrong)} files differ ({_some(wrong)})")
    return "; ".join(problems) or None
