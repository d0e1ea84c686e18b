"""Checksums: parsing ``ALGO=HEX`` and hashing a file."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Tuple

from accel.exceptions import UsageError, local_error

_BLOCK = 4 * 1024 * 1024


def parse_checksum(spec: str) -> Tuple[str, str]:
    """``"sha256=ab12..."`` -> ("sha256", "ab12..."); any fixed-size hashlib algorithm."""
    algo, sep, digest = (spec or "").partition("=")
    algo, digest = algo.strip().lower().replace("-", ""), digest.strip().lower()
    if not sep or not algo or not digest:
        raise UsageError(f"invalid checksum {spec!r} (expected ALGO=HEX, e.g. sha256=...)")
    try:
        h = hashlib.new(algo)
    except (ValueError, TypeError):
        raise UsageError(f"unknown checksum algorithm {algo!r}") from None
    if algo.startswith("shake"):
        raise UsageError(f"checksum algorithm {algo!r} has no fixed length")
    if len(digest) != 2 * h.digest_size or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"{algo} checksum must be {2 * h.digest_size} hex digits")
    return algo, digest


def file_digest(path: os.PathLike[str] | str, algo: str) -> str:
    """Hex digest of the file at ``path``."""
    h = hashlib.new(algo)
    try:
        with open(path, "rb") as f:
            buf = bytearray(_BLOCK)
            view = memoryview(buf)
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
    except OSError as exc:
        raise local_error(exc, f"cannot read {path}") from exc
    return h.hexdigest()


def matches(path: os.PathLike[str] | str, checksum: Tuple[str, str]) -> bool:
    """Whether the file at ``path`` has ``checksum`` (algo, hex)."""
    algo, expected = checksum
    return hmac.compare_digest(file_digest(path, algo), expected)
