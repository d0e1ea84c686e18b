"""The façade: :class:`Downloader` downloads one URL into one file, resumably.

It owns the public API (run/start/wait/result/exception/cancel/progress), the restart loop,
and the first half of each attempt: the lock, the probe, and deciding that a file is already
complete. The work after that is the engine's: :mod:`accel._engine.landing` (plan, transfer,
verify, rename), :mod:`accel._engine.probe` (the first request),
:mod:`accel._engine.transfer` (the worker pool), :mod:`accel._engine.scheduler` (who fetches
what), :mod:`accel._engine.worker` (one connection's loop) and :mod:`accel._disk.committer`
(the sidecar).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.cookiejar
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Union

from accel import events as ev
from accel._disk import state
from accel._disk.complete import Completion
from accel._disk.storage import (
    FileLock,
    PartFile,
    prepare_directory,
)
from accel._engine.context import Context, Restart, record_url
from accel._engine.landing import Landing, finish, transfer_rest
from accel._engine.plan import resume_plan
from accel._engine.probe import probe
from accel._engine.scheduler import DEFAULT_READ_MARGIN
from accel._engine.small import Snapshots
from accel._engine.sources import mint
from accel._engine.transfer import Transfer
from accel._http.base import Session
from accel._http.fetch import REFRESH_STATUSES
from accel._http.session import (
    SessionFactory,
    SessionPool,
    download_session,
    options_session,
)
from accel._util.names import output_path
from accel._util.ranges import Segment
from accel._util.urls import check_url, redact
from accel.exceptions import (
    AccelError,
    CancelledError,
    HTTPError,
    RemoteChangedError,
    local_error,
)
from accel.future import DownloadFuture, Listener
from accel.options import Options, resolve

if TYPE_CHECKING:
    from accel.bars import FileBar, ProgressOption

log = logging.getLogger(__name__)

#: A URL, or a zero-argument callable that returns one (called when the download is made,
#: and again whenever the current link answers 401, 403, 404 or 410: a presigned link that
#: expired is replaced by a fresh one without losing what was downloaded).
URL = Union[str, Callable[[], str]]

#: How often the remote may change under one download before accel gives up.
MAX_RESTARTS = 3


class _Again(Exception):
    """Try again at once, e.g. under the name the server gave (not a restart)."""


class _Discarded(CancelledError):
    """Cancelled, and the partial file was removed: without ranges it could not resume."""


class Downloader(DownloadFuture):
    """Download one URL with parallel ranged requests into a file, resumably.

    ``url`` is a URL or a zero-argument callable returning one (a presigned-link maker,
    see :data:`URL`): it is called now, and again whenever the link answers 401, 403, 404
    or 410, so an expired link is replaced without losing what was downloaded.
    ``output`` is the file to create (a directory means "inside it"); by default the name
    comes from the server's Content-Disposition or the URL, in ``directory`` (default: the
    current directory). Settings are an :class:`Options` (``options=``), keyword settings
    (any field of :class:`Options`, plus ``retries``), or both: keywords override
    ``options``. :meth:`run` blocks and returns the final path, raising
    :class:`accel.AccelError` subclasses; :meth:`cancel` may be called from any thread.
    A cancelled download resumes with a new :class:`Downloader` for the same file.
    ``progress=True`` draws a ``tqdm.auto`` bar on stderr, ``progress=`` a tqdm class draws
    with that class (:mod:`accel.bars`); the default, False, draws nothing.
    ``listener`` and ``session_pool`` are set by :class:`accel.Manager` for its downloads.
    """

    __slots__ = (
        "_bar",
        "_completion",
        "_cookies",
        "_ctx",
        "_directory",
        "_last",
        "_name",
        "_on_event",
        "_on_progress",
        "_output",
        "_provider",
        "_session_factory",
        "_sessions",
        "_transfer",
        "options",
        "path",
        "url",
    )

    def __init__(
        self,
        url: URL,
        output: Union[str, os.PathLike[str], None] = None,
        *,
        directory: Union[str, os.PathLike[str], None] = None,
        options: Optional[Options] = None,
        session_factory: Optional[SessionFactory] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        on_event: Optional[Callable[[ev.Event], Any]] = None,
        listener: Optional[Listener] = None,
        session_pool: Optional[SessionPool] = None,
        progress: ProgressOption = False,
        **settings: Any,
    ) -> None:
        self._provider: Optional[Callable[[], str]] = None
        if callable(url):
            self._provider = url
            url = mint(url)
        self.url = check_url(url)
        self.options = resolve(options, **settings)
        self._bar: Optional[FileBar] = None
        if progress:  # tqdm only when bars are asked for; in a Manager, gone when done
            from accel.bars import file_bar

            self._bar = file_bar(progress, leave=listener is None, snapshot=self.progress)
        self._output = Path(output) if output is not None else None
        self._directory = (
            directory if isinstance(directory, Path) or directory is None else Path(directory)
        )
        self._session_factory = session_factory
        self._on_progress = on_progress
        self._on_event = on_event
        super().__init__(listener)
        self._ctx: Optional[Context] = None
        self._completion: Optional[Completion] = None
        self._transfer: Optional[Snapshots] = None  # a Transfer, or a SmallFile
        self._last: Optional[ev.Progress] = None
        self._name: Optional[str] = None
        self._sessions = session_pool
        #: The cookies all sessions of this download share (the caller's jar, if given).
        jar = self.options.cookies
        self._cookies = (
            jar if isinstance(jar, http.cookiejar.CookieJar) else http.cookiejar.CookieJar()
        )
        #: The final path once the download is complete.
        self.path: Optional[Path] = None
        if listener is not None:  # hand the Manager what it may do with this download
            listener.admit(self, self._run_here, self._abandon)

    # -- public API -------------------------------------------------------------------------

    def run(self) -> Path:
        """Download; return the path of the complete file. Raises on failure or cancel."""
        try:
            try:
                path = self._run()
            except OSError as exc:  # a local file problem not caught where it happened
                raise local_error(exc, "local file error") from exc
        except CancelledError as exc:
            # A cancel is not a failure; and the message is the library's, not the CLI's.
            resumable = not isinstance(exc, _Discarded)
            error = CancelledError(
                "download cancelled; what was recorded is kept for a new Downloader to resume"
                if resumable and str(exc) != "cancelled"
                else str(exc)
            )
            self._emit(ev.Cancelled(str(error), resumable=resumable))
            raise error from None
        except AccelError as exc:
            self._emit(ev.Failed(exc))
            raise
        return path

    def progress(self) -> Optional[ev.Progress]:
        """A snapshot of the running transfer, or None before it starts.

        A complete download reports rate 0 and ETA 0.
        """
        transfer = self._transfer
        snap = transfer.snapshot() if transfer else self._last
        if snap is not None and self.path is not None:  # complete: nothing moves any more
            snap = dataclasses.replace(snap, rate=0.0, eta=0.0)
        return snap

    def _settle(self) -> None:
        transfer, self._transfer = self._transfer, None
        if transfer is not None:  # a finished download keeps its numbers, not its engine
            self._last = transfer.snapshot()
        self._ctx = self._completion = None

    def __repr__(self) -> str:
        state_ = "done" if self.done else ("running" if self._thread else "new")
        return f"<Downloader {redact(self.url)} {state_}>"

    # -- internals --------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        if self._bar is not None:
            self._bar.on_event(event)
        if self._listener is not None:
            self._listener.on_event(self, event)
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("on_event callback failed for %r", event)

    def _report(self, delta: int) -> None:
        if not delta:
            return
        if self._listener is not None:
            self._listener.on_bytes(delta)
        if self._bar is not None:
            self._bar.on_progress(delta)
        if self._on_progress is None:
            return
        try:
            self._on_progress(delta)
        except Exception:
            log.exception("on_progress callback failed")

    def _new_session(self) -> Session:
        """A session for one worker thread (see :func:`download_session`)."""
        return download_session(
            self.options,
            self.url,
            self._cookies,
            pool=self._sessions,
            factory=self._session_factory,
        )

    def _make_session(self) -> Session:
        """A new session with this download's settings (the small-files loop's)."""
        return options_session(self.options, self.url, self._cookies)

    def _context(self) -> Context:
        if self._ctx is None:
            self._ctx = Context(
                self.url,
                self.options,
                self._new_session,
                self._cancel_event(),
                self._emit,
                self._report,
                provider=self._provider,
            )
        return self._ctx

    def _record_url(self) -> str:
        return record_url(self.url, provided=self._provider is not None)

    def _target(self) -> Path:
        """The output path, as far as it is known before the probe (see :func:`output_path`)."""
        return output_path(self._output, self._directory, self._name, self.url)

    def _watch(self, transfer: Transfer) -> None:
        self._transfer = transfer

    def _landed(self, dest: Path) -> None:
        self.path = dest

    def _complete_already(self, dest: Path) -> Path:
        """``dest`` already is the remote file: report it and hand it back."""
        log.info("%s is already complete", dest)
        self._emit(ev.AlreadyComplete(dest))
        self.path = dest
        return dest

    def _run(self) -> Path:
        checksum = self.options.checksum
        assert checksum is None or isinstance(checksum, tuple)
        self._completion = completion = Completion(checksum, force=self.options.force)
        if checksum and not self.options.force and completion.has_checksum(self._target()):
            return self._complete_already(self._target())
        restarts = 0
        discard = False
        single_stream = False
        minted = False
        while True:
            if self._cancel_event().is_set():
                raise CancelledError("cancelled")
            try:
                return self._attempt(discard=discard, single_stream=single_stream)
            except _Again:
                continue  # e.g. look for an earlier run under the server's name
            except HTTPError as exc:
                # A minted link that expired before the first request: mint another, once.
                if self._provider is None or minted or exc.status not in REFRESH_STATUSES:
                    raise
                minted = True
                log.info(
                    "%s answered %s: asking the URL provider again", redact(self.url), exc.status
                )
                self.url = mint(self._provider)
                self._ctx = None
            except Restart as exc:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise RemoteChangedError(
                        f"the remote file kept changing ({exc}); giving up after "
                        f"{MAX_RESTARTS} restarts"
                    ) from None
                log.warning("%s; restarting from zero", exc)
                self._emit(ev.Restarted(str(exc)))
                discard = True
                single_stream = single_stream or exc.single_stream

    def _attempt(self, *, discard: bool, single_stream: bool) -> Path:
        """One try: lock the file, probe, then finish at once or transfer what is missing."""
        dest = self._target()
        part = dest.with_name(dest.name + ".part")
        prepare_directory(self._directory, dest.parent)
        side = state.sidecar_path(part)
        landing = Landing(
            self._context(), dest, part, side, completion_of(self), self._watch, self._landed
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(FileLock(part.with_name(part.name + ".lock")))
            record = None
            if discard:
                state.remove(side)
            else:
                keep = self.options.checksum is not None
                record = state.load_vetted(side, self._record_url(), keep_complete=keep)
            segments: List[Segment] = []
            look = False
            if record is not None:
                segments = resume_plan(
                    record.size,
                    record.trusted_segments(state.boot_id()),
                    self.options.most_connections,
                    self.options.min_split,
                )
                pending = [s for s in segments if not s.done]
                start, end = (pending[0].start, pending[0].end) if pending else (record.size, None)
                known = record.validators
                first = stack.enter_context(probe(self._context(), start, end, known))
            else:
                # A bounded first range: it tells the size and starts the first segment
                # without making the server push more than the first segment needs. A file
                # already there is complete or in the way: learn which with no body sent.
                end = max(self.options.min_split, DEFAULT_READ_MARGIN) - 1
                look = not self.options.force and os.path.lexists(dest)
                ctx = self._context()
                first = stack.enter_context(
                    probe(ctx, 0, end, None, plain=single_stream, head=look)
                )
            remote = first.remote
            renamed = remote.filename and remote.filename != dest.name
            if self._output is None and self._name is None and renamed:
                # The server names the file: look again for an earlier run under that name.
                self._name = remote.filename
                raise _Again()
            if record is not None and first.response is None:
                # 416 for a fully written file whose validators match: complete.
                part_file = PartFile.open_existing(part)
                return finish(landing, part_file, remote, record.size)
            if record is None and completion_of(self).existing(dest, remote):
                return self._complete_already(dest)
            if look and first.response is None:
                raise _Again()  # the file went away meanwhile: probe for the download
            try:
                return transfer_rest(landing, first, record, segments)
            except CancelledError:
                validators = remote.validators
                resumable = remote.ranges and remote.size is not None and validators.resumable
                if record is None and not resumable:
                    # A later run starts over anyway: a full-size .part would only mislead.
                    with contextlib.suppress(OSError):
                        part.unlink()
                    raise _Discarded(
                        "download cancelled; the server does not support resuming it, so the "
                        "partial file was removed"
                    ) from None
                raise


def completion_of(download: Downloader) -> Completion:
    """The download's completion checks (made when its run starts)."""
    assert download._completion is not None
    return download._completion


__all__ = ["Downloader"]
