"""The ``accel`` command's options: the parser, its help text, and the config file merged in.

:func:`parse_args` is the one way in: the config file's settings come first, the command
line's win. Values are checked here with accel's own one-line errors (exit 2).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, List, Optional, Sequence, Tuple, Union

from accel._util.checksum import parse_checksum
from accel._util.proxies import noproxy_hosts, proxy_url
from accel._util.units import parse_size
from accel.cli.config import ConfigError, as_argv, config_path, read_config
from accel.exceptions import UsageError
from accel.limits import parse_rate
from accel.options import AUTO, AUTO_START, MAX_CONNECTIONS, Options, speed_limit
from accel.version import __version__

EPILOG = f"""\
examples:
  accel https://example.org/big.iso     8 connections, saves ./big.iso
  accel URL -n 16 -o disk.img           16 connections, saves disk.img
  accel URL -n auto                     as many connections as make it faster (up to 16)
  accel URL -o downloads/               saves into downloads/ (created) under its name
  accel -i urls.txt -j 3 -d downloads   a list of URLs, 3 files at a time
  accel --demo                          a local demonstration (needs no network)

progress on a terminal, one line per file (and a total line with -j):
  big.iso  42% |=====     | 84.0/200.0 MiB  12.5 MiB/s  ETA 0:09  8 conn [##>>..]
  segment map: '#' written, '>' in flight, '.' missing

sizes and rates: K, M, G mean KiB, MiB, GiB (powers of 1024); output uses the same
units (KiB, MiB/s).

exit codes:
  0    success (or the file was already complete)
  1    other failure (e.g. the remote file kept changing)
  2    usage error (bad option, URL, header or config file)
  3    network error after retries (DNS, refused, reset, timeout)
  4    HTTP error status (or a refused https->http redirect)
  5    verification failed (checksum or server digest mismatch, mirrors disagree)
  6    local file problem (cannot create or write, disk full, file in the way, locked,
       a missing directory)
  7    refused: the remote file is larger than --max-filesize
  130  interrupted by Ctrl-C (143 for SIGTERM); run the same command again to resume

config file: {config_path()} (or $ACCEL_CONFIG), lines of 'option = value'
"""

#: The library's defaults are the command line's (one place: accel.Options).
DEFAULTS = Options()

#: Long options that take no value (true/false in the config file).
_FLAGS = ("force", "quiet", "insecure", "fsync", "json", "no-server-digest", "no-netrc")
#: Long options that count (``verbose = 2`` in the config file means -vv).
_COUNTS = ("verbose",)
#: Long options the config file may not set.
_NOT_IN_CONFIG = ("help", "version", "output", "input-file", "demo")
#: Long options the config file may not set, with the reason given.
_REFUSED_IN_CONFIG = {"user": "keep credentials in ~/.netrc (or --netrc-file), not in the config"}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _type(convert: Any, what: str) -> Any:
    """An argparse ``type`` that says what is wrong once, in accel's words."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except UsageError as exc:  # accel's own message already names the value
            raise argparse.ArgumentTypeError(str(exc)) from None
        except ValueError as exc:
            reason = str(exc)
            if reason.startswith(("invalid literal", "could not convert")):  # int(), float()
                raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: {reason}") from None

    parse.__name__ = what
    return parse


def _int_in(low: int, high: int) -> Any:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return convert


def _connection_count(text: str) -> Union[int, str]:
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CONNECTIONS:
        raise ValueError(f"use a number from 1 to {MAX_CONNECTIONS}, or auto")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _header(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in name.strip() for c in " \t"):
        raise ValueError("expected 'Name: value'")
    return name.strip(), value.strip()


def _readable_file(text: str) -> str:
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise ValueError("not a readable file")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists the exit codes and the config file)."""
    p = _ArgumentParser(
        prog="accel",
        description="Download files fast with parallel HTTP range requests; resumable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="http:// or https:// URLs to download")
    p.add_argument("--version", action="version", version=f"accel {__version__}")
    p.add_argument(
        "--demo",
        action="store_true",
        help="show what accel does on a local server: 1 vs 8 connections, an interrupted "
        "and resumed download, a checksum (no network needed, about 10 s)",
    )

    g = p.add_argument_group("input and output")
    g.add_argument("-o", "--output", metavar="FILE", help="write to FILE (one URL only)")
    g.add_argument("-d", "--dir", metavar="DIR", help="save into DIR (default: current directory)")
    g.add_argument(
        "-i",
        "--input-file",
        metavar="FILE",
        help="read URLs from FILE ('-' for stdin), one per line; '#' comments; "
        "tab-separated URLs on one line are mirrors of one file",
    )
    g.add_argument("--force", action="store_true", help="replace an existing file of the same name")
    g.add_argument(
        "--fsync",
        action="store_true",
        help="flush the file to disk before naming it complete (safe against power loss)",
    )
    g.add_argument(
        "--checksum",
        type=_type(parse_checksum, "checksum"),
        metavar="ALGO=HEX",
        help="verify the file (any hashlib algorithm, e.g. sha256=...)",
    )
    g.add_argument(
        "--no-server-digest",
        dest="server_digest",
        action="store_false",
        help="do not check the digest the server states (Repr-Digest, Digest, Content-MD5, "
        "x-goog-hash, x-amz-checksum-*)",
    )
    g.add_argument(
        "--max-filesize",
        type=_type(parse_size, "size"),
        metavar="SIZE",
        help="refuse files larger than SIZE (K/M/G suffixes)",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g.add_argument(
        "--json",
        action="store_true",
        help="write one JSON object per event to stdout (start, progress, retry, done, "
        "error; see the README), no progress lines; messages stay on stderr",
    )
    g.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")

    g = p.add_argument_group("connections")
    g.add_argument(
        "-n",
        "--connections",
        type=_type(_connection_count, "connection count"),
        default=DEFAULTS.connections,
        metavar="N",
        help=f"parallel connections per file, 1..{MAX_CONNECTIONS}, or 'auto': start with "
        f"{AUTO_START}, add more while that makes it faster (default: {DEFAULTS.connections})",
    )
    g.add_argument(
        "--max-connections",
        type=_type(_int_in(1, MAX_CONNECTIONS), "connection cap"),
        default=DEFAULTS.max_connections,
        metavar="N",
        help=f"the most connections -n auto uses (default: {DEFAULTS.max_connections})",
    )
    g.add_argument(
        "-j",
        "--jobs",
        type=_type(_int_in(1, 64), "job count"),
        default=1,
        metavar="N",
        help="files downloaded at once (default: 1)",
    )
    g.add_argument(
        "--limit-rate",
        type=_type(parse_rate, "rate"),
        metavar="RATE",
        help="total bandwidth for all connections and files, e.g. 500K, 2M",
    )
    g.add_argument(
        "--timeout",
        type=_type(_positive, "timeout"),
        default=DEFAULTS.timeout,
        metavar="SECONDS",
        help=f"read timeout per connection (default: {DEFAULTS.timeout:g})",
    )
    g.add_argument(
        "--retries",
        type=_type(_int_in(0, 1000), "retry count"),
        default=DEFAULTS.retry.attempts,
        metavar="N",
        help=f"retries of a failing range before giving up (default: {DEFAULTS.retry.attempts})",
    )
    g.add_argument(
        "--speed-limit",
        type=_type(lambda text: speed_limit(text, "speed limit"), "speed limit"),
        default=DEFAULTS.low_speed_limit,
        metavar="BYTES",
        help="low-speed floor in bytes/s (K/M suffixes): a connection below it for "
        "--speed-time is replaced, a download below it stops with exit 3 "
        f"(default: {DEFAULTS.low_speed_limit}; 0: off)",
    )
    g.add_argument(
        "--speed-time",
        type=_type(_positive, "speed time"),
        default=DEFAULTS.low_speed_time,
        metavar="SECONDS",
        help=f"how long below --speed-limit counts as too slow "
        f"(default: {DEFAULTS.low_speed_time:g})",
    )
    g.add_argument(
        "--max-per-host",
        type=_type(_int_in(1, 1024), "connection cap"),
        metavar="N",
        help="at most N connections to one host, over all files at once",
    )
    g.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help="another URL serving the same file (repeatable)",
    )

    g = p.add_argument_group("HTTP")
    g.add_argument(
        "-H",
        "--header",
        action="append",
        type=_type(_header, "header"),
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    g.add_argument("--user-agent", metavar="UA", help="User-Agent to send")
    g.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    g.add_argument(
        "--ca-bundle",
        type=_type(_readable_file, "CA bundle"),
        metavar="FILE",
        help="verify TLS with the CA certificates in FILE",
    )
    _add_network_options(p)
    return p


def _user(text: str) -> Tuple[str, Optional[str]]:
    """``USER:PASSWORD`` split at the first colon; ``USER`` alone: the password is asked."""
    user, sep, password = text.partition(":")
    return user, (password if sep else None)


def _writable_file(text: str) -> str:
    parent = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ValueError("cannot write a file there")
    return text


def _add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("proxy, credentials and cookies")
    g.add_argument(
        "-x",
        "--proxy",
        type=_type(proxy_url, "proxy"),
        metavar="URL",
        help="use this proxy: http://, https://, socks5:// or socks5h:// (socks needs "
        "accel[socks]), user:password@ in the URL; no scheme means http://, no port 1080; "
        "'' for none (default: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY from the environment)",
    )
    g.add_argument(
        "--noproxy",
        type=_type(noproxy_hosts, "host list"),
        metavar="HOSTS",
        help="comma-separated hosts (with the names under them), addresses or CIDR ranges "
        "reached without the proxy; '*' for all (replaces NO_PROXY)",
    )
    g.add_argument(
        "-u",
        "--user",
        type=_type(_user, "user"),
        metavar="USER[:PASSWORD]",
        help="HTTP Basic credentials, sent only to the URL's origin (never after a redirect "
        "elsewhere); without :PASSWORD it is asked for on the terminal",
    )
    g.add_argument(
        "--netrc-file",
        type=_type(_readable_file, "netrc file"),
        metavar="FILE",
        help="read credentials per host from FILE instead of $NETRC or ~/.netrc",
    )
    g.add_argument(
        "--no-netrc",
        dest="netrc",
        action="store_false",
        help="use no netrc file (by default ~/.netrc is read as curl -n would)",
    )
    g.add_argument(
        "--load-cookies",
        type=_type(_readable_file, "cookies file"),
        metavar="FILE",
        help="send the cookies of FILE (Netscape cookies.txt, as curl -b, wget and aria2 "
        "write it) where their domain, path and secure flag match",
    )
    g.add_argument(
        "--save-cookies",
        type=_type(_writable_file, "cookies file"),
        metavar="FILE",
        help="write the cookies (loaded and set by the servers) to FILE at the end, as "
        "cookies.txt (curl -c)",
    )


def parse_args(argv: Sequence[str], parser: Optional[argparse.ArgumentParser] = None) -> Any:
    """Parse ``argv`` on top of the config file's defaults."""
    parser = parser or build_parser()
    known = {s[2:] for s in parser._option_string_actions if s.startswith("--")}
    config_argv: List[str] = []
    for entry in read_config():
        if entry.name in _REFUSED_IN_CONFIG:
            reason = _REFUSED_IN_CONFIG[entry.name]
            raise ConfigError(f"{entry.where()}: {entry.name!r} is not read from a file: {reason}")
        if entry.name not in known or entry.name in _NOT_IN_CONFIG:
            raise ConfigError(f"{entry.where()}: unknown option {entry.name!r}")
        args = as_argv(entry, _FLAGS, _COUNTS)
        try:
            parser.parse_args([*args, "http://check.invalid/"])
        except UsageError as exc:
            raise ConfigError(f"{entry.where()}: {exc}") from None
        config_argv += args
    parsed = parser.parse_args([*config_argv, *argv])
    if parsed.netrc_file and not parsed.netrc:
        raise UsageError("--netrc-file and --no-netrc contradict each other")
    return parsed
