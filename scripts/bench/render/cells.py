"""Table cells: 'median (min..max)', ratios, ok counts, and a Markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Optional, Sequence

from scripts.bench.records import Record


def ok(records: Iterable[Record]) -> list[Record]:
    """The successful runs."""
    return [r for r in records if r.ok]


def median(values: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(values) if values else math.nan


def stat(values: Iterable[Optional[float]], fmt: str = "{:.2f}") -> str:
    """'median (min..max)' of ``values``, or '-' when empty."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return "-"
    med = fmt.format(statistics.median(clean))
    if len(clean) == 1:
        return med
    return f"{med} ({fmt.format(min(clean))}..{fmt.format(max(clean))})"


def ratio(accel_value: float, peer_value: float) -> str:
    """accel / peer as '0.85x'."""
    if math.isnan(accel_value) or math.isnan(peer_value) or peer_value == 0:
        return "n/a"
    return f"{accel_value / peer_value:.2f}x"


def errors_text(errors: Iterable[str]) -> str:
    """' FAILED: a; b' for the distinct errors (pipes escaped, at most 200 characters)."""
    distinct = sorted(set(errors))
    if not distinct:
        return ""
    return " FAILED: " + "; ".join(e.replace("|", "/") for e in distinct)[:200]


def ok_cell(records: Sequence[Record]) -> str:
    """'3/3' or '2/3 FAILED: reason'."""
    return f"{len(ok(records))}/{len(records)}" + errors_text(r.error for r in records if not r.ok)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
