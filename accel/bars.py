"""Progress bars for library callers, drawn by tqdm.

``progress=True`` on :func:`accel.download`, :class:`accel.Downloader` and
:class:`accel.Manager` draws ``tqdm.auto`` bars on stderr: widgets in Jupyter, text in a
terminal. ``progress=`` a tqdm class (``tqdm.rich.tqdm``, a subclass of your own) draws with
that class; ``progress=False`` (the default) draws nothing and imports no tqdm. A
:class:`~accel.Downloader` run alone leaves its bar on the screen when it ends; in a
:class:`~accel.Manager` each file's bar goes away when the file ends and a total bar (bytes,
files done of added) stays. The ``on_progress`` and ``on_event`` callbacks are not involved:
a program may use both.

Bars show bytes in IEC multiples (tqdm's ``unit_divisor=1024``) and, after the rate, the live
connection count (``8 conn``) or ``retrying (N)`` during an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Union

from accel import events as ev
from accel.exceptions import UsageError

log = logging.getLogger(__name__)

__all__ = ["FileBar", "ProgressOption", "TotalBar", "bar_class", "file_bar"]

#: What ``progress=`` takes: True (``tqdm.auto``), False or None (no bars), or a tqdm class.
ProgressOption = Union[bool, None, Callable[..., Any]]

#: Seconds between looks at a download's connection count (for the bar's postfix).
POSTFIX_EVERY = 0.5

#: The keyword arguments every bar is made with (bytes, in powers of 1024).
BYTES = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "dynamic_ncols": True}


def bar_class(progress: ProgressOption) -> Callable[..., Any]:
    """The tqdm class that ``progress`` (not False) asks for.

    Raises :class:`~accel.UsageError` for anything else than True or a class.
    """
    if progress is True:
        from tqdm.auto import tqdm

        return tqdm
    if progress is not None and progress is not False and callable(progress):
        return progress
    raise UsageError(f"progress must be True, False or a tqdm class, not {progress!r}")


def file_bar(progress: ProgressOption, **kw: Any) -> FileBar:
    """The bar of one download for ``progress=`` (``kw``: :class:`FileBar`'s)."""
    return FileBar(bar_class(progress), **kw)


class FileBar:
    """One download's bar: its events and byte counts in, a tqdm bar out.

    Made on :class:`~accel.events.Started` (the size is known then), moved by the bytes,
    finished and closed when the download ends. ``leave``: the bar stays on the screen when
    closed. ``snapshot`` gives the live connection count. The download calls it from one
    thread at a time.
    """

    def __init__(
        self,
        cls: Callable[..., Any],
        *,
        leave: bool = True,
        snapshot: Optional[Callable[[], Optional[ev.Progress]]] = None,
    ) -> None:
        self.cls = cls
        self.leave = leave
        self.snapshot = snapshot
        self.bar: Any = None
        self._looked = 0.0
        self._status = ""

    def on_event(self, event: ev.Event) -> None:
        """Follow a lifecycle event of the download (a failing bar is logged, not raised:
        the download goes on)."""
        try:
            self._on_event(event)
        except Exception:
            log.exception("progress bar failed on %r", event)

    def on_progress(self, delta: int) -> None:
        """Count ``delta`` more bytes."""
        try:
            self._on_progress(delta)
        except Exception:
            log.exception("progress bar failed")

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self._open(event.path.name, event.size, event.resumed)
            self._postfix(f"{event.connections} conn")
        elif isinstance(event, ev.Retrying):
            self._postfix(f"retrying ({event.attempt})")
        elif isinstance(event, ev.Completed):
            if self.bar is None:
                self._open(event.path.name, event.size, 0)
            self.bar.total = event.size
            self.bar.n = event.size
            self._postfix("done")
            self._close()
        elif isinstance(event, ev.AlreadyComplete):
            try:
                size = event.path.stat().st_size
            except OSError:
                size = None
            self._open(event.path.name, size, size or 0)
            self._postfix("already complete")
            self._close()
        elif isinstance(event, ev.Failed):
            self._postfix("failed")
            self._close()
        elif isinstance(event, ev.Cancelled):
            self._postfix("cancelled")
            self._close()

    def _on_progress(self, delta: int) -> None:
        bar = self.bar
        if bar is None:
            return
        now = time.monotonic()
        if self.snapshot is not None and now - self._looked >= POSTFIX_EVERY:
            self._looked = now
            snap = self.snapshot()
            if snap is not None and not self._status.startswith("retrying"):
                self._postfix(f"{snap.connections} conn", refresh=False)
        if self._status.startswith("retrying"):
            self._status = ""  # bytes again: the outage is over
        bar.update(delta)

    def _open(self, name: str, size: Optional[int], done: int) -> None:
        if self.bar is not None:  # a restart: the same bar, from what is on disk
            self.bar.reset(total=size)
            self.bar.update(done)
            return
        self.bar = self.cls(desc=name, total=size, initial=done, leave=self.leave, **BYTES)

    def _postfix(self, text: str, *, refresh: bool = True) -> None:
        self._status = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=refresh)

    def _close(self) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()


class TotalBar:
    """A :class:`~accel.Manager`'s total bar: bytes received by all its downloads and
    ``files`` done of added (``2 failed`` when some did). Thread-safe."""

    def __init__(self, cls: Callable[..., Any]) -> None:
        self.cls = cls
        self.bar: Any = None
        self._lock = threading.Lock()
        self._pending = 0

    def update(self, delta: int) -> None:
        """Count ``delta`` more bytes."""
        with self._lock:
            if self.bar is None:
                self._pending += delta
            else:
                self.bar.update(delta)

    def files(self, finished: int, failed: int, added: int) -> None:
        """Show the file counts (the bar appears with the first file added)."""
        with self._lock:
            if self.bar is None:
                self.bar = self.cls(desc="total", initial=self._pending, leave=True, **BYTES)
            text = f"{finished}/{added} files"
            self.bar.set_postfix_str(text + (f", {failed} failed" if failed else ""))

    def close(self) -> None:
        """Close the bar (it stays on the screen)."""
        with self._lock:
            bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()
