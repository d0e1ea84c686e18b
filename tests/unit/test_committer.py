"""The committer (accel._disk.committer): what a sidecar claims and when it is saved, on a real
``.part`` file and sidecar in tmp_path, with the background sync on its real thread."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from accel._disk import committer as committer_module
from accel._disk import state
from accel._disk.committer import Committer
from accel._disk.storage import PartFile, pwrite_all
from accel._util.remote import RemoteFile, Validators
from accel.exceptions import AccelError, LocalFileError

URL = "http://example.test/f.bin"
SIZE = 1000
ETAG = '"v1"'
LAST_MODIFIED = "Sun, 29 Nov 2026 10:00:00 GMT"
REMOTE = RemoteFile(URL, Validators(SIZE, ETAG, LAST_MODIFIED), ranges=True, filename=None)


class Rows:
    """The (start, end, written) rows the committer reads; tests change them as a worker
    would."""

    def __init__(self, *written: int) -> None:
        self.rows: List[state.Row] = [(0, 499, written[0]), (500, 999, written[1])]

    def __call__(self) -> List[state.Row]:
        return list(self.rows)

    def write(self, index: int, written: int) -> None:
        start, end, _ = self.rows[index]
        self.rows[index] = (start, end, written)


class BlockingPart(PartFile):
    """A real part file whose sync() waits for ``release`` (and counts its calls)."""

    def __init__(self, path: Path, fd: int) -> None:
        super().__init__(path, fd)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1
        self.entered.set()
        assert self.release.wait(10), "the test never released the sync"
        super().sync()


@pytest.fixture
def part(tmp_path: Path) -> PartFile:
    p = PartFile.create(tmp_path / "f.bin.part", SIZE)
    pwrite_all(p.fd, b"x" * SIZE, 0)
    return p


def make(
    part: PartFile,
    side: Optional[Path],
    rows: Rows,
    errors: Optional[List[BaseException]] = None,
) -> Committer:
    sink = errors if errors is not None else []
    return Committer(side, part, URL, REMOTE, rows, sink.append)


def saved(side: Path) -> Dict[str, Any]:
    return json.loads(side.read_bytes())


def segments(side: Path) -> List[tuple]:
    return [(s["start"], s["end"], s["written"], s["synced"]) for s in saved(side)["segments"]]


def test_no_sidecar_means_nothing_is_saved_nor_synced(part: PartFile, tmp_path: Path) -> None:
    c = make(part, None, Rows(100, 0))
    assert not c.sync_each_commit
    c.commit()
    c.start_sync()
    c.resume()
    assert c.syncer is None and not c.saved and c.synced == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin.part"]


def test_commit_saves_the_record_with_written_but_not_synced(
    part: PartFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module.state, "boot_id", lambda: "boot-1")
    side = tmp_path / "f.bin.part.json"
    c = make(part, side, Rows(120, 30))
    assert not c.sync_each_commit
    c.commit()
    assert c.saved
    doc = saved(side)
    assert (doc["url"], doc["size"], doc["etag"], doc["last_modified"], doc["boot_id"]) == (
        URL,
        SIZE,
        ETAG,
        LAST_MODIFIED,
        "boot-1",
    )
    # Written bytes survive a killed process; nothing is claimed synced before a sync.
    assert segments(side) == [(0, 499, 120, 0), (500, 999, 30, 0)]
    record = state.load(side, part.path)
    assert [(g.start, g.end, g.written) for g in record.trusted_segments("boot-1")] == [
        (0, 499, 120),
        (500, 999, 30),
    ]
    # After a reboot only synced bytes count: none yet.
    assert [g.written for g in record.trusted_segments("boot-2")] == [0, 0]


def test_background_sync_claims_only_what_was_written_when_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module.state, "boot_id", lambda: "boot-1")
    path = tmp_path / "f.bin.part"
    base = PartFile.create(path, SIZE)
    part = BlockingPart(path, base.fd)
    side = tmp_path / "f.bin.part.json"
    rows = Rows(200, 50)
    c = make(part, side, rows)
    c.start_sync()
    assert part.entered.wait(5)
    assert c.syncer is not None and c.syncer.name == "accel-sync"
    rows.write(0, 400)  # written while the sync runs: not covered by it
    c.start_sync()  # one sync at a time: no second thread
    part.release.set()
    c.syncer.join(5)
    assert not c.syncer.is_alive() and part.syncs == 1
    assert c.synced == {0: 200, 500: 50}
    c.commit()
    assert segments(side) == [(0, 499, 400, 200), (500, 999, 50, 50)]
    # The next sync covers the rest; synced never goes down nor above written.
    c.start_sync()
    c.syncer.join(5)
    c.commit()
    assert segments(side) == [(0, 499, 400, 400), (500, 999, 50, 50)]
    part.close()


def test_a_failed_sync_is_reported_and_claims_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module.state, "boot_id", lambda: "boot-1")
    errors: List[BaseException] = []
    side = tmp_path / "f.bin.part.json"
    read_end, write_end = os.pipe()
    try:
        # fdatasync(2) fails on a pipe (EINVAL), as it may after a write-back error.
        c = make(PartFile(tmp_path / "f.bin.part", read_end), side, Rows(300, 300), errors)
        c.start_sync()
        assert c.syncer is not None
        c.syncer.join(5)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert len(errors) == 1 and isinstance(errors[0], LocalFileError)
    assert isinstance(errors[0], AccelError) and "cannot flush" in str(errors[0])
    assert c.synced == {}
    c.commit()  # a later commit claims nothing synced either
    assert segments(side) == [(0, 499, 300, 0), (500, 999, 300, 0)]


def test_without_a_boot_id_every_commit_syncs_first(
    part: PartFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module.state, "boot_id", lambda: None)
    side = tmp_path / "f.bin.part.json"
    rows = Rows(100, 10)
    c = make(part, side, rows)
    assert c.sync_each_commit
    c.commit()
    assert segments(side) == [(0, 499, 100, 100), (500, 999, 10, 10)]
    rows.write(1, 60)
    c.commit()
    assert segments(side) == [(0, 499, 100, 100), (500, 999, 60, 60)]
    assert saved(side)["boot_id"] is None


def test_resume_counts_the_earlier_runs_bytes_as_synced(
    part: PartFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(committer_module.state, "boot_id", lambda: "boot-1")
    side = tmp_path / "f.bin.part.json"
    rows = Rows(250, 0)
    c = make(part, side, rows)
    c.resume()
    assert c.synced == {0: 250, 500: 0}
    rows.write(1, 80)
    c.commit()
    assert segments(side) == [(0, 499, 250, 250), (500, 999, 80, 0)]


def test_resume_with_nothing_written_syncs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f.bin.part"
    base = PartFile.create(path, SIZE)
    part = BlockingPart(path, base.fd)  # a sync would block (and fail the test after 10 s)
    c = make(part, tmp_path / "f.bin.part.json", Rows(0, 0))
    c.resume()
    assert part.syncs == 0 and c.synced == {}
    part.close()
