"""The single-file scenarios' sections: tools side by side, resume waste, seeds."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.records import Record
from scripts.bench.render.cells import median, ok, ok_cell, ratio, stat, table
from scripts.bench.results import ScenarioResult

NGINX_RATE_NOTE = (
    "Note: nginx lets every request send one second's worth (limit_rate bytes) before "
    "throttling, with one-second granularity, so wall/ideal can fall below 1 and tools that "
    "split into many small requests are throttled less (see the requests column; "
    "--throttle-server python paces strictly)."
)
IDEAL_NOTE = "Ideal = size / (connections the tool uses x per-connection rate)."
RESUME_NOTE = (
    "Re-fetched = bytes the server sent over both runs minus the file size; stopped at = "
    "share of the file the server had sent when the first run ended. Bytes still in socket "
    "buffers at SIGINT count as sent, so even curl's single-stream resume shows a little."
)


def _med(records: Sequence[Record], attr: str) -> float:
    values: list[float] = [getattr(r, attr) for r in records if getattr(r, attr) is not None]
    return median(values)


def _overhead(records: Sequence[Record], size: int) -> list[float]:
    return [(r.server_bytes - size) / MiB for r in records if r.server_bytes is not None]


def _ideal(params: dict[str, Any], tool: str) -> float:
    value: Optional[float] = params.get("ideal", {}).get(tool)
    return math.nan if value is None else float(value)


def resume_table(result: ScenarioResult) -> list[str]:
    """Resume waste: how far the first run got, what the second re-fetched."""
    size = int(result.params["size"])
    accel_waste = median(_overhead(ok(result.records.get("accel", [])), size))
    header = ["tool", "ok runs", "stopped at (% of file)", "re-fetched MiB"]
    header += ["re-fetched % of file", "resume run wall s", "accel/peer re-fetched"]
    rows = []
    for tool, records in result.records.items():
        good = ok(records)
        waste = _overhead(good, size)
        stops = [100 * r.stop_fraction for r in good if r.stop_fraction is not None]
        rows.append(
            [
                tool,
                ok_cell(records),
                stat(stops, "{:.0f}"),
                stat(waste, "{:.2f}"),
                stat([100 * w * MiB / size for w in waste], "{:.1f}"),
                stat([r.wall for r in good]),
                "-" if tool == "accel" else ratio(accel_waste, median(waste)),
            ]
        )
    return table(header, rows)


def download_table(result: ScenarioResult) -> list[str]:
    """Wall, MiB/s, ideal, CPU, RSS, server overhead, requests, ratios against accel."""
    params = result.params
    size = int(params["size"])
    throttled = params.get("rate") is not None
    accel = ok(result.records.get("accel", []))
    header = ["tool", "ok runs", "wall s", "MiB/s"]
    if throttled:
        header += ["ideal s", "wall/ideal"]
    header += ["CPU s", "peak RSS MiB", "server overhead MiB", "requests"]
    header += ["accel/peer wall", "accel/peer CPU"]
    accel_wall, accel_cpu = _med(accel, "wall"), _med(accel, "cpu")
    rows = []
    for tool, records in result.records.items():
        good = ok(records)
        ended = sorted({r.auto_connections for r in good if r.auto_connections is not None})
        label = tool + (f" (ended at {'/'.join(map(str, ended))})" if ended else "")
        row = [
            label,
            ok_cell(records),
            stat([r.wall for r in good]),
            stat([size / MiB / r.wall for r in good], "{:.0f}"),
        ]
        if throttled:
            ideal = _ideal(params, tool)
            row += [f"{ideal:.2f}", stat([r.wall / ideal for r in good])]
        row += [
            stat([r.cpu for r in good]),
            stat([r.rss for r in good], "{:.0f}"),
            stat(_overhead(good, size), "{:.2f}"),
            stat([float(r.requests) for r in good if r.requests is not None], "{:.0f}"),
        ]
        if tool == "accel":
            row += ["-", "-"]
        else:
            row += [ratio(accel_wall, _med(good, "wall")), ratio(accel_cpu, _med(good, "cpu"))]
        rows.append(row)
    return table(header, rows)


def seed_table(result: ScenarioResult) -> list[str]:
    """A seeded scenario: each seed's medians, the tools side by side."""
    header = ["seed", "tool", "ok runs", "wall s", "wall/ideal", "slow/all requests"]
    header += ["server overhead MiB", "accel/peer wall"]
    size = int(result.params["size"])
    rows = []
    for seed in result.params["seeds"]:
        by_tool = {t: [r for r in rs if r.seed == seed] for t, rs in result.records.items()}
        accel_wall = median([r.wall for r in ok(by_tool.get("accel", []))])
        for tool, records in by_tool.items():
            good = ok(records)
            ideal = _ideal(result.params, tool)
            slow = [r for r in good if r.slow_requests is not None and r.requests]
            rows.append(
                [
                    str(seed),
                    tool,
                    ok_cell(records),
                    stat([r.wall for r in good]),
                    stat([r.wall / ideal for r in good]),
                    " ".join(f"{r.slow_requests}/{r.requests}" for r in slow) or "-",
                    stat(_overhead(good, size)),
                    "-" if tool == "accel" else ratio(accel_wall, median([r.wall for r in good])),
                ]
            )
    return table(header, rows)


def download_section(result: ScenarioResult) -> list[str]:
    """Notes, then the table(s) of a download or resume scenario."""
    params = result.params
    resume = result.kind == "resume"
    throttled = params.get("rate") is not None
    lines = []
    if params.get("server_kind") == "nginx" and throttled:
        lines.append(NGINX_RATE_NOTE)
    if throttled and not resume:
        if params.get("straggler_every"):
            lines.append(IDEAL_NOTE[:-1] + "; stragglers make it unreachable here.")
        else:
            lines.append(IDEAL_NOTE)
    seeds = params.get("seeds") or []
    if seeds:
        lines.append(
            f"Each tool ran {params.get('runs', '?')} time(s) with each seed ({len(seeds)} "
            "seeds); with one seed every tool meets slow requests at the same positions of its "
            "own request order (the ideal is the straggler-free one). Issue 14 targets: "
            "accel <= 0.7x axel and <= 1.4x the ideal. Per seed below the overall table."
        )
    if resume:
        lines.append(RESUME_NOTE)
    lines.append("")
    lines += resume_table(result) if resume else download_table(result)
    if seeds:
        lines += ["", *seed_table(result)]
    return lines
