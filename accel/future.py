"""The life cycle of a download as a future: start, wait, result, exception, cancel.

:class:`DownloadFuture` is the part of :class:`~accel.Downloader` that follows
:class:`concurrent.futures.Future`: one background thread, an outcome, a cancel flag. Its
events are created only when first needed, so a download queued in a
:class:`~accel.Manager` costs a few hundred bytes.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional, Protocol, TypeVar

from accel import events as ev
from accel.exceptions import CancelledError, UsageError

log = logging.getLogger(__name__)

#: Guards the lazily created events of every download.
_LAZY = threading.Lock()

F = TypeVar("F", bound="DownloadFuture")


class Listener(Protocol):
    """What a :class:`~accel.Manager` hears of the downloads it runs (``download`` is the
    :class:`~accel.Downloader`)."""

    def admit(self, download: Any, run: Callable[[], None], abandon: Callable[[], None]) -> None:
        """Take a new download; ``run()`` runs it on the calling thread to the end,
        ``abandon()`` ends it unstarted."""

    def on_event(self, download: Any, event: ev.Event) -> None:
        """An event of ``download``."""

    def on_bytes(self, delta: int) -> None:
        """Bytes received by one of the downloads."""

    def on_end(self, download: Any, failed: bool) -> None:
        """``download`` ended (``failed``: with an error)."""

    def withdraw(self, download: Any) -> None:
        """``download`` was cancelled: end it now if it is still queued."""


class DownloadFuture:
    """A download's outcome and life cycle; subclasses implement :meth:`run` and ``_emit``."""

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_cancel",
        "_cancel_requested",
        "_error",
        "_finished",
        "_listener",
        "_result",
        "_thread",
    )

    def __init__(self, listener: Optional[Listener] = None) -> None:
        self._cancel: Optional[threading.Event] = None
        self._cancel_requested = False
        self._finished: Optional[threading.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._result: Optional[Path] = None
        self._error: Optional[BaseException] = None
        self._listener = listener
        self._callbacks: Optional[List[Callable[[Any], object]]] = None

    def run(self) -> Path:  # pragma: no cover - abstract
        """Download in the calling thread; return the final path."""
        raise NotImplementedError

    def _emit(self, event: ev.Event) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _settle(self) -> None:
        """Drop what a finished download no longer needs (subclasses)."""

    def start(self: F) -> F:
        """Run the download in a background thread and return at once.

        Callbacks then run on that thread. Use :meth:`wait`, :attr:`done`,
        :meth:`result` and :meth:`exception` to follow it. A download runs once: a second
        ``start()`` raises :class:`~accel.UsageError`, also after a cancel, and so does
        ``start()`` on a download a Manager runs. To resume a cancelled (or failed)
        download, make a new :class:`~accel.Downloader` for the same URL and file: it
        continues from what the first one saved.
        """
        if self._listener is not None:
            raise UsageError("this Downloader is run by a Manager: it starts there")
        return self._launch()

    def _launch(self: F) -> F:
        if self._thread is not None:
            raise UsageError(
                "this Downloader was already started: a new Downloader for the same URL and"
                " file resumes it"
            )
        self._finished_event()
        self._thread = threading.Thread(target=self._run_here, name="accel-download", daemon=True)
        self._thread.start()
        return self

    def _run_here(self) -> None:
        """Run to the end on the calling thread, keeping the outcome for :meth:`result`."""
        self._thread = threading.current_thread()
        try:
            self._result = self.run()
        except BaseException as exc:  # handed to result()
            self._error = exc
        finally:
            try:
                self._settle()
            finally:  # whatever happened, the download is over: say so
                self._end()

    def _conclude(
        self, result: Optional[Path], error: Optional[BaseException], event: Optional[ev.Event]
    ) -> None:
        """End a download that ran elsewhere (the small-files loop): its outcome and, if
        someone listens, its last event."""
        self._result, self._error = result, error
        if event is not None:
            self._emit(event)
        self._settle()
        self._end()

    def _abandon(self) -> None:
        """End a queued download that never started: cancelled, with nothing to save."""
        self._error = CancelledError("cancelled before it started")
        self._emit(ev.Cancelled(str(self._error)))
        self._end()

    def _end(self) -> None:
        """Mark the download ended, then tell its callbacks and its Manager."""
        with _LAZY:
            callbacks, self._callbacks = self._callbacks or [], None
        self._finished_event().set()
        for fn in callbacks:
            self._call(fn)
        if self._listener is not None:
            self._listener.on_end(self, self._error is not None)

    def add_done_callback(self: F, fn: Callable[[F], object]) -> None:
        """Call ``fn(download)`` when the download ends (at once if it already has), on the
        thread that ended it; as :meth:`concurrent.futures.Future.add_done_callback`."""
        with _LAZY:
            if not self.done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        self._call(fn)

    def _call(self, fn: Callable[[Any], object]) -> None:
        try:
            fn(self)
        except Exception:
            log.exception("done callback %r failed", fn)

    def _finished_event(self) -> threading.Event:
        with _LAZY:
            if self._finished is None:
                self._finished = threading.Event()
            return self._finished

    def _cancel_event(self) -> threading.Event:
        with _LAZY:
            if self._cancel is None:
                self._cancel = threading.Event()
                if self._cancel_requested:
                    self._cancel.set()
            return self._cancel

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a started download ends (or ``timeout``); return whether it ended.

        A download added to a :class:`~accel.Manager` may be waited for while still queued.
        """
        if self._thread is None and self._listener is None:
            raise RuntimeError("call start() first")
        return self._finished_event().wait(timeout)

    @property
    def done(self) -> bool:
        """Whether a started download has ended (successfully or not)."""
        finished = self._finished
        return finished is not None and finished.is_set()

    def result(self, timeout: Optional[float] = None) -> Path:
        """The final path of a started download; re-raises its error. Waits up to ``timeout``."""
        error = self.exception(timeout)
        if error is not None:
            raise error
        assert self._result is not None
        return self._result

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The error a started download ended with (None on success). Waits up to ``timeout``.

        Raises :class:`TimeoutError` if it is still running then, as
        :meth:`concurrent.futures.Future.exception` does.
        """
        if not self.wait(timeout):
            raise TimeoutError("the download is still running")
        return self._error

    def cancel(self) -> None:
        """Stop as soon as possible (any thread); what is written is recorded for a resume.

        A download still queued in a :class:`~accel.Manager` ends at once, never started.
        """
        with _LAZY:
            self._cancel_requested = True
            if self._cancel is not None:
                self._cancel.set()
        if self._thread is None and self._listener is not None:
            self._listener.withdraw(self)

    def __enter__(self: F) -> F:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.cancel()
        if self._thread is not None:
            self._finished_event().wait()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel_requested
