"""What the server says about the remote file: size, validators, range support, name.

Everything here reads response headers; nothing writes. :func:`check_partial` is the gate
every ranged response passes before a byte of it is written.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from accel._util.digests import ServerDigest, server_digests
from accel._util.names import content_disposition_name

_MAX_SIZE = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_UNSATISFIED = re.compile(r"bytes \*/([0-9]{1,19})")


class Retryable(Exception):
    """A failure that leaves nothing wrong on disk; the range may be fetched again."""

    def __init__(
        self, message: str, *, retry_after: Optional[float] = None, status: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: The HTTP status when the server answered with a retryable error status.
        self.status = status


class BadResponse(Retryable):
    """A response that cannot be trusted for the requested range (nothing of it is written)."""


class TotalMismatch(BadResponse):
    """A response with the same strong ETag but another complete length than planned."""


class RemoteChanged(Exception):
    """The remote file is not the one being downloaded any more."""


class RangesUnsupported(Exception):
    """The server does not serve this file in ranges; download it as one stream."""


def parse_length(value: Optional[str]) -> Optional[int]:
    """A Content-Length: plain digits below 2**63, else None."""
    if value is None:
        return None
    value = value.strip()
    if not _DIGITS.fullmatch(value):
        return None
    n = int(value)
    return n if n <= _MAX_SIZE else None


def content_length(headers: Mapping[str, str]) -> Optional[int]:
    """The Content-Length of a response: None when absent, :class:`BadResponse` when invalid.

    An invalid length (anything but plain digits below 2**63, or several different
    values) makes the message framing unreliable (RFC 9112, section 6.3).
    """
    value = headers.get("Content-Length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    length = parse_length(values.pop()) if len(values) == 1 else None
    if length is None:
        raise BadResponse(f"invalid Content-Length {value!r}")
    return length


def parse_content_range(value: Optional[str]) -> Optional[Tuple[int, int, Optional[int]]]:
    """``bytes a-b/N`` -> (a, b, N); ``N`` may be ``*`` (None). None if malformed."""
    if value is None:
        return None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if (
        end < start
        or end > _MAX_SIZE
        or (total is not None and (end >= total or total > _MAX_SIZE))
    ):
        return None
    return start, end, total


def unsatisfied_total(value: Optional[str]) -> Optional[int]:
    """The complete length in a 416's ``Content-Range: bytes */N``, else None."""
    if value is None:
        return None
    m = _UNSATISFIED.fullmatch(value.strip())
    if not m:
        return None
    n = int(m.group(1))
    return n if n <= _MAX_SIZE else None


def is_strong(etag: Optional[str]) -> bool:
    """True for a strong entity tag (``"..."``, not ``W/"..."``)."""
    return etag is not None and len(etag) >= 2 and etag.startswith('"') and etag.endswith('"')


def parse_retry_after(
    value: Optional[str], *, cap: float, now: Optional[float] = None
) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return min(float(value), cap)
    import email.utils  # loaded by http.client anyway; not needed to start the command

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, delay), cap)


def http_date_to_timestamp(value: Optional[str]) -> Optional[float]:
    """A Last-Modified header as a POSIX timestamp, or None."""
    if not value:
        return None
    import email.utils

    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def opaque_tag(etag: str) -> str:
    """An entity tag without its weakness indicator ``W/`` (for a weak comparison)."""
    return etag[2:] if etag.startswith("W/") else etag


def strong_date(last_modified: Optional[str], date: Optional[str]) -> bool:
    """Whether ``last_modified`` is a strong validator (RFC 9110, section 8.8.2.2).

    Only when it is at least a second older than the ``Date`` of the same response: a file
    modified within the last second (or with an mtime ahead of the server's clock) may
    change again with the same date. Without a ``Date`` nothing can be deduced.
    """
    modified = http_date_to_timestamp(last_modified)
    now = http_date_to_timestamp(date)
    return modified is not None and now is not None and modified <= now - 1


@dataclass(frozen=True)
class Validators:
    """What identifies one version of the remote file.

    ``strong_date`` tells whether ``last_modified`` is a strong validator; it is True for
    validators read back from a sidecar (only strong ones are ever resumed from).
    """

    size: Optional[int]
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    strong_date: bool = True

    @property
    def if_range(self) -> Optional[str]:
        """The ``If-Range`` value: the strong ETag, else a strong Last-Modified, else None.

        RFC 9110, section 13.1.5: never a weak ETag, and a date only when it is strong.
        """
        if is_strong(self.etag):
            return self.etag
        if self.strong_date:
            return self.last_modified
        return None

    @property
    def resumable(self) -> bool:
        """Whether a later run may trust bytes written for this version."""
        return self.size is not None and self.if_range is not None

    def same_version(self, other: Validators) -> bool:
        """Whether ``other`` (from a new response) describes the same version.

        Sizes must match. Two strong ETags must be equal. Other ETags are compared weakly
        (``W/"x"`` matches ``"x"``: Apache strengthens a tag a second after a change) and
        may say "changed", never "the same": the dates must then match too, unless one of
        them is weak (a date that may be "now" says nothing). Without ETags on both sides
        the dates must match when both have one.
        """
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        if is_strong(self.etag) and is_strong(other.etag):
            return self.etag == other.etag
        if self.etag and other.etag:
            if opaque_tag(self.etag) != opaque_tag(other.etag):
                return False
            if not (self.strong_date and other.strong_date):
                return True
        if self.last_modified and other.last_modified:
            return self.last_modified == other.last_modified
        return True


def validators_of(headers: Mapping[str, str], size: Optional[int]) -> Validators:
    """Validators from a response's headers (its ``Date`` tells if Last-Modified is strong)."""
    last_modified = headers.get("Last-Modified")
    return Validators(
        size,
        headers.get("ETag"),
        last_modified,
        strong_date(last_modified, headers.get("Date")),
    )


@dataclass(frozen=True)
class RemoteFile:
    """The result of probing the URL."""

    url: str
    validators: Validators
    ranges: bool
    filename: Optional[str]
    #: What the server said the whole file's digests are, strongest first.
    digests: Tuple[ServerDigest, ...] = ()

    @property
    def size(self) -> Optional[int]:
        """Size in bytes, None when the server does not say."""
        return self.validators.size


def check_partial(
    status: int,
    headers: Mapping[str, str],
    start: int,
    end: Optional[int],
    expected: Optional[Validators],
) -> int:
    """Check a response to ``Range: bytes=start-end`` (``end`` None: open-ended).

    Returns the complete length. Raises :class:`RangesUnsupported` for a 200 or an encoded
    206, :class:`RemoteChanged` when the validators or the total differ from ``expected``,
    and :class:`BadResponse` for a 206 that does not describe exactly the requested range.
    """
    if status == 200:
        raise RangesUnsupported("the server answered 200 to a Range request")
    if status != 206:
        raise BadResponse(f"unexpected status {status}")
    ctype = headers.get("Content-Type", "")
    if ctype.lower().startswith("multipart/"):
        raise BadResponse("multipart/byteranges answer to a single range request")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RangesUnsupported(f"ranged response is encoded ({encoding})")
    parsed = parse_content_range(headers.get("Content-Range"))
    if parsed is None:
        raise BadResponse(f"bad Content-Range {headers.get('Content-Range')!r}")
    got_start, got_end, total = parsed
    if total is None:
        raise BadResponse("Content-Range without a complete length")
    if expected is not None:
        seen = validators_of(headers, total)
        if not expected.same_version(seen):
            if is_strong(expected.etag) and expected.etag == seen.etag:
                # The same strong ETag with another size: a lying response, not a new file.
                raise TotalMismatch(f"Content-Range total {total} for a file of {expected.size}")
            raise RemoteChanged(
                f"size {expected.size} -> {total}, ETag {expected.etag} -> {seen.etag}"
            )
    want_end = (total - 1) if end is None else min(end, total - 1)
    if (got_start, got_end) != (start, want_end):
        raise BadResponse(
            f"asked for bytes {start}-{want_end}, got Content-Range {headers.get('Content-Range')}"
        )
    length = content_length(headers)
    if length is not None and length != got_end - got_start + 1:
        raise BadResponse("Content-Length does not match Content-Range")
    return total


def describe(
    url: str,
    headers: Mapping[str, str],
    total: Optional[int],
    *,
    ranges: bool,
    whole_body: bool = False,
) -> RemoteFile:
    """A :class:`RemoteFile` from the probe response (``ranges``: the server honours Range;
    ``whole_body``: the response is a 200 or a HEAD, whose body is or would be the file)."""
    return RemoteFile(
        url=url,
        validators=validators_of(headers, total),
        ranges=ranges,
        filename=content_disposition_name(headers.get("Content-Disposition")),
        digests=tuple(server_digests(headers, whole_body=whole_body)),
    )
