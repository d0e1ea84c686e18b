"""The first request of an attempt: learn the remote file and start its first range.

:func:`probe` returns a :class:`Probe` that owns the open response, the session it came on
and the host slot it holds. The transfer takes them over explicitly (:meth:`Probe.take`), so
the probe's connection serves the first segment; whatever is not taken is closed by
:meth:`Probe.close`.

A host that does not resolve or refuses the connection on the very first contact of a
download is reported at once (one quick retry): that is a typo or nothing listening, not an
outage to sit out. Once a download has had an answer, the same failures are retried in full.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Optional, Tuple

from accel._engine.context import Context, Restart
from accel._engine.sources import slot_key
from accel._http.base import Response, Session
from accel._http.fetch import Unreachable, get, raise_for_status, range_headers
from accel._util.remote import (
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
    unsatisfied_total,
    validators_of,
)
from accel.exceptions import CancelledError, NetworkError, RemoteProtocolError
from accel.limits import SlotLease
from accel.retry import RetryState

log = logging.getLogger(__name__)

#: Retries of an unreachable host on first contact, and the longest wait before one.
FIRST_CONTACT_RETRIES = 1
FIRST_CONTACT_DELAY = 0.25

#: The downloads (by cancel event) that have had an answer from their server.
_answered: weakref.WeakSet[threading.Event] = weakref.WeakSet()


class Probe:
    """The remote file as the first response describes it, and what that response holds.

    ``response`` is positioned at the requested start (None when the range was
    unsatisfiable because the file is complete or empty).
    """

    def __init__(
        self,
        remote: RemoteFile,
        response: Optional[Response],
        session: Session,
        lease: Optional[SlotLease],
    ) -> None:
        self.remote = remote
        self.response = response
        self.session = session
        self.lease = lease
        self._owned = True

    def take(self) -> Tuple[Optional[Response], Session, Optional[SlotLease]]:
        """Hand the response, session and slot over to the caller, who closes them."""
        if not self._owned:
            raise RuntimeError("the probe was already taken or closed")
        self._owned = False
        return self.response, self.session, self.lease

    def close(self) -> None:
        """Close whatever was not taken (idempotent)."""
        if not self._owned:
            return
        self._owned = False
        if self.response is not None:
            self.response.close()
        self.session.close()
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe(
    ctx: Context,
    start: int,
    end: Optional[int],
    known: Optional[Validators],
    *,
    plain: bool = False,
    head: bool = False,
) -> Probe:
    """Ask for ``bytes=start-end`` of the download's URL (the whole file when ``plain``).

    Waits for a host slot, retries transient failures under the download's retry policy,
    and falls back to a plain GET when the server ignores ranges. ``known`` are the
    validators of an earlier run: a different file raises :class:`Restart`. ``head`` only
    learns about the file, with no body on the wire (HEAD, or one byte where HEAD is
    refused): the probe then has no response.
    """
    lease = None
    slots = ctx.options.host_slots
    if slots is not None:
        lease = slots.wait_lease(slot_key(ctx.url), ctx.cancel)
        if lease is None:
            raise CancelledError("cancelled")
    session = ctx.new_session()
    try:
        retry = RetryState(ctx.options.retry)
        while True:
            try:
                if head:
                    remote, resp = _ask_head(ctx, session), None
                else:
                    remote, resp = _ask(ctx, session, start, end, known, plain=plain)
                return Probe(remote, resp, session, lease)
            except Retryable as exc:
                retry = retry.increment(exc)
                delay = retry.delay
                if isinstance(exc, Unreachable) and ctx.cancel not in _answered:
                    # The very first contact: a permanent error until shown otherwise.
                    if retry.exhausted(FIRST_CONTACT_RETRIES):
                        raise NetworkError(str(exc)) from None
                    delay = min(delay, FIRST_CONTACT_DELAY)
                elif retry.exhausted():
                    raise retry.give_up(exc, ctx.shown_url) from None
                log.info("probe failed (%s); retrying in %.2fs", exc, delay)
            except RangesUnsupported as exc:
                if plain:
                    raise RemoteProtocolError(str(exc)) from None
                log.info("%s; downloading as one stream", exc)
                plain = True
                continue
            if ctx.cancel.wait(delay):
                raise CancelledError("cancelled")
    except BaseException:
        session.close()
        if lease is not None:
            lease.release()
        raise


def _ask_head(ctx: Context, session: Session) -> RemoteFile:
    """The remote file's size and validators without its body.

    HEAD first; a server that refuses it (405, or a signed URL valid for GET only) or gives
    no length is asked for its first byte instead.
    """
    resp = get(session, ctx.url, {}, ctx.timeouts, method="HEAD")
    _answered.add(ctx.cancel)
    try:
        size = content_length(resp.headers)
        chunked = resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if resp.status_code == 200 and size is not None and not chunked:
            ranges = resp.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
            return describe(resp.url, resp.headers, size, ranges=ranges, whole_body=True)
    finally:
        # Reading the (empty) body hands the connection back, open for the next request.
        resp.content  # noqa: B018
        resp.close()
    remote, body = _ask(ctx, session, 0, 0, None, plain=False)
    if body is not None:
        body.close()
    return remote


def _ask(
    ctx: Context,
    session: Session,
    start: int,
    end: Optional[int],
    known: Optional[Validators],
    *,
    plain: bool,
) -> Tuple[RemoteFile, Optional[Response]]:
    """One try of the first request."""
    headers = {} if plain else range_headers(start, end, known)
    resp = get(session, ctx.url, headers, ctx.timeouts)
    _answered.add(ctx.cancel)
    try:
        status = resp.status_code
        if status == 416:
            total = unsatisfied_total(resp.headers.get("Content-Range"))
            seen = validators_of(resp.headers, total)
            if known is not None:
                if total != known.size or not known.same_version(seen):
                    raise Restart("the remote file changed (range not satisfiable)")
                if total is not None and start < total:
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
                raise Restart("the server sent the whole file: it changed or cannot resume")
            size = content_length(resp.headers)
            if resp.headers.get("Transfer-Encoding", "").lower() == "chunked":
                size = None
            return describe(resp.url, resp.headers, size, ranges=False, whole_body=True), resp
        if status != 206 or plain:
            raise BadResponse(f"unexpected status {status} for a range request")
        try:
            total = check_partial(status, resp.headers, start, end, known)
        except (RemoteChanged, TotalMismatch) as exc:
            # Resuming, a total other than the record's means the record cannot be used.
            raise Restart(f"the remote file changed ({exc})") from None
        return describe(resp.url, resp.headers, total, ranges=True), resp
    except BaseException:
        resp.close()
        raise
