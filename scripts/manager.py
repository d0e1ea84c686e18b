"""A small download manager built on accel's public API only.

    python3 scripts/manager.py URL [URL ...] [-d DIR] [-j 3] [-n 4] [--limit-rate 10M]

A queue of URLs, a few Downloaders at once sharing one bandwidth limit, and one status line
per download, redrawn in place on a terminal (printed once per change otherwise).
Ctrl-C cancels everything; running it again resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import deque
from typing import Deque, Dict, List, Optional

import accel
from accel.limits import RateLimiter, parse_rate


def status_line(url: str, dl: accel.Downloader, error: Optional[BaseException]) -> str:
    """One line describing a download."""
    name = url.rstrip("/").rsplit("/", 1)[-1][:30]
    if error is not None:
        return f"{name:30} failed: {error}"
    if dl.done:
        return f"{name:30} done: {dl.path}"
    snap = dl.progress()
    if snap is None or not snap.total:
        return f"{name:30} starting"
    pct = 100 * snap.written / snap.total
    eta = f"{snap.eta:5.0f}s" if snap.eta is not None else "    ?"
    return (
        f"{name:30} {pct:5.1f}% {snap.rate / 2**20:7.1f} MiB/s eta {eta} "
        f"{snap.connections:2d} conn [{snap.segment_map}]"
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Download every URL, ``--jobs`` at a time; return 0 if all succeeded, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("-d", "--dir", default=".")
    parser.add_argument("-j", "--jobs", type=int, default=3)
    parser.add_argument("-n", "--connections", type=int, default=4)
    parser.add_argument("--limit-rate", type=parse_rate, default=None)
    args = parser.parse_args(argv)

    limiter = RateLimiter(args.limit_rate) if args.limit_rate else None
    queue: Deque[str] = deque(args.urls)
    downloads: Dict[str, accel.Downloader] = {}
    running: Dict[str, accel.Downloader] = {}
    finished: Dict[str, Optional[BaseException]] = {}
    order: List[str] = []
    tty = sys.stdout.isatty()
    drawn = 0
    last: Dict[str, str] = {}

    def stop(signum: int, frame: object) -> None:
        queue.clear()
        for dl in running.values():
            dl.cancel()

    signal.signal(signal.SIGINT, stop)
    while queue or running:
        while queue and len(running) < args.jobs:
            url = queue.popleft()
            try:
                running[url] = downloads[url] = accel.Downloader(
                    url, directory=args.dir, connections=args.connections, limit_rate=limiter
                ).start()
            except accel.AccelError as exc:
                finished[url] = exc
            order.append(url)
        for url, dl in list(running.items()):
            if dl.done:
                try:
                    dl.result()
                    finished[url] = None
                except accel.AccelError as exc:
                    finished[url] = exc
        lines = []
        for url in order:
            dl = downloads.get(url)
            error = finished.get(url)
            lines.append(status_line(url, dl, error) if dl else f"{url}: failed: {error}")
        if tty:
            sys.stdout.write("\x1b[F" * drawn + "".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        else:
            for url, line in zip(order, lines):
                if last.get(url) != line and (url in finished):
                    print(line)
                    last[url] = line
        sys.stdout.flush()
        for url in [u for u in running if u in finished]:
            del running[url]
        time.sleep(0.2)
    return 0 if all(e is None for e in finished.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
