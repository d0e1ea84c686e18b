"""The results file: machine, tool versions, options, the date and every run's raw record."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from scripts.bench.common import MiB
from scripts.bench.records import Record, record_from_json, record_to_json

FORMAT = "accel-bench/1"


@dataclass
class ScenarioResult:
    """One scenario's description and the records of every tool, in run order."""

    name: str  # e.g. "big-file"
    number: str  # the old scenario number, "1".."7"
    kind: str  # "download", "resume", "many" or "memory": how it is rendered
    title: str
    server: str  # the server's description
    params: dict[str, Any] = field(default_factory=dict)  # sizes, rates, ideal per tool, ...
    records: dict[str, list[Record]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "number": self.number,
            "kind": self.kind,
            "title": self.title,
            "server": self.server,
            "params": self.params,
            "records": {t: [record_to_json(r) for r in rs] for t, rs in self.records.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScenarioResult:
        """The inverse of :meth:`to_json`."""
        records = {t: [record_from_json(r) for r in rs] for t, rs in data["records"].items()}
        return cls(
            name=data["name"],
            number=str(data.get("number", "")),
            kind=data["kind"],
            title=data["title"],
            server=data.get("server", ""),
            params=dict(data.get("params", {})),
            records=records,
        )


@dataclass
class Results:
    """Everything a benchmark run measured; rendering and comparing read only this."""

    date: str  # ISO 8601 with the UTC offset, when the run started
    timezone: str  # the zone's name then, e.g. "UTC"
    options: dict[str, Any]
    machine: dict[str, Any]
    tools: dict[str, dict[str, Any]]  # tool -> {"version": ..., "connections": ...}
    scenarios: list[ScenarioResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "format": FORMAT,
            "date": self.date,
            "timezone": self.timezone,
            "options": self.options,
            "machine": self.machine,
            "tools": self.tools,
            "scenarios": [s.to_json() for s in self.scenarios],
            "notes": self.notes,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """The inverse of :meth:`to_json`; refuses files of another format."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} results file (format {data.get('format')!r})")
        return cls(
            date=data["date"],
            timezone=data.get("timezone", ""),
            options=dict(data.get("options", {})),
            machine=dict(data.get("machine", {})),
            tools={t: dict(v) for t, v in data.get("tools", {}).items()},
            scenarios=[ScenarioResult.from_json(s) for s in data.get("scenarios", [])],
            notes=list(data.get("notes", [])),
            interrupted=bool(data.get("interrupted", False)),
        )


def save(results: Results, path: Union[str, Path]) -> None:
    """Write ``results`` to ``path`` as indented JSON (no NaN: those are null)."""
    text = json.dumps(results.to_json(), indent=1, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def load(path: Union[str, Path]) -> Results:
    """Read a results file written by :func:`save`."""
    return Results.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _first_value(path: str, prefix: str, sep: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(sep, 1)[1].strip()
    return ""


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS, kernel and Python of this machine."""
    mem_gib = None
    with contextlib.suppress(ValueError, IndexError):
        mem_gib = round(int(_first_value("/proc/meminfo", "MemTotal:", ":").split()[0]) / MiB, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": _first_value("/proc/cpuinfo", "model name", ":") or "?",
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": _first_value("/etc/os-release", "PRETTY_NAME=", "=").strip('"') or platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "executable": sys.executable,
    }
