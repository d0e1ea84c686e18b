"""The many-small-files path: one thread, one ``selectors`` loop, keep-alive connections.

A :class:`Loop` runs at most ``jobs`` :class:`~accel._engine.small.SmallJob` at a time on
non-blocking keep-alive connections (curl's multi interface and aria2's event loop are the
model): no worker pool, watchdog, lock file or sidecar per file, no thread per file. It
honours the shared rate limit (a connection over budget pauses: the socket is not read,
TCP slows the server) and the per-host connection caps (a connection holds a slot while it
carries a download). A file the loop cannot or should not finish goes back to its owner
(``job.regular``) before a byte of its body is kept, except a big ranged file, whose first
window is kept with a sidecar so that the segmented engine resumes after it.

:meth:`submit`, :meth:`cancel` and :meth:`close` may be called from any thread; everything
else runs on the loop's thread.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

from accel._disk.storage import prepare_directory
from accel._engine.small import SmallFile, SmallJob
from accel._http.wire import RECV, Connection, Dialer, WireError
from accel._util.urls import redact
from accel.exceptions import AccelError

log = logging.getLogger(__name__)

#: Seconds a loop with nothing to do waits for more before its thread ends.
IDLE_EXIT = 5.0
#: Seconds between two looks at stalled connections and waiting host slots.
SWEEP = 0.05
#: Threads that make connections (DNS, TCP, TLS block) while the loop goes on.
DIALERS = 4
#: Idle keep-alive connections kept per origin.
MAX_IDLE = 16


class _Active:
    """A download on a connection."""

    __slots__ = ("conn", "deadline", "ended", "file", "fresh", "job", "out", "paused")

    def __init__(self, job: SmallJob, file: SmallFile, conn: Connection, fresh: bool) -> None:
        self.job = job
        self.file = file
        self.conn = conn
        self.fresh = fresh  # a new connection (a reused one may have been closed meanwhile)
        self.out = b""  # request bytes not yet written
        self.deadline = 0.0
        self.paused = False
        self.ended = False  # the response is all read (waiting out the rate budget)


class Loop:
    """Runs small downloads, ``jobs`` at a time, on one thread (see the module)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._inbox: Deque[Tuple[str, Any]] = collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self._waiting = False  # the loop sleeps in select(): wake it
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # loop thread only:
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: Deque[SmallJob] = collections.deque()
        self._active: Dict[Connection, _Active] = {}
        self._idle: Dict[Any, List[Connection]] = {}
        self._dialers: Dict[Any, Optional[Dialer]] = {}
        self._dirs: Set[Path] = set()
        self._view = memoryview(bytearray(RECV))  # every read lands here first
        self._timers: List[Tuple[float, int, Any]] = []  # (when, serial, Connection | job)
        self._retrying: Set[SmallJob] = set()  # waiting to try again
        self._dialing: Dict[SmallJob, SmallFile] = {}  # waiting for a connection
        self._dial_pool: Optional[ThreadPoolExecutor] = None
        self._serial = 0

    # -- any thread ---------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Downloads on a connection now (a snapshot)."""
        return len(self._active)

    def submit(self, job: SmallJob) -> None:
        """Run ``job`` (starts the loop's thread if needed)."""
        self._post("job", job)

    def cancel(self, job: Optional[SmallJob] = None) -> None:
        """Cancel ``job`` (None: every job); what arrived is kept where it can resume."""
        self._post("cancel", job)

    def close(self, wait: bool = True) -> None:
        """End the thread once nothing runs (``wait``: wait for that); close the idle
        connections."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _post(self, kind: str, item: Any) -> None:
        with self._lock:
            self._inbox.append((kind, item))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="accel-loop", daemon=True)
                self._thread.start()
                return
            wake = self._waiting
        if wake:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the loop is awake anyway) or closed
            self._wake_w.send(b"x")

    # -- the loop's thread ----------------------------------------------------------------

    def _run(self) -> None:
        idle_since = time.monotonic()
        next_sweep = 0.0
        try:
            while True:
                self._take_inbox()
                now = time.monotonic()
                if self._active or self._pending or self._retrying or self._dialing:
                    idle_since = now
                elif self._closing or now - idle_since > IDLE_EXIT:
                    with self._lock:
                        if not self._inbox:
                            self._thread = None
                            break
                    continue
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + SWEEP
                timeout = SWEEP
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - now))
                with self._lock:
                    self._waiting = not self._inbox
                    if not self._waiting:
                        timeout = 0.0
                events = self._sel.select(timeout)
                self._waiting = False
                for key, mask in events:
                    conn = key.data
                    if conn is None:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    active = self._active.get(conn)
                    if active is None:  # an idle connection became readable: closed
                        self._drop_idle(conn)
                    elif mask & selectors.EVENT_WRITE:
                        self._write(active)
                    else:
                        self._read(active)
                self._fire_timers()
        except BaseException:  # pragma: no cover - a bug: fail what runs, never hang
            log.exception("the small-files loop failed")
            for active in list(self._active.values()):
                self._end(active, reuse=False)
                active.job.regular(active.file.name, 0)
            with self._lock:
                self._thread = None
            raise
        finally:
            if self._thread is None:
                self._close_idle()
                pool, self._dial_pool = self._dial_pool, None
                if pool is not None:
                    pool.shutdown(wait=False)

    def _take_inbox(self) -> None:
        while True:
            if not self._inbox:  # racy but safe: checked again under the lock
                self._fill()
                return
            with self._lock:
                if not self._inbox:
                    return
                kind, item = self._inbox.popleft()
            if kind == "job":
                self._pending.append(item)
            elif kind == "dialed":
                self._dialed(*item)
            else:
                self._cancel(item)

    def _cancel(self, job: Optional[SmallJob]) -> None:
        for waiting in [j for j in self._pending if job is None or j is job]:
            self._pending.remove(waiting)
            waiting.cancelled(False)
        for waiting in [j for j in self._retrying if job is None or j is job]:
            self._retrying.discard(waiting)
            waiting.cancelled(False)
        for waiting, file in [(j, f) for j, f in self._dialing.items() if job in (None, j)]:
            del self._dialing[waiting]
            file.discard()
            self._release(waiting)
            waiting.cancelled(False)
        for active in [a for a in self._active.values() if job is None or a.job is job]:
            self._end(active, reuse=False)
            active.job.cancelled(active.file.keep())

    def _sweep(self, now: float) -> None:
        """Start what may start; give up on stalled connections."""
        for active in [a for a in self._active.values() if not a.paused and a.deadline < now]:
            self._lost(active, WireError("the server sent nothing for too long"))
        self._fill()

    def _fill(self) -> None:
        """Start pending downloads while fewer than ``jobs`` run."""
        tries = len(self._pending)
        while self._pending and len(self._active) + len(self._dialing) < self.jobs and tries:
            tries -= 1
            job = self._pending.popleft()
            if not self._start(job):
                self._pending.append(job)  # its host is at its cap: later

    def _start(self, job: SmallJob) -> bool:
        """Put ``job`` on a connection (False: its host has no free slot now)."""
        directory = job.directory
        if directory not in self._dirs:
            try:
                prepare_directory(directory, directory)
            except AccelError:
                job.regular(None, 0)  # the regular path reports it
                return True
            self._dirs.add(directory)
        if job.slots is not None and not job.slots.try_acquire(job.slot):
            return False
        file = SmallFile(job)
        if not file.open():
            self._release(job)
            job.regular(None, 0)
            return True
        idle = self._idle.get(job.key)
        if idle:
            self._send(_Active(job, file, idle.pop(), False))  # (still registered)
            return True
        if job.key not in self._dialers:
            try:
                self._dialers[job.key] = Dialer.make(job.session(), job.url, job.timeouts)
            except Exception as exc:  # a session or proxy setting requests refuses
                log.debug("cannot configure %s: %s", job.url, exc)
                self._dialers[job.key] = None
        dialer = self._dialers[job.key]
        if dialer is None:
            file.discard()
            self._release(job)
            job.regular(None, 0)
            return True
        # DNS, TCP and TLS block: a few helper threads connect, the loop goes on meanwhile.
        if self._dial_pool is None:
            self._dial_pool = ThreadPoolExecutor(DIALERS, thread_name_prefix="accel-dial")
        self._dialing[job] = file
        future = self._dial_pool.submit(dialer.dial)
        future.add_done_callback(lambda f: self._post("dialed", (job, f)))
        return True

    def _dialed(self, job: SmallJob, future: Future[Connection]) -> None:
        """A connection for ``job`` was made (or not)."""
        file = self._dialing.pop(job, None)
        error = future.exception()
        if file is None:  # cancelled meanwhile
            if error is None:
                future.result().close()
            return
        if error is not None:
            log.debug("%s", error)
            file.discard()
            self._release(job)
            job.regular(None, 0)  # the regular path reports it exactly
            return
        self._send(_Active(job, file, future.result(), True))

    def _send(self, active: _Active) -> None:
        job = active.job
        conn = active.conn
        self._active[conn] = active
        active.deadline = time.monotonic() + job.timeouts[1]
        extra = [(b"Range", b"bytes=0-%d" % (job.window - 1))]
        if active.fresh:  # a connection is registered for reading while it is open
            self._sel.register(conn, selectors.EVENT_READ, conn)
        try:
            active.out = conn.send(conn.dialer.target(job.url), extra, active.file)
        except WireError as exc:
            self._lost(active, exc)
            return
        if active.out:
            self._sel.modify(conn, selectors.EVENT_WRITE, conn)

    def _write(self, active: _Active) -> None:
        try:
            active.out = active.conn.write(active.out)
        except WireError as exc:
            self._lost(active, exc)
            return
        if not active.out:
            self._sel.modify(active.conn, selectors.EVENT_READ, active.conn)

    def _read(self, active: _Active) -> None:
        file = active.file
        before = file.written
        limiter = active.job.limiter
        view = self._view if limiter is None else self._view[: limiter.read_size]
        try:
            ended = active.conn.read(view)
        except WireError as exc:
            self._lost(active, exc)
            return
        if ended is None:
            return
        active.deadline = time.monotonic() + active.job.timeouts[1]
        if file.verdict is not None:
            self._end(active, reuse=False)
            file.discard()
            self._answered(active.job, file)
            return
        if limiter is not None and file.written > before:
            delay = limiter.reserve(file.written - before)
            if delay > 0:
                self._pause(active, delay)  # the last read's debt too, as consume() sleeps it
                if ended:
                    active.ended = True
                return
        if ended:
            self._complete(active)

    def _answered(self, job: SmallJob, file: SmallFile) -> None:
        """The response was not one the loop finishes: fail, try again, or hand over."""
        if file.error is not None:
            job.failed(file.error)
        elif file.again is not None:
            job.tries = tries = job.tries.increment(file.again)
            if tries.exhausted():
                job.failed(tries.give_up(file.again, redact(job.url)))
            else:
                log.info("%s; retrying in %.2fs", file.again, tries.delay)
                self._serial += 1
                heapq.heappush(self._timers, (time.monotonic() + tries.delay, self._serial, job))
                self._retrying.add(job)
        else:
            log.debug("%s: %s: the regular path takes over", job.url, file.verdict)
            job.regular(file.name, 0)

    def _complete(self, active: _Active) -> None:
        file = active.file
        error = file.finish()
        self._end(active, reuse=True)
        job = active.job
        if error is not None:
            file.discard()
            job.failed(error)
        elif file.resume:
            job.regular(file.name, file.written)  # the segmented engine goes on after these
        else:
            job.done(Path(file.dest), file.written)

    def _lost(self, active: _Active, exc: WireError) -> None:
        """The connection broke: once more on a new one if a reused connection broke before
        any answer (the server may close idle connections), else the regular path."""
        file = active.file
        self._end(active, reuse=False)
        file.discard()
        if not active.fresh and file.headers is None and not file.written:
            self._pending.appendleft(active.job)  # starts again at once, on another connection
            return
        log.debug("%s: %s; trying the regular path", active.job.url, exc)
        active.job.regular(file.name, 0)

    def _end(self, active: _Active, *, reuse: bool) -> None:
        """Take the download off its connection; keep the connection if it may serve more."""
        conn = active.conn
        self._active.pop(conn, None)
        conn.done()  # the connection forgets the download (an idle one keeps no reference)
        self._release(active.job)
        idle = self._idle.setdefault(active.job.key, [])
        if reuse and conn.reusable and len(idle) < MAX_IDLE:
            idle.append(conn)
            if active.paused:
                self._sel.register(conn, selectors.EVENT_READ, conn)
        else:
            if not active.paused:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(conn)
            conn.close()
        active.paused = False

    def _release(self, job: SmallJob) -> None:
        if job.slots is not None:
            job.slots.release(job.slot)

    def _pause(self, active: _Active, delay: float) -> None:
        """Over the rate budget: do not read this connection for ``delay`` seconds."""
        self._sel.unregister(active.conn)
        active.paused = True
        self._serial += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._serial, active.conn))

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, item = heapq.heappop(self._timers)
            if isinstance(item, Connection):
                active = self._active.get(item)
                if active is None or not active.paused:
                    continue
                if active.ended:  # the body is all here: the budget is paid
                    self._complete(active)  # (registers the connection again if kept)
                    continue
                active.paused = False
                active.deadline = now + active.job.timeouts[1]
                self._sel.register(item, selectors.EVENT_READ, item)
            elif item in self._retrying:
                self._retrying.discard(item)
                self._pending.appendleft(item)

    def _drop_idle(self, conn: Connection) -> None:
        self._sel.unregister(conn)
        for idle in self._idle.values():
            if conn in idle:
                idle.remove(conn)
        conn.close()

    def _close_idle(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(conn)
                conn.close()
        self._idle.clear()
