"""What the engine sees of an HTTP exchange: a session and a response, as protocols.

The engine (probe, workers, transfer) holds sessions and responses as handles: it reads a
response's status, headers and final URL and closes it, and it closes sessions. Everything
else, sending requests, reading bodies, mapping the HTTP library's errors into accel's,
happens in :mod:`accel._http` (requests and urllib3 are imported nowhere else).
"""

from __future__ import annotations

from typing import MutableMapping, Protocol


class Response(Protocol):
    """A response whose headers have arrived; its body is read by :mod:`accel._http.body`."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> MutableMapping[str, str]: ...
    @property
    def url(self) -> str: ...
    @property
    def content(self) -> bytes: ...
    def close(self) -> None: ...


class Session(Protocol):
    """A keep-alive session; closing it may hand it back to its pool."""

    def close(self) -> None: ...
