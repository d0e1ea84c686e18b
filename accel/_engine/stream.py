"""One claim's body copy: the worker's hot loop from a validated response into the file.

Nothing of a response is written before :func:`accel._util.remote.check_partial` accepted
it. The loop does one read and one write per chunk, with no lock: the worker's position
lives in its own :class:`~accel._engine.scheduler.Claim`, which the scheduler reads.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from accel._engine.scheduler import Claim
from accel._http.base import Response
from accel._http.body import ConnectionLost, ReadBuffer, copier
from accel._util.remote import BadResponse
from accel.limits import RateLimiter


def stream(
    resp: Response,
    fd: int,
    task: Claim,
    stop: threading.Event,
    *,
    resp_end: Optional[int] = None,
    limiter: Optional[RateLimiter] = None,
    tick: Optional[Callable[[], None]] = None,
) -> bool:
    """Copy the body of ``resp`` into ``fd`` from ``task.pos`` up to ``task.seg.end``.

    Reads go into ``task.buffer`` (created on first use), or straight from the socket to the
    file where :func:`accel._http.body.copier` can. ``resp_end`` is the last offset the
    response covers when it may stop short of the segment's end. Returns True when the
    segment's end was reached (or, for ``until_eof`` tasks, the body ended), False when told
    to stop or when the response is used up. A body that ends early raises
    :class:`BadResponse` (a lost connection, :class:`ConnectionLost`). ``limiter`` is charged
    for every read; ``tick`` is called after each.
    """
    if task.buffer is None:
        task.buffer = ReadBuffer()
    buffer = task.buffer
    copy = copier(resp, fd, buffer)
    seg = task.seg
    pos = task.pos
    clock = time.monotonic
    while True:
        end = seg.end  # may shrink while we run (work stealing); never below pos + a read
        if pos > end:
            return True
        if resp_end is not None:
            if pos > resp_end:
                return False
            end = min(end, resp_end)
        if task.abort or stop.is_set():
            return False
        want = min(buffer.size, end + 1 - pos)
        started = clock()
        try:
            n = copy(want, pos)
        except ConnectionLost:
            if task.abort or stop.is_set():
                return False
            raise
        now = clock()
        if not n:
            if task.abort or stop.is_set():
                return False
            if task.until_eof:
                return True
            raise BadResponse(f"body ended early at byte {pos} of {seg.start}-{end}")
        pos += n
        task.pos = pos
        task.last_progress = now
        # Only now may the size change: a thief reads it as the bound of the read in flight.
        buffer.adapt(now - started, n == want)
        if limiter is not None:
            limiter.consume(n, stop)
        if tick is not None:
            tick()
