"""The orchestrator: probe, plan, a pool of workers, commits, cancellation, events.

One :class:`Downloader` downloads one URL into one file. Its :meth:`~Downloader.run`
thread is the only one that saves the sidecar, reports progress and calls callbacks;
worker threads only fetch and write (see :mod:`accel.fetch`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import requests

from . import events as ev
from . import state
from .exceptions import (
    AccelError,
    CancelledError,
    FileTooLargeError,
    HTTPError,
    LocalFileError,
    NetworkError,
    OutputExistsError,
    RemoteChangedError,
    RemoteProtocolError,
    UsageError,
    VerificationError,
)
from .fetch import (
    CHUNK,
    READ_MAX,
    REFRESH_STATUSES,
    ReadBuffer,
    Task,
    finish,
    first_byte,
    get,
    raise_for_status,
    range_headers,
    request_range,
    stream,
)
from .limits import RateLimiter
from .names import name_from_url
from .options import Options, normalize_headers
from .planner import ALIGN, Segment, fresh_plan, resume_plan, steal_point
from .remote import (
    BadResponse,
    RangesUnsupported,
    RemoteChanged,
    RemoteFile,
    Retryable,
    TotalMismatch,
    Validators,
    check_partial,
    content_length,
    describe,
    http_date_to_timestamp,
    is_strong,
    parse_content_range,
    unsatisfied_total,
    validators_of,
)
from .storage import FileLock, PartFile, check_free_space, finalize, has_holes, local_error
from .transport import RetryPolicy, check_url, new_session, origin, redact
from .verify import file_digest, matches

log = logging.getLogger(__name__)

#: How often the remote may change under one download before accel gives up.
MAX_RESTARTS = 3
#: Seconds the run thread waits for workers to wind down after cancel or error.
STOP_GRACE = 1.0
_TICK = 0.05
#: Seconds a connection must have run before its speed is trusted for stealing and hedging.
JUDGE_AFTER = 0.15
#: A segment expected to finish sooner than this (seconds) is not split.
MIN_STEAL_ETA = 0.25
#: Seconds without progress after which a connection counts as stalled.
STALL_AFTER = 1.0
#: How long a 429/503 keeps the number of connections lowered.
THROTTLE_PERIOD = 30.0
_UNKNOWN_END = 2**63 - 2

SessionFactory = Callable[[], requests.Session]


class _Renamed(Exception):
    """The server named the file: try again under that name (not a restart)."""


class _Restart(Exception):
    """Discard progress and start over (the remote changed, or cannot be ranged)."""

    def __init__(self, reason: str, *, single_stream: bool = False) -> None:
        super().__init__(reason)
        self.single_stream = single_stream


class Downloader:
    """Download one URL with parallel ranged requests into a file, resumably.

    ``output`` is the file to create (a directory means "inside it"); by default the name
    comes from the server's Content-Disposition or the URL, in ``directory`` (default: the
    current directory). :meth:`run` blocks and returns the final path, raising
    :class:`accel.AccelError` subclasses; :meth:`cancel` may be called from any thread.
    """

    def __init__(
        self,
        url: str,
        output: Union[str, os.PathLike, None] = None,
        *,
        directory: Union[str, os.PathLike, None] = None,
        connections: int = 8,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
        retries: int = 5,
        force: bool = False,
        verify: Union[bool, str] = True,
        checksum: Optional[str] = None,
        limit_rate: Optional[Union[int, RateLimiter]] = None,
        mirrors: Sequence[str] = (),
        max_filesize: Optional[int] = None,
        min_split: Optional[int] = None,
        session_factory: Optional[SessionFactory] = None,
        on_progress: Optional[Callable[[int], Any]] = None,
        on_event: Optional[Callable[[ev.Event], Any]] = None,
        options: Optional[Options] = None,
    ) -> None:
        self.url = check_url(url)
        if options is None:
            extra = {} if min_split is None else {"min_split": min_split}
            if not isinstance(retries, int) or retries < 0:
                raise UsageError("retries must be a whole number >= 0")
            options = Options(
                connections=connections,
                headers=normalize_headers(headers),
                timeout=timeout,
                retry=RetryPolicy(attempts=retries),
                force=force,
                verify=verify,
                checksum=checksum,
                limit_rate=limit_rate,
                mirrors=tuple(mirrors),
                max_filesize=max_filesize,
                **extra,
            )
        self.options = options
        self._output = Path(output) if output is not None else None
        self._directory = Path(directory) if directory is not None else None
        self._session_factory = session_factory
        self._on_progress = on_progress
        self._on_event = on_event
        self._cancel = threading.Event()
        self._transfer: Optional[_Transfer] = None
        self._name: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._adopted = False
        self._probe_slot: Optional[str] = None
        self._hashed: Dict[Path, bool] = {}  # files already compared with the checksum
        self._finished = threading.Event()
        self._result: Optional[Path] = None
        self._error: Optional[BaseException] = None
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

        Callbacks then run on that thread. Use :meth:`wait`, :attr:`done` and
        :meth:`result` to follow it.
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
        if not self.wait(timeout):
            raise TimeoutError("the download is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

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

    def new_session(self) -> requests.Session:
        """A fresh session configured for this download (one per worker thread)."""
        if self._session_factory is not None:
            return self._session_factory()
        return new_session(
            headers=dict(self.options.headers),
            verify=self.options.verify,
            retry=self.options.retry,
            trusted_origin=self.url,
        )

    @property
    def timeouts(self) -> Tuple[float, float]:
        """(connect, read) timeouts for requests."""
        return (self.options.connect_timeout, self.options.timeout)

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
            # One session per attempt: the worker that continues the probe's response adopts
            # it, so the probe's connection is reused for the first segment.
            session = self.new_session()
            self._adopted = False
            try:
                return self._attempt(session, discard=discard, single_stream=single_stream)
            except _Renamed:
                continue  # look for an earlier run under the server's name, then go on
            except _Restart as exc:
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
            finally:
                if not self._adopted:
                    session.close()

    def _attempt(self, session: requests.Session, *, discard: bool, single_stream: bool) -> Path:
        dest = self._target()
        part = dest.with_name(dest.name + ".part")
        if self._directory is not None:
            try:
                self._directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise local_error(exc, f"cannot create directory {self._directory}") from exc
        if not dest.parent.is_dir():
            raise LocalFileError(f"cannot save into {dest.parent}: not a directory")
        with FileLock(part.with_name(part.name + ".lock")):
            return self._attempt_locked(session, dest, part, discard, single_stream)

    def _attempt_locked(
        self, session: requests.Session, dest: Path, part: Path, discard: bool, single_stream: bool
    ) -> Path:
        self._probe_slot = self._take_slot()
        try:
            return self._attempt_slotted(session, dest, part, discard, single_stream)
        finally:
            if self._probe_slot is not None and self.options.host_slots is not None:
                self.options.host_slots.release(self._probe_slot)  # not handed to a transfer
            self._probe_slot = None

    def _take_slot(self) -> Optional[str]:
        """Wait for a connection slot to the host (shared HostSlots) for the probe."""
        slots = self.options.host_slots
        if slots is None:
            return None
        netloc = slot_key(self.url)
        while not slots.try_acquire(netloc):
            if self._cancel.wait(0.05):
                raise CancelledError("cancelled")
        return netloc

    def _attempt_slotted(
        self, session: requests.Session, dest: Path, part: Path, discard: bool, single_stream: bool
    ) -> Path:
        side = state.sidecar_path(part)
        record = None if discard else self._load_record(side, part)
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
            if pending:
                probe = self._probe(session, pending[0].start, pending[0].end, known)
            else:
                probe = self._probe(session, record.size, None, known)
        else:
            known = None
            # A bounded first range: it tells the size and starts the first segment without
            # making the server push more than the first segment needs.
            probe_end = max(self.options.min_split, CHUNK) - 1
            probe = self._probe(session, 0, probe_end, None, plain=single_stream)

        remote, resp = probe
        try:
            renamed = remote.filename and remote.filename != dest.name
            if self._output is None and self._name is None and renamed:
                # The server names the file: look again for an earlier run under that name.
                self._name = remote.filename
                raise _Renamed()
            if record is not None and resp is None:
                # 416 for a fully written file whose validators match: complete.
                return self._finish(
                    PartFile.open_existing(part), part, side, dest, remote, record.size
                )
            if record is None:
                done = self._already_complete(dest, remote)
                if done is not None:
                    if resp is not None:
                        resp.close()
                    return done
            return self._transfer_all(session, dest, part, side, remote, resp, record, segments)
        except BaseException:
            if resp is not None:
                resp.close()
            raise

    def _load_record(self, side: Path, part: Path) -> Optional[state.Record]:
        if not side.exists() and not side.is_symlink():
            return None
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

    def _probe(
        self,
        session: requests.Session,
        start: int,
        end: Optional[int],
        known: Optional[Validators],
        *,
        plain: bool = False,
    ) -> Tuple[RemoteFile, Optional[requests.Response]]:
        """The first request: learn the remote file and, usually, start its first range.

        Returns the remote description and an open response positioned at ``start`` (None
        when the range is unsatisfiable because the file is complete or empty).
        """
        failures = 0
        policy = self.options.retry
        while True:
            try:
                return self._probe_once(session, start, end, known, plain=plain)
            except Retryable as exc:
                failures += 1
                if failures > policy.attempts:
                    raise _gave_up(exc, redact(self.url), policy.attempts) from None
                delay = policy.delay(failures, exc.retry_after)
                log.info("probe failed (%s); retrying in %.1fs", exc, delay)
            except RangesUnsupported as exc:
                if plain:
                    raise RemoteProtocolError(str(exc)) from None
                log.info("%s; downloading as one stream", exc)
                plain = True
                continue
            if self._cancel.wait(delay):
                raise CancelledError("cancelled")

    def _probe_once(
        self,
        session: requests.Session,
        start: int,
        end: Optional[int],
        known: Optional[Validators],
        *,
        plain: bool,
    ) -> Tuple[RemoteFile, Optional[requests.Response]]:
        headers = {} if plain else range_headers(start, end, known)
        resp = get(session, self.url, headers, self.timeouts)
        try:
            status = resp.status_code
            if status == 416:
                total = unsatisfied_total(resp.headers.get("Content-Range"))
                seen = validators_of(resp.headers, total)
                if known is not None:
                    if total != known.size or not known.same_version(seen):
                        raise _Restart("the remote file changed (range not satisfiable)")
                    if start < total:
                        # A range inside the file cannot be unsatisfiable: a broken answer.
                        raise BadResponse(f"416 for bytes {start}- of a {total}-byte file")
                    resp.close()
                    return describe(resp.url, resp.headers, total, ranges=True), None
                if total == 0:
                    resp.close()
                    return describe(resp.url, resp.headers, 0, ranges=True), None
                raise RangesUnsupported("the server refused the range request")
            raise_for_status(resp)
            if status == 200:
                if known is not None:
                    raise _Restart("the server sent the whole file: it changed or cannot resume")
                size = content_length(resp.headers)
                if resp.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    size = None
                return describe(resp.url, resp.headers, size, ranges=False), resp
            if status != 206 or plain:
                raise BadResponse(f"unexpected status {status} for a range request")
            try:
                total = check_partial(status, resp.headers, start, end, known)
            except (RemoteChanged, TotalMismatch) as exc:
                # Resuming, a total other than the record's means the record cannot be used.
                raise _Restart(f"the remote file changed ({exc})") from None
            return describe(resp.url, resp.headers, total, ranges=True), resp
        except BaseException:
            resp.close()
            raise

    def _transfer_all(
        self,
        session: requests.Session,
        dest: Path,
        part_path: Path,
        side: Path,
        remote: RemoteFile,
        resp: Optional[requests.Response],
        record: Optional[state.Record],
        segments: List[Segment],
    ) -> Path:
        size = remote.size
        limit = self.options.max_filesize
        if limit is not None and size is not None and size > limit:
            raise FileTooLargeError(
                f"{redact(self.url)} is {size} bytes, more than the {limit} allowed"
            )
        ranged = remote.ranges and size is not None
        # Mirrors must agree before anything is created on disk.
        mirrors = self._mirror_sources(session, remote, ranged)
        if record is None:
            if size == 0 or resp is None:
                segments = []
            elif ranged:
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
        transfer = _Transfer(
            self,
            part,
            segments,
            remote,
            side if resumable else None,
            ranged=ranged,
            probe_session=session,
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
            final_size = transfer.run(resp)
            if size is None:
                # A stream of unknown length: drop whatever an earlier, longer attempt left.
                part.truncate(final_size)
        except BaseException:
            transfer.release()
            raise
        return self._finish(part, part_path, side, dest, remote, final_size, transfer)

    def _mirror_sources(
        self, session: requests.Session, remote: RemoteFile, ranged: bool
    ) -> List[_Source]:
        """Check each mirror serves the same file (size, ETag where given).

        A mirror that cannot be reached, or gives no validator to detect a change with, is
        left out with a warning; one that serves another file stops the download with
        :class:`VerificationError`.
        """
        urls = self.options.mirrors
        if not urls:
            return []
        if not ranged:
            log.warning("the server does not serve ranges: mirrors are not used")
            return []
        sources = []
        mine = remote.validators
        for url in urls:
            try:
                final_url, total, seen = first_byte(session, url, None, self.timeouts)
            except (Retryable, RangesUnsupported, NetworkError, HTTPError) as exc:
                log.warning("mirror %s is not usable (%s); continuing without it", redact(url), exc)
                continue
            if total != mine.size:
                raise VerificationError(
                    f"mirror {redact(url)} serves {total} bytes, {redact(self.url)} {mine.size}"
                )
            if is_strong(mine.etag) and is_strong(seen.etag) and mine.etag != seen.etag:
                raise VerificationError(
                    f"mirror {redact(url)} has ETag {seen.etag}, {redact(self.url)} {mine.etag}"
                )
            if not seen.resumable:
                log.warning("mirror %s gives no ETag or Last-Modified; not used", redact(url))
                continue
            sources.append(_Source(final_url, url, seen))
        return sources

    def _finish(
        self,
        part: PartFile,
        part_path: Path,
        side: Path,
        dest: Path,
        remote: RemoteFile,
        size: int,
        transfer: Optional[_Transfer] = None,
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


class _Source:
    """One URL the file is fetched from: the main URL (after redirects) or a mirror."""

    def __init__(self, url: str, original: str, validators: Validators) -> None:
        self.url = url
        self.original = original
        self.validators = validators
        self.dead = False
        self.active = 0
        self.refreshed = False


class _Transfer:
    """The worker pool for one attempt: scheduling, stealing, hedging, commits."""

    def __init__(
        self,
        dl: Downloader,
        part: PartFile,
        segments: List[Segment],
        remote: RemoteFile,
        side: Optional[Path],
        *,
        ranged: bool,
        probe_session: Optional[requests.Session] = None,
        mirrors: Sequence[_Source] = (),
    ) -> None:
        self.dl = dl
        self.probe_session = probe_session
        self.opts = dl.options
        self.part = part
        self.segments = sorted(segments, key=lambda s: s.start)
        self.remote = remote
        self.sources = [_Source(remote.url, dl.url, remote.validators), *mirrors]
        self.side = side
        self.ranged = ranged
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events: queue.Queue[Tuple[str, Any]] = queue.Queue()
        self.tasks: Dict[Segment, List[Task]] = {}
        self.pending: Deque[Segment] = collections.deque(s for s in self.segments if not s.done)
        self.synced: Dict[int, int] = {}
        self.boot = state.boot_id()
        self.workers: List[threading.Thread] = []
        self.finished_rates: Deque[float] = collections.deque(maxlen=16)
        # Stolen tail pieces may be smaller than planned segments, down to 256 KiB.
        self.piece = max(min(self.opts.min_split, 4 * ALIGN), self.opts.min_split // 4)
        self.reported = sum(s.written for s in self.segments)
        self._last_rate_sample: Tuple[float, int] = (time.monotonic(), self.reported)
        self.rate = 0.0
        self._syncer: Optional[threading.Thread] = None
        self.cap = self.opts.connections  # lowered for a while after 429/503
        self.cap_until = 0.0
        self._released = False
        # Without a boot id, a record cannot tell a process crash from a power loss:
        # then every commit syncs the data first, so "written" is always "synced".
        self.sync_each_commit = self.side is not None and self.boot is None

    # -- scheduling (all under self.lock) ----------------------------------------------------

    def _written(self, seg: Segment) -> int:
        best = seg.written
        for t in self.tasks.get(seg, ()):
            best = max(best, t.pos - seg.start)
        return min(best, seg.length)

    def _new_task(
        self,
        seg: Segment,
        pos: Optional[int] = None,
        *,
        force: bool = False,
        slot: Optional[str] = None,
    ) -> Optional[Task]:
        """A task for ``seg`` (under lock), or None when the host has no free connection slot."""
        alive = [s for s in self.sources if not s.dead]
        if not alive:
            return None
        source = self.sources[0] if force else min(alive, key=lambda s: s.active)
        host = slot
        slots = self.opts.host_slots
        if slots is not None and host is None:
            netloc = slot_key(source.url)
            if slots.try_acquire(netloc):
                host = netloc
            elif not force:
                return None
        task = Task(seg, seg.pos if pos is None else pos, until_eof=self.remote.size is None)
        task.host = host
        task.source = source
        source.active += 1
        self.tasks.setdefault(seg, []).append(task)
        return task

    def _switch_source(self, task: Task, exc: BaseException) -> bool:
        """Drop the task's failing source if another is alive, and move the task there."""
        with self.lock:
            failed: _Source = task.source
            others = [s for s in self.sources if not s.dead and s is not failed]
            if not others or (isinstance(exc, RemoteChanged) and failed is self.sources[0]):
                return False
            failed.dead = True
            failed.active -= 1
            task.source = min(others, key=lambda s: s.active)
            task.source.active += 1
            self._move_slot(task, task.source.url)
        log.warning("dropping source %s: %s", redact(failed.url), exc)
        return True

    def _move_slot(self, task: Task, url: str) -> None:
        """Hold the task's host slot for the host of ``url`` (under lock)."""
        slots = self.opts.host_slots
        netloc = slot_key(url)
        if slots is None or task.host == netloc:
            return
        if task.host is not None:
            slots.release(task.host)
        # Over the cap for this one task rather than stalling a range already under way.
        task.host = netloc if slots.try_acquire(netloc) else None

    def throttle(self) -> None:
        """The server said 429/503: use one connection fewer for a while (any thread)."""
        with self.lock:
            live = sum(len(ts) for ts in self.tasks.values())
            cap = max(1, min(self.cap, live) - 1)
            if cap < self.cap:
                log.info("server is overloaded (429/503): using at most %d connections", cap)
            self.cap = cap
            self.cap_until = time.monotonic() + THROTTLE_PERIOD

    def _over_cap(self, extra: int = 0) -> bool:
        """Whether the live connections (plus ``extra``) exceed the current cap (under lock)."""
        if self.cap < self.opts.connections and time.monotonic() >= self.cap_until:
            self.cap = self.opts.connections
        return sum(len(ts) for ts in self.tasks.values()) + extra > self.cap

    def _next_task(self) -> Optional[Task]:
        with self.lock:
            if self._over_cap(extra=1):
                return None
            while self.pending:
                seg = self.pending[0]
                if seg.done or self.tasks.get(seg):
                    self.pending.popleft()
                    continue
                task = self._new_task(seg)
                if task is not None:
                    self.pending.popleft()
                return task
            if not self.ranged:
                return None
            now = time.monotonic()
            typical = self._typical_rate(now)
            return self._steal(now, typical) or self._hedge(now, typical)

    def _steal(self, now: float, typical: float) -> Optional[Task]:
        """Split the tail of the slowest segment for an idle worker (under lock).

        The owner keeps what it can fetch in about the time the thief needs for the rest
        (an even split between equals; a straggler keeps little), and at least one read.
        """
        live = [
            (seg, tasks[0])
            for seg, tasks in self.tasks.items()
            if len(tasks) == 1 and not tasks[0].abort and not seg.done
        ]
        # Workers without a task (this thief included) will share what the victim gives up.
        idle = max(1, self.opts.connections - sum(len(ts) for ts in self.tasks.values()))
        best: Optional[Tuple[float, Segment, int]] = None
        for seg, task in live:
            young = now - task.started <= JUDGE_AFTER  # too early to judge its speed
            if young and typical <= 0:
                continue  # nothing known about speeds yet: splitting now would be a guess
            rate = typical if young else task.rate(now)
            thieves = idle * (typical if typical > 0 else 1.0)
            share = rate / (rate + thieves) if rate > 0 else 1.0 / (1 + idle)
            point = steal_point(
                task.pos, seg.end, self.piece, margin=_read_margin(task), share=share
            )
            if point is None:
                continue
            eta = (seg.end + 1 - task.pos) / rate if rate > 0 else float("inf")
            if eta < MIN_STEAL_ETA:
                continue  # done before a new request would even get its first byte
            if best is None or eta > best[0]:
                best = (eta, seg, point)
        if best is None:
            return None
        _, victim, point = best
        new = Segment(point, victim.end)
        task = self._new_task(new)
        if task is None:
            return None
        victim.end = point - 1
        self.segments.append(new)
        self.segments.sort(key=lambda s: s.start)
        log.debug("stole %d-%d from segment at %d", new.start, new.end, victim.start)
        return task

    def _typical_rate(self, now: float) -> float:
        """The median speed of a connection: finished tasks and live ones old enough to judge."""
        rates = list(self.finished_rates)
        rates += [
            t.rate(now) for ts in self.tasks.values() for t in ts if now - t.started > JUDGE_AFTER
        ]
        rates = [r for r in rates if r > 0]
        return sorted(rates)[len(rates) // 2] if rates else 0.0

    def _hedge(self, now: float, typical: float) -> Optional[Task]:
        """Race a straggling tail from its current position with an idle worker (under lock).

        A segment is raced when a typical connection would finish what is left more than
        ``hedge_after`` seconds sooner (and in under half the time), or when it made no
        progress for a second (or ``hedge_after``, if longer).
        """
        best: Optional[Tuple[float, Task]] = None
        for seg, tasks in self.tasks.items():
            if len(tasks) != 1 or tasks[0].abort or seg.done:
                continue
            task = tasks[0]
            remaining = seg.end + 1 - task.pos
            stalled = now - task.last_progress
            if stalled < max(STALL_AFTER, self.opts.hedge_after):
                if now - task.started < JUDGE_AFTER:
                    continue  # too early to judge its speed
                rate = task.rate(now)
                eta = remaining / rate if rate > 0 else float("inf")
                fresh = remaining / typical if typical > 0 else 0.0
                if eta - fresh < self.opts.hedge_after or eta < 2 * fresh:
                    continue  # a new connection would not finish clearly sooner
            else:
                eta = float("inf")
            if best is None or eta > best[0]:
                best = (eta, task)
        if best is None:
            return None
        victim = best[1]
        log.debug("hedging segment %d-%d from %d", victim.seg.start, victim.seg.end, victim.pos)
        return self._new_task(victim.seg, victim.pos)

    def _release(self, task: Task) -> None:
        """The worker lets go of ``task``: fold its progress into the segment."""
        seg = task.seg
        with self.lock:
            was_done = seg.done
            seg.written = max(seg.written, min(task.pos, seg.end + 1) - seg.start)
            tasks = self.tasks.get(seg, [])
            if task in tasks:
                tasks.remove(task)
                task.source.active -= 1
                now = time.monotonic()
                if task.pos > task.base and now - task.started > JUDGE_AFTER:
                    self.finished_rates.append(task.rate(now))
                if task.host is not None and self.opts.host_slots is not None:
                    self.opts.host_slots.release(task.host)
            if not tasks:
                self.tasks.pop(seg, None)
            if seg.done:
                for other in tasks:  # a hedge race is over: stop the loser
                    other.abort = True
                    other.kill_connection()
                if not was_done:
                    self.events.put(("event", ev.SegmentCompleted(seg.start, seg.end)))
            elif not tasks and not self.stop.is_set():
                self.pending.append(seg)

    def _all_done(self) -> bool:
        with self.lock:
            return all(self._written(s) >= s.length for s in self.segments)

    # -- workers -----------------------------------------------------------------------------

    def _worker(
        self,
        first: Optional[Tuple[Task, requests.Response]],
        session: Optional[requests.Session] = None,
    ) -> None:
        try:
            if session is None:
                session = self.dl.new_session()
            # A read never exceeds min_split (the steal margin) nor a tenth of a second of
            # the rate limit (so the limiter's waits stay short).
            limiter = self.opts.limit_rate
            limit = min(READ_MAX, self.opts.min_split)
            if isinstance(limiter, RateLimiter):
                limit = min(limit, limiter.read_size)
            buffer = ReadBuffer(limit)
            if first is not None:
                self._run_task(session, first[0], first[1], buffer)
            while not self.stop.is_set():
                task = self._next_task()
                if task is None:
                    if self._all_done():
                        break
                    self.stop.wait(_TICK)
                    continue
                self._run_task(session, task, None, buffer)
        except BaseException as exc:
            self.events.put(("error", exc))
        finally:
            if session is not None:
                session.close()
            self.events.put(("exit", threading.current_thread()))

    def _run_task(
        self,
        session: requests.Session,
        task: Task,
        resp: Optional[requests.Response],
        buffer: ReadBuffer,
    ) -> None:
        policy = self.opts.retry
        failures = mismatches = 0
        progress_mark = task.pos
        task.buffer = buffer
        try:
            while not (task.abort or self.stop.is_set()):
                if task.pos > task.seg.end:
                    return
                if resp is None:
                    with self.lock:
                        if self._over_cap():
                            return  # throttled: hand the segment back for later
                try:
                    if resp is None:
                        resp = self._request(session, task)
                    task.response = resp
                    covered = _response_end(resp)
                    limiter = self.opts.limit_rate
                    assert limiter is None or isinstance(limiter, RateLimiter)
                    if stream(
                        resp, self.part.fd, task, self.stop, resp_end=covered, limiter=limiter
                    ):
                        if task.until_eof:
                            if task.pos > task.seg.end:
                                raise FileTooLargeError(
                                    f"{redact(self.dl.url)} is larger than the "
                                    f"{self.opts.max_filesize} bytes allowed"
                                )
                            self._eof(task)
                        return
                    # Stopped, or the response covered only part of the segment (the probe):
                    # the loop asks for the rest on the same connection.
                except (NetworkError, HTTPError, RemoteChanged) as exc:
                    if task.abort or self.stop.is_set() or not self._switch_source(task, exc):
                        raise
                    failures, progress_mark = 0, task.pos
                except Retryable as exc:
                    if task.abort or self.stop.is_set():
                        return
                    if task.pos > progress_mark:
                        failures, progress_mark = 0, task.pos
                        mismatches = 0
                    failures += 1
                    if isinstance(exc, TotalMismatch):
                        mismatches += 1
                        if mismatches >= 2:
                            # The server keeps giving another size than the plan's: the plan
                            # (or the first answer) was wrong. Start over from a new probe.
                            raise RemoteChanged(str(exc)) from None
                    with self.lock:
                        several = sum(not s.dead for s in self.sources) > 1
                    # With other sources to turn to, a failing one is given up on sooner.
                    if failures > (min(policy.attempts, 2) if several else policy.attempts):
                        error = _gave_up(exc, redact(task.source.url), failures - 1)
                        if self._switch_source(task, error):
                            failures, progress_mark = 0, task.pos
                            continue
                        raise error from None
                    if exc.status in (429, 503):
                        self.throttle()
                    delay = policy.delay(failures, exc.retry_after)
                    self.events.put(
                        ("event", ev.Retrying(task.seg.start, failures, delay, str(exc)))
                    )
                    log.info(
                        "bytes %d-%d: %s; retry %d in %.1fs",
                        task.pos,
                        task.seg.end,
                        exc,
                        failures,
                        delay,
                    )
                    if not self.ranged:
                        task.pos = task.base = 0  # a plain stream starts over from the first byte
                        task.seg.written = 0
                    self.stop.wait(delay)
                finally:
                    task.response = None
                    if resp is not None:
                        finish(resp)
                        resp = None
        finally:
            self._release(task)

    def _eof(self, task: Task) -> None:
        """A stream of unknown length ended: its length is now known."""
        with self.lock:
            task.seg.end = max(task.pos - 1, task.seg.start - 1)

    def _request(self, session: requests.Session, task: Task) -> requests.Response:
        source: _Source = task.source
        if not self.ranged:
            resp = get(session, source.url, {}, self.dl.timeouts)
            try:
                raise_for_status(resp)
                if resp.status_code != 200:
                    raise BadResponse(f"unexpected status {resp.status_code}")
                length = content_length(resp.headers)
                if (
                    self.remote.size is not None
                    and length is not None
                    and length != self.remote.size
                ):
                    raise RemoteChanged(f"size changed from {self.remote.size} to {length}")
            except BaseException:
                resp.close()
                raise
            return resp

        def ask() -> requests.Response:
            return request_range(
                session,
                source.url,
                task.pos,
                task.seg.end,
                source.validators,
                timeout=self.dl.timeouts,
            )

        try:
            return ask()
        except HTTPError as exc:
            if exc.status in REFRESH_STATUSES and self._refresh(session, source):
                return ask()  # now at the freshly resolved URL
            raise

    def _refresh(self, session: requests.Session, source: _Source) -> bool:
        """Resolve a redirected URL again, once (an expired signed redirect target)."""
        with self.lock:
            if source.refreshed or source.url == source.original:
                return False
            source.refreshed = True
        final_url, _, _ = first_byte(session, source.original, source.validators, self.dl.timeouts)
        log.info("resolved %s again: now %s", redact(source.original), redact(final_url))
        source.url = final_url
        return True

    # -- the run thread ----------------------------------------------------------------------

    def run(self, first: Optional[requests.Response]) -> int:
        """Fetch every segment; return the final size. Raises on failure or cancel."""
        if self.side is not None and any(s.written for s in self.segments):
            # Resuming: make the earlier run's bytes durable so they count as synced.
            self.part.sync()
            self.synced = {s.start: s.written for s in self.segments}
        self.commit()
        self._start_workers(first)
        try:
            error = self._loop()
        except BaseException:  # KeyboardInterrupt in the caller's thread: stop, keep state
            self._wind_down()
            self.commit()
            raise
        self._wind_down()
        self._drain_events()
        self._publish()
        if error is None and self.dl._cancel.is_set() and not self._all_done():
            self.commit()
            raise CancelledError("download cancelled; run again to resume")
        if error is not None:
            if isinstance(error, RemoteChanged):
                raise _Restart(f"the remote file changed ({error})") from None
            if isinstance(error, RangesUnsupported):
                raise _Restart(f"{error}", single_stream=True) from None
            self.commit()
            if isinstance(error, AccelError):
                raise error
            raise AccelError(f"internal error: {error!r}") from error
        return max((s.end + 1 for s in self.segments), default=0)

    def _start_workers(self, first: Optional[requests.Response]) -> None:
        first_task = None
        if first is not None:
            with self.lock:
                seg = next((s for s in self.pending if s.pos == _response_start(first)), None)
                if seg is not None:
                    self.pending.remove(seg)
                    first_task = self._new_task(seg, force=True, slot=self.dl._probe_slot)
                    self.dl._probe_slot = None  # the first task holds it now
                    if first_task is not None:
                        self._move_slot(first_task, self.remote.url)  # after redirects
            if first_task is None:
                first.close()
        if not self.pending and first_task is None:
            count = 0
        elif not self.ranged:
            count = 1
        else:
            count = self.opts.connections  # more workers than segments steal from the others
        for i in range(count):
            arg = (first_task, first) if (i == 0 and first_task is not None) else None
            adopt = None
            if arg is not None and self.probe_session is not None:
                adopt = self.probe_session  # keep the probe's connection for the first segment
                self.dl._adopted = True
            t = threading.Thread(
                target=self._worker, args=(arg, adopt), name=f"accel-worker-{i}", daemon=True
            )
            self.workers.append(t)
            t.start()

    def _loop(self) -> Optional[BaseException]:
        """Deliver events, report progress, commit and watch until done, cancelled or failed."""
        alive = len(self.workers)
        error: Optional[BaseException] = None
        last_commit = last_sync = time.monotonic()
        while True:
            try:
                kind, payload = self.events.get(timeout=_TICK)
            except queue.Empty:
                kind, payload = "", None
            while kind:
                if kind == "error" and error is None:
                    error = payload
                elif kind == "exit":
                    alive -= 1
                elif kind == "event":
                    self.dl._emit(payload)
                try:
                    kind, payload = self.events.get_nowait()
                except queue.Empty:
                    kind = ""
            self._publish()
            if error is not None or self.dl._cancel.is_set() or self._all_done():
                return error
            if alive <= 0:
                return AccelError("internal error: all workers stopped before the end")
            now = time.monotonic()
            if now - last_commit >= self.opts.commit_interval:
                self.commit()
                last_commit = now
            if self.side is not None and now - last_sync >= self.opts.sync_interval:
                self._start_sync()
                last_sync = now
            self._watchdog(now)

    def _wind_down(self) -> None:
        self.stop.set()
        with self.lock:
            tasks = [t for ts in self.tasks.values() for t in ts]
        for task in tasks:
            task.kill_connection()
        deadline = time.monotonic() + STOP_GRACE
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _drain_events(self) -> None:
        while True:
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "event":
                self.dl._emit(payload)

    def _publish(self) -> None:
        with self.lock:
            total = sum(self._written(s) for s in self.segments)
        delta = total - self.reported
        self.reported = total
        now = time.monotonic()
        t0, b0 = self._last_rate_sample
        if now - t0 >= 0.5:
            self.rate = (total - b0) / (now - t0)
            self._last_rate_sample = (now, total)
        self.dl._report(delta)

    def _watchdog(self, now: float) -> None:
        limit = self.opts.low_speed_limit
        if not limit:
            return
        window = self.opts.low_speed_time
        with self.lock:
            tasks = [t for ts in self.tasks.values() for t in ts]
        for task in tasks:
            if task.response is None or now - task.started < window:
                continue
            if task.rate(now) < limit:
                log.info(
                    "connection for bytes %d-%d below %d B/s; reconnecting",
                    task.pos,
                    task.seg.end,
                    limit,
                )
                task.started, task.base = now, task.pos
                task.kill_connection()

    def commit(self) -> None:
        """Save the sidecar with what is written now (and what is known synced)."""
        if self.side is None:
            return
        rows = self._rows()
        if self.sync_each_commit:
            self.part.sync()
            synced = {s: w for s, _, w, _ in rows}
            rows = [(s, e, w, w) for s, e, w, _ in rows]
            with self.lock:
                self.synced.update(synced)
        state.save(
            self.side,
            state.Record(
                redact(self.dl.url),
                self.remote.size or 0,
                self.remote.validators.etag,
                self.remote.validators.last_modified,
                rows,
                self.boot,
            ),
        )

    def _rows(self) -> List[Tuple[int, int, int, int]]:
        with self.lock:
            return state.snapshot(self.segments, self.synced, self._written)

    def _start_sync(self) -> None:
        if self._syncer is not None and self._syncer.is_alive():
            return

        def sync() -> None:
            rows = self._rows()
            try:
                self.part.sync()
            except AccelError as exc:  # the kernel may have dropped data: stop, claim nothing new
                self.events.put(("error", exc))
                return
            with self.lock:
                for s, _, w, _ in rows:
                    self.synced[s] = max(self.synced.get(s, 0), w)

        self._syncer = threading.Thread(target=sync, name="accel-sync", daemon=True)
        self._syncer.start()

    def release(self) -> None:
        """Close the part file once no thread can write to it any more."""
        if self._released:
            return
        self._released = True
        threads = [*self.workers, *([self._syncer] if self._syncer else [])]
        if all(not t.is_alive() for t in threads):
            self.part.close()
            return

        def reap() -> None:  # a worker stuck in a read: close the file when it is gone
            for t in threads:
                t.join()
            self.part.close()

        threading.Thread(target=reap, name="accel-reaper", daemon=True).start()

    def snapshot(self) -> ev.Progress:
        """Progress for :meth:`Downloader.progress`."""
        with self.lock:
            total = self.remote.size
            written = sum(self._written(s) for s in self.segments)
            live = sum(len(ts) for ts in self.tasks.values())
            cells = _segment_map(self.segments, self.tasks, total, self._written)
        rate = self.rate
        eta = (total - written) / rate if total is not None and rate > 0 else None
        return ev.Progress(written, total, rate, eta, live, cells)


def slot_key(url: str) -> str:
    """The HostSlots key of ``url``: host and port, never credentials."""
    _, host, port = origin(url)
    return f"{host}:{port}"


def _gave_up(exc: Retryable, where: str, retries: int) -> AccelError:
    """The error to raise when ``exc`` is still happening after ``retries`` retries."""
    message = f"{where}: {exc} (gave up after {retries} retries)"
    if exc.status is not None:
        return HTTPError(message, status=exc.status, url=where)
    if isinstance(exc, BadResponse):
        return RemoteProtocolError(message)
    return NetworkError(message)


def _read_margin(task: Task) -> int:
    """The most a task's worker may be writing right now (its read size)."""
    buffer = task.buffer
    return buffer.size if buffer is not None else CHUNK


def _response_start(resp: requests.Response) -> int:
    if resp.status_code == 200:
        return 0
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed[0] if parsed else -1


def _response_end(resp: requests.Response) -> Optional[int]:
    """The last offset a validated 206 covers (None for a 200 stream)."""
    if resp.status_code != 206:
        return None
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed[1] if parsed else None


def _segment_map(
    segments: List[Segment],
    tasks: Dict[Segment, List[Task]],
    total: Optional[int],
    written: Callable[[Segment], int],
    width: int = 32,
) -> str:
    """A row of cells: ``#`` written, ``>`` in flight, ``.`` missing."""
    if not total:
        return ""
    cells = []
    for i in range(width):
        lo, hi = total * i // width, max(total * (i + 1) // width - 1, total * i // width)
        state_ = "#"
        for seg in segments:
            if seg.end < lo or seg.start > hi:
                continue
            done_to = seg.start + written(seg) - 1
            if done_to < min(hi, seg.end):
                state_ = ">" if seg in tasks else "."
                if state_ == ".":
                    break
        cells.append(state_)
    return "".join(cells)


__all__ = ["CHUNK", "Downloader", "check_url", "redact"]
