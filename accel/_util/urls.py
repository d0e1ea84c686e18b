"""URLs as accel checks and shows them: absolute http(s) only, credentials never shown.

A leaf of the standard library only, so the command line can check its input before the
network stack is imported.
"""

from __future__ import annotations

from typing import Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from accel.exceptions import UsageError

__all__ = ["Origin", "check_url", "origin", "redact"]


def redact(url: str) -> str:
    """``url`` without any ``user:password@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL, else raise :class:`UsageError`."""
    if not isinstance(url, str) or any(c in url for c in "\r\n\t "):
        raise UsageError(f"invalid URL (contains white space): {redact(str(url))!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid URL (need http:// or https://): {redact(url)}")
    try:
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise UsageError(f"invalid port in URL: {redact(url)}") from None
    return url


Origin = Tuple[str, str, Optional[int]]


def origin(url: str) -> Origin:
    """(scheme, host, port) of ``url`` with default ports filled in."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port
