"""The Markdown report of a results file: header, machine, tools, one section per scenario."""

from __future__ import annotations

import datetime
from typing import Any, Callable

from scripts.bench.render.download import download_section
from scripts.bench.render.family import family_lines
from scripts.bench.render.lists import many_section, memory_section
from scripts.bench.results import Results, ScenarioResult

SECTIONS: dict[str, Callable[[ScenarioResult], list[str]]] = {
    "download": download_section,
    "resume": download_section,
    "many": many_section,
    "memory": memory_section,
}


def when(results: Results) -> str:
    """The run's start as 'YYYY-MM-DD HH:MM TZ'."""
    try:
        started = datetime.datetime.fromisoformat(results.date)
    except ValueError:
        return results.date
    return f"{started:%Y-%m-%d %H:%M} {results.timezone}".strip()


def machine_lines(machine: dict[str, Any]) -> list[str]:
    """A bullet list describing the machine."""
    mem = machine.get("memory_gib")
    return [
        f"- CPU: {machine.get('cpu', '?')}; nproc {machine.get('nproc', '?')} "
        f"(of {machine.get('cpu_count', '?')})",
        f"- memory: {'?' if mem is None else f'{mem:.1f} GiB'}",
        f"- OS: {machine.get('os', '?')}; kernel {machine.get('kernel', '?')} "
        f"({machine.get('arch', '?')})",
        f"- Python: {machine.get('python', '?')} ({machine.get('executable', '?')})",
    ]


def heading(result: ScenarioResult) -> str:
    """'## 1. big-file: Unthrottled, ...'."""
    number = f"{result.number}. " if result.number else ""
    return f"## {number}{result.name}: {result.title}"


def scenario_lines(result: ScenarioResult) -> list[str]:
    """One scenario's section."""
    where = result.params.get("outputs")
    server = f"Server: {result.server}" + (f"; outputs in {where}." if where else ".")
    section = SECTIONS.get(result.kind)
    body = section(result) if section else [f"(no renderer for kind {result.kind!r})"]
    return ["", heading(result), "", server, *body]


def render(results: Results) -> str:
    """The whole report."""
    runs = results.options.get("runs", "?")
    lines = [
        "# accel benchmark",
        "",
        f"{when(results)}; {runs} run(s) per tool and scenario (the huge list: one), tools "
        "interleaved (order rotates every round); cells are median (min..max) over the "
        "successful runs; every output was checked by size and SHA-256 (the huge list: sizes, "
        "and contents of every 1,000th file); all traffic on 127.0.0.1.",
        "",
        "## Machine",
        "",
        *machine_lines(results.machine),
        "",
        "## Tools",
        "",
    ]
    for tool, info in results.tools.items():
        lines.append(
            f"- {tool}: {info.get('version', '?')}; {info.get('connections')} connection(s)"
        )
    for result in results.scenarios:
        lines += scenario_lines(result)
    lines += family_lines(results.scenarios)
    lines += ["", "Ratios are accel's median divided by the peer's (below 1 = accel better)."]
    if results.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    return "\n".join(lines) + "\n"
