"""The list scenarios' sections: many small files (with accel's re-run) and the huge list."""

from __future__ import annotations

import math
from typing import Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.records import Record, Rerun
from scripts.bench.render.cells import errors_text, median, ok, ok_cell, ratio, stat, table
from scripts.bench.results import ScenarioResult

RERUN_TARGET = 1024  # issue 11: a re-run costs at most ~1 KiB per finished file
RSS_TARGET_MIB = 64  # issue 11: peak RSS for 100,000 queued URLs
PROGRESS = (10, 50, 90)


def _med_ok(records: Sequence[Record], attr: str) -> float:
    return median([getattr(r, attr) for r in ok(records)])


def many_table(result: ScenarioResult) -> list[str]:
    """The list tools side by side."""
    count, size = int(result.params["count"]), int(result.params["size"])
    accel = result.records.get("accel", [])
    accel_wall, accel_cpu = _med_ok(accel, "wall"), _med_ok(accel, "cpu")
    header = ["tool", "ok runs", "wall s", "files/s", "MiB/s", "CPU s", "peak RSS MiB"]
    header += ["requests", "server overhead MiB", "accel/peer wall", "accel/peer CPU"]
    rows = []
    for tool, records in result.records.items():
        good = ok(records)
        row = [
            tool,
            ok_cell(records),
            stat([r.wall for r in good]),
            stat([count / r.wall for r in good], "{:.0f}"),
            stat([size / MiB / r.wall for r in good], "{:.1f}"),
            stat([r.cpu for r in good]),
            stat([r.rss for r in good], "{:.0f}"),
            stat([float(r.requests) for r in good if r.requests is not None], "{:.0f}"),
            stat([(r.server_bytes - size) / MiB for r in good if r.server_bytes is not None]),
        ]
        if tool == "accel":
            row += ["-", "-"]
        else:
            row += [
                ratio(accel_wall, _med_ok(records, "wall")),
                ratio(accel_cpu, _med_ok(records, "cpu")),
            ]
        rows.append(row)
    return table(header, rows)


def rerun_table(result: ScenarioResult) -> list[str]:
    """accel's re-runs on the finished directory, per file of the list."""
    count = int(result.params["count"])
    reruns: list[Rerun] = [r.rerun for r in result.records["accel"] if r.rerun is not None]
    good = [r for r in reruns if r.ok]
    ok_text = f"{len(good)}/{len(reruns)}"
    if not reruns:
        ok_text += " (no successful accel run to repeat)"
    ok_text += errors_text(r.error for r in reruns if not r.ok)

    def per_file(values: Sequence[Optional[int]]) -> list[float]:
        return [v / count for v in values if v is not None]

    body = per_file([r.body_bytes for r in good])
    wire = per_file([r.wire_bytes for r in good])
    verdict = "-"
    if wire or body:
        worst = max(wire or body)
        verdict = "met" if worst <= RERUN_TARGET else f"missed ({worst / RERUN_TARGET:.1f}x)"
    header = ["accel re-run", "ok runs", "wall s", "CPU s", "requests/file", "body B/file"]
    header += ["response B/file (with headers)", "request B/file"]
    header += [f"target <= {RERUN_TARGET} B/file"]
    row = [
        "same command, finished directory",
        ok_text,
        stat([r.wall for r in good]),
        stat([r.cpu for r in good]),
        stat(per_file([r.requests for r in good])),
        stat(body, "{:.0f}"),
        stat(wire, "{:.0f}"),
        stat(per_file([r.request_bytes for r in good]), "{:.0f}"),
        verdict,
    ]
    return table(header, [row])


def many_section(result: ScenarioResult) -> list[str]:
    """Commands, the tools' table and accel's re-run table."""
    jobs, conns = result.params["jobs"], result.params["connections"]
    commands = {
        "accel": f"accel -i LIST -j {jobs} -n {conns} -d DIR -q",
        "curl": f"curl --no-progress-meter -f -Z --parallel-max {jobs} "
        "--remote-name-all --output-dir DIR -K CONFIG (one url line per file)",
        "aria2c": f"aria2c --no-conf -q -i LIST -j {jobs} -d DIR "
        "--allow-overwrite=true --auto-file-renaming=false --file-allocation=none",
    }
    shown = [f"`{commands[t]}`" for t in result.records if t in commands]
    lines = [
        "Commands: " + "; ".join(shown) + ".",
        "Every run starts in an empty directory; afterwards all files are hashed and any "
        "other entry left in the directory fails the run. Issue 11 targets: wall <= 1.5x "
        "curl's, CPU <= 1.0x aria2c's.",
        "",
        *many_table(result),
    ]
    if "accel" in result.records:
        lines += [
            "",
            *rerun_table(result),
            "",
            "Re-run: after each successful accel run, the same command again on the "
            "finished directory (files checked again). Body bytes are nginx's "
            "$body_bytes_sent, responses with headers its $bytes_sent, requests its "
            "$request_length; per file of the list.",
        ]
    return lines


def memory_table(result: ScenarioResult) -> list[str]:
    """The huge list (failed runs are shown too: their RSS still counts)."""
    count = int(result.params["count"])
    rows = []
    for tool, records in result.records.items():
        ran = [r for r in records if not math.isnan(r.wall)]
        peak = median([r.rss for r in ran])
        verdict = "-"
        if not math.isnan(peak):
            verdict = "met" if peak <= RSS_TARGET_MIB else f"missed ({peak / RSS_TARGET_MIB:.2f}x)"
        at = [
            stat([r.rss_by_progress[p] for r in ran if p in r.rss_by_progress], "{:.0f}")
            for p in PROGRESS
        ]
        rows.append(
            [
                tool,
                ok_cell(records),
                stat([float(r.files_done) for r in ran if r.files_done is not None], "{:.0f}"),
                stat([r.wall for r in ran]),
                stat([(r.files_done or 0) / r.wall for r in ran], "{:.0f}"),
                stat([r.cpu for r in ran]),
                stat([r.first_file for r in ran if r.first_file is not None]),
                " / ".join(at),
                stat([r.rss for r in ran], "{:.1f}"),
                verdict,
                stat([r.requests / count for r in ran if r.requests is not None], "{:.2f}"),
            ]
        )
    header = ["tool", "ok runs", "files done", "wall s", "files/s", "CPU s"]
    header += ["first file after s", "RSS MiB at 10 / 50 / 90 % done", "peak RSS MiB"]
    header += [f"target <= {RSS_TARGET_MIB} MiB", "requests/URL"]
    return table(header, rows)


def memory_section(result: ScenarioResult) -> list[str]:
    """The command, how RSS was sampled, the table."""
    params = result.params
    return [
        f"Command: `accel -i LIST -j {params['jobs']} -q -d DIR` with {int(params['count']):,} "
        f"URLs /u/000000.bin, /u/000001.bin, ... (list file "
        f"{params['list_bytes'] / MiB:.1f} MiB). "
        "Peak RSS = highest VmHWM seen (polled every 10 ms); RSS at x % = VmRSS when "
        "that share of the outputs existed (sampled every second). One run; a failed or "
        f"timed-out run still shows its figures. Target: peak RSS <= {RSS_TARGET_MIB} MiB.",
        "",
        *memory_table(result),
    ]
