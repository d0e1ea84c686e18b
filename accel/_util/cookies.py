"""Netscape ``cookies.txt`` files, as curl (``-b``/``-c``), wget and aria2 read and write them.

The standard library's :class:`http.cookiejar.MozillaCookieJar` drops what these tools
write for a session cookie (expiry ``0``), rejects wget's header line, and knows
``#HttpOnly_`` lines only from Python 3.10 on; :class:`CookiesTxt` reads and writes the
format as the tools do. Matching a cookie to a request (domain, path, secure flag, expiry)
is the standard library's :class:`~http.cookiejar.DefaultCookiePolicy`.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import ipaddress
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Dict, List, Optional, Union

from accel.exceptions import UsageError

__all__ = ["CookiesTxt", "load_cookies", "save_cookies"]

HTTPONLY_PREFIX = "#HttpOnly_"
HEADER = "# Netscape HTTP Cookie File\n# Written by accel; curl, wget and aria2 read this file.\n\n"
#: The standard library files a cookie of a dotless host (``localhost``) under ``HOST.local``.
_DOTLESS = ".local"


class CookiesTxt(http.cookiejar.MozillaCookieJar):
    """A cookie jar loaded from and saved to a Netscape ``cookies.txt`` file.

    Session cookies (expiry ``0`` or empty) are kept on load and written with expiry ``0``;
    ``#HttpOnly_`` lines keep their flag both ways; the first line need not be the Netscape
    header (wget writes another). A malformed line is a
    :class:`http.cookiejar.LoadError` naming the file and line.
    """

    def _really_load(
        self, f: IO[str], filename: str, ignore_discard: bool, ignore_expires: bool
    ) -> None:
        now = int(time.time())
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            rest: Dict[str, str] = {}
            if line.startswith(HTTPONLY_PREFIX):
                rest["HttpOnly"] = ""
                line = line[len(HTTPONLY_PREFIX) :]
            if not line.strip() or line.lstrip().startswith(("#", "$")):
                continue
            cookie = _parse_line(line, rest, f"{filename}:{number}")
            if not ignore_discard and cookie.discard:
                continue
            if not ignore_expires and cookie.is_expired(now):
                continue
            self.set_cookie(cookie)

    def save(
        self,
        filename: Optional[str] = None,
        ignore_discard: bool = True,
        ignore_expires: bool = False,
    ) -> None:
        """Write the jar (session cookies too, by default) to ``filename`` atomically, 0600."""
        path = filename if filename is not None else self.filename
        if path is None:
            raise ValueError("no file name for the cookies")
        now = int(time.time())
        with self._cookies_lock:  # type: ignore[attr-defined]
            cookies = list(self)
        lines = [
            _format_line(c)
            for c in cookies
            if (ignore_discard or not c.discard) and (ignore_expires or not c.is_expired(now))
        ]
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".cookies.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(HEADER + "".join(lines))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _parse_line(line: str, rest: Dict[str, str], where: str) -> http.cookiejar.Cookie:
    fields = line.split("\t")
    if len(fields) == 6:  # no value
        fields.append("")
    if len(fields) != 7:
        raise http.cookiejar.LoadError(f"{where}: expected 7 tab-separated fields")
    domain, flag, path, secure, expires, name, value = fields
    expires = expires.strip()
    expiry: Optional[int] = None
    if expires not in ("", "0"):
        try:
            expiry = int(expires)
        except ValueError:
            raise http.cookiejar.LoadError(f"{where}: invalid expiry {expires!r}") from None
    domain = domain.strip().lower()
    if not domain:
        raise http.cookiejar.LoadError(f"{where}: no domain")
    specified = flag.strip().upper() == "TRUE" or domain.startswith(".")
    if specified and not domain.startswith("."):
        domain = "." + domain
    elif not specified and "." not in domain and not _is_ip(domain):
        domain += _DOTLESS
    cookie_value: Optional[str] = value
    if name == "":  # curl writes 'Set-Cookie: foo' with an empty name
        name, cookie_value = value, None
    return http.cookiejar.Cookie(
        0,
        name,
        cookie_value,
        None,
        False,
        domain,
        specified,
        domain.startswith("."),
        path or "/",
        False,
        secure.strip().upper() == "TRUE",
        expiry,
        expiry is None,
        None,
        None,
        rest,
    )


def _format_line(cookie: http.cookiejar.Cookie) -> str:
    domain = cookie.domain
    stem = domain[: -len(_DOTLESS)]
    if not cookie.domain_specified and domain.endswith(_DOTLESS) and stem and "." not in stem:
        domain = stem
    if any(cookie.has_nonstandard_attr(n) for n in ("HttpOnly", "HTTPOnly", "httponly")):
        domain = HTTPONLY_PREFIX + domain
    name, value = (cookie.name, cookie.value) if cookie.value is not None else ("", cookie.name)
    fields = [
        domain,
        "TRUE" if cookie.domain.startswith(".") else "FALSE",
        cookie.path,
        "TRUE" if cookie.secure else "FALSE",
        str(int(cookie.expires)) if cookie.expires is not None else "0",
        name,
        value,
    ]
    return "\t".join(fields) + "\n"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def load_cookies(path: Union[str, os.PathLike[str]]) -> CookiesTxt:
    """The cookies of the file at ``path``; a missing or malformed file is a UsageError."""
    jar = CookiesTxt(os.fspath(path))
    try:
        jar.load(ignore_discard=True, ignore_expires=False)
    except http.cookiejar.LoadError as exc:
        raise UsageError(f"invalid cookies file {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"invalid cookies file {os.fspath(path)}: not text") from None
    except OSError as exc:
        raise UsageError(
            f"cannot read cookies file {os.fspath(path)}: {exc.strerror or exc}"
        ) from None
    return jar


def save_cookies(jar: http.cookiejar.CookieJar, path: Union[str, os.PathLike[str]]) -> int:
    """Write the cookies of ``jar`` to ``path`` as cookies.txt; return how many."""
    out = jar if isinstance(jar, CookiesTxt) else CookiesTxt()
    if out is not jar:
        with jar._cookies_lock:  # type: ignore[attr-defined]
            cookies: List[http.cookiejar.Cookie] = list(jar)
        for cookie in cookies:
            out.set_cookie(cookie)
    out.save(os.fspath(path))
    return len(out)
