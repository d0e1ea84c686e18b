"""The command line's batch runner: feed URLs to a :class:`~accel.Manager` and report.

The list of URLs (command line, then ``-i FILE``) is read lazily, so 100,000 lines start
at once and cost little memory: at most ``-j`` downloads exist at a time. The main thread
alone draws progress and handles signals; the downloads' callbacks only queue messages.
On a terminal the library's log records go through the same queue, so that they are printed
above the live progress lines instead of through them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, TextIO, Tuple, Union

from accel._util.names import name_from_url
from accel._util.units import human_rate, human_size
from accel._util.urls import check_url
from accel.cli.exitcodes import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, exit_code_for
from accel.cli.progress import Reporter, Screen, TotalBar
from accel.downloader import Downloader
from accel.exceptions import AccelError, CancelledError, UsageError
from accel.manager import Manager

#: Without a screen: downloads queued beyond the running ones, and the seconds between two
#: rounds of reporting (the Manager starts queued downloads itself).
AHEAD = 64
BATCH = 0.005
#: Seconds to wait for downloads to save their state after Ctrl-C before exiting anyway.
SIGNAL_GRACE = 1.8


@dataclass(frozen=True)
class Job:
    """One file to download: a URL and its mirrors (``where``: its place in the input)."""

    url: str
    mirrors: Tuple[str, ...] = ()
    where: str = ""


#: A job, or the error of an input line that is not one.
Entry = Union[Job, UsageError]


class JobList:
    """The downloads asked for, read lazily: URLs on the command line, then those of ``-i``.

    The command line and the first entries are checked at once (``-o`` and ``--mirror``
    need exactly one URL); a bad line further down an input file is reported when reached
    and the others go on. ``expected`` is the number of entries, counted without keeping
    them (None when reading a pipe).
    """

    def __init__(self, args: Any, stdin: TextIO) -> None:
        head: List[Entry] = [Job(check_url(url)) for url in args.urls]
        self.expected: Optional[int] = len(head)
        lines: Iterator[Entry] = iter(())
        if args.input_file:
            lines = self._read(args.input_file, stdin)
        self._entries = itertools.chain(head, lines)
        # Only -o and --mirror need to know there is no second URL (a pipe is not waited for).
        first = list(itertools.islice(self._entries, 2 if args.output or args.mirror else 1))
        if not first:
            raise UsageError("no URL given (pass URLs or -i FILE)")
        for entry in first:
            if isinstance(entry, UsageError):
                raise entry
        if args.output and len(first) > 1:
            raise UsageError("-o/--output needs exactly one URL (use -d for several)")
        if args.mirror:
            if len(first) > 1:
                raise UsageError("--mirror needs exactly one URL (use tab-separated lines in -i)")
            job = first[0]
            assert isinstance(job, Job)
            mirrors = tuple(check_url(m) for m in args.mirror)
            first[0] = Job(job.url, job.mirrors + mirrors, job.where)
        self._entries = itertools.chain(first, self._entries)

    def _read(self, name: str, stdin: TextIO) -> Iterator[Entry]:
        try:
            stream = stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
            if stream is not stdin and self.expected is not None:
                self.expected += _count_entries(name)
            else:
                self.expected = None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read input file {name}: {exc}") from None
        return self._parse(name, stream)

    @staticmethod
    def _parse(name: str, stream: TextIO) -> Iterator[Entry]:
        where = "stdin" if name == "-" else name
        try:
            for number, line in enumerate(stream, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                urls = [u.strip() for u in line.split("\t") if u.strip()]
                try:
                    for url in urls:
                        check_url(url)
                except UsageError as exc:
                    yield UsageError(f"{where}:{number}: {exc}")
                    continue
                yield Job(urls[0], tuple(urls[1:]), f"{where}:{number}")
        except (OSError, UnicodeDecodeError) as exc:
            yield UsageError(f"cannot read input file {where}: {exc}")
        finally:
            if name != "-":
                stream.close()

    def __iter__(self) -> Iterator[Entry]:
        return self._entries


class _QueueLines(logging.Handler):
    """A log handler that queues each formatted record for the main thread to print."""

    def __init__(self, messages: queue.Queue[Tuple[int, str, Any]], like: logging.Handler):
        super().__init__(like.level)
        self.messages = messages
        self.setFormatter(like.formatter)
        for f in like.filters:
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.put((0, "log", self.format(record)))
        except Exception:  # pragma: no cover - as logging.Handler does
            self.handleError(record)


def _count_entries(name: str) -> int:
    """Lines of ``name`` that name a URL (not blank, not a comment), without keeping them."""
    with open(name, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.lstrip().startswith("#"))


class Signals:
    """SIGINT/SIGTERM cancel every running download; a second signal exits at once."""

    def __init__(self, on_signal: Any) -> None:
        self.signum: Optional[int] = None
        self.when = 0.0
        self._on_signal = on_signal
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> Signals:
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


class Runner:
    """Feeds the jobs to a Manager, ``-j`` at a time, and reports from the main thread."""

    def __init__(self, args: Any, jobs: JobList, manager: Manager, stream: TextIO) -> None:
        self.args = args
        self.jobs = jobs
        self.manager = manager
        self.stream = stream
        self.tty = stream.isatty()
        self.messages: queue.Queue[Tuple[int, str, Any]] = queue.Queue()
        self.active: Dict[int, Tuple[Downloader, Reporter]] = {}
        self.stopping = False
        self.screen: Optional[Screen] = None
        if self.tty and not args.quiet:
            self.screen = Screen(stream)
        self.total: Optional[TotalBar] = None
        self.seen = self.ok = self.failed = 0
        self.first_failure = EXIT_OK

    def _cancel_all(self) -> None:
        self.stopping = True
        self.manager.cancel()

    def _start(self, index: int, job: Job) -> None:
        """Start job ``index`` (a failure to start is reported at once)."""
        put = self.messages.put
        quiet = self.args.quiet
        # Only what is shown is sent: no bar, no progress; -q, no events either.
        bars = self.tty and not quiet
        output, directory = self.args.output, None
        if output and output.endswith(("/", os.sep)):
            # "-o newdir/" is a directory, created as -d creates one; the server names the file.
            base = self.args.dir
            directory = os.path.join(base, output) if base else output
            output = None
        try:
            downloader = self.manager.add(
                job.url,
                output,
                directory=directory,
                mirrors=job.mirrors,
                on_event=None if quiet else (lambda e: put((index, "event", e))),
                on_progress=(lambda n: put((index, "progress", n))) if bars else None,
            )
        except AccelError as exc:
            self._failed(exc)
            return
        except RuntimeError:
            if not self.manager.cancelled:
                raise
            return  # Ctrl-C came while this thread was adding: the run is over
        reporter = Reporter(
            self.stream,
            bar=self.tty,
            quiet=self.args.quiet,
            snapshot=downloader.progress,
            label=self._label(job),
            screen=self.screen,
        )
        self.active[index] = (downloader, reporter)
        downloader.add_done_callback(lambda d: put((index, "done", None)))

    def _label(self, job: Job) -> str:
        """The name shown for ``job`` until the download knows its file's name."""
        output = self.args.output
        if output and not output.endswith(("/", os.sep)) and not os.path.isdir(output):
            return os.path.basename(str(output))
        return name_from_url(job.url)

    def _say(self, text: str) -> None:
        """Print a line (above the live progress lines on a terminal)."""
        if self.screen is not None:
            self.screen.message(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _failed(
        self, exc: BaseException, code: Optional[int] = None, reporter: Optional[Reporter] = None
    ) -> None:
        self.failed += 1
        if isinstance(exc, CancelledError):
            label = reporter.label if reporter is not None else "download"
            if reporter is None or reporter.resumable:
                self._say(f"accel: interrupted: {label}: run the same command again to resume")
            else:
                self._say(
                    f"accel: interrupted: {label}: the server cannot resume it, so the next "
                    "run starts over"
                )
        else:
            self._say(f"accel: error: {exc}")
        if self.first_failure == EXIT_OK:
            self.first_failure = exit_code_for(exc) if code is None else code

    def run(self) -> int:
        """Run every job; return the first failure's exit code (0 if none)."""
        started = time.monotonic()
        many = self.jobs.expected is None or self.jobs.expected > 1
        if self.screen is not None and many and self.args.jobs > 1:
            self.total = TotalBar(self.stream, self.jobs.expected, screen=self.screen)
        entries = iter(self.jobs)
        exhausted = False
        # Without lines to draw, the next downloads wait in the Manager's queue, so a job
        # thread (or the small-files loop) that finishes one starts the next at once, and
        # this thread wakes at most every BATCH seconds to report and refill (waking for
        # each file would take the interpreter's lock from the loop thousands of times a
        # second).
        ahead = self.args.jobs * 2 if self.screen is not None else self.args.jobs + AHEAD
        batch = 0.0 if self.screen is not None else BATCH
        with Signals(self._cancel_all) as signals, self._logs_above():
            while True:
                while not (exhausted or self.stopping) and len(self.active) < ahead:
                    entry = next(entries, None)
                    if entry is None:
                        exhausted = True
                    elif isinstance(entry, UsageError):
                        self.seen += 1
                        self._failed(entry)
                        self._count_done()
                    else:
                        self.seen += 1
                        self._start(self.seen, entry)
                        self._count_done()
                if not self.active and (exhausted or self.stopping):
                    break
                if self.stopping and signals.elapsed() > SIGNAL_GRACE:
                    # A download stuck before its first byte (connecting, probing) cannot
                    # be woken; it has nothing to save, so leave without it.
                    break
                self._pump(timeout=0.1)
                if batch and not self.stopping:
                    time.sleep(batch)
                self._collect(signals)
                for _, reporter in self.active.values():
                    reporter.tick()
                if self.screen is not None:
                    self.screen.refresh()
        if self.total is not None:
            self.total.close()
        if self.screen is not None:
            self.screen.close()
        self.manager.close(wait=signals.signum is None)
        if signals.signum is not None:
            return EXIT_SIGTERM if signals.signum == signal.SIGTERM else EXIT_SIGINT
        if self.seen > 1 and not self.args.quiet:
            self._summary(time.monotonic() - started)
        return self.first_failure

    def _collect(self, signals: Signals) -> None:
        """Report the downloads that ended."""
        for index in [i for i, (d, _) in self.active.items() if d.done]:
            self._pump(timeout=0)
            downloader, reporter = self.active.pop(index)
            reporter.close()
            error = downloader.exception()
            if error is None:
                self.ok += 1
            else:
                sigterm = isinstance(error, CancelledError) and signals.signum == signal.SIGTERM
                self._failed(error, EXIT_SIGTERM if sigterm else None, reporter)
            self._count_done()

    @contextlib.contextmanager
    def _logs_above(self) -> Iterator[None]:
        """On a terminal, send the ``accel`` logger's terminal output through the queue, to
        be printed above the progress lines by the main thread."""
        logger = logging.getLogger("accel")
        if self.screen is None:
            yield
            return
        saved = list(logger.handlers)
        swapped: List[logging.Handler] = []
        for handler in saved:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and stream in (self.stream, sys.stderr):
                swapped.append(_QueueLines(self.messages, handler))
            else:
                swapped.append(handler)
        logger.handlers[:] = swapped
        try:
            yield
        finally:
            logger.handlers[:] = saved

    def _count_done(self) -> None:
        if self.total is not None:
            queued = None if self.jobs.expected is None else self.jobs.expected - self.seen
            self.total.files(self.ok, self.failed, len(self.active), queued)

    def _summary(self, elapsed: float) -> None:
        received = self.manager.progress().received
        rate = received / elapsed if elapsed > 0 else 0.0
        self._say(
            f"accel: {self.seen} files: {self.ok} ok, {self.failed} failed; "
            f"{human_size(received)} in {elapsed:.1f}s ({human_rate(rate)})"
        )

    def _pump(self, timeout: float) -> None:
        """Deliver queued callbacks to the reporters (main thread only)."""
        try:
            item = self.messages.get(timeout=timeout) if timeout else self.messages.get_nowait()
        except queue.Empty:
            return
        while True:
            index, kind, payload = item
            if kind == "log":
                self._say(payload)
            entry = self.active.get(index)
            if entry is not None:
                reporter = entry[1]
                if kind == "event":
                    reporter.on_event(payload)
                elif kind == "progress":
                    reporter.on_progress(payload)
                    if self.total is not None:
                        self.total.update(payload)
            try:
                item = self.messages.get_nowait()
            except queue.Empty:
                return
