"""Terminal progress for the command line: live lines on a terminal, summary lines otherwise.

On a terminal, :class:`Screen` keeps a live region at the bottom: one line per active
download (:class:`Reporter`) and, with several at once, a total line (:class:`TotalBar`).
Everything else (a file saved, a warning, an error, a log record) is printed *above* the
region, which is then drawn again; when a file ends its line collapses into that one-line
summary, so nothing of it is left behind. Lines never wrap: each is built for the current
width (asked for at every redraw, so resizes are followed) and degrades by priority: the
segment map goes first, then the ETA, then the name is shortened, then the connection
count and the byte counts; a bar narrower than :data:`BAR_MIN` cells is never drawn.

When stderr is not a terminal each file gets one summary line (and a line for a resume, a
server without ranges, or an outage). Sizes and rates are IEC units (KiB, MiB/s).

Every method runs on one thread (the CLI's main thread, which receives the downloads'
callbacks through a queue), so one thread alone writes to the terminal.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol, TextIO, Tuple

from . import events as ev
from .units import human_amount, human_duration, human_rate, human_size

__all__ = ["BAR_MIN", "Reporter", "Screen", "TotalBar", "human_size"]

#: The narrowest bar drawn: below this the line shows no bar at all.
BAR_MIN = 10
#: The widest bar drawn.
BAR_MAX = 40
#: Size assumed for a terminal that reports none (a fresh pty is 0x0).
DEFAULT_COLUMNS, DEFAULT_ROWS = 80, 24
#: Seconds without progress after a failed request before a download shows it is retrying.
STALL = 1.0


class Line(Protocol):
    """One line of the live region."""

    def render(self, width: int) -> str:
        """The line's text, at most ``width`` cells."""


class Screen:
    """The live region at the bottom of a terminal, and the messages printed above it."""

    def __init__(self, stream: TextIO, *, interval: float = 0.2) -> None:
        self.stream = stream
        self.interval = interval
        self.lines: List[Line] = []
        self.footer: Optional[Line] = None
        self._drawn = 0
        self._last = 0.0
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        #: Block characters for the bar when the terminal takes UTF-8; "=" otherwise.
        self.unicode = encoding in ("utf8", "utf_8")

    def size(self) -> Tuple[int, int]:
        """(columns, rows) of the terminal, now."""
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        return size.columns or DEFAULT_COLUMNS, size.lines or DEFAULT_ROWS

    def add(self, line: Line) -> None:
        """Show ``line`` in the live region (above the footer)."""
        self.lines.append(line)
        self.refresh(force=True)

    def remove(self, line: Line) -> None:
        """Take ``line`` out of the live region."""
        if line in self.lines:
            self.lines.remove(line)
            self.refresh(force=True)

    def message(self, text: str) -> None:
        """Print ``text`` above the live region, for good."""
        self.stream.write(self._erase() + text + "\n" + self._render())
        self.stream.flush()
        self._last = time.monotonic()

    def refresh(self, *, force: bool = False) -> None:
        """Draw the live region again (at most every ``interval`` seconds unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(self._erase() + self._render())
        self.stream.flush()

    def close(self) -> None:
        """Erase the live region (the lines are gone; the messages stay)."""
        self.lines.clear()
        self.footer = None
        text = self._erase()
        if text:
            self.stream.write(text)
            self.stream.flush()

    def _erase(self) -> str:
        """Move to the region's first line and clear to the end of the screen."""
        if not self._drawn:
            return ""
        up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
        self._drawn = 0
        return "\r" + up + "\x1b[J"

    def _render(self) -> str:
        columns, rows = self.size()
        width = max(1, columns - 1)  # never the last column: no terminal wraps then
        lines = list(self.lines)
        room = max(1, rows - 1 - (self.footer is not None))
        texts = [line.render(width) for line in lines[:room]]
        if len(lines) > room:
            texts[-1] = f"... and {len(lines) - room + 1} more"
        if self.footer is not None:
            texts.append(self.footer.render(width))
        texts = [fit(t, width) for t in texts]
        self._drawn = len(texts)
        return "\n".join(texts)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells (the last one an ellipsis when cut)."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def shorten(text: str, width: int) -> str:
    """``text`` in ``width`` cells, keeping its end (the extension): ``a-very…0123.iso``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = min(max(0, len(text) - len(text.rsplit(".", 1)[0])) + 3, (width - 1) // 2)
    head = width - 1 - tail
    return text[:head] + "…" + (text[len(text) - tail :] if tail else "")


def bar(fraction: float, width: int, unicode: bool) -> str:
    """A bar of ``width`` cells filled to ``fraction`` (eighths of a cell with Unicode)."""
    fraction = min(1.0, max(0.0, fraction))
    if not unicode:
        full = int(fraction * width)
        return "=" * full + " " * (width - full)
    eighths = int(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part and full < width else "")
    return text + " " * (width - len(text))


@dataclass
class _Parts:
    """What one file's line may show, most important first."""

    name: str
    percent: str  # "" when the size is unknown
    fraction: Optional[float]  # None: no bar
    amount: str
    rate: str
    eta: str
    status: str  # "8 conn", or "retrying (3)" which is never dropped
    keep_status: bool
    detail: str  # the segment map, or the reason of a retry


#: The degradation steps: (detail cells, show ETA, shortest name, show status, show amount);
#: detail cells: 0 none, -1 all, else the segment map squeezed into that many cells.
_LEVELS = (
    (-1, True, None, True, True),
    (16, True, None, True, True),
    (0, True, None, True, True),
    (False, False, None, True, True),
    (False, False, 12, True, True),
    (False, False, 12, False, True),
    (False, False, 8, False, False),
)


def squeeze(detail: str, cells: int) -> str:
    """``detail`` for a layout level: the segment map ``[##>..]`` shrunk to ``cells``
    cells (a cell is written if all of its part is, in flight if any is), or other text
    whole; ``cells`` 0: nothing, -1: unchanged."""
    if cells == 0 or not detail:
        return ""
    inner = detail[1:-1]
    if cells < 0 or not detail.startswith("[") or len(inner) <= cells:
        return detail
    out = []
    for i in range(cells):
        chunk = inner[i * len(inner) // cells : (i + 1) * len(inner) // cells]
        out.append("#" if set(chunk) == {"#"} else (">" if ">" in chunk else "."))
    return "[" + "".join(out) + "]"


def layout(parts: _Parts, width: int, unicode: bool = True) -> str:
    """The line for ``parts`` in ``width`` cells, dropping pieces by priority."""
    for detail, eta, shortest, status, amount in _LEVELS:
        tail = [parts.amount if amount else "", parts.rate, parts.eta if eta else ""]
        tail += [parts.status if status or parts.keep_status else ""]
        tail += [squeeze(parts.detail, detail)]
        tail_text = " ".join(t for t in tail if t)
        head = f" {parts.percent}" if parts.percent else ""
        fixed = len(head) + 1 + len(tail_text)  # " " before the tail
        if parts.fraction is None:
            room = width - fixed
            if shortest is None and len(parts.name) <= room:
                return f"{parts.name}{head} {tail_text}"
            if shortest is not None and room >= min(shortest, len(parts.name)):
                return f"{shorten(parts.name, room)}{head} {tail_text}"
            continue
        fixed += 3  # " |" and "|" around the bar
        name_room = width - fixed - BAR_MIN
        if shortest is None:
            if len(parts.name) > name_room:
                continue
            name = parts.name
        else:
            if name_room < min(shortest, len(parts.name)):
                continue
            name = shorten(parts.name, name_room)
        cells = min(BAR_MAX, width - fixed - len(name))
        drawn = bar(parts.fraction, cells, unicode)
        return f"{name}{head} |{drawn}| {tail_text}"
    # Not even that fits: the name, the percent and the rate, cut to the width.
    head = f" {parts.percent}" if parts.percent else ""
    last = f" {parts.status}" if parts.keep_status else ""
    rest = f"{head} {parts.rate}{last}"
    return fit(shorten(parts.name, max(4, width - len(rest))) + rest, width)


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
            return layout(_Parts(self.label, "", None, "", "", "", "starting", True, ""), width)
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
        keep = False
        if snap is not None and snap.segment_map:
            detail = f"[{snap.segment_map}]"
        if self._retry is not None and self._announced:
            status, keep = f"retrying ({self._retry.attempt})", True
            detail = self._retry.reason
        eta = f"ETA {human_duration(eta_s)}" if eta_s is not None else "ETA --:--"
        parts = _Parts(
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
