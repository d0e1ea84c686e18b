"""Terminal progress for the command line: a tqdm bar on a terminal, a summary line otherwise.

Every method runs on one thread (the CLI's main thread, which receives the downloads'
callbacks through a queue), so one thread alone updates the bars.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Optional, TextIO

from tqdm import tqdm

from . import events as ev
from .units import human_size

__all__ = ["Reporter", "TotalBar", "human_size"]


class Reporter:
    """Turns a download's events into terminal output on ``stream``.

    ``bar``: draw a live tqdm bar (stream is a terminal); otherwise print one summary line
    per file unless ``quiet``. ``snapshot`` returns the download's current
    :class:`~accel.events.Progress` for the connection count and the segment map.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        bar: bool,
        quiet: bool = False,
        snapshot: Optional[Callable[[], Optional[ev.Progress]]] = None,
        label: str = "",
        position: int = 0,
    ) -> None:
        self.stream = stream
        self.show_bar = bar and not quiet
        self.quiet = quiet
        self.snapshot = snapshot
        self.label = label
        self.position = position
        self._bar: Optional[tqdm[Any]] = None
        self._started = time.monotonic()
        self._resumed = 0
        self._last_postfix = 0.0

    def on_event(self, event: ev.Event) -> None:
        """Handle a lifecycle event."""
        if isinstance(event, ev.Started):
            self._started = time.monotonic()
            self._resumed = event.resumed
            self.label = self.label or event.path.name
            if self.show_bar:
                self._close_bar()
                self._bar = tqdm(
                    total=event.size,
                    initial=event.resumed,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=_shorten(self.label, 24),
                    file=self.stream,
                    leave=True,
                    mininterval=0.2,
                    position=self.position,
                    **_width(self.stream),
                )
        elif isinstance(event, ev.Restarted):
            if self._bar is not None:
                self._bar.write(f"accel: restarting: {event.reason}", file=self.stream)
            elif not self.quiet:
                self._line(f"accel: restarting: {event.reason}")
        elif isinstance(event, ev.Completed):
            if self._bar is not None and self.snapshot is not None:
                snap = self.snapshot()
                if snap is not None:
                    self._bar.set_postfix_str(f"done [{snap.segment_map}]", refresh=False)
            self._close_bar()
            if not self.quiet and not self.show_bar:
                elapsed = max(1e-6, time.monotonic() - self._started)
                fetched = max(0, event.size - self._resumed)
                self._line(
                    f"accel: saved {event.path} ({human_size(event.size)} in {elapsed:.1f}s, "
                    f"{human_size(fetched / elapsed)}/s)"
                )
        elif isinstance(event, ev.AlreadyComplete):
            if not self.quiet:
                self._line(f"accel: {event.path} is already complete")
        elif isinstance(event, ev.Failed):
            self._close_bar()

    def on_progress(self, delta: int) -> None:
        """Advance the bar by ``delta`` bytes."""
        if self._bar is None:
            return
        self._bar.update(delta)
        now = time.monotonic()
        if self.snapshot is not None and now - self._last_postfix >= 0.5:
            self._last_postfix = now
            snap = self.snapshot()
            if snap is not None:
                self._bar.set_postfix_str(
                    f"{snap.connections} conn [{snap.segment_map}]", refresh=False
                )

    def close(self) -> None:
        """Finish the bar (if any)."""
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _width(stream: TextIO) -> Dict[str, Any]:
    """tqdm size options: follow the terminal, or 100x24 when it reports no size."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": size.columns or 100, "nrows": size.lines or 24}


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class TotalBar:
    """The summary bar over all files when several download at once (``-j``): bytes, the
    total rate, and files done / failed / running / queued (``files`` None: not known)."""

    def __init__(self, stream: TextIO, files: Optional[int]) -> None:
        self.expected = files
        self.finished = 0
        self._bar = tqdm(
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"total 0/{files if files is not None else '?'}",
            file=stream,
            position=0,
            **_width(stream),
            mininterval=0.2,
        )

    def update(self, delta: int) -> None:
        """Count ``delta`` more bytes."""
        self._bar.update(delta)

    def files(self, ok: int, failed: int, running: int, queued: Optional[int]) -> None:
        """Show the file counts."""
        self.finished = ok + failed
        expected = "?" if self.expected is None else str(self.expected)
        self._bar.set_description_str(f"total {self.finished}/{expected}", refresh=False)
        waiting = "" if queued is None else f", {queued} queued"
        self._bar.set_postfix_str(f"{failed} failed, {running} running{waiting}")

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()
