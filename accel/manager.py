"""Many downloads at once: :class:`Manager`, in the shape of ``concurrent.futures``.

A Manager runs at most ``jobs`` downloads at a time and queues the rest without creating
threads or files for them. Its downloads share one rate limit, one per-host connection cap
and one pool of keep-alive connections, so the next file from a host reuses an open
connection. Each :meth:`Manager.add` returns the :class:`~accel.Downloader`, which works
like a future: ``result()``, ``exception()``, ``done``, ``cancel()``.

>>> with Manager(jobs=4, directory="downloads") as m:  # doctest: +SKIP
...     m.add("https://example.org/a.iso")
...     for d in m.as_completed():
...         print(d.url, d.exception() or d.result())
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from accel import events as ev
from accel._engine.loop import Loop
from accel._engine.small import SmallJob
from accel._handoff import less_resumed, small_job
from accel._http.session import SessionFactory, SessionPool
from accel._http.wire import parser_name
from accel._util.fdlimit import fit, open_file_limit
from accel._util.meter import RateMeter
from accel.downloader import URL, Downloader
from accel.exceptions import UsageError
from accel.limits import HostSlots
from accel.options import Options, resolve

if TYPE_CHECKING:
    from accel.bars import ProgressOption, TotalBar

log = logging.getLogger(__name__)

#: Seconds an idle job thread waits for a new download before it ends.
IDLE_EXIT = 5.0


class _Queued(NamedTuple):
    """A download waiting for a job slot, with what its Downloader handed over."""

    download: Downloader
    run: Callable[[], None]
    abandon: Callable[[], None]


def _fit_open_files(jobs: int, options: Options) -> Tuple[int, Options]:
    """``jobs`` and ``options`` scaled down to what the open-file limit allows (a warning
    says so): connections first, then jobs (see :mod:`accel._util.fdlimit`)."""
    limit = open_file_limit()
    most = options.most_connections
    fitted_jobs, fitted = fit(jobs, most, limit)
    if (fitted_jobs, fitted) == (jobs, most):
        return jobs, options
    log.warning(
        "the open-file limit (%s) fits %d downloads at a time with at most %d connection%s "
        "each, instead of %d with %d",
        limit,
        fitted_jobs,
        fitted,
        "" if fitted == 1 else "s",
        jobs,
        most,
    )
    return fitted_jobs, options.capped(fitted)


class Manager:
    """Run many downloads, ``jobs`` at a time, with shared limits and connections.

    ``options`` and keyword ``settings`` (fields of :class:`~accel.Options`, e.g.
    ``connections=8, limit_rate="20M"``) are the defaults of every download; :meth:`add`
    may override them per file. ``limit_rate`` is one budget for all downloads together;
    ``max_per_host`` caps the connections to one host over all of them. ``on_event(download,
    event)`` hears every download's events (from the downloads' threads, one at a time per
    download). Errors stay per download: one failure never cancels the others.

    Used as a context manager, leaving the block waits for every download (like
    :class:`concurrent.futures.ThreadPoolExecutor`); an exception in the block cancels them.

    ``track`` keeps every ended download until :meth:`as_completed` yields it. For an
    unbounded stream of downloads followed with :meth:`~accel.Downloader.add_done_callback`
    instead, pass ``track=False``: the Manager then forgets a download when it ends, and
    memory stays bounded however many are added.

    ``progress=True`` draws ``tqdm.auto`` bars on stderr: one per running file and a total
    bar (a tqdm class draws with that class; see :mod:`accel.bars`).
    """

    def __init__(
        self,
        jobs: int = 4,
        *,
        directory: Union[str, os.PathLike[str], None] = None,
        max_per_host: Optional[int] = None,
        options: Optional[Options] = None,
        session_factory: Optional[SessionFactory] = None,
        on_event: Optional[Callable[[Downloader, ev.Event], Any]] = None,
        track: bool = True,
        progress: ProgressOption = False,
        **settings: Any,
    ) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise UsageError("jobs must be a whole number >= 1")
        base = resolve(options, **settings)
        if max_per_host is not None:
            base = dataclasses.replace(base, host_slots=HostSlots(max_per_host))
        asked = base.most_connections
        jobs, base = _fit_open_files(jobs, base)
        #: The most connections a download may have under the open-file limit (None: any).
        self._fd_cap = base.most_connections if base.most_connections < asked else None
        self.options = base
        self.jobs = jobs
        self.directory = Path(directory) if directory is not None else None
        self._session_factory = session_factory
        self._on_event = on_event
        self._sessions = SessionPool(max_idle=max(16, 2 * jobs))
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # downloads ended
        self._work = threading.Condition(lock)  # downloads queued, for the job threads
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._bytes_lock = threading.Lock()
        self._queued: Deque[_Queued] = collections.deque()
        self._running: Set[Downloader] = set()
        self._ended: Deque[Downloader] = collections.deque()  # not yet yielded
        self.track = track
        self._succeeded = self._failed = 0
        self._received = 0
        self._meter = RateMeter()
        self._cancelled = False
        self._closed = False
        self._progress = progress
        self._bar: Optional[TotalBar] = None
        if progress:  # tqdm only when bars are asked for
            from accel.bars import TotalBar, bar_class

            self._bar = TotalBar(bar_class(progress))
        # The many-small-files path (accel._engine.loop): one thread for every download
        # whose first response may bring it whole. Opt-in (ACCEL_LEAN=1) until it agrees
        # with the command's display, --json, the Ctrl-C summary and --netrc-file.
        lean = os.environ.get("ACCEL_LEAN", "0") == "1" and parser_name() is not None
        self._loop: Optional[Loop] = Loop(jobs) if lean and session_factory is None else None
        self._small: Dict[Downloader, Tuple[SmallJob, _Queued]] = {}
        #: Downloads the loop handed over with bytes it fetched in this run.
        self._carried: Dict[Downloader, int] = {}

    # -- adding -------------------------------------------------------------------------------

    def add(
        self,
        url: URL,
        output: Union[str, os.PathLike[str], None] = None,
        *,
        directory: Union[str, os.PathLike[str], None] = None,
        mirrors: Sequence[str] = (),
        on_event: Optional[Callable[[ev.Event], Any]] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        **settings: Any,
    ) -> Downloader:
        """Queue a download of ``url``; it starts when one of the ``jobs`` slots is free.

        ``settings`` override the Manager's options for this file only (``checksum=...``,
        ``connections=...``). Returns the :class:`~accel.Downloader`, to follow like a future.
        Raises :class:`~accel.UsageError` for a bad URL or option, and ``RuntimeError`` after
        :meth:`cancel` or :meth:`close`.
        """
        if mirrors:
            settings["mirrors"] = tuple(mirrors)
        options = resolve(self.options, **settings) if settings else self.options
        if self._fd_cap is not None and options.most_connections > self._fd_cap:
            options = options.capped(self._fd_cap)
        return Downloader(  # it hands itself over through admit()
            url,
            output,
            directory=directory if directory is not None else self.directory,
            options=options,
            session_factory=self._session_factory,
            on_event=on_event,
            on_progress=on_progress,
            listener=self,
            session_pool=self._sessions,
            progress=self._progress,
        )

    def admit(
        self, download: Downloader, run: Callable[[], None], abandon: Callable[[], None]
    ) -> None:
        """Queue a new download (called by the Downloader it creates in :meth:`add`)."""
        with self._cond:
            if self._closed or self._cancelled:
                raise RuntimeError("cannot add downloads to a Manager that was closed or cancelled")
            entry = _Queued(download, run, abandon)
            if self._bar is not None:
                self._bar_files()
            job = self._small_job(download, entry) if self._loop is not None else None
            if job is None:
                return self._queue(entry)
            self._small[download] = (job, entry)
            self._running.add(download)
            assert self._loop is not None
            self._loop.submit(job)  # under the lock: a cancel() cannot slip in before it

    def _queue(self, entry: _Queued, first: bool = False) -> None:
        """Queue ``entry`` for a job thread, starting one if none is free (lock held)."""
        (self._queued.appendleft if first else self._queued.append)(entry)
        if self._idle or len(self._threads) >= self.jobs:
            self._work.notify()
            return
        thread = threading.Thread(
            target=self._job, name=f"accel-job-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _small_job(self, download: Downloader, entry: _Queued) -> Optional[SmallJob]:
        """The download as a job for the loop (see :mod:`accel._handoff`), or None."""

        def hand_back(carried: int) -> bool:
            with self._cond:
                if carried:
                    self._carried[download] = carried
                self._small.pop(download, None)
                if self._cancelled or download.cancelled:
                    return False
                self._running.discard(download)
                self._queue(entry, first=True)
                return True

        return small_job(download, listened=self._on_event is not None, hand_back=hand_back)

    def withdraw(self, download: Downloader) -> None:
        """A download was cancelled: if it is still queued, it ends now, never started."""
        with self._cond:
            small = self._small.get(download)
            if small is not None and self._loop is not None:
                self._loop.cancel(small[0])
                return
            entry = next((q for q in self._queued if q.download is download), None)
            if entry is None:
                return
            self._queued.remove(entry)
            self._running.add(download)  # until it ends, below
        entry.abandon()

    def _job(self) -> None:
        """One of the ``jobs`` threads: run queued downloads, one at a time, until none come
        for a while (or the Manager is closed or cancelled)."""
        while True:
            with self._work:
                while not self._queued:
                    if self._closed or self._cancelled:
                        self._threads.remove(threading.current_thread())
                        return
                    self._idle += 1
                    woken = self._work.wait(IDLE_EXIT)
                    self._idle -= 1
                    if not woken and not self._queued:
                        self._threads.remove(threading.current_thread())
                        return
                entry = self._queued.popleft()
                self._running.add(entry.download)
            entry.run()

    # -- what the downloads tell the Manager (their threads) ----------------------------------

    def on_event(self, download: Downloader, event: ev.Event) -> None:
        """A download's event (called by the download's own thread)."""
        if self._on_event is None:
            return
        carried = self._carried.get(download)
        if carried:
            event = less_resumed(event, carried)
        try:
            self._on_event(download, event)
        except Exception:
            log.exception("Manager on_event callback failed for %r", event)

    def on_bytes(self, delta: int) -> None:
        """Bytes a download received."""
        with self._bytes_lock:
            self._received += delta
        if self._bar is not None:
            self._bar.update(delta)

    def on_end(self, download: Downloader, failed: bool) -> None:
        """A download ended: free its slot, start the next one, wake the waiters."""
        with self._cond:
            self._running.discard(download)
            self._small.pop(download, None)
            self._carried.pop(download, None)
            if failed:
                self._failed += 1
            else:
                self._succeeded += 1
            if self.track:
                self._ended.append(download)
            self._cond.notify_all()
            if self._bar is not None:
                self._bar_files()

    def _bar_files(self) -> None:
        """Show the file counts on the total bar (with the lock held)."""
        assert self._bar is not None
        ended = self._succeeded + self._failed
        added = ended + len(self._queued) + len(self._running)
        self._bar.files(ended, self._failed, added)

    # -- following ----------------------------------------------------------------------------

    def as_completed(self, timeout: Optional[float] = None) -> Iterator[Downloader]:
        """Yield downloads as they end (successfully or not), until none is left to run.

        Downloads added while iterating are included. Each ended download is yielded once,
        by whichever iterator takes it first. Raises :class:`TimeoutError` if ``timeout``
        seconds pass before the last one ends.
        """
        if not self.track:
            raise RuntimeError("as_completed() needs a Manager made with track=True")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while not self._ended:
                    if not self._queued and not self._running:
                        return
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(
                            f"{len(self._running) + len(self._queued)} downloads still unfinished"
                        )
                    self._cond.wait(remaining)
                download = self._ended.popleft()
            yield download

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until every added download ended (or ``timeout``); return whether they did."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued and not self._running, timeout)

    def progress(self) -> ev.ManagerProgress:
        """Files done, failed, queued and running; bytes received and the total rate."""
        with self._bytes_lock:
            received = self._received
        with self._cond:
            waiting, running = len(self._queued), len(self._running)
            done, failed = self._succeeded, self._failed
            if self._loop is not None and self._small:
                small, started = len(self._small), min(len(self._small), self._loop.running)
                waiting, running = waiting + small - started, running - small + started
        # Queued downloads with a free job slot are starting (a job thread is taking them).
        starting = min(waiting, max(0, self.jobs - running))
        rate = self._meter.update(received)
        return ev.ManagerProgress(
            done, failed, waiting - starting, running + starting, received=received, rate=rate
        )

    # -- stopping -----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel every download, running or queued (any thread). State is saved: a new
        Manager given the same downloads resumes them. Nothing more can be added."""
        with self._cond:
            self._cancelled = True
            self._work.notify_all()  # idle job threads end
            running = list(self._running)
            queued = list(self._queued)
            self._queued.clear()
            self._running.update(q.download for q in queued)  # until they end below
        if self._loop is not None:
            self._loop.cancel(None)  # the small downloads, at once
        for download in running:
            download.cancel()
        for entry in queued:  # never started: they end at once, with nothing to save
            entry.download.cancel()
            entry.abandon()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def close(self, wait: bool = True) -> None:
        """No more downloads may be added; with ``wait``, block until every one ended.
        Idle connections are closed once the last download ended."""
        with self._cond:
            self._closed = True
            self._work.notify_all()
        if self._loop is not None:
            self._loop.close(wait=False)
        if wait:
            self.wait()
            if self._loop is not None:
                self._loop.close(wait=True)
            with self._cond:
                threads = [t for t in self._threads if t is not threading.current_thread()]
            for thread in threads:  # each sees the Manager closed and ends at once
                thread.join()
            self._sessions.close()
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.cancel()
        self.close(wait=True)

    def __repr__(self) -> str:
        p = self.progress()
        return (
            f"<Manager jobs={self.jobs} running={p.active} queued={p.queued} "
            f"done={p.done} failed={p.failed}>"
        )
