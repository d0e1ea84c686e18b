"""Command line of the benchmark.

    python3 -m scripts.bench [run] [OPTIONS]       run, save JSON, print the Markdown report
    python3 -m scripts.bench render RESULTS.json   the report of a saved run
    python3 -m scripts.bench compare OLD.json NEW.json
    python3 -m scripts.bench list                  the scenarios, their numbers and sizes

Examples::

    python3 -m scripts.bench --quick                          # smoke test, a few minutes
    python3 -m scripts.bench --runs 5 --out bench.md          # the full benchmark
    python3 -m scripts.bench --tools curl,aria2c,axel --scenarios big-file,throttled
    python3 -m scripts.bench --scenarios many-files,huge-list --runs 3
    python3 -m scripts.bench --scenarios straggler-request,straggler-connection --runs 3 \\
        --tools accel,axel
    python3 -m scripts.bench --scenarios big-file --outdir-kind tmpfs --save tmpfs.json
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Optional, Sequence

from scripts.bench.common import log
from scripts.bench.compare import compare
from scripts.bench.options import OUTDIR_KINDS, RunOptions
from scripts.bench.render import render
from scripts.bench.results import load, save
from scripts.bench.runner import SetupError, run
from scripts.bench.scenarios import REGISTRY, resolve
from scripts.bench.tools import ALL_TOOLS

COMMANDS = ("run", "render", "compare", "list")


def run_parser() -> argparse.ArgumentParser:
    """Options of ``run`` (also the default command)."""
    names = ", ".join(f"{n} ({c.number})" for n, c in REGISTRY.items())
    parser = argparse.ArgumentParser(
        prog="python3 -m scripts.bench [run]",
        description="Benchmark accel against curl, aria2c and axel on loopback servers. "
        "Other commands: render RESULTS.json, compare OLD.json NEW.json, list.",
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="small sizes (64/16/8 MiB, 100 files, 2,000 URLs) and 1 run: a smoke test",
    )
    add("--runs", type=int, help="runs per tool and scenario (default 5; quick 1)")
    add("--size-gib", type=float, help="size of the big-file file in GiB (default 1)")
    add("-n", "--connections", type=int, default=8, help="connections (8)")
    add("-j", "--jobs", type=int, default=8, help="files at once in many-files, huge-list (8)")
    add("--files", type=int, help="files of 64 KiB in many-files (default 1,000; quick 100)")
    add("--urls", type=int, help="URLs in huge-list (default 100,000; quick 2,000)")
    add(
        "--tools",
        default=",".join(ALL_TOOLS),
        help=f"comma-separated tools among {','.join(ALL_TOOLS)} (default: all installed)",
    )
    add(
        "--scenarios",
        default=",".join(REGISTRY),
        help=f"comma-separated scenarios, by name or old number: {names}; default: all",
    )
    add(
        "--throttle-server",
        choices=("nginx", "python"),
        default="nginx",
        help="server of throttled and resume-waste: nginx limit_rate (default) or the FaultServer",
    )
    add(
        "--outdir-kind",
        choices=OUTDIR_KINDS,
        default="auto",
        help="where the tools write: tmpfs (/dev/shm), disk (under --tmpdir: the page cache) "
        "or auto (default: huge-list on tmpfs when it has room, the rest on disk)",
    )
    add("--tmpdir", type=Path, help="where to put the temporary files")
    add("--out", type=Path, help="also write the Markdown report to this file")
    add(
        "--save",
        type=Path,
        help="the results file (default: --out with .json, else bench-DATE.json here)",
    )
    return parser


def parse_run(argv: Sequence[str]) -> tuple[RunOptions, argparse.Namespace]:
    """RunOptions from the command line (the Namespace keeps --out and --save)."""
    parser = run_parser()
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for tool in tools:
        if tool not in ALL_TOOLS:
            parser.error(f"unknown tool {tool!r}; choose from {', '.join(ALL_TOOLS)}")
    try:
        scenarios = resolve([s.strip() for s in args.scenarios.split(",") if s.strip()])
    except ValueError as exc:
        parser.error(
            f"unknown scenario {exc}; choose from {', '.join(REGISTRY)} "
            "(or 1-7, 8.0-8.5; stragglers: all of 8.x)"
        )
    runs = args.runs if args.runs is not None else 1 if args.quick else 5
    files = args.files if args.files is not None else 100 if args.quick else 1000
    urls = args.urls if args.urls is not None else 2000 if args.quick else 100_000
    if min(runs, args.connections, args.jobs, files, urls) < 1:
        parser.error("--runs, --connections, --jobs, --files and --urls must be positive")
    if urls > 1_000_000:
        parser.error("--urls: at most 1,000,000")
    if args.size_gib is not None and args.size_gib <= 0:
        parser.error("--size-gib must be positive")
    options = RunOptions(
        quick=args.quick,
        runs=runs,
        size_gib=args.size_gib,
        connections=args.connections,
        jobs=args.jobs,
        files=files,
        urls=urls,
        tools=tools,
        scenarios=scenarios,
        throttle_server=args.throttle_server,
        outdir_kind=args.outdir_kind,
        tmpdir=args.tmpdir,
    )
    return options, args


def results_path(save_to: Optional[Path], out: Optional[Path]) -> Path:
    """Where a run saves its results."""
    if save_to is not None:
        return save_to
    if out is not None:
        return out.with_suffix(".json") if out.suffix != ".json" else out.with_suffix(".out.json")
    return Path(f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")


def write_report(text: str, out: Optional[Path]) -> None:
    """The report on stdout, and to ``out`` if given."""
    sys.stdout.write(text)
    if out is not None:
        out.write_text(text)
        log(f"report written to {out}")


def cmd_run(argv: Sequence[str]) -> int:
    """Run, save, then render from the saved file."""
    options, args = parse_run(argv)
    try:
        results = run(options)
    except SetupError as exc:
        log(str(exc))
        return 2
    path = results_path(args.save, args.out)
    save(results, path)
    log(f"results saved to {path}")
    write_report(render(load(path)), args.out)
    return 130 if results.interrupted else 0


def cmd_render(argv: Sequence[str]) -> int:
    """The Markdown report of a saved run."""
    parser = argparse.ArgumentParser(prog="python3 -m scripts.bench render")
    parser.add_argument("results", type=Path, help="a file saved by a run")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    write_report(render(load(args.results)), args.out)
    return 0


def cmd_compare(argv: Sequence[str]) -> int:
    """Medians of two saved runs side by side."""
    parser = argparse.ArgumentParser(prog="python3 -m scripts.bench compare")
    parser.add_argument("old", type=Path, help="results before")
    parser.add_argument("new", type=Path, help="results after")
    parser.add_argument("--out", type=Path, help="also write the comparison to this file")
    args = parser.parse_args(argv)
    write_report(compare(load(args.old), load(args.new)), args.out)
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    """The scenarios with their old numbers and a line each."""
    argparse.ArgumentParser(prog="python3 -m scripts.bench list").parse_args(argv)
    for name, cls in REGISTRY.items():
        print(f"{cls.number}  {name:<21} {cls.summary}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch on the command (``run`` when the first argument is none)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in COMMANDS else "run"
    handlers = {"run": cmd_run, "render": cmd_render, "compare": cmd_compare, "list": cmd_list}
    return handlers[command](args)
