"""Checksums: parsing ``ALGO=HEX`` and hashing a file."""

from __future__ import annotations

import hashlib
import hmac
import os
import zlib
from typing import Any, Tuple

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


class _Crc32:
    """zlib's CRC-32 with hashlib's interface; the digest big-endian, as S3 states it."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: Any) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return self.value.to_bytes(4, "big").hex()


class _Crc32c:
    """CRC-32C (Castagnoli) through google-crc32c, with hashlib's interface."""

    def __init__(self) -> None:
        import google_crc32c

        self._sum = google_crc32c.Checksum()

    def update(self, data: Any) -> None:
        self._sum.update(bytes(data))

    def hexdigest(self) -> str:
        return str(self._sum.digest().hex())


def can_hash(algo: str) -> bool:
    """Whether :func:`file_digest` can compute ``algo`` here (crc32c needs google-crc32c)."""
    if algo == "crc32c":
        try:
            import google_crc32c  # noqa: F401
        except ImportError:
            return False
        return True
    return algo == "crc32" or algo in hashlib.algorithms_available


def _hasher(algo: str) -> Any:
    if algo == "crc32":
        return _Crc32()
    if algo == "crc32c":
        return _Crc32c()
    return hashlib.new(algo)


def file_digest(path: os.PathLike[str] | str, algo: str) -> str:
    """Hex digest of the file at ``path`` (any hashlib algorithm, ``crc32``, ``crc32c``)."""
    h = _hasher(algo)
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
    return str(h.hexdigest())


def matches(path: os.PathLike[str] | str, checksum: Tuple[str, str]) -> bool:
    """Whether the file at ``path`` has ``checksum`` (algo, hex)."""
    algo, expected = checksum
    return hmac.compare_digest(file_digest(path, algo), expected)
