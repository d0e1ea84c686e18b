"""Where bytes come from: the main URL and its mirrors, chosen per request, with host slots.

A :class:`SourcePool` picks the least busy live source for a new request, moves a failing
request to another source, and re-resolves an expired redirect target (a signed URL) once
for everyone: connections that see the expiry wait for the refresh in flight and continue
with its result. Each request holds a :class:`~accel.limits.SlotLease` on its host when
the download shares a :class:`~accel.limits.HostSlots` cap.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, List, Optional, Sequence, Tuple

from accel._util.remote import (
    RangesUnsupported,
    RemoteChanged,
    RemoteFile,
    Retryable,
    Validators,
    is_strong,
)
from accel._util.urls import check_url, origin, redact
from accel.exceptions import HTTPError, NetworkError, UsageError, VerificationError
from accel.limits import HostSlots, SlotLease

log = logging.getLogger(__name__)

#: How often one source may be re-resolved in a download (an expiring signed URL).
MAX_REFRESHES = 8


def slot_key(url: str) -> str:
    """The HostSlots key of ``url``: host and port, never credentials."""
    _, host, port = origin(url)
    return f"{host}:{port}"


class Source:
    """One URL the file is fetched from: the main URL (after redirects) or a mirror."""

    def __init__(
        self,
        url: str,
        original: str,
        validators: Validators,
        provider: Optional[Callable[[], str]] = None,
    ) -> None:
        self.url = url
        self.original = original
        #: Mints a fresh original URL (the caller's), consulted on each re-resolution.
        self.provider = provider
        self.validators = validators
        self.dead = False
        self.active = 0
        #: Bumped by each re-resolution; ``confirmed`` is the newest one a request succeeded on.
        self.generation = 0
        self.confirmed = 0
        self.refresh_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Source({redact(self.url)!r}, active={self.active}, dead={self.dead})"


class SourcePool:
    """The sources of one download and the host slots their requests hold (thread-safe)."""

    def __init__(self, sources: Sequence[Source], slots: Optional[HostSlots] = None) -> None:
        if not sources:
            raise ValueError("a download needs at least one source")
        self.sources: List[Source] = list(sources)
        self.slots = slots
        self._lock = threading.Lock()

    @property
    def main(self) -> Source:
        """The download's own URL (after redirects)."""
        return self.sources[0]

    def acquire(
        self, *, force: bool = False, lease: Optional[SlotLease] = None
    ) -> Optional[Tuple[Source, Optional[SlotLease]]]:
        """A source for a new request and its host slot, or None (all dead, or no free slot).

        ``force`` takes the main source even when its host has no free slot; ``lease`` is a
        slot the request already holds (the probe's).
        """
        with self._lock:
            alive = [s for s in self.sources if not s.dead]
            if not alive:
                return None
            source = self.main if force else min(alive, key=lambda s: s.active)
            if lease is None and self.slots is not None:
                lease = self.slots.lease(slot_key(source.url))
                if lease is None and not force:
                    return None
            source.active += 1
        return source, self._move(lease, source.url) if lease is not None else None

    def release(self, source: Source, lease: Optional[SlotLease]) -> None:
        """A request on ``source`` ended: it frees its slot."""
        with self._lock:
            source.active -= 1
        if lease is not None:
            lease.release()

    def several_alive(self) -> bool:
        """Whether another source is left to turn to."""
        with self._lock:
            return sum(not s.dead for s in self.sources) > 1

    def switch(
        self, source: Source, lease: Optional[SlotLease], exc: BaseException
    ) -> Optional[Tuple[Source, Optional[SlotLease]]]:
        """Give up on a failing ``source`` if another is alive; return the one to use instead.

        A change of the main file itself (:class:`RemoteChanged` there) is never switched
        around: the download starts over.
        """
        with self._lock:
            others = [s for s in self.sources if not s.dead and s is not source]
            if not others or (isinstance(exc, RemoteChanged) and source is self.main):
                return None
            source.dead = True
            source.active -= 1
            new = min(others, key=lambda s: s.active)
            new.active += 1
        log.warning("dropping source %s: %s", redact(source.url), exc)
        return new, self._move(lease, new.url)

    def _move(self, lease: Optional[SlotLease], url: str) -> Optional[SlotLease]:
        """A slot for the host of ``url`` in place of ``lease``.

        Over the cap for this one request (None) rather than stall a range under way.
        """
        key = slot_key(url)
        if self.slots is None or (lease is not None and lease.key == key):
            return lease
        if lease is not None:
            lease.release()
        return self.slots.lease(key)

    def refresh(self, source: Source, used: int, resolve: Callable[[str], str]) -> bool:
        """Resolve an expired redirect target again; True when the caller should retry.

        ``used`` is the :attr:`Source.generation` the failed request went to. One connection
        re-resolves; the others wait for it and retry with its result. A refresh that did
        not help (no request succeeded since) is not repeated: the error is real.
        """
        if source.url == source.original and source.provider is None:
            return False  # not a redirect, nor a minted link: nothing to re-resolve
        with source.refresh_lock:
            if source.generation != used:
                return True  # another connection refreshed it meanwhile
            if source.confirmed < source.generation or source.generation >= MAX_REFRESHES:
                return False
            if source.provider is not None:
                source.original = mint(source.provider)
            url = resolve(source.original)
            log.info("resolved %s again: now %s", redact(source.original), redact(url))
            source.url = url
            source.generation += 1
            return True


def mint(provider: Callable[[], str]) -> str:
    """A fresh URL from a caller's provider, checked as any URL; its failure is a usage
    error in accel's words."""
    try:
        url = provider()
    except Exception as exc:
        raise UsageError(f"the URL provider failed: {exc!r}") from exc
    if not isinstance(url, str):
        raise UsageError(f"the URL provider returned {type(url).__name__}, not a URL string")
    return check_url(url)


def usable_mirrors(
    main: RemoteFile,
    url: str,
    mirrors: Sequence[str],
    probe: Callable[[str], Tuple[str, int, Validators]],
) -> List[Source]:
    """Check each mirror serves the same file as ``main`` (size, and ETag where strong).

    ``probe(url)`` returns (final URL, size, validators) of a mirror. A mirror that cannot be
    reached, or gives no validator to detect a change with, is left out with a warning; one
    that serves another file raises :class:`VerificationError`.
    """
    sources = []
    mine = main.validators
    for mirror in mirrors:
        try:
            final_url, total, seen = probe(mirror)
        except (Retryable, RangesUnsupported, NetworkError, HTTPError) as exc:
            log.warning("mirror %s is not usable (%s); continuing without it", redact(mirror), exc)
            continue
        if total != mine.size:
            raise VerificationError(
                f"mirror {redact(mirror)} serves {total} bytes, {redact(url)} {mine.size}"
            )
        if is_strong(mine.etag) and is_strong(seen.etag) and mine.etag != seen.etag:
            raise VerificationError(
                f"mirror {redact(mirror)} has ETag {seen.etag}, {redact(url)} {mine.etag}"
            )
        if not seen.resumable:
            log.warning("mirror %s gives no ETag or Last-Modified; not used", redact(mirror))
            continue
        sources.append(Source(final_url, mirror, seen))
    return sources


def mirror_sources(
    main: RemoteFile,
    url: str,
    mirrors: Sequence[str],
    probe: Callable[[str], Tuple[str, int, Validators]],
    *,
    ranged: bool,
) -> List[Source]:
    """The mirrors a download of ``url`` uses besides it (see :func:`usable_mirrors`).

    Mirrors need ranges: without them (``ranged`` false) none is used, with a warning.
    Mirrors must agree before anything is created on disk.
    """
    if not mirrors:
        return []
    if not ranged:
        log.warning("the server does not serve ranges: mirrors are not used")
        return []
    return usable_mirrors(main, url, mirrors, probe)
