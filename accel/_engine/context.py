"""What the engine's parts share about one download, and the signals they send its façade.

A :class:`Context` is the narrow view of a :class:`~accel.Downloader` that the probe, the
transfer and its workers get: the URL, the settings, a session factory, timeouts, the cancel
event and the event sink; and what the engine learns of the download on the way (whether
its server has answered yet). Nothing below the façade sees the ``Downloader`` itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit

from accel import events as ev
from accel._http.base import Session
from accel._util.urls import redact
from accel.options import Options


@dataclass(frozen=True)
class Context:
    """One download's shared view for the engine's threads (read-only but ``answered``)."""

    url: str
    options: Options
    new_session: Callable[[], Session]
    cancel: threading.Event
    emit: Callable[[ev.Event], None]
    report: Callable[[int], None]
    #: Set once the download's server answered a request (a probe's): an unreachable host
    #: after that is a transient failure, not a permanent error on first contact.
    answered: threading.Event = field(default_factory=threading.Event, compare=False)
    #: Mints a fresh URL for this download (a caller's presigned-link maker), or None.
    provider: Optional[Callable[[], str]] = None

    @property
    def timeouts(self) -> Tuple[float, float]:
        """(connect, read) timeouts for requests."""
        return (self.options.connect_timeout, self.options.timeout)

    @property
    def shown_url(self) -> str:
        """The URL as messages show it (no credentials)."""
        return redact(self.url)

    @property
    def record_url(self) -> str:
        """The URL as the sidecar records it (see :func:`record_url`)."""
        return record_url(self.url, provided=self.provider is not None)


def record_url(url: str, *, provided: bool) -> str:
    """The URL a sidecar records and a resume compares: shown without credentials, and for a
    URL a provider minted without its query (a presigned link's signature changes with each
    mint; the server's validators still tell whether the file is the same)."""
    shown = redact(url)
    return urlsplit(shown)._replace(query="", fragment="").geturl() if provided else shown


class Restart(Exception):
    """Discard progress and start over (the remote changed, or cannot be ranged)."""

    def __init__(self, reason: str, *, single_stream: bool = False) -> None:
        super().__init__(reason)
        self.single_stream = single_stream
