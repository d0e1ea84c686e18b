"""Drawing on a terminal: the live region at the bottom, and lines laid out for a width.

:class:`Screen` keeps a live region at the bottom of a terminal: a list of lines (each
anything with a ``render(width)`` method) and an optional footer. Everything else (a file
saved, a warning, an error, a log record) is printed *above* the region, which is then
drawn again. Lines never wrap: each is built for the current width (asked for at every
redraw, so resizes are followed). :func:`layout` builds one file's line from its
:class:`Parts` and degrades by priority: the segment map goes first, then the ETA, then the
name is shortened, then the connection count and the byte counts; a bar narrower than
:data:`BAR_MIN` cells is never drawn.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import List, Optional, Protocol, TextIO, Tuple

__all__ = ["BAR_MIN", "Line", "Parts", "Screen", "fit", "layout", "squeeze"]

#: The narrowest bar drawn: below this the line shows no bar at all.
BAR_MIN = 10
#: The widest bar drawn.
BAR_MAX = 40
#: Size assumed for a terminal that reports none (a fresh pty is 0x0).
DEFAULT_COLUMNS, DEFAULT_ROWS = 80, 24


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
