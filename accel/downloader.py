"""The façade: :class:`Downloader` downloads one URL into one file, resumably.

It owns the public API (run/start/wait/result/exception/cancel/progress), the restart loop,
and the ends of a download: deciding that a file is already complete, and finishing one
(flush, verify, rename). The work in between is the engine's: :mod:`accel.probe` (the first
request), :mod:`accel.transfer` (the worker pool), :mod:`accel.scheduler` (who fetches
what), :mod:`accel.worker` (one connection's loop) and :mod:`accel.commit` (the sidecar).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import requests

from . import events as ev
from . import state
from .context import Context, Restart
from .exceptions import (
    AccelError,
    CancelledError,
    FileTooLargeError,
    LocalFileError,
    OutputExistsError,
    RemoteChangedError,
    VerificationError,
    local_error,
)
from .fetch import CHUNK, first_byte
from .names import name_from_url
from .options import Options, resolve
from .planner import Segment, fresh_plan, resume_plan
from .probe import Probe, probe
from .remote import RemoteFile, Validators, http_date_to_timestamp
from .sources import usable_mirrors
from .storage import FileLock, PartFile, check_free_space, finalize, has_holes
from .transfer import Transfer
from .transport import check_url, new_session, redact
from .units import human_size
from .verify import file_digest, matches

log = logging.getLogger(__name__)

#: How often the remote may change under one download before accel gives up.
MAX_RESTARTS = 3
_UNKNOWN_END = 2**63 - 2

SessionFactory = Callable[[], requests.Session]


class _Renamed(Exception):
    """The server named the file: try again under that name (not a restart)."""


class Downloader:
    """Download one URL with parallel ranged requests into a file, resumably.

    ``output`` is the file to create (a directory means "inside it"); by default the name
    comes from the server's Content-Disposition or the URL, in ``directory`` (default: the
    current directory). Settings are an :class:`Options` (``options=``), keyword settings
    (any field of :class:`Options`, plus ``retries``), or both: keywords override
    ``options``. :meth:`run` blocks and returns the final path, raising
    :class:`accel.AccelError` subclasses; :meth:`cancel` may be called from any thread.
    A cancelled download resumes with a new :class:`Downloader` for the same file.
    """

    def __init__(
        self,
        url: str,
        output: Union[str, os.PathLike, None] = None,
        *,
        directory: Union[str, os.PathLike, None] = None,
        options: Optional[Options] = None,
        session_factory: Optional[SessionFactory] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        on_event: Optional[Callable[[ev.Event], Any]] = None,
        **settings: Any,
    ) -> None:
        self.url = check_url(url)
        self.options = resolve(options, **settings)
        self._output = Path(output) if output is not None else None
        self._directory = Path(directory) if directory is not None else None
        self._session_factory = session_factory
        self._on_progress = on_progress
        self._on_event = on_event
        self._cancel = threading.Event()
        self._transfer: Optional[Transfer] = None
        self._name: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._hashed: Dict[Path, bool] = {}  # files already compared with the checksum
        self._finished = threading.Event()
        self._result: Optional[Path] = None
        self._error: Optional[BaseException] = None
        self._ctx = Context(
            self.url, self.options, self._new_session, self._cancel, self._emit, self._report
        )
        #: The final path once the download is complete.
        self.path: Optional[Path] = None

    # -- public API -------------------------------------------------------------------------

    def run(self) -> Path:
        """Download; return the path of the complete file. Raises on failure or cancel."""
        try:
            try:
                path = self._run()
            except OSError as exc:  # a local file problem not caught where it happened
                raise local_error(exc, "local file error") from exc
        except AccelError as exc:
            self._emit(ev.Failed(exc))
            raise
        return path

    def start(self) -> Downloader:
        """Run the download in a background thread and return at once.

        Callbacks then run on that thread. Use :meth:`wait`, :attr:`done`,
        :meth:`result` and :meth:`exception` to follow it.
        """
        if self._thread is not None:
            raise RuntimeError("this Downloader was already started")
        self._thread = threading.Thread(target=self._background, name="accel-download", daemon=True)
        self._thread.start()
        return self

    def _background(self) -> None:
        try:
            self._result = self.run()
        except BaseException as exc:  # handed to result()
            self._error = exc
        finally:
            self._finished.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a started download ends (or ``timeout``); return whether it ended."""
        if self._thread is None:
            raise RuntimeError("call start() first")
        return self._finished.wait(timeout)

    @property
    def done(self) -> bool:
        """Whether a started download has ended (successfully or not)."""
        return self._finished.is_set()

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
        """Stop as soon as possible (any thread); what is written is recorded for a resume."""
        self._cancel.set()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.cancel()
        if self._thread is not None:
            self._finished.wait()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    def progress(self) -> Optional[ev.Progress]:
        """A snapshot of the running transfer, or None before it starts."""
        transfer = self._transfer
        return transfer.snapshot() if transfer else None

    def __repr__(self) -> str:
        state_ = "done" if self.done else ("running" if self._thread else "new")
        return f"<Downloader {redact(self.url)} {state_}>"

    # -- internals --------------------------------------------------------------------------

    def _emit(self, event: ev.Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("on_event callback failed for %r", event)

    def _report(self, delta: int) -> None:
        if self._on_progress is None or not delta:
            return
        try:
            self._on_progress(delta)
        except Exception:
            log.exception("on_progress callback failed")

    def _new_session(self) -> requests.Session:
        """A fresh session configured for this download (one per worker thread)."""
        if self._session_factory is not None:
            return self._session_factory()
        return new_session(
            headers=dict(self.options.headers),
            verify=self.options.verify,
            retry=self.options.retry,
            trusted_origin=self.url,
        )

    def _target(self) -> Path:
        """The output path, as far as it is known before the probe."""
        out = self._output
        base = self._directory or Path(".")
        if out is not None:
            if self._directory is not None and not out.is_absolute():
                out = self._directory / out
            if out.is_dir():
                return out / (self._name or name_from_url(self.url))
            return out
        return base / (self._name or name_from_url(self.url))

    def _complete_already(self, dest: Path) -> Path:
        """``dest`` already is the remote file: report it and hand it back."""
        log.info("%s is already complete", dest)
        self._emit(ev.AlreadyComplete(dest))
        self.path = dest
        return dest

    def _has_checksum(self, dest: Path) -> bool:
        """Whether ``dest`` is a regular file with the expected checksum (hashed once)."""
        checksum = self.options.checksum
        if checksum is None or not dest.is_file() or dest.is_symlink():
            return False
        if dest not in self._hashed:
            assert isinstance(checksum, tuple)
            self._hashed[dest] = matches(dest, checksum)
        return self._hashed[dest]

    def _run(self) -> Path:
        if self.options.checksum and not self.options.force and self._has_checksum(self._target()):
            return self._complete_already(self._target())
        restarts = 0
        discard = False
        single_stream = False
        while True:
            if self._cancel.is_set():
                raise CancelledError("cancelled")
            try:
                return self._attempt(discard=discard, single_stream=single_stream)
            except _Renamed:
                continue  # look for an earlier run under the server's name, then go on
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
        if self._directory is not None:
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise local_error(exc, f"cannot create directory {self._directory}") from exc
        if not dest.parent.is_dir():
            raise LocalFileError(f"cannot save into {dest.parent}: not a directory")
        side = state.sidecar_path(part)
        with contextlib.ExitStack() as stack:
            stack.enter_context(FileLock(part.with_name(part.name + ".lock")))
            record = None if discard else self._load_record(side)
            if discard:
                state.remove(side)
            segments: List[Segment] = []
            if record is not None:
                segments = resume_plan(
                    record.size,
                    record.trusted_segments(state.boot_id()),
                    self.options.connections,
                    self.options.min_split,
                )
                known = Validators(record.size, record.etag, record.last_modified)
                pending = [s for s in segments if not s.done]
                start, end = (pending[0].start, pending[0].end) if pending else (record.size, None)
                first = stack.enter_context(probe(self._ctx, start, end, known))
            else:
                # A bounded first range: it tells the size and starts the first segment
                # without making the server push more than the first segment needs.
                end = max(self.options.min_split, CHUNK) - 1
                first = stack.enter_context(probe(self._ctx, 0, end, None, plain=single_stream))
            remote = first.remote
            renamed = remote.filename and remote.filename != dest.name
            if self._output is None and self._name is None and renamed:
                # The server names the file: look again for an earlier run under that name.
                self._name = remote.filename
                raise _Renamed()
            if record is not None and first.response is None:
                # 416 for a fully written file whose validators match: complete.
                part_file = PartFile.open_existing(part)
                return self._finish(part_file, part, side, dest, remote, record.size)
            if record is None:
                done = self._already_complete(dest, remote)
                if done is not None:
                    return done
            return self._transfer_all(first, dest, part, side, record, segments)

    def _load_record(self, side: Path) -> Optional[state.Record]:
        if not side.exists() and not side.is_symlink():
            return None
        part = side.with_name(side.name[: -len(".json")])
        try:
            record = state.load(side, part)
        except state.InvalidState as exc:
            log.warning("ignoring the saved state in %s (%s); starting from zero", side, exc)
            state.remove(side)
            return None
        if record.url != redact(self.url):
            log.warning("%s belongs to another URL (%s); starting from zero", side, record.url)
            state.remove(side)
            return None
        if not Validators(record.size, record.etag, record.last_modified).resumable:
            log.warning(
                "the server gave no strong ETag or Last-Modified for %s, so the partial file "
                "cannot be verified; starting from zero",
                redact(self.url),
            )
            state.remove(side)
            return None
        return record

    def _already_complete(self, dest: Path, remote: RemoteFile) -> Optional[Path]:
        """Handle an existing ``dest``: return it when it already matches the remote file."""
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LocalFileError(f"cannot inspect {dest}: {exc.strerror}") from exc
        if self.options.force:
            return None  # replace it, even if it looks complete
        if self.options.checksum:
            if self._has_checksum(dest):
                return self._complete_already(dest)
            raise OutputExistsError(
                f"{dest} already exists and does not match the checksum; use --force to replace it"
            )
        mtime = http_date_to_timestamp(remote.validators.last_modified)
        if (
            remote.size is not None
            and st.st_size == remote.size
            and mtime is not None
            and int(st.st_mtime) == int(mtime)
            and not os.path.islink(dest)
            and not has_holes(dest)  # a power loss right after a download leaves holes
        ):
            return self._complete_already(dest)
        raise OutputExistsError(f"{dest} already exists; use --force to replace it")

    def _transfer_all(
        self,
        first: Probe,
        dest: Path,
        part_path: Path,
        side: Path,
        record: Optional[state.Record],
        segments: List[Segment],
    ) -> Path:
        remote = first.remote
        size = remote.size
        limit = self.options.max_filesize
        assert limit is None or isinstance(limit, int)
        if limit is not None and size is not None and size > limit:
            raise FileTooLargeError(
                f"{redact(self.url)} is {human_size(size)} ({size} bytes), more than the "
                f"{human_size(limit)} allowed"
            )
        ranged = remote.ranges and size is not None
        # Mirrors must agree before anything is created on disk.
        mirrors = []
        if self.options.mirrors and not ranged:
            log.warning("the server does not serve ranges: mirrors are not used")
        elif self.options.mirrors:
            timeouts = self._ctx.timeouts
            mirrors = usable_mirrors(
                remote,
                self.url,
                self.options.mirrors,
                lambda url: first_byte(first.session, url, None, timeouts),
            )
        if record is None:
            if size == 0 or first.response is None:
                segments = []
            elif ranged:
                assert size is not None
                segments = fresh_plan(size, self.options.connections, self.options.min_split)
            elif size is not None:
                segments = [Segment(0, size - 1)]
            else:  # length unknown: read to the end, or to one byte past the allowed maximum
                segments = [Segment(0, _UNKNOWN_END if limit is None else limit)]
            check_free_space(dest.parent, size or 0)
            part = PartFile.create(part_path, size)
        else:
            resumed = sum(s.written for s in segments)
            check_free_space(dest.parent, (size or 0) - resumed)
            part = PartFile.open_existing(part_path)
        resumable = ranged and remote.validators.resumable
        if not resumable and size:
            log.info("this download cannot be resumed if interrupted (no ranges or no validator)")
        transfer = Transfer(
            self._ctx,
            part,
            segments,
            remote,
            side if resumable else None,
            ranged=ranged,
            mirrors=mirrors,
        )
        self._transfer = transfer
        self._emit(
            ev.Started(
                redact(self.url),
                dest,
                size,
                sum(s.written for s in segments),
                self.options.connections if ranged else 1,
            )
        )
        try:
            final_size = transfer.run(*first.take())
            if size is None:
                # A stream of unknown length: drop whatever an earlier, longer attempt left.
                part.truncate(final_size)
        except BaseException:
            transfer.release()
            raise
        return self._finish(part, part_path, side, dest, remote, final_size, transfer)

    def _finish(
        self,
        part: PartFile,
        part_path: Path,
        side: Path,
        dest: Path,
        remote: RemoteFile,
        size: int,
        transfer: Optional[Transfer] = None,
    ) -> Path:
        try:
            if self.options.fsync:
                part.sync()  # the data is on stable storage before the name says "complete"
        finally:
            if transfer is not None:
                transfer.release()
            else:
                part.close()
        if self.options.checksum:
            self._verify(part_path, side)
        mtime = http_date_to_timestamp(remote.validators.last_modified)
        finalize(part_path, dest, force=self.options.force, mtime=mtime)
        state.remove(side)
        self.path = dest
        self._emit(ev.Completed(dest, size))
        log.info("saved %s (%d bytes)", dest, size)
        return dest

    def _verify(self, part_path: Path, side: Path) -> None:
        """Check the complete ``.part`` against the expected checksum; drop it if wrong."""
        checksum = self.options.checksum
        assert isinstance(checksum, tuple)
        algo, expected = checksum
        actual = file_digest(part_path, algo)
        if actual != expected:
            state.remove(side)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part_path)
            raise VerificationError(
                f"{algo} checksum mismatch for {redact(self.url)}: "
                f"expected {expected}, got {actual}"
            )
        log.info("%s checksum verified", algo)


__all__ = ["CHUNK", "Downloader", "check_url", "redact"]
