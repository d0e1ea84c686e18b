"""What the FaultServer serves: a resource (bytes in memory or a file on disk), the
snapshot one request sees of it, and the parsing of a Range header against its size."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Optional, Tuple, Union

__all__ = ["Part", "Resource", "Snapshot", "parse_range"]

# A body is a list of parts: literal bytes, or an (offset, length) span of the snapshot.
Part = Union[bytes, Tuple[int, int]]


@dataclass(frozen=True)
class Resource:
    """A served file: in-memory ``data`` or a path on disk."""

    data: Optional[bytes]
    fs_path: Optional[str]
    etag_spec: Optional[str]
    lm_spec: Optional[str]
    content_disposition: Optional[str]
    auto_etag: Optional[str] = None  # precomputed for in-memory data
    auto_lm: Optional[str] = None


class Snapshot:
    """The content of a resource as seen by one request (stable even if replaced)."""

    def __init__(self, res: Resource) -> None:
        self.file: Optional[Any] = None
        self.data: Optional[memoryview] = None
        if res.data is not None:
            self.data = memoryview(res.data)
            self.size = len(res.data)
            auto_etag, auto_lm = res.auto_etag, res.auto_lm
        else:
            assert res.fs_path is not None
            self.file = open(res.fs_path, "rb", buffering=0)  # noqa: SIM115
            st = os.fstat(self.file.fileno())
            self.size = st.st_size
            key = f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}".encode()
            auto_etag = '"' + hashlib.sha1(key).hexdigest()[:16] + '"'
            auto_lm = formatdate(st.st_mtime, usegmt=True)
        self.etag = auto_etag if res.etag_spec == "auto" else res.etag_spec
        self.last_modified = auto_lm if res.lm_spec == "auto" else res.lm_spec
        self.content_disposition = res.content_disposition

    def read(self, offset: int, n: int) -> Union[bytes, memoryview]:
        """Return up to ``n`` bytes at ``offset``."""
        if self.data is not None:
            return self.data[offset : offset + n]
        assert self.file is not None
        return os.pread(self.file.fileno(), n, offset)

    def close(self) -> None:
        """Release the file handle, if any."""
        if self.file is not None:
            self.file.close()


def parse_range(value: str, size: int) -> Union[str, Tuple[int, int], None]:
    """Parse a Range header against ``size``.

    Returns None to ignore it (malformed, other unit, several ranges), ``"unsatisfiable"``,
    or an inclusive ``(start, end)``.
    """
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first + last).isascii():
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if first:
        start = int(first)
        end = int(last) if last else None
        if end is not None and end < start:
            return None
        if start >= size:
            return "unsatisfiable"
        return start, size - 1 if end is None else min(end, size - 1)
    if not last:
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1
