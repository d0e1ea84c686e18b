"""Tests of the .part file and the final move (accel._disk.storage), on real files in tmp_path."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from accel._disk.storage import PartFile, check_free_space, finalize, pwrite_all
from accel.exceptions import InsufficientSpaceError, LocalFileError, OutputExistsError
from tests.helpers import MiB

# --- PartFile ---------------------------------------------------------------------------


def test_create_is_sparse(tmp_path: Path) -> None:
    path = tmp_path / "big.part"
    part = PartFile.create(path, 64 * MiB)
    try:
        st = os.stat(path)
        assert st.st_size == 64 * MiB
        assert stat.S_ISREG(st.st_mode)
        assert st.st_blocks * 512 < MiB  # nothing allocated up front
    finally:
        part.close()


def test_create_zero_and_unknown_size(tmp_path: Path) -> None:
    for size in (0, None):
        path = tmp_path / f"f{size}.part"
        part = PartFile.create(path, size)
        part.close()
        assert path.stat().st_size == 0


def test_create_replaces_old_part(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    path.write_bytes(b"x" * 5000)
    part = PartFile.create(path, 100)
    part.close()
    assert path.read_bytes() == b"\0" * 100


def test_pwrite_all_at_offsets(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    part = PartFile.create(path, 2000)
    try:
        pwrite_all(part.fd, b"abc", 10)
        pwrite_all(part.fd, memoryview(b"xyz"), 1997)
        pwrite_all(part.fd, b"", 500)
        pwrite_all(part.fd, b"0123456789", 0)
        part.sync()
    finally:
        part.close()
    got = path.read_bytes()
    assert len(got) == 2000
    assert got[:13] == b"0123456789abc"
    assert got[1997:] == b"xyz"
    assert got[13:1997] == b"\0" * (1997 - 13)


def test_pwrite_all_large_buffer(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    blob = os.urandom(3 * MiB + 7)
    part = PartFile.create(path, 4 * MiB)
    try:
        pwrite_all(part.fd, blob, MiB - 3)
    finally:
        part.close()
    got = path.read_bytes()
    assert got[MiB - 3 : MiB - 3 + len(blob)] == blob
    assert got[: MiB - 3] == b"\0" * (MiB - 3)


def test_truncate_and_double_close(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    part = PartFile.create(path, None)
    pwrite_all(part.fd, b"hello", 0)
    part.truncate(3)
    part.close()
    part.close()  # safe twice
    assert path.read_bytes() == b"hel"


def test_open_existing_keeps_content(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    path.write_bytes(b"A" * 100)
    part = PartFile.open_existing(path)
    try:
        pwrite_all(part.fd, b"BB", 50)
    finally:
        part.close()
    assert path.read_bytes() == b"A" * 50 + b"BB" + b"A" * 48


def test_open_existing_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    path = tmp_path / "f.part"
    path.symlink_to(target)
    with pytest.raises(LocalFileError) as info:
        PartFile.open_existing(path)
    assert "symlink" in str(info.value)
    assert target.read_bytes() == b"precious"
    assert path.is_symlink()


def test_open_existing_missing(tmp_path: Path) -> None:
    with pytest.raises(LocalFileError):
        PartFile.open_existing(tmp_path / "nope.part")


def test_create_over_symlink_does_not_touch_target(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    path = tmp_path / "f.part"
    path.symlink_to(target)
    part = PartFile.create(path, 4096)
    try:
        pwrite_all(part.fd, b"new", 0)
    finally:
        part.close()
    assert not path.is_symlink()
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert path.stat().st_size == 4096
    assert path.read_bytes()[:3] == b"new"
    assert target.read_bytes() == b"precious"


def test_create_over_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "absent"
    path = tmp_path / "f.part"
    path.symlink_to(target)
    PartFile.create(path, 10).close()
    assert not path.is_symlink() and path.stat().st_size == 10
    assert not target.exists()


def test_create_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LocalFileError):
        PartFile.create(tmp_path / "no" / "such" / "f.part", 10)


# --- finalize ---------------------------------------------------------------------------


def test_finalize_moves_into_place(tmp_path: Path) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"payload")
    finalize(part, dest)
    assert dest.read_bytes() == b"payload"
    assert not part.exists()


def test_finalize_refuses_existing_file(tmp_path: Path) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"new data")
    dest.write_bytes(b"old data, not ours")
    with pytest.raises(OutputExistsError):
        finalize(part, dest)
    assert dest.read_bytes() == b"old data, not ours"
    assert part.read_bytes() == b"new data"


def test_finalize_refuses_existing_symlink(tmp_path: Path) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    part.write_bytes(b"new data")
    dest.symlink_to(victim)
    with pytest.raises(OutputExistsError):
        finalize(part, dest)
    assert dest.is_symlink()
    assert victim.read_bytes() == b"precious"
    assert part.read_bytes() == b"new data"


def test_finalize_refuses_existing_same_content(tmp_path: Path) -> None:
    """Same bytes but another file: still not ours to replace."""
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"same")
    dest.write_bytes(b"same")
    with pytest.raises(OutputExistsError):
        finalize(part, dest)
    assert part.exists() and dest.read_bytes() == b"same"


def test_finalize_after_interrupted_link(tmp_path: Path) -> None:
    """A crash between link() and unlink() leaves dest and part as one inode: completes."""
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"payload")
    os.link(part, dest)
    finalize(part, dest)
    assert dest.read_bytes() == b"payload"
    assert not part.exists()


def test_finalize_force_replaces(tmp_path: Path) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"new data")
    dest.write_bytes(b"old data")
    finalize(part, dest, force=True)
    assert dest.read_bytes() == b"new data"
    assert not part.exists()


def test_finalize_force_replaces_symlink_not_target(tmp_path: Path) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    part.write_bytes(b"new data")
    dest.symlink_to(victim)
    finalize(part, dest, force=True)
    assert not dest.is_symlink()
    assert dest.read_bytes() == b"new data"
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("force", [False, True])
def test_finalize_sets_mtime(tmp_path: Path, force: bool) -> None:
    part, dest = tmp_path / "f.part", tmp_path / "f"
    part.write_bytes(b"x")
    finalize(part, dest, force=force, mtime=1_600_000_000.0)
    assert dest.stat().st_mtime == 1_600_000_000.0


def test_finalize_missing_part(tmp_path: Path) -> None:
    with pytest.raises(LocalFileError):
        finalize(tmp_path / "nope.part", tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


# --- check_free_space -------------------------------------------------------------------


def test_check_free_space_raises_with_sizes(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    assert free < 2**62
    with pytest.raises(InsufficientSpaceError) as info:
        check_free_space(tmp_path, 2**62)
    msg = str(info.value)
    assert isinstance(info.value, LocalFileError)
    assert "4194304.0 TiB needed" in msg  # 2**62 bytes
    assert re.search(r"\d+(\.\d)? (B|KiB|MiB|GiB|TiB) free", msg), msg
    assert str(tmp_path) in msg


def test_check_free_space_passes_when_room(tmp_path: Path) -> None:
    check_free_space(tmp_path, 0)
    check_free_space(tmp_path, -5)
    check_free_space(tmp_path, 1)
    check_free_space(tmp_path, 1024)
