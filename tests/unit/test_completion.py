"""The ends of a download (accel._disk.complete.Completion): whether a file already in place is
the remote file, and the checksum of a finished ``.part``; on real files in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
from email.utils import formatdate
from pathlib import Path
from typing import Optional

import pytest

from accel._disk import state
from accel._disk.complete import Completion
from accel._util.remote import RemoteFile, Validators
from accel.exceptions import OutputExistsError, VerificationError

URL = "http://user:secret@example.test/f.bin"
DATA = b"accel" * 2000
SHA = ("sha256", hashlib.sha256(DATA).hexdigest())
MTIME = 1_700_000_000
LAST_MODIFIED = formatdate(MTIME, usegmt=True)


def remote(size: Optional[int] = len(DATA), last_modified: Optional[str] = LAST_MODIFIED):
    return RemoteFile(URL, Validators(size, '"e"', last_modified), ranges=True, filename=None)


def put(path: Path, data: bytes = DATA, mtime: float = MTIME) -> Path:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_no_file_is_not_complete(tmp_path: Path) -> None:
    assert Completion(None, force=False).existing(tmp_path / "f.bin", remote()) is False
    assert Completion(SHA, force=True).existing(tmp_path / "f.bin", remote()) is False


def test_same_size_and_mtime_is_complete(tmp_path: Path) -> None:
    dest = put(tmp_path / "f.bin")
    assert Completion(None, force=False).existing(dest, remote()) is True


@pytest.mark.parametrize(
    ("data", "mtime", "rem"),
    [
        (DATA[:-1], MTIME, remote()),  # another size
        (DATA, MTIME - 60, remote()),  # another Last-Modified
        (DATA, MTIME, remote(last_modified=None)),  # nothing to compare the mtime with
        (DATA, MTIME, remote(size=None)),  # the server does not say its size
    ],
    ids=["size", "mtime", "no_last_modified", "no_size"],
)
def test_anything_else_in_the_way_is_refused(
    tmp_path: Path, data: bytes, mtime: float, rem: RemoteFile
) -> None:
    dest = put(tmp_path / "f.bin", data, mtime)
    with pytest.raises(OutputExistsError, match=r"already exists; use --force to replace it$"):
        Completion(None, force=False).existing(dest, rem)
    assert dest.read_bytes() == data  # untouched


def test_force_replaces_even_a_complete_file(tmp_path: Path) -> None:
    dest = put(tmp_path / "f.bin")
    assert Completion(None, force=True).existing(dest, remote()) is False
    assert Completion(SHA, force=True).existing(dest, remote()) is False


def test_a_file_with_holes_is_not_complete(tmp_path: Path) -> None:
    """A power loss right after a download leaves the right size and mtime, but holes."""
    dest = tmp_path / "f.bin"
    size = 4 * 1024 * 1024
    with open(dest, "wb") as f:
        f.truncate(size)
        f.seek(size - 4096)
        f.write(b"y" * 4096)
    os.utime(dest, (MTIME, MTIME))
    fd = os.open(dest, os.O_RDONLY)
    try:
        if os.lseek(fd, 0, os.SEEK_HOLE) >= size:
            pytest.skip("this file system does not report holes")
    finally:
        os.close(fd)
    with pytest.raises(OutputExistsError):
        Completion(None, force=False).existing(dest, remote(size=size))


def test_the_checksum_decides_when_given(tmp_path: Path) -> None:
    # Size and mtime are wrong, the checksum is right: complete.
    dest = put(tmp_path / "f.bin", DATA, MTIME - 3600)
    assert Completion(SHA, force=False).existing(dest, remote(size=1)) is True
    # Size and mtime are right, the checksum is not: in the way.
    other = put(tmp_path / "g.bin", DATA)
    wrong = ("sha256", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(OutputExistsError, match="does not match the checksum"):
        Completion(wrong, force=False).existing(other, remote())


def test_has_checksum_hashes_each_file_once(tmp_path: Path) -> None:
    dest = put(tmp_path / "f.bin")
    done = Completion(SHA, force=False)
    assert done.has_checksum(dest)
    dest.write_bytes(b"changed")  # not read again: the answer is remembered
    assert done.has_checksum(dest)
    assert not Completion(SHA, force=False).has_checksum(dest)  # a new Completion reads it


def test_has_checksum_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    target = put(tmp_path / "real.bin")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    done = Completion(SHA, force=False)
    assert not done.has_checksum(link)
    assert not done.has_checksum(tmp_path)
    assert not done.has_checksum(tmp_path / "missing.bin")
    assert not Completion(None, force=False).has_checksum(target)


def test_a_symlink_in_the_way_is_refused(tmp_path: Path) -> None:
    target = put(tmp_path / "real.bin")
    link = tmp_path / "f.bin"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError):
        Completion(None, force=False).existing(link, remote())


def record() -> state.Record:
    return state.Record(URL, len(DATA), '"e"', None, [(0, len(DATA) - 1, len(DATA), 0)])


def test_verify_passes_a_matching_part_and_saves_nothing(tmp_path: Path) -> None:
    part = put(tmp_path / "f.bin.part")
    side = tmp_path / "f.bin.part.json"
    Completion(SHA, force=False).verify(part, side, URL, record())
    Completion(None, force=False).verify(part, side, URL, record())
    assert not side.exists()


def test_verify_mismatch_keeps_the_data_with_a_complete_sidecar(tmp_path: Path) -> None:
    part = put(tmp_path / "f.bin.part", DATA[:-1] + b"!")
    side = tmp_path / "f.bin.part.json"
    with pytest.raises(VerificationError) as info:
        Completion(SHA, force=False).verify(part, side, URL, record())
    message = str(info.value)
    assert "\n" not in message and "secret" not in message  # one line, credentials redacted
    assert f"expected {SHA[1]}" in message and str(part) in message
    assert part.exists()
    doc = json.loads(side.read_bytes())
    assert doc["segments"] == [
        {"start": 0, "end": len(DATA) - 1, "written": len(DATA), "synced": 0}
    ]
