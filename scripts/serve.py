#!/usr/bin/env python3
"""Serve a file, or every file in a directory, over HTTP on loopback to try accel locally.

Usage::

    python3 scripts/serve.py PATH [--port 8000] [--rate 1M] [--host 127.0.0.1]

with accel installed (``pip install .``), or ``python3 -m scripts.serve ...`` from the repository.

A thin command line over :class:`accel.cli.demo.DemoServer` (ranges, strong validators, a
per-connection throttle). ``--rate`` is bytes/s per connection with an optional K/M/G suffix
(powers of 1024). Runs until Ctrl-C. ``accel --demo`` does all of this by itself.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from accel._util.units import human_rate, parse_size
from accel.cli.demo import DemoServer
from accel.exceptions import UsageError


def parse_rate(text: str) -> int:
    """``500K`` -> 512000 bytes/s (K/M/G are powers of 1024)."""
    try:
        return parse_size(text, "rate")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def collect_files(path: Path) -> List[Path]:
    """The file itself, or each regular file directly in a directory."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    raise FileNotFoundError(f"no such file or directory: {path}")


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
    try:
        server = DemoServer(args.host, args.port, rate=args.rate)
    except OSError as exc:
        print(f"serve.py: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    with server:
        for path in files:
            print(server.add(path), flush=True)
        rate = f"{human_rate(args.rate)} per connection" if args.rate else "unlimited"
        print(f"rate: {rate}; press Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
