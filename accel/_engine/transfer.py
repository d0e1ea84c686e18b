"""One attempt's transfer: start the workers, then watch them from the calling thread.

The calling thread is the only one that delivers events, reports progress and saves the
sidecar; workers only fetch and write. The loop ends when every byte is written, on the
first error, or on cancel; then the workers wind down and the state is saved.

The scheduler keeps the number of connections to run. With ``connections="auto"`` the loop
asks an :class:`~accel._engine.autoscale.Autoscaler` for it (told of each 429/503 a worker
met), applies its answer to the scheduler, and starts more workers, or lets the last ones go
after their claim. It applies the low-speed watchdog's verdicts too (see :meth:`_watch`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from accel import events as ev
from accel._disk.committer import Committer
from accel._disk.storage import PartFile
from accel._engine.autoscale import Autoscaler
from accel._engine.context import Context, Restart
from accel._engine.guard import GUARD
from accel._engine.scheduler import Claim, Scheduler
from accel._engine.sources import Source, SourcePool
from accel._engine.watchdog import SpeedFloor
from accel._engine.worker import TICK, Message, Worker
from accel._http.base import Response, Session
from accel._http.fetch import interrupt, response_end, response_start
from accel._util.meter import RateMeter
from accel._util.ranges import Segment
from accel._util.remote import RangesUnsupported, RemoteChanged, RemoteFile
from accel.exceptions import AccelError, CancelledError
from accel.limits import RateLimiter, SlotLease

log = logging.getLogger(__name__)

#: Seconds the run thread waits for workers to wind down after cancel or error.
STOP_GRACE = 1.0


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
            [Source(remote.url, ctx.url, remote.validators, ctx.provider), *mirrors],
            opts.host_slots,
        )
        self.scheduler = Scheduler(
            segments,
            self.pool,
            connections=opts.initial_connections,  # "auto" changes it as it goes
            min_split=opts.min_split,
            ranged=ranged,
            until_eof=remote.size is None,
            # Under a rate limit all connections share, a new request cannot be faster.
            restarts=opts.limit_rate is None,
            hedge_after=opts.hedge_after,
        )
        self.stop = threading.Event()
        self.messages: queue.Queue[Message] = queue.Queue()
        self.committer = Committer(
            side,
            part,
            ctx.record_url,
            remote,
            self.scheduler.rows,
            lambda exc: self.messages.put(("error", exc)),
        )
        self.workers: List[threading.Thread] = []
        self.autoscaler: Optional[Autoscaler] = None
        self._worker: Optional[Worker] = None
        self._slots: Dict[int, threading.Thread] = {}  # the thread of each worker slot
        self._throttled_until: Optional[float] = None  # a 429/503 since the last _scale
        self.reported = self.scheduler.written()
        self.meter = RateMeter(self.reported)
        self._released = False
        self._error: Optional[BaseException] = None
        self._alive = 0
        self._last_commit = self._last_sync = self._next_tick = 0.0
        self.floor = SpeedFloor(
            int(opts.low_speed_limit),
            opts.low_speed_time,
            self.reported,
            ranged=ranged,
            resumable=self.committer.side is not None,
        )

    def run(
        self,
        first: Optional[Response],
        session: Session,
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
            claim = self.scheduler.first_claim(response_start(first), lease)
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

    def _one_connection(self, first: Response, claim: Claim) -> bool:
        """Whether the probe's response is all this transfer needs."""
        if not self.ranged:
            return True
        return not self.scheduler.has_work() and _covers_all(first, claim)

    def _run_inline(
        self, claim: Claim, first: Response, session: Session
    ) -> Optional[BaseException]:
        """Fetch with one worker on this thread; ``_tick`` does the run loop's chores.

        The chores wait for a write, and a trickling or stalled read may not return for a
        long time: the process's guard thread relays a cancel and runs the low-speed
        watchdog (one thread for all inline transfers: a thread per small file would cost
        more than the file).
        """
        now = time.monotonic()
        self._next_tick, self._last_commit, self._last_sync = now + TICK, now, now
        self.floor.start(now)
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
        GUARD.watch(self)
        try:
            worker.run((claim, first), session)
        finally:
            GUARD.forget(self)
        return self._drain()

    def guard(self, now: float) -> bool:
        """The guard's look at an inline transfer: relay a cancel, enforce the speed floor.
        Returns whether the transfer was stopped (it needs no more looks)."""
        if self.ctx.cancel.is_set():
            self._halt()
            return True
        error = self._watch(now)
        if error is not None:
            self.messages.put(("error", error))
            self._halt()
            return True
        return False

    def _halt(self) -> None:
        """Stop the workers now, waking any read (any thread); they end on their own."""
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
        first: Optional[Response],
        session: Session,
    ) -> None:
        # Spare workers steal from the others.
        count = self.scheduler.connections if self.scheduler.has_work() or claim is not None else 0
        if count and self.ctx.options.auto:
            self.autoscaler = Autoscaler(self.ctx.options.max_connections, written=self.reported)
        self._worker = Worker(
            self.ctx, self.scheduler, self.pool, self.part.fd, self.remote, self.stop, self.messages
        )
        for i in range(count):
            if i == 0 and claim is not None and first is not None:
                # The probe's connection continues with the first segment.
                self._spawn(i, ((claim, first), session))
            else:
                self._spawn(i)

    def _spawn(self, slot: int, args: Tuple[Any, ...] = ()) -> None:
        """Start the worker thread of ``slot`` (with "auto", it lets go once the count
        drops to ``slot`` or below)."""
        assert self._worker is not None
        keep: Optional[Callable[[], bool]] = None
        if self.autoscaler is not None:
            scheduler = self.scheduler
            keep = lambda: slot < scheduler.connections  # noqa: E731
        t = threading.Thread(
            target=self._worker.run,
            args=args,
            kwargs={"keep": keep},
            name=f"accel-worker-{slot}",
            daemon=True,
        )
        self.workers.append(t)
        self._slots[slot] = t
        self._alive += 1
        t.start()

    def _scale(self) -> None:
        """With "auto": follow the autoscaler's count (more workers, or fewer)."""
        if self.autoscaler is None:
            return
        throttled, self._throttled_until = self._throttled_until, None
        count = self.scheduler.connections
        target = self.autoscaler.update(count, self.reported, throttled)
        if target != count:
            log.info("%s: auto: %d connections", self.ctx.shown_url, target)
            self.scheduler.resize(target)
        for slot in range(target):
            t = self._slots.get(slot)
            if t is None or not t.is_alive():
                self._spawn(slot)

    def _loop(self) -> Optional[BaseException]:
        """Deliver events, report progress, commit and watch until done, cancelled or failed."""
        self._last_commit = self._last_sync = now = time.monotonic()
        self.floor.start(now)
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
            for claim in self.scheduler.review():  # stragglers let go: wake their reads
                interrupt(claim.response)
            self._chores(time.monotonic())
            self._scale()

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
            error = self._watch(now)
            if error is not None:
                self.messages.put(("error", error))

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "error":
            if self._error is None:
                self._error = payload
        elif kind == "exit":
            self._alive -= 1
        elif kind == "throttled":  # the scheduler lowered its cap until then
            until = payload
            self._throttled_until = max(until, self._throttled_until or until)
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
        """Stop the workers and wait a little for them to end (the run thread)."""
        self._halt()
        deadline = time.monotonic() + STOP_GRACE
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _publish(self) -> None:
        total = self.scheduler.written()
        delta = total - self.reported
        self.reported = total
        self.meter.update(total)
        self.ctx.report(delta)

    def _watch(self, now: float) -> Optional[AccelError]:
        """The low-speed watchdog (see :class:`accel._engine.watchdog.SpeedFloor`): replace
        the connections it finds too slow; the error that ends the attempt, or None."""
        if not self.floor.limit:
            return None
        live, written = self.scheduler.views()
        limiter = self.ctx.options.limit_rate
        held = isinstance(limiter, RateLimiter) and limiter.reserve(0) > 0
        verdict = self.floor.check(now, live, written, held=held)
        for view in verdict.replace:
            claim: Claim = view.ref
            self.scheduler.let_go(claim)  # a let-go, not a failure: no retry is counted
            interrupt(claim.response)
        return verdict.error

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
        return ev.Progress(written, total, rate, eta, live, cells, auto=self.autoscaler is not None)


def _covers_all(resp: Response, claim: Claim) -> bool:
    """Whether ``resp`` brings the whole of ``claim``'s segment, the only one missing."""
    end = response_end(resp)
    return end is not None and end >= claim.seg.end
