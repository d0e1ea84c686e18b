"""Terminal progress for the command line: live lines on a terminal, summary lines otherwise.

On a terminal each active download has a line (:class:`Reporter`) in the live region of a
:class:`~accel.cli.screen.Screen` and, with several at once, a total line (:class:`TotalBar`)
under them; the lines are laid out by :mod:`accel.cli.screen`. When a file ends its line
collapses into a one-line summary printed above the region, so nothing of it is left behind.

When stderr is not a terminal each file gets one summary line (and a line for a resume, a
server without ranges, or an outage). Sizes and rates are IEC units (KiB, MiB/s).

Every method runs on one thread (the CLI's main thread, which receives the downloads'
callbacks through a queue), so one thread alone writes to the terminal.
"""

from __future__ import annotations

import os
import time
from typing import Callable, List, Optional, TextIO, Tuple

from accel import events as ev
from accel._util.units import human_amount, human_duration, human_rate, human_size
from accel.cli.screen import BAR_MIN, Parts, Screen, fit, layout

__all__ = ["BAR_MIN", "Reporter", "Screen", "TotalBar", "human_size"]

#: Seconds without progress after a failed request before a download shows it is retrying.
STALL = 1.0


class Reporter:
    """Turns one download's events into terminal output on ``stream``.

    ``bar``: show a live line (stream is a terminal) on ``screen`` (one is made if not
    given); otherwise print summary lines, unless ``quiet``. ``snapshot`` returns the
    download's current :class:`~accel.events.Progress` (bytes, rate, ETA, connections and
    the segment map); without it the bytes handed to :meth:`on_progress` are counted.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        bar: bool,
        quiet: bool = False,
        snapshot: Optional[Callable[[], Optional[ev.Progress]]] = None,
        label: str = "",
        screen: Optional[Screen] = None,
    ) -> None:
        self.stream = stream
        self.show_bar = bar and not quiet
        self.quiet = quiet
        self.snapshot = snapshot
        self.label = label
        self.screen: Optional[Screen] = None
        if self.show_bar:
            self.screen = screen or Screen(stream)
        self._own_screen = self.show_bar and screen is None
        self._shown = False
        self.started: Optional[ev.Started] = None
        self.size: Optional[int] = None
        self.written = 0
        self._started_at = time.monotonic()
        self._rate_mark = (self._started_at, 0)
        self._rate = 0.0
        self._retry: Optional[ev.Retrying] = None
        self._retry_at = 0.0
        self._retry_written = 0
        self._announced = False
        if self.show_bar and self.label:
            self._show()

    # -- what the download says ------------------------------------------------------------

    @property
    def resumable(self) -> bool:
        """Whether an interruption now could be resumed by a later run."""
        return self.started is None or self.started.resumable

    def on_event(self, event: ev.Event) -> None:
        """Handle a lifecycle event."""
        if isinstance(event, ev.Started):
            self._on_started(event)
        elif isinstance(event, ev.Retrying):
            if self._retry is None or not self._stalled():
                self._retry_at = time.monotonic()
                self._retry_written = self._written_now()
            self._retry = event
        elif isinstance(event, ev.Restarted):
            self._say(f"accel: {self.label}: restarting: {event.reason}")
        elif isinstance(event, ev.Completed):
            self._on_completed(event)
        elif isinstance(event, ev.AlreadyComplete):
            self._hide()
            self._say(f"accel: {event.path} is already complete")
        elif isinstance(event, (ev.Failed, ev.Cancelled)):
            self._hide()  # the caller reports the error in its own words

    def on_progress(self, delta: int) -> None:
        """Count ``delta`` more bytes (and redraw when it is time)."""
        self.written += delta
        if self.screen is not None and self._shown:
            self.screen.refresh()

    def tick(self) -> None:
        """Periodic chores: show an outage (retrying with no progress) or its end."""
        if self.quiet or self.started is None:
            return
        if self._retry is not None and not self._stalled():
            if self._written_now() > self._retry_written:
                if self._announced and not self.show_bar:
                    self._say(f"accel: {self.label}: receiving again")
                self._retry, self._announced = None, False
        elif (
            self._retry is not None
            and not self._announced
            and time.monotonic() - self._retry_at >= STALL
        ):
            self._announced = True
            if not self.show_bar:
                retry = self._retry
                self._say(
                    f"accel: {self.label}: no data; retrying "
                    f"(attempt {retry.attempt}: {retry.reason})"
                )

    def close(self) -> None:
        """Take the line off the screen (if it is there)."""
        self._hide()
        if self._own_screen and self.screen is not None:
            self.screen.close()

    # -- drawing ---------------------------------------------------------------------------

    def render(self, width: int) -> str:
        """This download's line in ``width`` cells."""
        unicode = self.screen.unicode if self.screen is not None else True
        if self.started is None:
            return layout(Parts(self.label, "", None, "", "", "", "starting", True, ""), width)
        snap = self.snapshot() if self.snapshot is not None else None
        written = snap.written if snap is not None else self.written
        size = self.size
        rate = snap.rate if snap is not None else 0.0
        rate = rate or self._measure(written)  # the engine's meter needs a moment
        eta_s: Optional[float] = snap.eta if snap is not None else None
        if eta_s is None and size is not None and rate > 0:
            eta_s = (size - written) / rate
        percent, fraction = "", None
        if size:
            fraction = written / size
            percent = f"{min(100, int(fraction * 100)):3d}%"
        elif size == 0:
            percent, fraction = "100%", 1.0
        connections = snap.connections if snap is not None else self.started.connections
        status, detail = f"{connections} conn", ""
        if snap is not None and snap.auto:
            status += " (auto)"  # the count follows the throughput
        keep = False
        if snap is not None and snap.segment_map:
            detail = f"[{snap.segment_map}]"
        if self._retry is not None and self._announced:
            status, keep = f"retrying ({self._retry.attempt})", True
            detail = self._retry.reason
        eta = f"ETA {human_duration(eta_s)}" if eta_s is not None else "ETA --:--"
        parts = Parts(
            self.label,
            percent,
            fraction,
            human_amount(written, size),
            human_rate(rate),
            eta,
            status,
            keep,
            detail,
        )
        return layout(parts, width, unicode)

    # -- internals -------------------------------------------------------------------------

    def _on_started(self, event: ev.Started) -> None:
        self.started = event
        self.size = event.size
        self.written = event.resumed
        self._started_at = time.monotonic()
        self._rate_mark = (self._started_at, event.resumed)
        self._retry, self._announced = None, False
        self.label = self.label or event.path.name
        name = event.path.name
        if event.resumed and event.size:
            self._say(
                f"accel: resuming {name}: {human_size(event.resumed)} of "
                f"{human_size(event.size)} already on disk"
            )
        if not event.ranged:
            self._say(
                f"accel: {name}: the server does not support ranges: 1 connection, cannot resume"
            )
        elif not event.resumable and event.size:
            self._say(
                f"accel: {name}: the server sends no ETag or Last-Modified: cannot resume "
                "if interrupted"
            )
        if self.show_bar:
            self._show()
            if self.screen is not None:
                self.screen.refresh(force=True)

    def _on_completed(self, event: ev.Completed) -> None:
        self._hide()
        elapsed = max(1e-6, time.monotonic() - self._started_at)
        resumed = self.started.resumed if self.started is not None else 0
        fetched = max(0, event.size - resumed)
        path = os.path.abspath(event.path)
        if resumed:
            text = (
                f"{human_size(event.size)}; {human_size(fetched)} in {elapsed:.1f}s this run, "
                f"{human_rate(fetched / elapsed)}"
            )
        else:
            text = f"{human_size(event.size)} in {elapsed:.1f}s, {human_rate(fetched / elapsed)}"
        if event.digest:
            text += f"; {event.digest} verified"
        self._say(f"accel: saved {path} ({text})")

    def _stalled(self) -> bool:
        return self._written_now() <= self._retry_written

    def _written_now(self) -> int:
        snap = self.snapshot() if self.snapshot is not None else None
        return snap.written if snap is not None else self.written

    def _measure(self, written: int) -> float:
        now = time.monotonic()
        since, mark = self._rate_mark
        if now - since >= 0.5:
            self._rate = max(0.0, (written - mark) / (now - since))
            self._rate_mark = (now, written)
        elif not self._rate and now - since >= 0.2:  # the first half second
            return max(0.0, (written - mark) / (now - since))
        return self._rate

    def _show(self) -> None:
        if self.screen is not None and not self._shown:
            self._shown = True
            self.screen.add(self)

    def _hide(self) -> None:
        if self.screen is not None and self._shown:
            self._shown = False
            self.screen.remove(self)

    def _say(self, text: str) -> None:
        if self.quiet:
            return
        if self.screen is not None:
            self.screen.message(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


class TotalBar:
    """The total line under the files' lines when several download at once (``-j``):
    files finished of expected, bytes this run, the total rate, and how many are running,
    queued and failed (``files`` None: the count is not known, e.g. a list from a pipe)."""

    def __init__(self, stream: TextIO, files: Optional[int], screen: Optional[Screen] = None):
        self.expected = files
        self.finished = 0
        self.received = 0
        self.counts: Tuple[int, int, Optional[int]] = (0, 0, files)
        self._own = screen is None
        self.screen = screen or Screen(stream)
        self.screen.footer = self
        self._marks: List[Tuple[float, int]] = [(time.monotonic(), 0)]
        self.screen.refresh(force=True)

    def update(self, delta: int) -> None:
        """Count ``delta`` more bytes."""
        self.received += delta
        self.screen.refresh()

    def files(self, ok: int, failed: int, running: int, queued: Optional[int]) -> None:
        """Show the file counts."""
        self.finished = ok + failed
        self.counts = (failed, running, queued)
        self.screen.refresh(force=True)

    def rate(self) -> float:
        """Bytes per second over the last few seconds."""
        now = time.monotonic()
        marks = self._marks
        if now - marks[-1][0] >= 0.5:
            marks.append((now, self.received))
            del marks[:-7]
        since, mark = marks[0]
        return (self.received - mark) / (now - since) if now > since else 0.0

    def render(self, width: int) -> str:
        """The total line in ``width`` cells."""
        failed, running, queued = self.counts
        expected = "?" if self.expected is None else str(self.expected)
        head = f"total {self.finished}/{expected} {human_size(self.received)} "
        head += human_rate(self.rate())
        details = [f"{running} running"]
        if queued is not None:
            details.append(f"{queued} queued")
        details.append(f"{failed} failed")
        for n in range(len(details), -1, -1):
            text = head + ("  " + ", ".join(details[:n]) if n else "")
            if len(text) <= width:
                return text
        return fit(head, width)

    def close(self) -> None:
        """Take the total line off the screen."""
        if self.screen.footer is self:
            self.screen.footer = None
        if self._own:
            self.screen.close()
        else:
            self.screen.refresh(force=True)
