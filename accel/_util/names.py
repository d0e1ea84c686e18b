"""Choosing a safe local file name from what the server or the URL suggests."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import unquote, urlsplit

#: Used when neither the URL nor the server suggests a usable name.
FALLBACK_NAME = "index.html"
_MAX_NAME_BYTES = 255
# Room for the ".part.json.tmp" suffix accel appends beside the file.
_SUFFIX_ROOM = len(".part.json.tmp")


def safe_name(raw: Optional[str]) -> Optional[str]:
    """Reduce a suggested name to one safe basename, or None if nothing usable remains.

    Directory parts (``/`` and ``\\``) are dropped, control characters and NUL rejected,
    ``.``/``..``/empty rejected, and the name is capped so that ``NAME.part.json.tmp`` still
    fits in 255 bytes.
    """
    if raw is None:
        return None
    name = re.split(r"[/\\]", raw)[-1].strip()
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return None
    if name in ("", ".", "..") or set(name) <= {"."}:
        return None
    limit = _MAX_NAME_BYTES - _SUFFIX_ROOM
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > limit:
        stem, dot, ext = name.rpartition(".")
        keep_ext = dot and 0 < len(ext.encode()) <= 16 and stem
        tail = ("." + ext).encode() if keep_ext else b""
        head = (stem if keep_ext else name).encode("utf-8", "surrogateescape")
        head = head[: limit - len(tail)].decode("utf-8", "ignore")
        name = head + tail.decode()
    return name or None


def name_from_url(url: str) -> str:
    """The percent-decoded last path segment of ``url``, made safe (fallback ``index.html``)."""
    path = urlsplit(url).path
    segment = path.rsplit("/", 1)[-1]
    return safe_name(unquote(segment)) or FALLBACK_NAME


def output_path(
    output: Optional[Path], directory: Optional[Path], name: Optional[str], url: str
) -> Path:
    """Where a download of ``url`` is saved, as far as it is known before the probe.

    ``output`` is the file asked for (relative to ``directory``; an existing directory
    means "inside it"), else the file is in ``directory`` (default: the current one);
    inside a directory it is named ``name`` (the server's), else after the URL.
    """
    base = directory or Path(".")
    if output is not None:
        if directory is not None and not output.is_absolute():
            output = directory / output
        if output.is_dir():
            return output / (name or name_from_url(url))
        return output
    return base / (name or name_from_url(url))


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'


def content_disposition_name(value: Optional[str]) -> Optional[str]:
    """The file name a Content-Disposition header suggests (RFC 6266), made safe, or None.

    ``filename*`` (RFC 8187, UTF-8 or ISO-8859-1) wins over ``filename``.
    """
    if not value:
        return None
    params: Dict[str, str] = {}
    for m in re.finditer(rf";\s*({_TOKEN})\s*=\s*({_QUOTED}|[^;]*)", ";" + value.split(";", 1)[-1]):
        key, val = m.group(1).lower(), m.group(2).strip()
        if val.startswith('"'):
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params.setdefault(key, val)
    if "filename*" in params:
        found = re.match(r"^([\w!#$%&+^`{}~-]+)'[^']*'(.*)$", params["filename*"])
        if found and found.group(1).lower() in ("utf-8", "iso-8859-1"):
            try:
                name = unquote(found.group(2), encoding=found.group(1).lower(), errors="strict")
            except (UnicodeDecodeError, LookupError):
                name = None
            safe = safe_name(name)
            if safe:
                return safe
    return safe_name(params.get("filename"))
