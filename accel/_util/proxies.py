"""Proxy settings as curl names them: ``--proxy URL`` and ``--noproxy HOSTS``.

A leaf of the standard library only (checked before the network stack is imported).
:func:`proxy_url` normalises a proxy URL, :func:`noproxy_hosts` parses a no-proxy list and
:func:`bypasses` decides whether a host is reached directly.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import urllib.request
from typing import Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

from accel._util.urls import redact
from accel.exceptions import UsageError

__all__ = [
    "PROXY_SCHEMES",
    "SOCKS_SCHEMES",
    "bypasses",
    "check_socks_support",
    "noproxy_hosts",
    "proxy_url",
]

#: Proxy schemes accel speaks: HTTP (CONNECT for https URLs), HTTP over TLS, SOCKS5 with
#: local name resolution (``socks5``) or resolution by the proxy (``socks5h``).
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
SOCKS_SCHEMES = ("socks5", "socks5h")
#: curl's default proxy port when the URL names none (443 for an https proxy).
DEFAULT_PROXY_PORT = 1080


def proxy_url(text: str) -> str:
    """``text`` as a proxy URL: ``""`` (no proxy at all), or ``scheme://[user:pw@]host:port``.

    As in curl, a missing scheme means ``http://`` and a missing port 1080 (443 for
    ``https://``). Anything else is a :class:`UsageError` in accel's words.
    """
    if not isinstance(text, str):
        raise UsageError(f"proxy must be a URL, not {type(text).__name__}")
    text = text.strip()
    if not text:
        return ""
    if any(c.isspace() for c in text):
        raise UsageError(f"invalid proxy {redact(text)!r} (contains white space)")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    shown = redact(text)
    if scheme not in PROXY_SCHEMES:
        raise UsageError(
            f"unsupported proxy scheme {scheme!r} in {shown} (use http, https, socks5 or socks5h)"
        )
    if not parts.hostname:
        raise UsageError(f"invalid proxy {shown} (no host)")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in proxy {shown}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"invalid proxy {shown} (a proxy URL has no path)")
    netloc = parts.netloc
    if port is None:
        netloc = netloc.rstrip(":") + f":{443 if scheme == 'https' else DEFAULT_PROXY_PORT}"
    if scheme in SOCKS_SCHEMES:
        check_socks_support(shown)
    return urlunsplit((scheme, netloc, "", "", ""))


def check_socks_support(shown: str) -> None:
    """Raise :class:`UsageError` when a SOCKS proxy is asked for and PySocks is missing."""
    if importlib.util.find_spec("socks") is None:
        raise UsageError(f"the SOCKS proxy {shown} needs PySocks: pip install 'accel[socks]'")


def check_environment_proxies() -> None:
    """Raise :class:`UsageError` when the environment names a SOCKS proxy PySocks can't use."""
    for name, value in urllib.request.getproxies_environment().items():
        if name != "no" and urlsplit(value).scheme.lower().startswith("socks"):
            check_socks_support(f"{redact(value)} (from the environment)")


def noproxy_hosts(value: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """curl's ``--noproxy`` list as a tuple: comma-separated host names, domains (a leading
    dot is allowed and ignored), IP addresses or CIDR ranges; ``*`` matches every host; an
    empty list bypasses nothing (and so overrides ``NO_PROXY``)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    hosts = []
    for raw in items:
        if not isinstance(raw, str):
            raise UsageError("noproxy must be host names separated by commas")
        host = raw.strip().lower()
        if host.startswith("[") and "]" in host:  # [::1] or [::1]:port
            host = host[1 : host.index("]")]
        if host.count(":") == 1:  # name:port (curl ignores the port)
            host = host.split(":")[0]
        host = host.lstrip(".")
        if not host:
            continue
        if any(c.isspace() or c in "/@?#" for c in host.split("/", 1)[0]):
            raise UsageError(f"invalid host {raw.strip()!r} in noproxy")
        if "/" in host:
            try:
                host = str(ipaddress.ip_network(host, strict=False))
            except ValueError:
                raise UsageError(f"invalid address range {raw.strip()!r} in noproxy") from None
        else:
            host = _canonical(host)
        hosts.append(host)
    return tuple(hosts)


def bypasses(host: Optional[str], noproxy: Sequence[str]) -> bool:
    """Whether ``host`` is reached without the proxy under a :func:`noproxy_hosts` list.

    curl's rule: an entry matches the host itself and every name under it (``local.com``
    matches ``www.local.com``, not ``notlocal.com``); an IP address matches only itself or a
    CIDR range holding it.
    """
    if not host:
        return False
    host = _canonical(host.strip("[]").lower().rstrip("."))
    address = _address(host)
    for entry in noproxy:
        if entry == "*" or host == entry:
            return True
        if address is None:  # a name: the entry itself or any name under it
            if host.endswith("." + entry):
                return True
        elif "/" in entry:  # an address: only the same address or a range holding it
            try:
                if address in ipaddress.ip_network(entry):
                    return True
            except ValueError:
                continue
    return False


def _address(host: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _canonical(host: str) -> str:
    """An IP address in its canonical text form (``::0001`` is ``::1``); names unchanged."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host
