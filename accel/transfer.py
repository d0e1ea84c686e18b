"""One attempt's transfer: start the workers, then watch them from the calling thread.

The calling thread is the only one that delivers events, reports progress and saves the
sidecar; workers only fetch and write. The loop ends when every byte is written, on the
first error, or on cancel; then the workers wind down and the state is saved.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import requests

from . import events as ev
from .commit import Committer
from .context import Context, Restart
from .exceptions import AccelError, CancelledError, NetworkError
from .fetch import interrupt
from .limits import RateLimiter, SlotLease
from .meter import RateMeter
from .planner import Segment
from .remote import RangesUnsupported, RemoteChanged, RemoteFile, parse_content_range
from .scheduler import Claim, Scheduler
from .sources import Source, SourcePool
from .storage import PartFile
from .units import human_rate
from .worker import TICK, Message, Worker

log = logging.getLogger(__name__)

#: Seconds the run thread waits for workers to wind down after cancel or error.
STOP_GRACE = 1.0
#: Samples per ``low_speed_time`` window that speeds are measured from.
SAMPLES = 16


class Transfer:
    """The worker pool of one attempt over ``part`` (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        part: PartFile,
        segments: List[Segment],
        remote: RemoteFile,
        side: Optional[Path],
        *,
        ranged: bool,
        mirrors: Sequence[Source] = (),
    ) -> None:
        self.ctx = ctx
        self.part = part
        self.remote = remote
        self.ranged = ranged
        opts = ctx.options
        self.pool = SourcePool(
            [Source(remote.url, ctx.url, remote.validators), *mirrors], opts.host_slots
        )
        self.scheduler = Scheduler(
            segments,
            self.pool,
            connections=opts.connections,
            min_split=opts.min_split,
            ranged=ranged,
            until_eof=remote.size is None,
            hedge_after=opts.hedge_after,
        )
        self.stop = threading.Event()
        self.messages: queue.Queue[Message] = queue.Queue()
        self.committer = Committer(
            side,
            part,
            ctx.shown_url,
            remote,
            self.scheduler.rows,
            lambda exc: self.messages.put(("error", exc)),
        )
        self.workers: List[threading.Thread] = []
        self.reported = self.scheduler.written()
        self.meter = RateMeter(self.reported)
        self._released = False
        self._error: Optional[BaseException] = None
        self._alive = 0
        self._last_commit = self._last_sync = self._next_tick = 0.0
        # The low-speed watchdog (see _watchdog): the download's speed is measured on a
        # clock that runs only while a response is open and the rate limit is not what
        # holds it back; each connection's on the wall clock while it is connected.
        self._watched = 0.0  # when the watchdog last looked
        self._active = 0.0  # the download's clock
        self._replaced_at = float("-inf")  # on the download's clock
        self._second_chance = True  # a lone slow connection is replaced once, then it ends
        self._speed: Optional[_Window] = None
        self._written = self._received = self.reported
        self._speeds: Dict[Claim, _Window] = {}

    def run(
        self,
        first: Optional[requests.Response],
        session: requests.Session,
        lease: Optional[SlotLease],
    ) -> int:
        """Fetch every segment; return the final size. Raises on failure or cancel.

        ``first`` is the probe's open response (continued by the first worker on the probe's
        ``session``, holding its host slot ``lease``); the transfer owns all three now.
        When one connection is all it takes (the probe's response brings every missing
        byte, or the server has no ranges), it runs on the calling thread: no pool.
        The first sidecar is saved after ``commit_interval``: a transfer shorter than that
        leaves none (an interruption loses less than it would cost to record).
        """
        self.committer.resume()
        claim = None
        if first is not None:
            claim = self.scheduler.first_claim(_response_start(first), lease)
        if claim is None:  # nothing to continue: let go of what the probe held
            if first is not None:
                first.close()
            if lease is not None:
                lease.release()
            session.close()
        if claim is not None and first is not None and self._one_connection(first, claim):
            error = self._run_inline(claim, first, session)
        else:
            self._start_workers(claim, first, session)
            try:
                error = self._loop()
            except BaseException:  # KeyboardInterrupt in the caller's thread: keep state
                self._wind_down()
                self.committer.commit()
                raise
            self._wind_down()
        self._drain()
        self._publish()
        return self._conclude(error)

    def _conclude(self, error: Optional[BaseException]) -> int:
        """The outcome: the final size, or the error to raise (state saved when it helps)."""
        if error is None and self.ctx.cancel.is_set() and not self.scheduler.all_done():
            self.committer.commit()
            raise CancelledError("download cancelled; run again to resume")
        if error is not None:
            if isinstance(error, RemoteChanged):
                raise Restart(f"the remote file changed ({error})") from None
            if isinstance(error, RangesUnsupported):
                raise Restart(f"{error}", single_stream=True) from None
            self.committer.commit()
            if isinstance(error, (AccelError, KeyboardInterrupt, SystemExit)):
                raise error
            raise AccelError(f"internal error: {error!r}") from error
        return self.scheduler.final_size()

    def _one_connection(self, first: requests.Response, claim: Claim) -> bool:
        """Whether the probe's response is all this transfer needs."""
        if not self.ranged:
            return True
        return not self.scheduler.has_work() and _covers_all(first, claim)

    def _run_inline(
        self, claim: Claim, first: requests.Response, session: requests.Session
    ) -> Optional[BaseException]:
        """Fetch with one worker on this thread; ``_tick`` does the run loop's chores.

        The chores wait for a write, and a trickling or stalled read may not return for a
        long time: a guard thread relays a cancel and runs the low-speed watchdog.
        """
        now = time.monotonic()
        self._next_tick, self._last_commit, self._last_sync = now + TICK, now, now
        self._watched = now
        worker = Worker(
            self.ctx,
            self.scheduler,
            self.pool,
            self.part.fd,
            self.remote,
            self.stop,
            self.messages,
            tick=self._tick,
        )
        done = threading.Event()
        guard = threading.Thread(target=self._guard, args=(done,), name="accel-guard", daemon=True)
        guard.start()
        try:
            worker.run((claim, first), session)
        finally:
            done.set()
            guard.join()
        return self._drain()

    def _guard(self, done: threading.Event) -> None:
        """The inline worker's watchdog (see :meth:`_run_inline`)."""
        while not done.wait(TICK):
            if self.ctx.cancel.is_set():
                self._halt()
                return
            error = self._watchdog(time.monotonic())
            if error is not None:
                self.messages.put(("error", error))
                self._halt()
                return

    def _halt(self) -> None:
        """Stop the workers now, waking any read (any thread)."""
        self.stop.set()
        self.scheduler.close()
        for claim in self.scheduler.live():
            interrupt(claim.response)

    def _tick(self) -> None:
        """After a write of the inline worker: progress, events, commits, the watchdog."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK
        self._drain()
        self._publish()
        self._chores(now, watch=False)  # the guard thread watches

    def _start_workers(
        self,
        claim: Optional[Claim],
        first: Optional[requests.Response],
        session: requests.Session,
    ) -> None:
        if not self.scheduler.has_work() and claim is None:
            count = 0
        else:
            count = self.ctx.options.connections  # spare workers steal from the others
        worker = Worker(
            self.ctx, self.scheduler, self.pool, self.part.fd, self.remote, self.stop, self.messages
        )
        for i in range(count):
            if i == 0 and claim is not None and first is not None:
                # The probe's connection continues with the first segment.
                args: Tuple[Any, ...] = ((claim, first), session)
            else:
                args = ()
            t = threading.Thread(
                target=worker.run, args=args, name=f"accel-worker-{i}", daemon=True
            )
            self.workers.append(t)
            t.start()

    def _loop(self) -> Optional[BaseException]:
        """Deliver events, report progress, commit and watch until done, cancelled or failed."""
        self._alive = len(self.workers)
        self._last_commit = self._last_sync = self._watched = time.monotonic()
        while True:
            try:
                self._handle(*self.messages.get(timeout=TICK))
            except queue.Empty:
                pass
            error = self._drain()
            self._publish()
            if error is not None or self.ctx.cancel.is_set() or self.scheduler.all_done():
                return error
            if self._alive <= 0:
                return AccelError("internal error: all workers stopped before the end")
            self._chores(time.monotonic())

    def _chores(self, now: float, *, watch: bool = True) -> None:
        """Commit, sync and watch the connections when it is time."""
        opts = self.ctx.options
        if now - self._last_commit >= opts.commit_interval:
            self.committer.commit()
            self._last_commit = now
        if now - self._last_sync >= opts.sync_interval:
            self.committer.start_sync()
            self._last_sync = now
        if watch:
            error = self._watchdog(now)
            if error is not None:
                self.messages.put(("error", error))

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "error":
            if self._error is None:
                self._error = payload
        elif kind == "exit":
            self._alive -= 1
        elif kind == "event":
            self.ctx.emit(payload)

    def _drain(self) -> Optional[BaseException]:
        """Deliver what the workers queued; return the first error one reported."""
        while True:
            try:
                self._handle(*self.messages.get_nowait())
            except queue.Empty:
                return self._error

    def _wind_down(self) -> None:
        self.stop.set()
        self.scheduler.close()
        for claim in self.scheduler.live():
            interrupt(claim.response)
        deadline = time.monotonic() + STOP_GRACE
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _publish(self) -> None:
        total = self.scheduler.written()
        delta = total - self.reported
        self.reported = total
        self.meter.update(total)
        self.ctx.report(delta)

    def _watchdog(self, now: float) -> Optional[AccelError]:
        """The low-speed floor: ``low_speed_limit`` bytes/s over ``low_speed_time`` seconds.

        A connection below the floor is replaced (it re-requests its range from where it
        stopped) when another one shows that the floor can be reached; several connections
        all below it mean a slow link or server, where a new connection would only lose the
        read in flight. A download below the floor as a whole gets one new connection if it
        has only one, and then ends: the error is returned. A replacement always has a full
        window to help; time the rate limit holds the download back does not count, nor
        time with no response open (connecting, waiting to retry: the retry policy's part).
        """
        opts = self.ctx.options
        limit = int(opts.low_speed_limit)
        if not limit:
            return None
        window = opts.low_speed_time
        elapsed, self._watched = now - self._watched, now
        live = self.scheduler.live()
        limiter = opts.limit_rate
        held = isinstance(limiter, RateLimiter) and limiter.reserve(0) > 0
        if held or not any(c.response is not None for c in live):
            self._speeds.clear()
            return None
        self._active += elapsed
        # Bytes received: a plain stream that starts over writes its first bytes again.
        written = self.scheduler.written()
        self._received += max(0, written - self._written)
        self._written = written
        if self._speed is None:
            self._speed = _Window(window, self._active, self._received)
        else:
            self._speed.add(self._active, self._received)
        self._replace_slow(live, now, limit, window)
        rate = self._speed.rate(self._active, self._received)
        if rate is None:
            return None
        if rate >= limit:
            self._second_chance = True
            return None
        if self._active - self._replaced_at < window:
            return None
        if self._second_chance and len(live) == 1 and self.ranged:
            self._second_chance = False
            self._replace(live[0])
            return None
        return NetworkError(self._too_slow(limit, window))

    def _replace_slow(self, live: List[Claim], now: float, limit: int, window: float) -> None:
        """Replace the connections below the floor while another one is above it."""
        if not self.ranged:
            return  # a plain stream would start over from byte 0
        speeds: Dict[Claim, _Window] = {}
        slow: List[Claim] = []
        reachable = False
        for claim in live:
            if claim.abort:
                continue  # let go already (replaced, or lost a hedge race)
            speed = self._speeds.get(claim)
            if claim.response is None or speed is None:
                speed = _Window(window, now, claim.pos)  # timed while connected
            else:
                speed.add(now, claim.pos)
            speeds[claim] = speed
            rate = speed.rate(now, claim.pos)
            if rate is not None and rate < limit:
                slow.append(claim)
            elif (rate or 0) >= limit or claim.pos - speed.start >= limit * window:
                reachable = True
        self._speeds = speeds
        if reachable:
            for claim in slow:
                self._replace(claim)

    def _replace(self, claim: Claim) -> None:
        """Close ``claim``'s connection: its segment is claimed again from where it stopped
        (by any free worker, its own first), on a new connection."""
        log.info(
            "connection for bytes %d-%d below %s; reconnecting",
            claim.pos,
            claim.seg.end,
            human_rate(int(self.ctx.options.low_speed_limit)),
        )
        self._replaced_at = self._active
        claim.abort = True  # a let-go, not a failure: no retry is counted
        interrupt(claim.response)

    def _too_slow(self, limit: int, window: float) -> str:
        then = (
            "state saved, run again to resume"
            if self.committer.side is not None
            else "a new run starts over"
        )
        return (
            f"transfer too slow: below {human_rate(limit)} for {window:g} s on every "
            f"connection (--speed-limit/--speed-time); {then}"
        )

    def commit(self) -> None:
        """Save the sidecar now."""
        self.committer.commit()

    def release(self) -> None:
        """Close the part file once no thread can write to it any more."""
        if self._released:
            return
        self._released = True
        syncer = self.committer.syncer
        threads = [*self.workers, *([syncer] if syncer else [])]
        if all(not t.is_alive() for t in threads):
            self.part.close()
            return

        def reap() -> None:  # a worker stuck in a read: close the file when it is gone
            for t in threads:
                t.join()
            self.part.close()

        threading.Thread(target=reap, name="accel-reaper", daemon=True).start()

    def snapshot(self) -> ev.Progress:
        """Progress for :meth:`accel.Downloader.progress`."""
        total = self.remote.size
        written, live, cells = self.scheduler.snapshot(total)
        rate = self.meter.rate
        eta = (total - written) / rate if total is not None and rate > 0 else None
        return ev.Progress(written, total, rate, eta, live, cells)


class _Window:
    """Bytes per second over the last ``span`` seconds, from samples of a growing count."""

    def __init__(self, span: float, t: float, value: int) -> None:
        self.span = span
        self.start = value
        self.samples: Deque[Tuple[float, int]] = collections.deque([(t, value)])

    def add(self, t: float, value: int) -> None:
        """Record ``value`` at ``t`` (a sample every ``span / SAMPLES`` is kept)."""
        samples = self.samples
        if t - samples[-1][0] >= self.span / SAMPLES:
            samples.append((t, value))
        while len(samples) > 1 and samples[1][0] <= t - self.span:
            samples.popleft()
        self.start = samples[0][1]

    def rate(self, t: float, value: int) -> Optional[float]:
        """The rate over the last ``span`` seconds (a little more); None before that long."""
        t0, v0 = self.samples[0]
        if t - t0 < self.span:
            return None
        return (value - v0) / (t - t0)


def _covers_all(resp: Optional[requests.Response], claim: Claim) -> bool:
    """Whether ``resp`` brings the whole of ``claim``'s segment, the only one missing."""
    if resp is None or resp.status_code != 206:
        return False
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed is not None and parsed[1] >= claim.seg.end


def _response_start(resp: requests.Response) -> int:
    if resp.status_code == 200:
        return 0
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed[0] if parsed else -1
