"""The second half of one attempt: transfer what is missing, then land the file.

:func:`transfer_rest` plans the segments (or takes the resumed ones), checks the size
limit, the mirrors and the free space before the disk is touched, creates or opens the
``.part`` file and runs the :class:`~accel._engine.transfer.Transfer`; :func:`finish` makes
the data durable when asked, verifies the checksum or the server's digest, and gives the
file its final name. The façade (:class:`~accel.Downloader`) keeps the restart loop and the
first half (lock, probe, "already complete").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from accel import events as ev
from accel._disk import state
from accel._disk.complete import Completion
from accel._disk.storage import PartFile, check_free_space, check_max_size, finalize
from accel._engine.context import Context
from accel._engine.plan import initial_plan
from accel._engine.probe import Probe
from accel._engine.sources import mirror_sources
from accel._engine.transfer import Transfer
from accel._http.fetch import first_byte
from accel._util.ranges import Segment
from accel._util.remote import RemoteFile, http_date_to_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Landing:
    """Where one download lands, what checks it there, and whom to tell.

    ``watch(transfer)`` hands the running transfer to the façade (for progress snapshots);
    ``landed(dest)`` is called once the file has its final name, before ``Completed``.
    """

    ctx: Context
    dest: Path
    part: Path
    side: Path
    completion: Completion
    watch: Callable[[Transfer], None]
    landed: Callable[[Path], None]


def transfer_rest(
    landing: Landing,
    first: Probe,
    record: Optional[state.Record],
    segments: List[Segment],
) -> Path:
    """Fetch what ``record`` (None: a new download) lacks, starting with ``first``'s response;
    return the final path."""
    ctx, opts = landing.ctx, landing.ctx.options
    remote = first.remote
    size = remote.size
    limit = opts.max_filesize
    assert limit is None or isinstance(limit, int)
    check_max_size(ctx.shown_url, size, limit)
    ranged = remote.ranges and size is not None
    timeouts = ctx.timeouts  # mirrors must agree before the disk is touched
    mirrors = mirror_sources(
        remote,
        ctx.url,
        opts.mirrors,
        lambda url: first_byte(first.session, url, None, timeouts),
        ranged=bool(ranged),
    )
    if record is None:
        segments = initial_plan(
            size,
            opts.most_connections,
            opts.min_split,
            ranged=bool(ranged),
            body=first.response is not None,
            max_size=limit,
        )
        check_free_space(landing.dest.parent, size or 0)
        part = PartFile.create(landing.part, size)
    else:
        resumed = sum(s.written for s in segments)
        check_free_space(landing.dest.parent, (size or 0) - resumed)
        part = PartFile.open_existing(landing.part)
    resumable = ranged and remote.validators.resumable
    if not resumable and size:
        log.info("this download cannot be resumed if interrupted (no ranges or no validator)")
    transfer = Transfer(
        ctx,
        part,
        segments,
        remote,
        landing.side if resumable else None,
        ranged=ranged,
        mirrors=mirrors,
    )
    landing.watch(transfer)
    ctx.emit(
        ev.Started(
            ctx.shown_url,
            landing.dest,
            size,
            sum(s.written for s in segments),
            opts.initial_connections if ranged else 1,
            ranged=bool(ranged),
            resumable=bool(resumable),
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
    return finish(landing, part, remote, final_size, transfer, resumed=record is not None)


def finish(
    landing: Landing,
    part: PartFile,
    remote: RemoteFile,
    size: int,
    transfer: Optional[Transfer] = None,
    *,
    resumed: bool = True,
) -> Path:
    """Sync (if asked), verify and name the complete ``part`` of ``size`` bytes; return the
    final path. ``transfer`` is the run that wrote it (None: it was complete already)."""
    ctx, opts = landing.ctx, landing.ctx.options
    try:
        if opts.fsync:
            part.sync()  # the data is on stable storage before the name says "complete"
    finally:
        if transfer is not None:
            transfer.release()
        else:
            part.close()
    validators = remote.validators
    checked: Optional[str] = None
    if opts.checksum:
        # On a mismatch the data stays, recorded as complete: the right checksum
        # finishes it without fetching the body again.
        kept = state.complete_record(ctx.record_url, size, validators, synced=opts.fsync)
        checked = landing.completion.verify(landing.part, landing.side, ctx.url, kept)
    elif opts.server_digest and remote.digests:
        checked = landing.completion.verify_server(
            landing.part, landing.side, ctx.url, remote.digests
        )
    mtime = http_date_to_timestamp(validators.last_modified)
    dest = landing.dest
    finalize(landing.part, dest, force=opts.force, mtime=mtime, durable=opts.fsync)
    if transfer is None or transfer.committer.saved or resumed:
        state.remove(landing.side)  # a sidecar may exist: an earlier run's, or this one's
    landing.landed(dest)
    ctx.emit(ev.Completed(dest, size, checked))
    # Debug only: a program that wants a line for it has the Completed event (the CLI
    # prints one), so -v does not say it twice.
    log.debug("saved %s (%d bytes)", dest, size)
    return dest
