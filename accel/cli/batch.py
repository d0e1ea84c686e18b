"""The command line's batch runner: feed URLs to a :class:`~accel.Manager` and report.

The list of URLs (command line, then ``-i FILE``) is read lazily, so 100,000 lines start
at once and cost little memory: at most ``-j`` downloads exist at a time. The main thread
alone draws progress and handles signals; the downloads' callbacks only queue messages.
On a terminal the library's log records go through the same queue, so that they are printed
above the live progress lines instead of through them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, TextIO, Tuple

from accel._util.names import name_from_url
from accel._util.units import human_rate, human_size
from accel._util.urls import redact
from accel.cli.exitcodes import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, exit_code_for
from accel.cli.inputfile import Job, JobList
from accel.cli.ndjson import EventStream
from accel.cli.progress import Reporter, TotalBar, new_screen
from accel.downloader import Downloader
from accel.exceptions import AccelError, CancelledError, UsageError
from accel.manager import Manager
from accel.options import normalize_headers

if TYPE_CHECKING:
    from accel.cli.screen import Screen

#: Without a screen: downloads queued beyond the running ones, and the seconds between two
#: rounds of reporting (the Manager starts queued downloads itself).
AHEAD = 64
BATCH = 0.005
#: Seconds to wait for downloads to save their state after Ctrl-C before exiting anyway.
SIGNAL_GRACE = 1.8


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

    def __init__(
        self,
        args: Any,
        jobs: JobList,
        manager: Manager,
        stream: TextIO,
        out: Optional[TextIO] = None,
    ) -> None:
        self.args = args
        self.jobs = jobs
        self.manager = manager
        self.stream = stream
        #: ``--json``: the events on ``out`` (stdout), and no live lines on ``stream``.
        self.json = EventStream(out or sys.stdout) if getattr(args, "json", False) else None
        self.tty = stream.isatty() and self.json is None
        self.messages: queue.Queue[Tuple[int, str, Any]] = queue.Queue()
        self.active: Dict[int, Tuple[Downloader, Reporter]] = {}
        self.stopping = False
        self.screen: Optional[Screen] = None
        if self.tty and not args.quiet:
            self.screen = new_screen(stream)
        self.total: Optional[TotalBar] = None
        self.seen = self.ok = self.failed = 0
        self.first_failure = EXIT_OK
        #: Files a signal stopped: with their data kept, that start over, never started.
        self.stopped = {"kept": 0, "lost": 0, "unstarted": 0}
        self.many = jobs.expected is None or jobs.expected > 1

    def _cancel_all(self) -> None:
        self.stopping = True
        self.manager.cancel()

    def _start(self, index: int, job: Job) -> None:
        """Start job ``index`` (a failure to start is reported at once)."""
        put = self.messages.put
        quiet = self.args.quiet
        # Only what is shown is sent: no bar, no progress (the events are few, always sent).
        bars = self.tty and not quiet
        output, directory = job.out or self.args.output, None
        if output and output.endswith(("/", os.sep)):
            # "-o newdir/" is a directory, created as -d creates one; the server names the file.
            base = self.args.dir
            directory = os.path.join(base, output) if base else output
            output = None
        if job.dir is not None:  # an input file's dir=: relative to -d unless absolute
            base = directory or self.args.dir
            directory = os.path.join(base, job.dir) if base else job.dir
        settings = dict(job.settings)
        if job.headers:
            settings["headers"] = normalize_headers(self.manager.options.headers) + job.headers
        try:
            downloader = self.manager.add(
                job.url,
                output,
                directory=directory,
                mirrors=job.mirrors,
                **settings,
                on_event=lambda e: put((index, "event", e)),
                on_progress=(lambda n: put((index, "progress", n))) if bars else None,
            )
        except AccelError as exc:
            self._failed(exc, index=index, url=job.url)
            return
        except RuntimeError:
            if not self.manager.cancelled:
                raise
            return  # Ctrl-C came while this thread was adding: the run is over
        if self.json is not None:
            self.json.add(index, redact(job.url))
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
        output = job.out or self.args.output
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
        self,
        exc: BaseException,
        code: Optional[int] = None,
        reporter: Optional[Reporter] = None,
        *,
        index: int = 0,
        url: Optional[str] = None,
    ) -> None:
        self.failed += 1
        code = exit_code_for(exc) if code is None else code
        resumable = reporter is None or reporter.resumable
        message = f"accel: error: {exc}"
        if isinstance(exc, CancelledError):
            label = reporter.label if reporter is not None else "download"
            if reporter is None or reporter.started is None:
                kind = "unstarted"
            else:
                kind = "kept" if resumable else "lost"
            self.stopped[kind] += 1
            if resumable:
                message = f"accel: interrupted: {label}: run the same command again to resume"
            else:
                message = (
                    f"accel: interrupted: {label}: the server cannot resume it, so the next "
                    "run starts over"
                )
            # A list says it once, in the summary (each file with -v).
            if not self.many or self.args.verbose:
                self._say(message)
        else:
            self._say(message)
        if self.json is not None:
            resumable = resumable and reporter is not None and reporter.started is not None
            url = redact(url) if url else None
            text = message[len("accel: ") :] if isinstance(exc, CancelledError) else str(exc)
            self.json.error(index, code, text, resumable=resumable, url=url)
        if self.first_failure == EXIT_OK:
            self.first_failure = code

    def run(self) -> int:
        """Run every job; return the first failure's exit code (0 if none)."""
        started = time.monotonic()
        if self.screen is not None and self.many and self.args.jobs > 1:
            self.total = TotalBar(
                self.stream, self.jobs.expected, screen=self.screen, slots=self.args.jobs
            )
        entries = iter(self.jobs)
        exhausted = False
        # Without lines to draw, the next downloads wait in the Manager's queue, so a job
        # thread (or the small-files loop) that finishes one starts the next at once, and
        # this thread wakes at most every BATCH seconds to report and refill (waking for
        # each file would take the interpreter's lock from the loop thousands of times a
        # second).
        ahead = self.args.jobs if self.screen is not None else self.args.jobs + AHEAD
        batch = 0.0 if self.screen is not None else BATCH
        with Signals(self._cancel_all) as signals, self._logs_above():
            while True:
                while not (exhausted or self.stopping) and len(self.active) < ahead:
                    entry = next(entries, None)
                    if entry is None:
                        exhausted = True
                    elif isinstance(entry, UsageError):
                        self.seen += 1
                        self._failed(entry, index=self.seen)
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
                for index, (downloader, reporter) in self.active.items():
                    reporter.tick()
                    if self.json is not None:
                        self.json.tick(index, downloader.progress())
                if self.screen is not None:
                    self.screen.refresh()
        if self.total is not None:
            self.total.close()
        if self.screen is not None:
            self.screen.close()
        self.manager.close(wait=signals.signum is None)
        if signals.signum is not None:
            if self.many:
                self._interrupted(len(self.active), exhausted)
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
                self._failed(error, EXIT_SIGTERM if sigterm else None, reporter, index=index)
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

    def _interrupted(self, stuck: int, exhausted: bool) -> None:
        """The one line a signal on a list ends with: what is done, kept, not started."""
        kept, lost = self.stopped["kept"], self.stopped["lost"]
        unread = None if self.jobs.expected is None else self.jobs.expected - self.seen
        unstarted = self.stopped["unstarted"] + stuck + (unread or 0)
        errors = self.failed - kept - lost - self.stopped["unstarted"]
        of = "" if self.jobs.expected is None else f" of {self.jobs.expected}"
        parts = [f"{self.ok}{of} files done"]
        if errors:
            parts.append(f"{errors} failed")
        if kept:
            parts.append(f"{kept} interrupted with their data kept")
        if lost:
            parts.append(f"{lost} interrupted that the server cannot resume (they start over)")
        rest = "" if unread is not None or exhausted else " and the rest of the list"
        parts.append(f"{unstarted} not started{rest}")
        self._say(f"accel: interrupted: {', '.join(parts)}; run the same command again to resume")

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
                    if self.json is not None:
                        self.json.on_event(index, payload, entry[0].progress())
                elif kind == "progress":
                    reporter.on_progress(payload)
                    if self.total is not None:
                        self.total.update(payload)
            try:
                item = self.messages.get_nowait()
            except queue.Empty:
                return
