"""Two results files side by side, like pyperf's ``compare_to``: per scenario, tool and
metric the median before and after and their ratio."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.records import Record
from scripts.bench.render.cells import median, ok, stat, table
from scripts.bench.results import Results, ScenarioResult

#: A metric: its label and the values it takes from one scenario's runs (lower is better).
Metric = tuple[str, Callable[[ScenarioResult, Sequence[Record]], list[float]]]


def _attr(name: str) -> Callable[[ScenarioResult, Sequence[Record]], list[float]]:
    def values(_result: ScenarioResult, records: Sequence[Record]) -> list[float]:
        found = (getattr(r, name) for r in ok(records))
        return [float(v) for v in found if v is not None and not math.isnan(v)]

    return values


def _refetched(result: ScenarioResult, records: Sequence[Record]) -> list[float]:
    size = int(result.params["size"])
    return [(r.server_bytes - size) / MiB for r in ok(records) if r.server_bytes is not None]


def _rerun_body(result: ScenarioResult, records: Sequence[Record]) -> list[float]:
    count = int(result.params["count"])
    reruns = [r.rerun for r in records if r.rerun is not None and r.rerun.ok]
    return [r.body_bytes / count for r in reruns if r.body_bytes is not None]


def _ran_rss(_result: ScenarioResult, records: Sequence[Record]) -> list[float]:
    return [r.rss for r in records if not math.isnan(r.wall) and not math.isnan(r.rss)]


SAME = 0.02  # a change below 2 % is 'same'

METRICS: dict[str, list[Metric]] = {
    "download": [("wall s", _attr("wall")), ("CPU s", _attr("cpu")), ("RSS MiB", _attr("rss"))],
    "resume": [("re-fetched MiB", _refetched), ("resume wall s", _attr("wall"))],
    "many": [("wall s", _attr("wall")), ("CPU s", _attr("cpu")), ("re-run B/file", _rerun_body)],
    "memory": [("peak RSS MiB", _ran_rss), ("wall s", _attr("wall"))],
}


def change(before: Sequence[float], after: Sequence[float]) -> tuple[str, str]:
    """(after/before as '0.85x', a verdict): 'better' or 'worse', 'same' within ``SAME``, and
    'not significant' when both sides have several runs whose ranges overlap."""
    old, new = median(before), median(after)
    if math.isnan(old) or math.isnan(new):
        return "n/a", "-"
    if old == 0:
        return ("1.00x", "same") if new == 0 else ("n/a", "worse")
    factor = new / old
    if abs(factor - 1) < SAME:
        return f"{factor:.2f}x", "same"
    overlap = min(after) <= max(before) and min(before) <= max(after)
    if overlap and len(before) > 1 and len(after) > 1:
        return f"{factor:.2f}x", "not significant (ranges overlap)"
    return f"{factor:.2f}x", "better" if factor < 1 else "worse"


def _differences(old: Results, new: Results) -> list[str]:
    """What differs between the runs besides the figures: machine, options, versions."""
    notes = []
    for what, a_map, b_map in (
        ("machine", old.machine, new.machine),
        ("option", old.options, new.options),
    ):
        for key in sorted(a_map.keys() | b_map.keys()):
            a, b = a_map.get(key), b_map.get(key)
            if a != b:
                notes.append(f"{what} {key}: {a} -> {b}")
    for tool in sorted(old.tools.keys() & new.tools.keys()):
        a, b = old.tools[tool].get("version"), new.tools[tool].get("version")
        if a != b:
            notes.append(f"{tool} version: {a} -> {b}")
    return notes


def _by_name(results: Results) -> dict[str, ScenarioResult]:
    return {s.name: s for s in results.scenarios}


def compare(old: Results, new: Results, *, fmt: str = "{:.3g}") -> str:
    """The comparison as Markdown (ratio = after / before; below 1 = better)."""
    before, after = _by_name(old), _by_name(new)
    rows = []
    notes = _differences(old, new)
    for name in [*before, *(n for n in after if n not in before)]:
        a: Optional[ScenarioResult] = before.get(name)
        b: Optional[ScenarioResult] = after.get(name)
        if a is None or b is None:
            notes.append(f"scenario {name} only in the {'new' if a is None else 'old'} file")
            continue
        if a.title != b.title:
            notes.append(f"scenario {name} differs: {a.title!r} -> {b.title!r}")
        if a.params.get("outputs") != b.params.get("outputs"):
            where = f"{a.params.get('outputs')} -> {b.params.get('outputs')}"
            notes.append(f"scenario {name} outputs: {where}")
        for tool in [*a.records, *(t for t in b.records if t not in a.records)]:
            if tool not in a.records or tool not in b.records:
                notes.append(f"{name}: {tool} only in the {'new' if tool in b.records else 'old'}")
                continue
            for label, values in METRICS.get(a.kind, []):
                old_values = values(a, a.records[tool])
                new_values = values(b, b.records[tool])
                if not old_values and not new_values:
                    continue
                factor, verdict = change(old_values, new_values)
                old_cell, new_cell = stat(old_values, fmt), stat(new_values, fmt)
                rows.append([name, tool, label, old_cell, new_cell, factor, verdict])
    header = ["scenario", "tool", "metric", "before", "after", "after/before", "change"]
    lines = [
        "# accel benchmark: comparison",
        "",
        f"Before: {old.date}; after: {new.date}. Cells are median (min..max) over the "
        "successful runs; after/before below 1 = lower = better for every metric here.",
        "",
        *table(header, rows),
    ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
