"""A small download manager: a thin layer over ``accel.Manager`` (public API only).

    python3 scripts/manager.py URL [URL ...] [-d DIR] [-j 3] [-n 4] [--limit-rate 10M]

A few downloads at once sharing one bandwidth limit and keep-alive connections, one status
line per download, redrawn in place on a terminal (printed once when it ends otherwise).
Ctrl-C cancels everything; running it again resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

import accel


def status_line(dl: accel.Downloader) -> str:
    """One line describing a download."""
    name = dl.url.rstrip("/").rsplit("/", 1)[-1][:30]
    if dl.done:
        error = dl.exception()
        return f"{name:30} failed: {error}" if error else f"{name:30} done: {dl.path}"
    snap = dl.progress()
    if snap is None or not snap.total:
        return f"{name:30} waiting"
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
    parser.add_argument("--limit-rate", default=None, help="e.g. 500K, 10M (one total budget)")
    args = parser.parse_args(argv)

    tty = sys.stdout.isatty()
    failed = False
    with accel.Manager(
        jobs=args.jobs,
        directory=args.dir,
        connections=args.connections,
        limit_rate=args.limit_rate,
    ) as manager:
        signal.signal(signal.SIGINT, lambda signum, frame: manager.cancel())
        downloads = []
        for url in args.urls:
            try:
                downloads.append(manager.add(url))
            except accel.AccelError as exc:
                print(f"{url}: failed: {exc}")
                failed = True
        drawn = 0
        printed = set()
        while True:
            finished = manager.wait(timeout=0.2)
            if tty:
                lines = [status_line(dl) for dl in downloads]
                sys.stdout.write("\x1b[F" * drawn + "".join(f"\x1b[2K{x}\n" for x in lines))
                drawn = len(lines)
            else:
                for i, dl in enumerate(downloads):
                    if dl.done and i not in printed:
                        print(status_line(dl))
                        printed.add(i)
            sys.stdout.flush()
            if finished:
                break
    failed = failed or any(dl.exception() is not None for dl in downloads)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
