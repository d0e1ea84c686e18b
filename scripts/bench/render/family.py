"""The stragglers family's summary: one row per member, accel against axel and the ideal."""

from __future__ import annotations

import math
from typing import Sequence

from scripts.bench.render.cells import median, ok, table
from scripts.bench.results import ScenarioResult

#: Issue 22's targets: accel's wall at most this share of axel's ...
PEER_TARGET = 0.7
#: ... and at most this multiple of the straggler-free ideal.
IDEAL_TARGET = 1.4


def _pairs(result: ScenarioResult, tool: str, peer: str) -> list[float]:
    """accel/peer wall ratios, run by run of the same round (both ok)."""
    mine, theirs = result.records.get(tool, []), result.records.get(peer, [])
    return [a.wall / b.wall for a, b in zip(mine, theirs) if a.ok and b.ok and b.wall > 0]


def family_lines(results: Sequence[ScenarioResult]) -> list[str]:
    """The summary section, or nothing when no member of the family ran."""
    members = [r for r in results if r.params.get("family")]
    if not members:
        return []
    header = ["member", "pattern", "accel s", "axel s", "accel/axel (pairs)", "accel/ideal"]
    header += ["targets (<= 0.7x axel, <= 1.4x ideal)"]
    rows = []
    for result in members:
        ideal = result.params.get("ideal", {}).get("accel")
        accel = median([r.wall for r in ok(result.records.get("accel", []))])
        axel = median([r.wall for r in ok(result.records.get("axel", []))])
        pairs = median(_pairs(result, "accel", "axel"))
        to_ideal = accel / ideal if ideal else math.nan
        met = []
        if not math.isnan(pairs):
            met.append("axel met" if pairs <= PEER_TARGET else "axel MISSED")
        if not math.isnan(to_ideal):
            met.append("ideal met" if to_ideal <= IDEAL_TARGET else "ideal MISSED")
        rows.append(
            [
                result.name,
                str(result.params.get("pattern", "")),
                f"{accel:.2f}",
                f"{axel:.2f}",
                "n/a" if math.isnan(pairs) else f"{pairs:.2f}x",
                "n/a" if math.isnan(to_ideal) else f"{to_ideal:.2f}x",
                ", ".join(met) or "-",
            ]
        )
    return [
        "",
        "## The stragglers family: summary",
        "",
        "accel/axel is the median of the ratios of runs of the same round; the ideal is the "
        "straggler-free size / (N x rate).",
        "",
        *table(header, rows),
    ]
