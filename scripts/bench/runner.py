"""Running a benchmark: which tools and scenarios can run, then every tool ``--runs`` times
per scenario, interleaved, the order rotating every round (A/B interleaving)."""

from __future__ import annotations

import datetime
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.common import GiB, log
from scripts.bench.options import RunOptions
from scripts.bench.records import Record
from scripts.bench.results import Results, ScenarioResult, machine_info
from scripts.bench.scenarios import REGISTRY, Scenario
from scripts.bench.servers import nginx_available
from scripts.bench.tools import (
    ACCEL_TOOLS,
    compile_accel,
    tool_available,
    tool_connections,
    tool_version,
)
from scripts.bench.workspace import SPARE, open_workspace, tmpfs_room


class SetupError(Exception):
    """The benchmark cannot start (no tool, no room); the message says why."""


@dataclass
class Planned:
    """A scenario that will run: with which tools, outputs on which kind of directory."""

    scenario: Scenario
    tools: list[str]
    outdir_kind: str  # "tmpfs" or "disk"


def outdir_kind(options: RunOptions, scenario: Scenario) -> str:
    """Where ``scenario`` writes its outputs; SetupError if tmpfs was asked for and is full."""
    need, inodes = scenario.output_space()
    if options.outdir_kind == "disk":
        return "disk"
    room = tmpfs_room(need, inodes) is not None
    if options.outdir_kind == "tmpfs":
        if not room:
            raise SetupError(f"--outdir-kind tmpfs: no room in /dev/shm for {scenario.name}")
        return "tmpfs"
    return "tmpfs" if scenario.prefers_tmpfs and room else "disk"


def plan(
    options: RunOptions, tools: list[str], notes: list[str], have_nginx: bool, why_nginx: str
) -> list[Planned]:
    """The scenarios to run, in order; a note for each one (or tool) left out."""
    if not have_nginx:
        notes.append(f"nginx unavailable ({why_nginx}); the Python FaultServer serves instead")
    planned = []
    for name in options.scenarios:
        scenario = REGISTRY[name](options)
        why = scenario.unavailable(have_nginx, why_nginx)
        if why is not None:
            notes.append(f"scenario {name} skipped: {why}")
            continue
        chosen = scenario.choose_tools(tools, notes)
        if chosen:
            planned.append(Planned(scenario, chosen, outdir_kind(options, scenario)))
    return planned


def check_space(base: Path, planned: list[Planned]) -> None:
    """SetupError unless ``base`` holds the largest scenario's data and disk outputs.

    Each scenario's files are removed when it ends, so the largest one counts.
    """
    want = SPARE
    for entry in planned:
        outputs = entry.scenario.output_space()[0] if entry.outdir_kind == "disk" else 0
        want = max(want, entry.scenario.data_bytes() + outputs + SPARE)
    free = shutil.disk_usage(base).free
    if free < want:
        raise SetupError(
            f"not enough space in {base}: {free / GiB:.1f} GiB free, {want / GiB:.1f} needed"
        )


def summary(record: Record) -> str:
    """One progress line for a finished run."""
    parts = [f"{record.wall:.2f} s wall", f"{record.cpu:.2f} s CPU"]
    if record.seed is not None:
        parts.append(f"seed {record.seed}, {record.slow_requests} of {record.requests} slow")
    if record.files_done is not None:
        parts.append(f"peak RSS {record.rss:.0f} MiB, {record.files_done} files done")
    parts.append("ok" if record.ok else f"FAILED ({record.error})")
    text = ", ".join(parts)
    rerun = record.rerun
    if rerun is not None:
        text += f"; re-run {rerun.wall:.2f} s, {rerun.body_bytes} body bytes, "
        text += f"{rerun.requests} requests" + ("" if rerun.ok else f", FAILED ({rerun.error})")
    return text


def run_rounds(scenario: Scenario, tools: list[str], result: ScenarioResult) -> None:
    """Every tool ``runs()`` times per seed, the order rotating each round, into ``result``."""
    result.records = {tool: [] for tool in tools}
    rounds = [seed for seed in scenario.seeds() for _ in range(scenario.runs())]
    for round_no, seed in enumerate(rounds):
        shift = round_no % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            log(f"scenario {scenario.name} round {round_no + 1}/{len(rounds)}: {tool}")
            try:
                record = scenario.run_once(tool, seed)
            except (OSError, subprocess.SubprocessError) as exc:
                record = Record(ok=False, error=f"{type(exc).__name__}: {exc}")
            result.records[tool].append(record)
            log(f"  {tool}: {summary(record)}")


def available_tools(options: RunOptions, notes: list[str]) -> list[str]:
    """The requested tools that run here; a note for each one that does not."""
    tools = []
    for tool in options.tools:
        ok, why = tool_available(tool)
        if ok:
            tools.append(tool)
        else:
            notes.append(f"{tool} skipped: {why}")
            log(f"{tool} skipped: {why}")
    return tools


def run(options: RunOptions) -> Results:
    """Run the benchmark; what was measured so far if interrupted (``interrupted`` set)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background with SIGINT ignored: the tools would inherit that and
        # the resume scenario could not interrupt them.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    notes: list[str] = []
    tools = available_tools(options, notes)
    if not tools:
        raise SetupError("no tool to benchmark")
    if any(tool in ACCEL_TOOLS for tool in tools):
        compile_accel()
    have_nginx, why_nginx = nginx_available()
    planned = plan(options, tools, notes, have_nginx, why_nginx)
    base = options.tmpdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    check_space(base, planned)

    started = datetime.datetime.now().astimezone()
    results = Results(
        date=started.isoformat(timespec="seconds"),
        timezone=started.tzname() or "",
        options=options.to_json(),
        machine=machine_info(),
        tools={
            t: {"version": tool_version(t), "connections": tool_connections(t, options.connections)}
            for t in tools
        },
        notes=notes,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="accel-bench-", dir=base) as workdir:
            for entry in planned:
                scenario = entry.scenario
                ws = open_workspace(
                    options, Path(workdir), scenario.name, entry.outdir_kind, have_nginx
                )
                with ws.stack:
                    scenario.setup(ws)
                    result = scenario.describe()
                    results.scenarios.append(result)
                    log(f"--- {scenario.name}: {result.title}")
                    run_rounds(scenario, entry.tools, result)
    except KeyboardInterrupt:
        log("interrupted; reporting what has been measured")
        notes.append("the benchmark was interrupted")
        results.interrupted = True
    return results
