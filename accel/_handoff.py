"""How a Manager's download runs on the many-small-files loop, and how it comes back.

:func:`small_job` turns a :class:`~accel.Downloader` into a
:class:`~accel._engine.small.SmallJob` for :class:`~accel._engine.loop.Loop` (or says that it
needs the regular path), with the callbacks that conclude the download from the loop's
thread; a file that turns out big is handed back to the Manager, which queues it for a job
thread with what the loop already fetched (:func:`less_resumed` keeps those bytes out of the
"resumed" count of its events).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Optional

from accel import events as ev
from accel._engine.scheduler import DEFAULT_READ_MARGIN
from accel._engine.small import SmallJob, Snapshots
from accel._engine.sources import slot_key
from accel.downloader import Downloader
from accel.exceptions import CancelledError
from accel.limits import RateLimiter
from accel.retry import RetryState

_KEPT = "download cancelled; what was recorded is kept for a new Downloader to resume"


def less_resumed(event: ev.Event, carried: int) -> ev.Event:
    """``event`` with ``carried`` bytes of this run not counted as resumed from an earlier
    one (a file the small-files loop handed to the segmented engine)."""
    if isinstance(event, ev.Started) and event.resumed >= carried:
        return dataclasses.replace(event, resumed=event.resumed - carried)
    return event


def small_job(
    download: Downloader, *, listened: bool, hand_back: Callable[[int], bool]
) -> Optional[SmallJob]:
    """``download`` as a job for the loop, or None when it needs the regular path.

    ``listened``: someone above the download hears its events (events are built only then).
    ``hand_back(carried)`` queues the download for the regular path with ``carried`` bytes
    already fetched in this run, or returns False when it was cancelled meanwhile.
    """
    opts = download.options
    if opts.checksum or opts.mirrors or opts.fsync or download._output is not None:
        return None
    if opts.cookies is not None:  # a shared jar: cookies are the regular sessions' work
        return None
    limiter = opts.limit_rate if isinstance(opts.limit_rate, RateLimiter) else None
    url = download.url
    folder = download._directory or Path(".")
    listened = listened or download._on_event is not None or download._bar is not None
    scheme, rest = url.split("://", 1)
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]

    def started(file: Snapshots) -> None:
        download._transfer = file

    def done(path: Path, size: int) -> None:
        download.path = path
        download._conclude(path, None, ev.Completed(path, size) if listened else None)

    def failed(error: BaseException) -> None:
        download._conclude(None, error, ev.Failed(error) if listened else None)

    def cancelled(resumable: bool) -> None:
        error = CancelledError(_KEPT if resumable else "cancelled")
        event = ev.Cancelled(str(error), resumable=resumable) if listened else None
        download._conclude(None, error, event)

    def regular(name: Optional[str], carried: int) -> None:
        if name is not None:
            download._name = name
        if carried:  # bytes of this run, not an earlier one's: "resumed" does not count them
            inner = download._on_event
            if inner is not None:
                download._on_event = lambda event: inner(less_resumed(event, carried))
        if not hand_back(carried):
            cancelled(False)

    return SmallJob(
        url=url,
        directory=folder,
        folder=str(folder),
        force=opts.force,
        max_size=opts.max_filesize if isinstance(opts.max_filesize, int) else None,
        timeouts=(opts.connect_timeout, opts.timeout),
        window=max(opts.min_split, DEFAULT_READ_MARGIN),
        key=(
            opts.headers,
            opts.verify,
            (opts.proxy, opts.noproxy, opts.auth, opts.netrc),
            scheme.lower(),
            netloc.lower(),
        ),
        server_digest=opts.server_digest,
        session=download._make_session,
        tries=RetryState(opts.retry),
        slots=opts.host_slots,
        slot=slot_key(url) if opts.host_slots is not None else "",
        limiter=limiter,
        done=done,
        failed=failed,
        cancelled=cancelled,
        regular=regular,
        started=started,
        emit=download._emit if listened else None,
        report=download._report,
    )
