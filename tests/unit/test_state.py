"""Tests of the sidecar NAME.part.json (accel._disk.state): atomic save, strict load, boot ids."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest

from accel._disk.state import (
    FORMAT,
    VERSION,
    InvalidState,
    Record,
    boot_id,
    load,
    remove,
    save,
    sidecar_path,
    with_synced,
)
from accel.exceptions import LocalFileError

SIZE = 1000
SEGMENTS = [(0, 399, 400, 100), (400, 799, 10, 0), (800, 999, 0, 0)]


def make_record(**kw: Any) -> Record:
    fields: Dict[str, Any] = dict(
        url="https://example.org/file.iso",
        size=SIZE,
        etag='"5f3c-abc"',
        last_modified="Tue, 01 Sep 2026 10:00:00 GMT",
        segments=list(SEGMENTS),
        boot_id="9c1e0000-1111-2222-3333-444455556666",
    )
    fields.update(kw)
    return Record(**fields)


def valid_doc() -> Dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "url": "https://example.org/file.iso",
        "size": SIZE,
        "etag": '"5f3c-abc"',
        "last_modified": "Tue, 01 Sep 2026 10:00:00 GMT",
        "boot_id": "boot-a",
        "segments": [{"start": s, "end": e, "written": w, "synced": y} for s, e, w, y in SEGMENTS],
    }


@pytest.fixture
def paths(tmp_path: Path) -> Tuple[Path, Path]:
    """(part, sidecar) with a .part file of SIZE bytes."""
    part = tmp_path / "file.iso.part"
    part.write_bytes(b"\0" * SIZE)
    return part, sidecar_path(part)


def write_doc(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))


# --- save / load ------------------------------------------------------------------------


def test_sidecar_path() -> None:
    assert sidecar_path(Path("/d/x.iso.part")) == Path("/d/x.iso.part.json")


def test_round_trip(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    rec = make_record()
    save(side, rec)
    assert load(side, part) == rec
    doc = json.loads(side.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert doc["segments"][0] == {"start": 0, "end": 399, "written": 400, "synced": 100}


def test_round_trip_with_nulls(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    rec = make_record(etag=None, last_modified=None, boot_id=None)
    save(side, rec)
    assert load(side, part) == rec


def test_save_overwrites_previous(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    save(side, make_record())
    newer = make_record(segments=[(0, 399, 400, 400), (400, 799, 400, 0), (800, 999, 7, 7)])
    save(side, newer)
    assert load(side, part) == newer


def test_mode_is_0600(paths: Tuple[Path, Path]) -> None:
    _, side = paths
    old = os.umask(0)
    try:
        save(side, make_record())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(side).st_mode) == 0o600


def test_leftover_tmp_is_replaced(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text("garbage from a crash")
    rec = make_record()
    save(side, rec)
    assert not tmp.exists()
    assert load(side, part) == rec


def test_symlink_at_tmp_is_not_followed(paths: Tuple[Path, Path], tmp_path: Path) -> None:
    part, side = paths
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    tmp = side.with_name(side.name + ".tmp")
    tmp.symlink_to(victim)
    rec = make_record()
    save(side, rec)
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    assert not os.path.lexists(tmp)
    assert not side.is_symlink()
    assert load(side, part) == rec


def test_symlink_at_sidecar_is_refused(paths: Tuple[Path, Path], tmp_path: Path) -> None:
    _, side = paths
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    side.symlink_to(victim)
    with pytest.raises(LocalFileError):
        save(side, make_record())
    assert side.is_symlink() and os.readlink(side) == str(victim)
    assert victim.read_text() == "precious"


def test_load_refuses_symlinked_sidecar(paths: Tuple[Path, Path], tmp_path: Path) -> None:
    part, side = paths
    real = tmp_path / "real.json"
    write_doc(real, valid_doc())
    side.symlink_to(real)
    with pytest.raises(InvalidState):
        load(side, part)


def test_load_missing_sidecar(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    with pytest.raises(InvalidState):
        load(side, part)


def test_valid_doc_loads(paths: Tuple[Path, Path]) -> None:
    """Control for the rejection cases below: the unmodified document is accepted."""
    part, side = paths
    write_doc(side, valid_doc())
    rec = load(side, part)
    assert rec.size == SIZE and rec.segments == SEGMENTS and rec.boot_id == "boot-a"


def _set(key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def mutate(doc: Dict[str, Any]) -> None:
        doc[key] = value

    return mutate


def _seg(i: int, key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def mutate(doc: Dict[str, Any]) -> None:
        doc["segments"][i][key] = value

    return mutate


def _del(key: str) -> Callable[[Dict[str, Any]], None]:
    def mutate(doc: Dict[str, Any]) -> None:
        del doc[key]

    return mutate


def _segments(segs: Any) -> Callable[[Dict[str, Any]], None]:
    return _set("segments", segs)


def _seg_rows(*rows: Tuple[int, int, int, int]) -> list:
    return [{"start": s, "end": e, "written": w, "synced": y} for s, e, w, y in rows]


REJECTED = {
    "wrong version": _set("version", 2),
    "version as string": _set("version", "1"),
    "version as bool": _set("version", True),
    "version as float": _set("version", 1.0),
    "wrong format": _set("format", "other-sidecar"),
    "extra field": _set("extra", 1),
    "missing field": _del("boot_id"),
    "missing segments": _del("segments"),
    "empty url": _set("url", ""),
    "url not a string": _set("url", 5),
    "etag not a string": _set("etag", 5),
    "negative size": _set("size", -1),
    "bool size": _set("size", True),
    "float size": _set("size", 1000.0),
    "string size": _set("size", "1000"),
    "huge size": _set("size", 2**63),
    "segments not a list": _segments({"start": 0}),
    "segment not an object": _segments([[0, 999, 0, 0]]),
    "segment extra field": _seg(0, "extra", 0),
    "negative start": _seg(0, "start", -1),
    "negative written": _seg(1, "written", -1),
    "negative synced": _seg(1, "synced", -1),
    "bool written": _seg(2, "written", True),
    "bool synced": _seg(0, "synced", False),
    "float written": _seg(1, "written", 10.0),
    "float end": _seg(2, "end", 999.0),
    "written > length": _seg(1, "written", 401),
    "synced > written": _seg(1, "synced", 11),
    "gap": _segments(_seg_rows((0, 399, 0, 0), (401, 999, 0, 0))),
    "overlap": _segments(_seg_rows((0, 400, 0, 0), (400, 999, 0, 0))),
    "short of size": _segments(_seg_rows((0, 399, 0, 0), (400, 998, 0, 0))),
    "beyond size": _segments(_seg_rows((0, 399, 0, 0), (400, 1000, 0, 0))),
    "unsorted": _segments(_seg_rows((400, 999, 0, 0), (0, 399, 0, 0))),
    "no segments": _segments([]),
}


def test_missing_segment_field(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    doc = valid_doc()
    del doc["segments"][0]["synced"]
    write_doc(side, doc)
    with pytest.raises(InvalidState):
        load(side, part)


@pytest.mark.parametrize("mutate", list(REJECTED.values()), ids=list(REJECTED))
def test_strict_load_rejects(
    paths: Tuple[Path, Path], mutate: Callable[[Dict[str, Any]], None]
) -> None:
    part, side = paths
    doc = copy.deepcopy(valid_doc())
    mutate(doc)
    write_doc(side, doc)
    with pytest.raises(InvalidState):
        load(side, part)


@pytest.mark.parametrize("cut", [0, 1, 10, 50, -1])
def test_truncated_json_rejected(paths: Tuple[Path, Path], cut: int) -> None:
    part, side = paths
    text = json.dumps(valid_doc())
    side.write_text(text[:cut])
    with pytest.raises(InvalidState):
        load(side, part)


@pytest.mark.parametrize("raw", [b"[]", b"null", b"42", b'"accel-sidecar"', b"\xff\xfe\x00"])
def test_non_object_rejected(paths: Tuple[Path, Path], raw: bytes) -> None:
    part, side = paths
    side.write_bytes(raw)
    with pytest.raises(InvalidState):
        load(side, part)


def test_part_missing(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    write_doc(side, valid_doc())
    part.unlink()
    with pytest.raises(InvalidState):
        load(side, part)


@pytest.mark.parametrize("size", [0, SIZE - 1, SIZE + 1])
def test_part_of_another_size(paths: Tuple[Path, Path], size: int) -> None:
    part, side = paths
    write_doc(side, valid_doc())
    part.write_bytes(b"\0" * size)
    with pytest.raises(InvalidState):
        load(side, part)


def test_part_is_symlink(paths: Tuple[Path, Path], tmp_path: Path) -> None:
    part, side = paths
    write_doc(side, valid_doc())
    real = tmp_path / "elsewhere"
    real.write_bytes(b"\0" * SIZE)  # even of the right size
    part.unlink()
    part.symlink_to(real)
    with pytest.raises(InvalidState):
        load(side, part)


def test_part_is_directory(paths: Tuple[Path, Path]) -> None:
    part, side = paths
    write_doc(side, valid_doc())
    part.unlink()
    part.mkdir()
    with pytest.raises(InvalidState):
        load(side, part)


def test_remove(paths: Tuple[Path, Path]) -> None:
    _, side = paths
    save(side, make_record())
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text("x")
    remove(side)
    assert not side.exists() and not tmp.exists()
    remove(side)  # absent: no error


# --- trusted_segments / with_synced / boot_id ----------------------------------------------


def _rows(segs: list) -> list:
    return [(s.start, s.end, s.written) for s in segs]


def test_trusted_segments_same_boot_uses_written() -> None:
    rec = make_record(boot_id="boot-a")
    assert _rows(rec.trusted_segments("boot-a")) == [(0, 399, 400), (400, 799, 10), (800, 999, 0)]


@pytest.mark.parametrize("current", ["boot-b", None])
def test_trusted_segments_other_boot_uses_synced(current: Any) -> None:
    rec = make_record(boot_id="boot-a")
    assert _rows(rec.trusted_segments(current)) == [(0, 399, 100), (400, 799, 0), (800, 999, 0)]


def test_trusted_segments_record_without_boot_uses_synced() -> None:
    rec = make_record(boot_id=None)
    assert _rows(rec.trusted_segments(None)) == [(0, 399, 100), (400, 799, 0), (800, 999, 0)]
    assert _rows(rec.trusted_segments("boot-a")) == [(0, 399, 100), (400, 799, 0), (800, 999, 0)]


def test_with_synced_caps_synced_at_written() -> None:
    rows = [(0, 99, 100), (100, 199, 50)]
    assert with_synced(rows, {0: 60, 100: 80}) == [(0, 99, 100, 60), (100, 199, 50, 50)]
    assert with_synced(rows, {}) == [(0, 99, 100, 0), (100, 199, 50, 0)]


@pytest.mark.skipif(
    not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="needs Linux /proc"
)
def test_boot_id_is_the_kernels() -> None:
    with open("/proc/sys/kernel/random/boot_id") as f:
        expected = f.read().strip()
    assert expected
    assert boot_id() == expected
    assert boot_id() == boot_id()
