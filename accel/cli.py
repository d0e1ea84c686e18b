"""The ``accel`` command: a thin skin over :class:`accel.Downloader`.

``main(argv) -> int`` parses, runs and maps errors to exit codes in one place
(:data:`EXIT_CODES`); nothing here knows how downloading works.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Dict, List, Optional, Sequence, Type

from . import __version__
from .downloader import Downloader
from .exceptions import (
    AccelError,
    CancelledError,
    HTTPError,
    LocalFileError,
    NetworkError,
    UsageError,
    VerificationError,
)
from .progress import Reporter

log = logging.getLogger("accel")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NETWORK = 3
EXIT_HTTP = 4
EXIT_VERIFY = 5
EXIT_LOCAL = 6
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

#: The one map from error class to exit code (most specific class first wins by MRO).
EXIT_CODES: Dict[Type[BaseException], int] = {
    UsageError: EXIT_USAGE,
    NetworkError: EXIT_NETWORK,
    HTTPError: EXIT_HTTP,
    VerificationError: EXIT_VERIFY,
    LocalFileError: EXIT_LOCAL,
    CancelledError: EXIT_SIGINT,
    AccelError: EXIT_FAILURE,
}

EPILOG = """\
exit codes:
  0    success (or the file was already complete)
  1    other failure (e.g. the remote file kept changing)
  2    usage error (bad option, URL or header)
  3    network error after retries (DNS, refused, reset, timeout)
  4    HTTP error status (or a refused https->http redirect)
  5    verification failed (checksum mismatch)
  6    local file problem (cannot create or write, disk full, file in the way)
  130  interrupted by Ctrl-C (143 for SIGTERM); run the same command again to resume
"""


def exit_code_for(exc: BaseException) -> int:
    """The exit code for ``exc`` (see :data:`EXIT_CODES`)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_FAILURE


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _header(text: str) -> tuple:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists the exit codes)."""
    parser = _ArgumentParser(
        prog="accel",
        description="Download files fast with parallel HTTP range requests; resumable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "urls", nargs="+", metavar="URL", help="http:// or https:// URL to download"
    )
    parser.add_argument("--version", action="version", version=f"accel {__version__}")

    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE", help="write to FILE (one URL only)")
    out.add_argument(
        "-d", "--dir", metavar="DIR", help="save into DIR (default: current directory)"
    )
    out.add_argument(
        "--force", action="store_true", help="replace an existing file of the same name"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    out.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (repeat for debug)"
    )

    net = parser.add_argument_group("connections")
    net.add_argument(
        "-n",
        "--connections",
        type=_positive_int,
        default=8,
        metavar="N",
        help="parallel connections per file, 1..64 (default: 8)",
    )
    net.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="read timeout per connection (default: 30)",
    )
    net.add_argument(
        "--retries",
        type=_positive_int,
        default=5,
        metavar="N",
        help="retries of a failing range before giving up (default: 5)",
    )

    http = parser.add_argument_group("HTTP")
    http.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    http.add_argument("--user-agent", metavar="UA", help="User-Agent to send")
    http.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify TLS certificates"
    )
    http.add_argument(
        "--ca-bundle", metavar="FILE", help="verify TLS with the CA certificates in FILE"
    )
    return parser


class _Signals:
    """SIGINT/SIGTERM cancel the current download; a second Ctrl-C exits at once."""

    def __init__(self) -> None:
        self.downloader: Optional[Downloader] = None
        self.signum: Optional[int] = None
        self._old: Dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            # Second signal: leave now. The sidecar on disk is always a complete, valid record.
            sys.stderr.write("\naccel: interrupted again, exiting now\n")
            sys.stderr.flush()
            import os

            os._exit(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)
        self.signum = signum
        if self.downloader is not None:
            self.downloader.cancel()


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("accel: %(message)s"))
    root = logging.getLogger("accel")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.output and len(args.urls) > 1:
            raise UsageError("-o/--output needs exactly one URL (use -d for several)")
    except UsageError as exc:
        sys.stderr.write(f"accel: error: {exc}\n")
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    headers: List[tuple] = list(args.header)
    if args.user_agent:
        headers.append(("User-Agent", args.user_agent))
    verify: object = True
    if args.insecure:
        sys.stderr.write("accel: warning: TLS certificate verification is disabled (--insecure)\n")
        verify = False
    elif args.ca_bundle:
        verify = args.ca_bundle

    first_failure = EXIT_OK
    with _Signals() as signals:
        for url in args.urls:
            code = _download_one(url, args, headers, verify, signals)
            if code in (EXIT_SIGINT, EXIT_SIGTERM):
                return code
            if code != EXIT_OK and first_failure == EXIT_OK:
                first_failure = code
    return first_failure


def _download_one(
    url: str, args: argparse.Namespace, headers: List[tuple], verify: object, signals: _Signals
) -> int:
    reporter: Optional[Reporter] = None
    try:
        reporter = Reporter(
            sys.stderr,
            bar=sys.stderr.isatty(),
            quiet=args.quiet,
            snapshot=lambda: downloader.progress(),
        )
        downloader = Downloader(
            url,
            args.output,
            directory=args.dir,
            connections=args.connections,
            headers=dict(headers) if headers else None,
            timeout=args.timeout,
            retries=args.retries,
            force=args.force,
            verify=verify,  # type: ignore[arg-type]
            on_event=reporter.on_event,
            on_progress=reporter.on_progress,
        )
        signals.downloader = downloader
        downloader.run()
        return EXIT_OK
    except AccelError as exc:
        if reporter is not None:
            reporter.close()
        code = exit_code_for(exc)
        if isinstance(exc, CancelledError):
            if signals.signum == signal.SIGTERM:
                code = EXIT_SIGTERM
            sys.stderr.write(f"\naccel: {exc}\n")
        else:
            sys.stderr.write(f"accel: error: {exc}\n")
        return code
    finally:
        signals.downloader = None


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
