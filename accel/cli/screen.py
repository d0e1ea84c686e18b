"""The terminal's live lines, drawn by tqdm: one bar per running file, the total line
under them, messages above them, and each line laid out for the terminal's width.

:class:`Screen` keeps one :class:`tqdm.tqdm` bar per line (anything with a
``render(width)`` method) and, with ``-j``, a total line at a fixed position under them;
tqdm moves the cursor, clears and redraws the lines, prints messages above them
(:meth:`tqdm.tqdm.write`) and hides the lines a short terminal has no room for. Lines never
wrap: each is built for the current width (asked for at every redraw, so resizes are
followed) and is cleared to the end of the row instead of padded with spaces.
:func:`layout` builds one file's line from its :class:`Parts` and degrades by priority: the
segment map goes first, then the ETA, then the name is shortened, then the connection count
and the byte counts; a bar narrower than :data:`BAR_MIN` cells is never drawn.

This module imports tqdm: it is imported only when a display starts (not for ``--version``,
``--help``, ``-q`` or a run without a terminal).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Protocol, TextIO, Tuple

from tqdm import tqdm
from tqdm.std import Bar  # type: ignore[attr-defined]  # not in the stubs

__all__ = ["BAR_MIN", "Line", "Parts", "Screen", "fit", "layout", "squeeze"]

#: The narrowest bar drawn: below this the line shows no bar at all.
BAR_MIN = 10
#: The widest bar drawn.
BAR_MAX = 40
#: Size assumed for a terminal that reports none (a fresh pty is 0x0).
DEFAULT_COLUMNS, DEFAULT_ROWS = 80, 24


class Line(Protocol):
    """One live line."""

    def render(self, width: int) -> str:
        """The line's text, at most ``width`` cells."""


class LineBar(tqdm):  # type: ignore[type-arg]
    """A tqdm bar that shows a :class:`Line`, laid out for the width the :class:`Screen`
    last measured. No monitor thread: the command's main thread alone draws."""

    monitor_interval = 0
    _lock = threading.RLock()  # not tqdm's default, which makes a multiprocessing lock

    def __init__(self, line: Line, stream: TextIO, size: Tuple[int, int], **kw: Any) -> None:
        self.line = line
        self.ncols, self.nrows = size
        super().__init__(
            file=stream, ncols=size[0], nrows=size[1], leave=False, mininterval=0, **kw
        )

    @staticmethod
    def status_printer(file: Any) -> Callable[[str], None]:
        """Draw a row: the text, then clear to the end of the row (tqdm pads with spaces,
        which wrap on a terminal made narrower)."""

        def print_status(text: str) -> None:
            file.write("\r" + text + "\x1b[K")
            file.flush()

        return print_status

    def __str__(self) -> str:
        width = max(1, (self.ncols or DEFAULT_COLUMNS) - 1)  # never the last column
        return fit(self.line.render(width), width)


class Screen:
    """The live lines at the bottom of a terminal, and the messages printed above them."""

    def __init__(self, stream: TextIO, *, interval: float = 0.2) -> None:
        self.stream = stream
        self.interval = interval
        self.bars: Dict[int, LineBar] = {}  # id(line) -> its bar, in the order added
        self._footer: Optional[LineBar] = None
        self._last = 0.0
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        #: Block characters for the bar when the terminal takes UTF-8; ASCII otherwise.
        self.unicode = encoding in ("utf8", "utf_8")

    @property
    def lines(self) -> Tuple[Line, ...]:
        """The files' lines shown now."""
        return tuple(bar.line for bar in self.bars.values())

    @property
    def footer(self) -> Optional[Line]:
        """The total line, under the files' lines."""
        return self._footer.line if self._footer is not None else None

    def size(self) -> Tuple[int, int]:
        """(columns, rows) of the terminal, now."""
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            size = os.terminal_size((0, 0))
        return size.columns or DEFAULT_COLUMNS, size.lines or DEFAULT_ROWS

    def add(self, line: Line) -> None:
        """Show ``line`` on the first free row (rows are this screen's own: bars of other
        tqdm users in the process do not move them)."""
        if id(line) not in self.bars:
            taken = {abs(bar.pos) for bar in self._all()}
            row = min(set(range(len(taken) + 1)) - taken)
            self.bars[id(line)] = LineBar(line, self.stream, self.size(), position=row)

    def remove(self, line: Line) -> None:
        """Take ``line`` off the screen."""
        bar = self.bars.pop(id(line), None)
        if bar is not None:
            bar.close()

    def set_footer(self, line: Optional[Line], row: int = 1) -> None:
        """Show ``line`` as the total line on ``row`` (counted from the first file's line,
        kept under the rows the files use), or take it away (None)."""
        if self._footer is not None:
            self._footer.close()
            self._footer = None
        if line is not None:
            size = self.size()
            row = max(1, min(row, size[1] - 2))
            self._footer = LineBar(line, self.stream, size, position=row)

    def message(self, text: str) -> None:
        """Print ``text`` above the live lines, for good."""
        self._measure()
        LineBar.write(text, file=self.stream)
        self.stream.flush()
        self._last = time.monotonic()

    def refresh(self, *, force: bool = False) -> None:
        """Draw the lines again (at most every ``interval`` seconds unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._measure()
        for bar in self._all():
            bar.refresh()

    def close(self) -> None:
        """Take every line off the screen (the messages stay)."""
        for bar in list(self.bars.values()):
            bar.close()
        self.bars.clear()
        self.set_footer(None)

    def _all(self) -> Tuple[LineBar, ...]:
        footer = (self._footer,) if self._footer is not None else ()
        return (*self.bars.values(), *footer)

    def _measure(self) -> None:
        """Tell every bar the terminal's size now (it may have been resized)."""
        columns, rows = self.size()
        for bar in self._all():
            bar.ncols, bar.nrows = columns, rows


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
    """A bar of ``width`` cells filled to ``fraction``, drawn by tqdm (eighths of a cell
    with Unicode, tqdm's ASCII steps otherwise)."""
    fraction = min(1.0, max(0.0, fraction))
    return format(Bar(fraction, max(1, width), charset=Bar.UTF if unicode else Bar.ASCII))


@dataclass
class Parts:
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


def layout(parts: Parts, width: int, unicode: bool = True) -> str:
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
