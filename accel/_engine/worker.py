"""One worker thread: claim bytes, request them, stream them to disk, let go; repeat.

Each claim is retried under one :class:`~accel.retry.RetryState` (reset by progress), moved
to another source when its own keeps failing, and handed back to the scheduler when the
worker stops. A worker reports to its transfer only through the transfer's queue.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional, Tuple

from accel import events as ev
from accel._engine.context import Context
from accel._engine.scheduler import Claim, Scheduler
from accel._engine.sources import SourcePool
from accel._engine.stream import stream
from accel._http.base import Response, Session
from accel._http.body import ReadBuffer
from accel._http.fetch import (
    REFRESH_STATUSES,
    finish,
    first_byte,
    get,
    interrupt,
    raise_for_status,
    request_range,
    response_end,
)
from accel._util.remote import (
    BadResponse,
    RemoteChanged,
    RemoteFile,
    Retryable,
    TotalMismatch,
    content_length,
)
from accel._util.urls import redact
from accel.exceptions import FileTooLargeError, HTTPError, NetworkError
from accel.limits import RateLimiter
from accel.retry import RetryState

log = logging.getLogger(__name__)

#: Seconds an idle worker waits before asking the scheduler for work again.
TICK = 0.05

#: What workers put on their transfer's queue: ("event", Event), ("error", exc), ("exit", None),
#: ("throttled", until) once the scheduler lowered its cap after a 429/503, until then.
Message = Tuple[str, Any]


class Worker:
    """The loop of one worker thread of a transfer."""

    def __init__(
        self,
        ctx: Context,
        scheduler: Scheduler,
        pool: SourcePool,
        fd: int,
        remote: RemoteFile,
        stop: threading.Event,
        messages: queue.Queue[Message],
        *,
        tick: Optional[Callable[[], None]] = None,
    ) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        self.pool = pool
        self.fd = fd
        self.remote = remote
        self.stop = stop
        self.messages = messages
        self.tick = tick  # called after each write (the inline transfer's chores)
        limiter = ctx.options.limit_rate
        assert limiter is None or isinstance(limiter, RateLimiter)
        self.limiter = limiter

    def run(
        self,
        first: Optional[Tuple[Claim, Response]] = None,
        session: Optional[Session] = None,
        keep: Optional[Callable[[], bool]] = None,
    ) -> None:
        """Work until every byte is written or the transfer stops (the thread's target).

        The session and the read buffer are made when the first claim comes: a spare
        worker that never gets work costs neither a connection nor memory. ``keep`` is
        asked before each new claim: False lets the worker go (fewer connections).
        """
        buffer: Optional[ReadBuffer] = None
        try:
            if first is not None:  # the probe's response, on the probe's session
                assert session is not None
                buffer = self._buffer()
                self._run_claim(session, first[0], first[1], buffer)
            while not self.stop.is_set():
                if keep is not None and not keep():
                    break
                claim = self.scheduler.next_claim()
                if claim is None:
                    if self.scheduler.all_done():
                        break
                    self.stop.wait(TICK)
                    continue
                if session is None:
                    session = self.ctx.new_session()
                if buffer is None:
                    buffer = self._buffer()
                self._run_claim(session, claim, None, buffer)
        except BaseException as exc:
            self.messages.put(("error", exc))
        finally:
            if session is not None:
                session.close()
            if buffer is not None:
                buffer.close()
            self.messages.put(("exit", None))

    def _buffer(self) -> ReadBuffer:
        # A read never exceeds min_split (the steal margin) nor a tenth of a second of the
        # rate limit (so the limiter's waits stay short).
        cap = self.ctx.options.min_split
        if self.limiter is not None:
            cap = min(cap, self.limiter.read_size)
        return ReadBuffer(cap)

    def _run_claim(
        self,
        session: Session,
        claim: Claim,
        resp: Optional[Response],
        buffer: ReadBuffer,
    ) -> None:
        retry = RetryState(self.ctx.options.retry)
        mismatches = 0
        progress_mark = claim.pos
        claim.buffer = buffer
        try:
            while not (claim.abort or self.stop.is_set()):
                if claim.pos > claim.seg.end:
                    return
                if resp is None and self.scheduler.over_cap():
                    return  # throttled: hand the segment back for later
                try:
                    if resp is None:
                        resp = self._request(session, claim)
                    claim.response = resp
                    if stream(
                        resp,
                        self.fd,
                        claim,
                        self.stop,
                        resp_end=response_end(resp),
                        limiter=self.limiter,
                        tick=self.tick,
                    ):
                        if claim.until_eof:
                            if claim.pos > claim.seg.end:
                                raise FileTooLargeError(
                                    f"{self.ctx.shown_url} is larger than the "
                                    f"{self.ctx.options.max_filesize} bytes allowed"
                                )
                            self.scheduler.end_at_eof(claim)
                        return
                    # Stopped, or the response covered only part of the segment (the probe):
                    # the loop asks for the rest on the same connection.
                except (NetworkError, HTTPError, RemoteChanged) as exc:
                    if claim.abort or self.stop.is_set() or not self.scheduler.switch(claim, exc):
                        raise
                    retry, progress_mark = retry.reset(), claim.pos
                except Retryable as exc:
                    if claim.abort or self.stop.is_set():
                        return
                    if claim.pos > progress_mark:
                        retry, progress_mark, mismatches = retry.reset(), claim.pos, 0
                    retry = retry.increment(exc)
                    if isinstance(exc, TotalMismatch):
                        mismatches += 1
                        if mismatches >= 2:
                            # The server keeps giving another size than the plan's: the plan
                            # (or the first answer) was wrong. Start over from a new probe.
                            raise RemoteChanged(str(exc)) from None
                    # With other sources to turn to, a failing one is given up on sooner.
                    if retry.exhausted(2 if self.pool.several_alive() else None):
                        where = redact(claim.source.url if claim.source else self.ctx.url)
                        error = retry.give_up(exc, where)
                        if self.scheduler.switch(claim, error):
                            retry, progress_mark = retry.reset(), claim.pos
                            continue
                        raise error from None
                    if exc.status in (429, 503):
                        _, until = self.scheduler.throttle()
                        self.messages.put(("throttled", until))
                    self.messages.put(
                        (
                            "event",
                            ev.Retrying(claim.seg.start, retry.failures, retry.delay, str(exc)),
                        )
                    )
                    log.info(
                        "bytes %d-%d: %s; retry %d in %.1fs",
                        claim.pos,
                        claim.seg.end,
                        exc,
                        retry.failures,
                        retry.delay,
                    )
                    if not self.scheduler.ranged:
                        self.scheduler.start_over(claim)  # a plain stream starts from byte 0
                    self.stop.wait(retry.delay)
                finally:
                    claim.response = None
                    if resp is not None:
                        finish(resp)
                        resp = None
        finally:
            completed, losers = self.scheduler.release(claim)
            for loser in losers:
                interrupt(loser.response)
            if completed is not None:
                self.messages.put(("event", ev.SegmentCompleted(completed.start, completed.end)))

    def _request(self, session: Session, claim: Claim) -> Response:
        source = claim.source
        assert source is not None
        timeouts = self.ctx.timeouts
        if not self.scheduler.ranged:
            resp = get(session, source.url, {}, timeouts)
            try:
                raise_for_status(resp)
                if resp.status_code != 200:
                    raise BadResponse(f"unexpected status {resp.status_code}")
                length = content_length(resp.headers)
                size = self.remote.size
                if size is not None and length is not None and length != size:
                    raise RemoteChanged(f"size changed from {size} to {length}")
            except BaseException:
                resp.close()
                raise
            return resp
        while True:
            used = source.generation
            try:
                resp = request_range(
                    session,
                    source.url,
                    claim.pos,
                    claim.seg.end,
                    source.validators,
                    timeout=timeouts,
                )
            except HTTPError as exc:
                if exc.status not in REFRESH_STATUSES:
                    raise

                def resolve(original: str) -> str:
                    return first_byte(session, original, source.validators, timeouts)[0]

                if not self.pool.refresh(source, used, resolve):
                    raise
                continue  # at the freshly resolved URL
            source.confirmed = max(source.confirmed, used)
            return resp
