#!/usr/bin/env python3
"""Serve a file, or every file in a directory, over HTTP on loopback to try accel locally.

Usage::

    python scripts/serve.py PATH [--port 8000] [--rate 1M] [--host 127.0.0.1]

Files are served by name (``/NAME``) with Range support by the test suite's FaultServer.
``--rate`` is a per-connection throttle in bytes/s with optional K/M/G suffix (1024-based).
Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server import FaultServer

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_rate(text: str) -> float:
    """Parse a rate such as ``500K``, ``1.5M`` or ``2G`` (1024-based) into bytes/s."""
    match = _RATE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r} (examples: 800K, 1.5M, 2G)")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate must be positive, not {text!r}")
    return value


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def collect_files(path: Path) -> List[Tuple[str, Path]]:
    """Map URL paths to files: the file itself, or each regular file directly in a directory."""
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")
    return [("/" + urllib.parse.quote(p.name), p) for p in candidates]


def _format_rate(rate: Optional[float]) -> str:
    if rate is None:
        return "unlimited"
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if rate >= factor:
            return f"{rate / factor:g}{unit}/s per connection"
    return f"{rate:g} B/s per connection"


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="serve.py",
        description="Serve a file or every file in a directory on loopback (Range support).",
    )
    parser.add_argument("path", type=Path, help="file or directory to serve")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any)")
    parser.add_argument(
        "--rate", type=parse_rate, default=None, help="per-connection limit, e.g. 800K, 1M, 2G"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until Ctrl-C; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not is_loopback_host(args.host):
        print(f"serve.py: error: refusing non-loopback host {args.host!r}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"serve.py: error: invalid port {args.port}", file=sys.stderr)
        return 2
    try:
        files = collect_files(args.path)
    except OSError as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"serve.py: error: no files in {args.path}", file=sys.stderr)
        return 2

    server = FaultServer(args.host, args.port)
    for url_path, fs_path in files:
        server.add_path(url_path, fs_path)
    server.faults.rate = args.rate
    try:
        server.start()
    except OSError as exc:
        print(f"serve.py: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        for url_path, _ in files:
            print(server.url(url_path), flush=True)
        print(f"rate: {_format_rate(args.rate)}; press Ctrl-C to stop", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
