"""The ``accel`` command: a thin skin over :class:`accel.Downloader`.

``main(argv) -> int`` parses, runs and maps errors to exit codes in one place
(:data:`EXIT_CODES`); nothing here knows how downloading works. Downloads run on their
own threads (``Downloader.start``); their callbacks only queue messages, and the main
thread alone draws progress and handles signals.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple, Type

import urllib3

from .config import ConfigError, as_argv, config_path, read_config
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
from .limits import parse_rate
from .manager import Manager
from .options import MAX_CONNECTIONS, Options
from .progress import Reporter, TotalBar
from .transport import check_url
from .verify import parse_checksum
from .version import __version__

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

#: The one map from error class to exit code (the most specific class in the MRO wins).
EXIT_CODES: Dict[Type[BaseException], int] = {
    UsageError: EXIT_USAGE,
    NetworkError: EXIT_NETWORK,
    HTTPError: EXIT_HTTP,
    VerificationError: EXIT_VERIFY,
    LocalFileError: EXIT_LOCAL,
    CancelledError: EXIT_SIGINT,
    AccelError: EXIT_FAILURE,
}

EPILOG = f"""\
exit codes:
  0    success (or the file was already complete)
  1    other failure (e.g. the remote file kept changing)
  2    usage error (bad option, URL, header or config file)
  3    network error after retries (DNS, refused, reset, timeout)
  4    HTTP error status (or a refused https->http redirect)
  5    verification failed (checksum mismatch, mirrors disagree)
  6    local file problem (cannot create or write, disk full, file in the way, locked)
  130  interrupted by Ctrl-C (143 for SIGTERM); run the same command again to resume

config file: {config_path()} (or $ACCEL_CONFIG), lines of 'option = value'
"""

#: The library's defaults are the command line's (one place: accel.Options).
DEFAULTS = Options()

#: Seconds to wait for downloads to save their state after Ctrl-C before exiting anyway.
SIGNAL_GRACE = 1.8

#: Long options that take no value (true/false in the config file).
_FLAGS = ("force", "quiet", "insecure", "fsync")
#: Long options that count (``verbose = 2`` in the config file means -vv).
_COUNTS = ("verbose",)
#: Long options the config file may not set.
_NOT_IN_CONFIG = ("help", "version", "output", "input-file")


def exit_code_for(exc: BaseException) -> int:
    """The exit code for ``exc`` (see :data:`EXIT_CODES`)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_FAILURE


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _type(convert: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, UsageError) as exc:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: {exc}") from None

    parse.__name__ = what
    return parse


def _int_in(low: int, high: int) -> Any:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return convert


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
        "--max-filesize",
        type=_type(parse_rate, "size"),  # the same K/M/G suffixes
        metavar="SIZE",
        help="refuse files larger than SIZE (K/M/G suffixes)",
    )
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")

    g = p.add_argument_group("connections")
    g.add_argument(
        "-n",
        "--connections",
        type=_type(_int_in(1, MAX_CONNECTIONS), "connection count"),
        default=DEFAULTS.connections,
        metavar="N",
        help=f"parallel connections per file, 1..{MAX_CONNECTIONS} "
        f"(default: {DEFAULTS.connections})",
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
    return p


def parse_args(argv: Sequence[str], parser: Optional[argparse.ArgumentParser] = None) -> Any:
    """Parse ``argv`` on top of the config file's defaults."""
    parser = parser or build_parser()
    known = {s[2:] for s in parser._option_string_actions if s.startswith("--")}
    config_argv: List[str] = []
    for entry in read_config():
        if entry.name not in known or entry.name in _NOT_IN_CONFIG:
            raise ConfigError(f"{entry.where()}: unknown option {entry.name!r}")
        args = as_argv(entry, _FLAGS, _COUNTS)
        try:
            parser.parse_args([*args, "http://check.invalid/"])
        except UsageError as exc:
            raise ConfigError(f"{entry.where()}: {exc}") from None
        config_argv += args
    return parser.parse_args([*config_argv, *argv])


@dataclass
class Job:
    """One file to download: a URL and its mirrors."""

    url: str
    mirrors: Tuple[str, ...] = ()


def read_jobs(args: Any, stdin: TextIO) -> List[Job]:
    """The downloads asked for: URLs on the command line, then those of ``-i``."""
    jobs = [Job(url) for url in args.urls]
    if args.input_file:
        try:
            if args.input_file == "-":
                text = stdin.read()
            else:
                with open(args.input_file, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read input file {args.input_file}: {exc}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                urls = [u for u in line.split("\t") if u.strip()]
                jobs.append(Job(urls[0].strip(), tuple(u.strip() for u in urls[1:])))
    if not jobs:
        raise UsageError("no URL given (pass URLs or -i FILE)")
    for job in jobs:
        for url in (job.url, *job.mirrors):
            check_url(url)
    if args.output and len(jobs) > 1:
        raise UsageError("-o/--output needs exactly one URL (use -d for several)")
    if args.mirror:
        if len(jobs) > 1:
            raise UsageError("--mirror needs exactly one URL (use tab-separated lines in -i)")
        jobs[0].mirrors += tuple(check_url(m) for m in args.mirror)
    return jobs


class _Signals:
    """SIGINT/SIGTERM cancel every running download; a second signal exits at once."""

    def __init__(self, on_signal: Any) -> None:
        self.signum: Optional[int] = None
        self.when = 0.0
        self._on_signal = on_signal
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            # Second signal: leave now. The sidecar on disk is always a complete, valid record.
            os.write(2, b"\naccel: interrupted again, exiting now\n")
            os._exit(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)
        self.signum = signum
        self.when = time.monotonic()
        self._on_signal()

    def elapsed(self) -> float:
        """Seconds since the first signal (0 before it)."""
        return time.monotonic() - self.when if self.signum is not None else 0.0


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("accel: %(message)s"))
    logger = logging.getLogger("accel")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
        jobs = read_jobs(args, sys.stdin)
    except UsageError as exc:
        sys.stderr.write(f"accel: error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print and "exit": return instead
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    _configure_logging(args.verbose, args.quiet)
    if args.insecure:
        sys.stderr.write("accel: warning: TLS certificate verification is disabled (--insecure)\n")
        # Said once here; urllib3 would repeat it for every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    try:
        runner = _Runner(args, jobs, sys.stderr)
    except UsageError as exc:
        sys.stderr.write(f"accel: error: {exc}\n")
        return EXIT_USAGE
    return runner.run()


class _Runner:
    """Feeds the jobs to a :class:`~accel.Manager`, ``-j`` at a time, and draws progress
    from the main thread only."""

    def __init__(self, args: Any, jobs: List[Job], stream: TextIO) -> None:
        self.args = args
        self.jobs = jobs
        self.stream = stream
        self.tty = stream.isatty()
        self.messages: queue.Queue[Tuple[int, str, Any]] = queue.Queue()
        self.active: Dict[int, Tuple[Downloader, Reporter]] = {}
        self.stopping = False
        headers = list(args.header)
        if args.user_agent:
            headers.append(("User-Agent", args.user_agent))
        self.manager = Manager(
            jobs=args.jobs,
            directory=args.dir,
            max_per_host=args.max_per_host,
            connections=args.connections,
            headers=headers,
            timeout=args.timeout,
            retries=args.retries,
            force=args.force,
            verify=False if args.insecure else (args.ca_bundle or True),
            checksum=args.checksum,
            limit_rate=args.limit_rate,
            max_filesize=args.max_filesize,
            fsync=args.fsync,
        )
        self.total: Optional[TotalBar] = None

    def _cancel_all(self) -> None:
        self.stopping = True
        self.manager.cancel()

    def _start(self, index: int, job: Job) -> Optional[int]:
        """Start job ``index``; return an exit code right away if it cannot even start."""
        put = self.messages.put
        try:
            downloader = self.manager.add(
                job.url,
                self.args.output,
                mirrors=job.mirrors,
                on_event=lambda e: put((index, "event", e)),
                on_progress=lambda n: put((index, "progress", n)),
            )
        except AccelError as exc:
            return self._failed(job, exc)
        reporter = Reporter(
            self.stream,
            bar=self.tty,
            quiet=self.args.quiet,
            snapshot=downloader.progress,
            position=len(self.active) + (1 if self.total else 0),
        )
        self.active[index] = (downloader, reporter)
        return None

    def _failed(self, job: Job, exc: BaseException) -> int:
        code = exit_code_for(exc)
        if isinstance(exc, CancelledError):
            self.stream.write(f"\naccel: {exc}\n")
        else:
            self.stream.write(f"accel: error: {exc}\n")
        self.stream.flush()
        return code

    def run(self) -> int:
        """Run every job; return the first failure's exit code (0 if none)."""
        first_failure = EXIT_OK
        if self.tty and len(self.jobs) > 1 and self.args.jobs > 1 and not self.args.quiet:
            self.total = TotalBar(self.stream, len(self.jobs))
        waiting = list(enumerate(self.jobs))
        with _Signals(self._cancel_all) as signals:
            while waiting or self.active:
                while waiting and len(self.active) < self.args.jobs and not self.stopping:
                    index, job = waiting.pop(0)
                    code = self._start(index, job)
                    if code is not None and first_failure == EXIT_OK:
                        first_failure = code
                if self.stopping:
                    waiting.clear()
                    if signals.elapsed() > SIGNAL_GRACE:
                        # A download stuck before its first byte (connecting, probing) cannot
                        # be woken; it has nothing to save, so leave without it.
                        break
                self._pump(timeout=0.1)
                for index in [i for i, (d, _) in self.active.items() if d.done]:
                    self._pump(timeout=0)
                    downloader, reporter = self.active.pop(index)
                    reporter.close()
                    try:
                        downloader.result()
                    except BaseException as exc:
                        code = self._failed(self.jobs[index], exc)
                        if isinstance(exc, CancelledError) and signals.signum == signal.SIGTERM:
                            code = EXIT_SIGTERM
                        if first_failure == EXIT_OK:
                            first_failure = code
                    if self.total is not None:
                        self.total.job_done()
        if self.total is not None:
            self.total.close()
        self.manager.close(wait=signals.signum is None)
        if signals.signum is not None:
            return EXIT_SIGTERM if signals.signum == signal.SIGTERM else EXIT_SIGINT
        return first_failure

    def _pump(self, timeout: float) -> None:
        """Deliver queued callbacks to the reporters (main thread only)."""
        try:
            item = self.messages.get(timeout=timeout) if timeout else self.messages.get_nowait()
        except queue.Empty:
            return
        while True:
            index, kind, payload = item
            entry = self.active.get(index)
            if entry is not None:
                reporter = entry[1]
                if kind == "event":
                    reporter.on_event(payload)
                else:
                    reporter.on_progress(payload)
                    if self.total is not None:
                        self.total.update(payload)
            try:
                item = self.messages.get_nowait()
            except queue.Empty:
                return


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
