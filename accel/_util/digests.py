"""Digests a server sends of the file: which headers say what, and which one to check.

Representation digests describe the whole file whatever part of it a response carries:
``Repr-Digest`` (RFC 9530), the legacy instance digest ``Digest`` (RFC 3230) and Google
Cloud Storage's ``x-goog-hash``. Content digests describe only the body of the message that
carries them, so they count only on a response whose body is the whole file: RFC 9530's
``Content-Digest``, ``Content-MD5`` (RFC 1864) and S3's ``x-amz-checksum-*`` (sent only for
whole objects, and only when asked with ``x-amz-checksum-mode: ENABLED``). Composite
checksums (S3 multipart uploads: ``VALUE-PARTS``) describe parts, not the file, and are
skipped. Pure: parsing only; :func:`accel._util.checksum.file_digest` does the hashing.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

#: Sent with a probe so that S3 includes its checksums in whole-object answers.
S3_CHECKSUM_MODE = ("x-amz-checksum-mode", "ENABLED")

#: Strongest first: the one checked is the first a server sent (and this machine can hash).
STRENGTH = ("sha512", "sha256", "sha1", "md5", "crc32c", "crc32")

#: RFC 9530 algorithm keys (the active ones) -> hashlib names.
_RFC9530 = {"sha-256": "sha256", "sha-512": "sha512"}
#: RFC 3230 (and RFC 5843) algorithm names -> hashlib names.
_RFC3230 = {"sha-256": "sha256", "sha-512": "sha512", "sha": "sha1", "md5": "md5"}
_GOOG = {"md5": "md5", "crc32c": "crc32c"}
_AMZ = {
    "x-amz-checksum-sha256": "sha256",
    "x-amz-checksum-sha1": "sha1",
    "x-amz-checksum-crc32c": "crc32c",
    "x-amz-checksum-crc32": "crc32",
}
#: Display names, as the headers spell them.
_LABEL = {
    "sha256": "sha-256",
    "sha512": "sha-512",
    "sha1": "sha-1",
    "md5": "md5",
    "crc32c": "crc32c",
    "crc32": "crc32",
}
_SIZES = {"sha512": 64, "sha256": 32, "sha1": 20, "md5": 16, "crc32c": 4, "crc32": 4}
# An RFC 8941 dictionary member whose value is a byte sequence: key=:base64:(;params)
_SF_MEMBER = re.compile(r"\s*([a-z*][a-z0-9_\-.*]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?")


@dataclass(frozen=True)
class ServerDigest:
    """One digest of the whole file as a server stated it."""

    header: str  #: the header it came in, e.g. ``Repr-Digest``
    algo: str  #: the hash (``sha256``, ``sha512``, ``sha1``, ``md5``, ``crc32c``, ``crc32``)
    hex: str  #: the expected value, lower-case hex

    @property
    def label(self) -> str:
        """As messages name it: ``Repr-Digest sha-256``."""
        return f"{self.header} {_LABEL[self.algo]}"


def _b64(value: str, algo: str) -> Optional[str]:
    """The hex of a base64 digest of the right size for ``algo``, else None."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == _SIZES[algo] else None


def _dictionary(value: str) -> Iterable[Tuple[str, str]]:
    """(key, base64) members of a structured-field dictionary; malformed members skipped."""
    for part in _split(value):
        m = _SF_MEMBER.fullmatch(part)
        if m:
            yield m.group(1), m.group(2)


def _split(value: str) -> List[str]:
    return [p for p in value.split(",") if p.strip()]


def _pairs(value: str) -> Iterable[Tuple[str, str]]:
    """``name=value`` pairs, comma separated (RFC 3230 and x-goog-hash); names lower-cased."""
    for part in _split(value):
        name, sep, val = part.strip().partition("=")
        if sep:
            yield name.strip().lower(), val.strip()


def server_digests(headers: Mapping[str, str], *, whole_body: bool) -> List[ServerDigest]:
    """The digests of the whole file that ``headers`` state, strongest first.

    ``whole_body``: the response's body is the entire file (a 200 answer to a GET, or a HEAD
    describing one); only then do content digests count.
    """
    found: Dict[str, ServerDigest] = {}

    def add(header: str, algo: str, hexed: Optional[str]) -> None:
        if hexed is not None and algo not in found:
            found[algo] = ServerDigest(header, algo, hexed)

    def get(name: str) -> str:
        return headers.get(name) or ""

    for key, val in _dictionary(get("Repr-Digest")):
        if key in _RFC9530:
            add("Repr-Digest", _RFC9530[key], _b64(val, _RFC9530[key]))
    for name, val in _pairs(get("Digest")):
        if name in _RFC3230:
            add("Digest", _RFC3230[name], _b64(val, _RFC3230[name]))
    for name, val in _pairs(get("x-goog-hash")):
        if name in _GOOG:
            add("x-goog-hash", _GOOG[name], _b64(val, _GOOG[name]))
    if whole_body:
        for key, val in _dictionary(get("Content-Digest")):
            if key in _RFC9530:
                add("Content-Digest", _RFC9530[key], _b64(val, _RFC9530[key]))
        if get("Content-MD5"):
            add("Content-MD5", "md5", _b64(get("Content-MD5"), "md5"))
        if get("x-amz-checksum-type").strip().upper() != "COMPOSITE":
            for name, algo in _AMZ.items():
                value = get(name)
                if value and "-" not in value:  # VALUE-PARTS: a checksum of part checksums
                    add(name, algo, _b64(value, algo))
    return sorted(found.values(), key=lambda d: STRENGTH.index(d.algo))


def strongest(digests: Iterable[ServerDigest], can_hash: Iterable[str]) -> Optional[ServerDigest]:
    """The strongest of ``digests`` whose algorithm is in ``can_hash``."""
    usable = set(can_hash)
    ordered = sorted(digests, key=lambda d: STRENGTH.index(d.algo))
    return next((d for d in ordered if d.algo in usable), None)
