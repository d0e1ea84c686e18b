"""``accel --json``: newline-delimited JSON on stdout, one object per event.

For scripts, GUIs and log shippers. Every object has these keys:

``event``
    ``"start"``, ``"progress"``, ``"retry"``, ``"done"`` or ``"error"``.
``id``
    the file's number in the list (1 for the first URL), the same in all its events.
``url``, ``path``
    the URL (credentials removed) and the file (absolute; None until the server named it).
``bytes``, ``total``
    bytes on disk and the file's size (None: not known); ``done``: ``bytes`` is the size.
``rate``, ``connections``
    bytes per second now (``done``: the average of this run) and live connections.
``time``
    seconds since the Unix epoch.

``start`` adds ``resumed`` (bytes already on disk), ``ranged`` and ``resumable``;
``progress`` adds ``eta`` (seconds, or None); ``retry`` adds ``attempt``, ``delay`` and
``reason``; ``done`` adds ``elapsed`` and ``already_complete``; ``error`` adds ``code``
(the exit code that failure maps to), ``message`` and ``resumable`` (what was written is
kept for the next run). Progress comes at most every :data:`INTERVAL` seconds per file and at
least once per file (the last one, before ``done``, has the final count). A restart (the
remote file changed) sends a new ``start``. Nothing else is written to stdout; the
human messages stay on stderr.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, TextIO

from accel import events as ev

__all__ = ["INTERVAL", "EventStream"]

#: The least number of seconds between two progress objects of one file.
INTERVAL = 0.5


@dataclass
class _File:
    url: str
    path: Optional[str] = None
    total: Optional[int] = None
    written: int = 0
    resumed: int = 0
    connections: int = 0
    began: float = 0.0
    sent: Optional[int] = None  # bytes in the last progress object
    sent_at: float = 0.0
    digest: Optional[str] = None  # the check the file passed (Completed.digest)


class EventStream:
    """Writes the events of the command's downloads to ``out`` as NDJSON (main thread)."""

    def __init__(self, out: TextIO) -> None:
        self.out: Optional[TextIO] = out
        self.files: Dict[int, _File] = {}

    def add(self, index: int, url: str) -> None:
        """File ``index`` (of ``url``) was handed to the Manager."""
        self.files[index] = _File(url, began=time.monotonic())

    def on_event(self, index: int, event: ev.Event, snap: Optional[ev.Progress]) -> None:
        """A download's lifecycle event (``snap``: its progress now)."""
        f = self.files.get(index)
        if f is None:
            return
        self._look(f, snap)
        if isinstance(event, ev.Started):
            f.url, f.path, f.total = event.url, os.path.abspath(event.path), event.size
            f.written = f.resumed = event.resumed
            f.connections = event.connections
            f.began, f.sent = time.monotonic(), None
            f.sent_at = f.began  # the first progress object comes INTERVAL after the start
            self._write(
                "start", index, f, 0.0,
                resumed=event.resumed, ranged=event.ranged, resumable=event.resumable,
            )  # fmt: skip
        elif isinstance(event, ev.Retrying):
            self._write(
                "retry", index, f, snap.rate if snap else 0.0,
                attempt=event.attempt, delay=event.delay, reason=event.reason,
            )  # fmt: skip
        elif isinstance(event, ev.Completed):
            f.path, f.total, f.written = os.path.abspath(event.path), event.size, event.size
            f.digest = event.digest
            self._done(index, f, already=False)
        elif isinstance(event, ev.AlreadyComplete):
            f.path = os.path.abspath(event.path)
            try:
                f.total = f.written = f.resumed = os.path.getsize(event.path)
            except OSError:
                pass
            self._done(index, f, already=True)

    def tick(self, index: int, snap: Optional[ev.Progress]) -> None:
        """Periodic: a progress object for file ``index`` if :data:`INTERVAL` has passed."""
        f = self.files.get(index)
        if f is None or f.path is None or snap is None:
            return
        self._look(f, snap)
        if time.monotonic() - f.sent_at >= INTERVAL:
            self._progress(index, f, snap.rate, snap.eta)

    def error(
        self, index: int, code: int, message: str, *, resumable: bool, url: Optional[str] = None
    ) -> None:
        """File ``index`` failed (or was interrupted) with exit code ``code``."""
        f = self.files.pop(index, None) or _File(url or "")
        self._write("error", index, f, 0.0, code=code, message=message, resumable=resumable)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _look(f: _File, snap: Optional[ev.Progress]) -> None:
        if snap is not None:
            f.written, f.connections = snap.written, snap.connections
            f.total = snap.total if snap.total is not None else f.total

    def _progress(self, index: int, f: _File, rate: float, eta: Optional[float]) -> None:
        f.sent, f.sent_at = f.written, time.monotonic()
        self._write("progress", index, f, rate, eta=eta)

    def _done(self, index: int, f: _File, *, already: bool) -> None:
        elapsed = max(1e-6, time.monotonic() - f.began)
        rate = 0.0 if already else max(0, f.written - f.resumed) / elapsed
        if f.sent != f.written:  # at least one progress per file, the last with the final count
            self._progress(index, f, rate, 0.0)
        del self.files[index]
        self._write(
            "done",
            index,
            f,
            rate,
            elapsed=round(elapsed, 3),
            already_complete=already,
            digest=f.digest,
        )

    def _write(self, kind: str, index: int, f: _File, rate: float, **more: Any) -> None:
        obj = {
            "event": kind,
            "id": index,
            "url": f.url,
            "path": f.path,
            "bytes": f.written,
            "total": f.total,
            "rate": round(rate, 1),
            "connections": f.connections,
            "time": round(time.time(), 3),
            **more,
        }
        if self.out is None:
            return
        try:
            self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
            self.out.flush()
        except (OSError, ValueError):  # a reader that went away: the downloads go on
            self.out = None
