"""The sidecar ``NAME.part.json``: what of ``NAME.part`` is safely on disk.

Schema (version 1)::

    {
      "format": "accel-sidecar", "version": 1,
      "url": "https://example.org/file.iso",        # never with user:password
      "size": 1048576,
      "etag": "\\"5f3c-abc\\"", "last_modified": "Tue, 01 Sep 2026 10:00:00 GMT",
      "boot_id": "9c1e...",                          # kernel boot the "written" counts belong to
      "segments": [{"start": 0, "end": 524287, "written": 4096, "synced": 0}, ...]
    }

``written`` counts bytes handed to the kernel (they survive a crash or kill of the process);
``synced`` counts bytes known to be on stable storage (``fdatasync`` returned). A record
written during the current boot trusts ``written``; after a reboot (power loss, OS crash)
only ``synced`` is trusted. Saving is atomic: temp file, fsync, rename, fsync of the
directory. Loading is strict: anything unexpected raises :class:`InvalidState`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from accel._disk.storage import data_until, fsync_dir
from accel._util.ranges import Segment, check_tiling
from accel._util.remote import Validators
from accel.exceptions import LocalFileError, local_error

log = logging.getLogger(__name__)

FORMAT = "accel-sidecar"
VERSION = 1
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_MAX_INT = 2**63 - 1
#: A live segment as the sidecar records it: (start, end, bytes written).
Row = Tuple[int, int, int]


class InvalidState(Exception):
    """The sidecar cannot be trusted; the download restarts from zero."""


@dataclass
class Record:
    """A loaded or to-be-saved sidecar."""

    url: str
    size: int
    etag: Optional[str]
    last_modified: Optional[str]
    #: (start, end, written, synced) per segment, tiling [0, size).
    segments: List[Tuple[int, int, int, int]]
    boot_id: Optional[str] = None

    def trusted_segments(self, current_boot: Optional[str]) -> List[Segment]:
        """Segments with the byte counts that are safe to trust in boot ``current_boot``."""
        same_boot = current_boot is not None and current_boot == self.boot_id
        return [Segment(s, e, w if same_boot else y) for s, e, w, y in self.segments]

    @property
    def validators(self) -> Validators:
        """What the server said of the file when this was recorded."""
        return Validators(self.size, self.etag, self.last_modified)


def complete_record(url: str, size: int, validators: Validators, *, synced: bool) -> Record:
    """The record of a whole file of ``size`` bytes written (and ``synced``) in this boot."""
    return Record(
        url,
        size,
        validators.etag,
        validators.last_modified if validators.strong_date else None,
        [(0, size - 1, size, size if synced else 0)] if size else [],
        boot_id(),
    )


@functools.cache
def boot_id() -> Optional[str]:
    """The kernel's boot id (Linux), or None where it cannot be read (read once: it does not
    change while the process lives)."""
    try:
        with open(_BOOT_ID_PATH, encoding="ascii") as f:
            value = f.read().strip()
    except OSError:
        return None
    return value or None


def sidecar_path(part_path: Path) -> Path:
    """``NAME.part`` -> ``NAME.part.json``."""
    return part_path.with_name(part_path.name + ".json")


def save(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` atomically and durably (mode 0600, no symlinks followed)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "url": record.url,
        "size": record.size,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "boot_id": record.boot_id,
        "segments": [
            {"start": s, "end": e, "written": w, "synced": y} for s, e, w, y in record.segments
        ],
    }
    data = json.dumps(doc, separators=(",", ":")).encode()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover from a crash, or a planted symlink: removed, not followed
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _refuse_symlink(path)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise local_error(exc, f"cannot save {path}") from exc


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise LocalFileError(f"refusing to replace symlink {path}")


def load(path: Path, part_path: Path) -> Record:
    """Read and check the sidecar at ``path`` against ``part_path``.

    Raises :class:`InvalidState` for anything that is not exactly a record this version
    wrote for an existing ``.part`` file of the recorded size.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidState(f"cannot open {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(64 * 1024 * 1024 + 1)
    except OSError as exc:
        raise InvalidState(f"cannot read {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidState(f"{path} is not valid JSON") from exc
    record = _parse(doc)
    try:
        st = os.lstat(part_path)
    except OSError as exc:
        raise InvalidState(f"{part_path} is missing") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidState(f"{part_path} is not a regular file")
    if st.st_size != record.size:
        raise InvalidState(f"{part_path} has {st.st_size} bytes, the record says {record.size}")
    return record


def check_data(record: Record, part_path: Path) -> Record:
    """``record`` with each segment trusted only up to its first hole in ``part_path``.

    A sidecar restored from a backup, copied beside another ``.part`` or edited may claim
    bytes the file never received: the file system knows them as holes (``SEEK_HOLE``).
    Where it cannot tell, the record is returned unchanged.
    """
    try:
        fd = os.open(part_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidState(f"cannot open {part_path}: {exc.strerror}") from exc
    rows: List[Tuple[int, int, int, int]] = []
    missing = 0
    try:
        for s, e, w, y in record.segments:
            backed = data_until(fd, s, s + w) - s
            if backed < w:
                log.debug("bytes %d-%d of %s are a hole", s + backed, s + w - 1, part_path)
                missing += w - backed
            rows.append((s, e, backed, min(y, backed)))
    finally:
        os.close(fd)
    if missing:
        log.warning(
            "%s lacks %d bytes its saved state claims (holes in the file); fetching them again",
            part_path,
            missing,
        )
    return Record(record.url, record.size, record.etag, record.last_modified, rows, record.boot_id)


def load_vetted(side: Path, url: str, *, keep_complete: bool) -> Optional[Record]:
    """The sidecar ``side`` if a new run of ``url`` (as recorded: redacted) may resume from it.

    One that cannot be trusted, belongs to another URL or cannot be verified against the
    server (no strong validator) is removed with a warning: the run starts from zero.
    ``keep_complete`` keeps a fully written one regardless (a checksum will decide).
    """
    if not side.exists() and not side.is_symlink():
        return None
    part = side.with_name(side.name[: -len(".json")])
    try:
        # Strict parsing, then the disk's word: a claimed byte in a hole was never written.
        record = check_data(load(side, part), part)
    except InvalidState as exc:
        log.warning("ignoring the saved state in %s (%s); starting from zero", side, exc)
        remove(side)
        return None
    if record.url != url:
        log.warning("%s belongs to another URL (%s); starting from zero", side, record.url)
        remove(side)
        return None
    complete = all(w == e - s + 1 for s, e, w, _ in record.segments)
    if complete and keep_complete:
        return record  # kept after a checksum mismatch: the checksum will decide
    if not record.validators.resumable:
        log.warning(
            "the server gave no strong ETag or Last-Modified for %s, so the partial file "
            "cannot be verified; starting from zero",
            url,
        )
        remove(side)
        return None
    return record


def _parse(doc: Any) -> Record:
    if not isinstance(doc, dict):
        raise InvalidState("the record is not an object")
    version = doc.get("version")
    if doc.get("format") != FORMAT or type(version) is not int or version != VERSION:
        raise InvalidState(
            f"unknown format or version: {doc.get('format')!r} {doc.get('version')!r}"
        )
    expected = {"format", "version", "url", "size", "etag", "last_modified", "boot_id", "segments"}
    if set(doc) != expected:
        raise InvalidState(f"unexpected fields: {sorted(set(doc) ^ expected)}")
    url, size = doc["url"], doc["size"]
    if not isinstance(url, str) or not url:
        raise InvalidState("bad url")
    if not _is_count(size):
        raise InvalidState("bad size")
    for key in ("etag", "last_modified", "boot_id"):
        if doc[key] is not None and not isinstance(doc[key], str):
            raise InvalidState(f"bad {key}")
    segs = doc["segments"]
    if not isinstance(segs, list):
        raise InvalidState("bad segments")
    parsed: List[Tuple[int, int, int, int]] = []
    for item in segs:
        parsed.append(_parse_segment(item))
    try:
        check_tiling(size, [(s, e) for s, e, _, _ in parsed])
    except ValueError as exc:
        raise InvalidState(str(exc)) from exc
    return Record(url, size, doc["etag"], doc["last_modified"], parsed, doc["boot_id"])


def _parse_segment(item: Any) -> Tuple[int, int, int, int]:
    if not isinstance(item, dict) or set(item) != {"start", "end", "written", "synced"}:
        raise InvalidState(f"bad segment {item!r}")
    s, e, w, y = item["start"], item["end"], item["written"], item["synced"]
    if not all(_is_count(v) for v in (s, e, w, y)):
        raise InvalidState(f"bad segment {item!r}")
    if e < s or w > e - s + 1 or y > w:
        raise InvalidState(f"inconsistent segment {item!r}")
    return s, e, w, y


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT


def remove(path: Path) -> None:
    """Delete the sidecar (and a leftover temp file) if present."""
    for p in (path, path.with_name(path.name + ".tmp")):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise local_error(exc, f"cannot remove {p}") from exc


def with_synced(rows: Iterable[Row], synced: Dict[int, int]) -> List[Tuple[int, int, int, int]]:
    """(start, end, written) rows with their synced counts (never above written)."""
    return [(s, e, w, min(w, synced.get(s, 0))) for s, e, w in rows]
