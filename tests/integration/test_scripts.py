"""The scripts shipped in scripts/ run: the example download manager and the benchmark
(``python3 -m scripts.bench``: a quick run end to end, and render/compare of saved results)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from scripts.bench.results import load, save
from scripts.bench.workspace import tmpfs_room
from tests.helpers import REPO, accel_env, sha256
from tests.servers import FaultServer, make_data
from tests.servers.nginx import nginx_binary

MANAGER = REPO / "scripts" / "manager.py"
BENCH = ("-m", "scripts.bench")  # run from the repository root


def run_script(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=accel_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_manager_downloads_a_queue(server: FaultServer, tmp_path: Path) -> None:
    """Three files two at a time, one missing URL: exit 1, the others byte-identical."""
    files = {f"/{n}.bin": make_data(600_000 + i, seed=i) for i, n in enumerate("abc")}
    for path, data in files.items():
        server.add_file(path, data)
    server.faults.rate = 2_000_000
    urls = [server.url(p) for p in files] + [server.url("/missing.bin")]
    out = tmp_path / "downloads"
    proc = run_script(str(MANAGER), *urls, "-d", str(out), "-j", "2", "-n", "2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    for path, data in files.items():
        assert sha256(out / path.lstrip("/")) == sha256(data)
    lines = proc.stdout.splitlines()
    assert sum("done:" in line for line in lines) == 3
    assert any("missing.bin" in line and "404" in line for line in lines)
    assert proc.stderr == ""  # the library never prints; the script prints on stdout only


def test_manager_shares_one_rate_limit(server: FaultServer, tmp_path: Path) -> None:
    """--limit-rate is one budget for all downloads: 2 x 400 KB at 400 KB/s take >= ~1.5 s."""
    for n in "xy":
        server.add_file(f"/{n}.bin", make_data(400_000, seed=ord(n)))
    started = time.monotonic()
    proc = run_script(
        str(MANAGER),
        server.url("/x.bin"),
        server.url("/y.bin"),
        "-d",
        str(tmp_path),
        "-j",
        "2",
        "--limit-rate",
        "400000",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.5


@pytest.mark.slow
def test_bench_quick_smoke(tmp_path: Path) -> None:
    """The benchmark runs end to end, saves its results and prints tables with ratios
    rendered from the saved file: one big file, then (with nginx) many small files with
    accel's re-run, and the huge list's memory."""
    proc = run_script(
        *BENCH,
        "--quick",
        "--scenarios",
        "big-file,many-files,6",  # names, and an old number as an alias
        "--urls",
        "500",
        "--tools",
        "accel,curl",
        "--throttle-server",
        "python",
        "--tmpdir",
        str(tmp_path),
        "--out",
        str(tmp_path / "bench.md"),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "bench.md").read_text()
    assert proc.stdout == report
    assert "| accel |" in report and "| curl |" in report
    assert "accel/peer" in report
    assert "## 1. big-file: Unthrottled, 64 MiB, 8 connections" in report
    assert f"(sendfile on); outputs in {tmp_path} (" in report or nginx_binary() is None
    saved = json.loads((tmp_path / "bench.json").read_text())  # --out's name with .json
    assert saved["options"]["scenarios"] == ["big-file", "many-files", "huge-list"]
    big = saved["scenarios"][0]
    assert big["name"] == "big-file" and big["params"]["size"] == 64 << 20
    assert [r["ok"] for r in big["records"]["accel"]] == [True]
    assert big["records"]["accel"][0]["server_bytes"] >= 64 << 20
    rendered = run_script(*BENCH, "render", str(tmp_path / "bench.json"), cwd=REPO)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == report
    if nginx_binary() is None:
        assert "scenario many-files skipped" in report
        assert "scenario huge-list skipped" in report
    else:
        assert "## 5. many-files: Many files: 100 x 64 KiB" in report
        assert "| same command, finished directory |" in report  # accel's re-run
        assert "## 6. huge-list: Huge list: 500 URLs" in report
        where = "/dev/shm (tmpfs)" if tmpfs_room(500 * 8 << 10, 1000) else f"{tmp_path} ("
        assert f"one 64-byte file); outputs in {where}" in report  # --outdir-kind auto
        assert "peak RSS MiB" in report
    assert not list(tmp_path.glob("accel-bench-*"))  # the work directory is gone


# -- results files: save, render, compare (synthetic, no tool runs) -------------------------

MiB = 1 << 20


def rec(wall: Any, cpu: float = 0.5, ok: bool = True, **extra: Any) -> Dict[str, Any]:
    """A record as the results file stores it."""
    return {
        "ok": ok,
        "error": "" if ok else "exit code 7: boom",
        "wall": wall,
        "cpu": cpu,
        "rss": 32.0,
        "server_bytes": 8 * MiB,
        "requests": 9,
        **extra,
    }


def synthetic(accel_walls: List[float]) -> Dict[str, Any]:
    """A results file with every kind of scenario; accel's big-file walls as given."""
    big = {
        "name": "big-file",
        "number": "1",
        "kind": "download",
        "title": "Unthrottled, 8 MiB, 8 connections",
        "server": "nginx/1.22.1 (sendfile on)",
        "params": {
            "size": 8 * MiB,
            "rate": None,
            "connections": 8,
            "ideal": {},
            "server_kind": "nginx",
            "outputs": "/dev/shm (tmpfs)",
        },
        "records": {
            "accel": [rec(w) for w in accel_walls],
            "curl": [rec(4.0, 1.0), rec(4.0, 1.0), rec(None, 0.1, ok=False)],
        },
    }
    resume = {
        "name": "resume-waste",
        "number": "4",
        "kind": "resume",
        "title": "Resume waste",
        "server": "nginx",
        "params": {
            "size": 8 * MiB,
            "rate": 4 * MiB,
            "connections": 8,
            "ideal": {"accel": 0.25, "curl": 2.0},
            "server_kind": "nginx",
        },
        "records": {
            "accel": [rec(1.0, server_bytes=9 * MiB, stop_fraction=0.5)],
            "curl": [rec(1.0, server_bytes=10 * MiB, stop_fraction=0.6)],
        },
    }
    seeded = {
        "name": "straggler-request",
        "number": "7",
        "kind": "download",
        "title": "Per-request stragglers",
        "server": "Python FaultServer",
        "params": {
            "size": 8 * MiB,
            "rate": 2_000_000,
            "connections": 8,
            "seeds": [1, 2],
            "runs": 1,
            "ideal": {"accel": 0.5, "axel": 0.5},
            "server_kind": "fault",
        },
        "records": {
            "accel": [rec(0.8, seed=1, slow_requests=3, requests=11), rec(1.0, seed=2)],
            "axel": [rec(1.6, seed=1, slow_requests=6, requests=21), rec(1.0, seed=2)],
        },
    }
    rerun = {
        "ok": True,
        "error": "",
        "wall": 0.3,
        "cpu": 0.3,
        "body_bytes": 0,
        "requests": 100,
        "wire_bytes": 25_000,
        "request_bytes": 14_500,
    }
    many = {
        "name": "many-files",
        "number": "5",
        "kind": "many",
        "title": "Many files: 100 x 64 KiB",
        "server": "nginx",
        "params": {"count": 100, "size": 100 * 64 * 1024, "jobs": 8, "connections": 8},
        "records": {"accel": [rec(0.4, rerun=rerun)], "curl": [rec(0.02, 0.02)]},
    }
    huge = {
        "name": "huge-list",
        "number": "6",
        "kind": "memory",
        "title": "Huge list: 500 URLs",
        "server": "nginx",
        "params": {"count": 500, "jobs": 8, "list_bytes": 20_000},
        "records": {
            "accel": [
                rec(
                    1.0,
                    rss=47.0,
                    files_done=500,
                    first_file=0.2,
                    requests=500,
                    rss_by_progress={"10": 30.0, "50": 40.0, "90": 45.0},
                )
            ]
        },
    }
    return {
        "format": "accel-bench/1",
        "date": "2026-12-02T10:00:00+00:00",
        "timezone": "UTC",
        "options": {"runs": 3, "quick": False},
        "machine": {"cpu": "Test CPU", "nproc": 2, "cpu_count": 2, "memory_gib": 8.0},
        "tools": {
            "accel": {"version": "0.1.0", "connections": 8},
            "curl": {"version": "curl 7.88.1", "connections": 1},
        },
        "scenarios": [big, resume, seeded, many, huge],
        "notes": ["axel skipped: axel is not installed"],
        "interrupted": False,
    }


def write(path: Path, data: Dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_bench_results_survive_load_and_save(tmp_path: Path) -> None:
    """A results file read and written again is the same JSON; null walls stay null."""
    original = synthetic([1.0, 2.0, 3.0])
    results = load(write(tmp_path / "a.json", original))
    save(results, tmp_path / "b.json")
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["scenarios"][0]["records"]["curl"][2]["wall"] is None
    assert again["scenarios"][4]["records"]["accel"][0]["rss_by_progress"]["50"] == 40.0
    assert again["scenarios"][3]["records"]["accel"][0]["rerun"]["wire_bytes"] == 25_000
    assert load(tmp_path / "b.json") == results


def test_bench_render_reads_a_saved_file(tmp_path: Path) -> None:
    """``render`` turns every kind of scenario into its table, medians and ratios right."""
    path = write(tmp_path / "results.json", synthetic([1.0, 2.0, 3.0]))
    proc = run_script(*BENCH, "render", str(path), "--out", str(tmp_path / "r.md"), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout
    assert (tmp_path / "r.md").read_text() == report
    assert report.startswith("# accel benchmark\n\n2026-12-02 10:00 UTC; 3 run(s)")
    assert "- CPU: Test CPU; nproc 2 (of 2)" in report
    assert "- curl: curl 7.88.1; 1 connection(s)" in report
    assert "## 1. big-file: Unthrottled, 8 MiB, 8 connections" in report
    assert "Server: nginx/1.22.1 (sendfile on); outputs in /dev/shm (tmpfs)." in report
    # accel: median 2.00 of 1..3 s; curl 4.00 s; CPU 0.5 against 1.0; one curl run failed
    assert "| accel | 3/3 | 2.00 (1.00..3.00) | 4 (3..8) | 0.50 (0.50..0.50) |" in report
    assert "| curl | 2/3 FAILED: exit code 7: boom | 4.00 (4.00..4.00) |" in report
    assert "| 0.50x | 0.50x |" in report
    # resume: 1 MiB against 2 MiB re-fetched
    assert "| accel | 1/1 | 50 | 1.00 | 12.5 | 1.00 | - |" in report
    assert "| curl | 1/1 | 60 | 2.00 | 25.0 | 1.00 | 0.50x |" in report
    # seeds: a table per seed under the overall one
    assert "| 1 | accel | 1/1 | 0.80 | 1.60 | 3/11 | 0.00 | - |" in report
    assert "| 1 | axel | 1/1 | 1.60 | 3.20 | 6/21 | 0.00 | 0.50x |" in report
    # many files: accel's re-run per file, against the 1 KiB target
    assert (
        "| same command, finished directory | 1/1 | 0.30 | 0.30 | 1.00 | 0 | 250 | 145 | met |"
        in report
    )
    assert "| 20.00x |" in report  # accel 0.4 s against curl's 0.02 s
    # huge list: RSS along the list and the 64 MiB target
    assert "| 30 / 40 / 45 | 47.0 | met | 1.00 |" in report
    assert report.rstrip().endswith("- axel skipped: axel is not installed")


def test_bench_compare_two_saved_files(tmp_path: Path) -> None:
    """``compare``: per scenario, tool and metric the medians before and after, the ratio."""
    old = synthetic([1.0, 2.0, 3.0])
    new = synthetic([0.5, 0.6, 0.7])
    new["scenarios"][2]["records"]["accel"][0]["wall"] = 0.6  # seed 1: 0.8 s before
    new["scenarios"] = [s for s in new["scenarios"] if s["name"] != "huge-list"]
    new["tools"]["curl"]["version"] = "curl 8.5.0"
    proc = run_script(
        *BENCH,
        "compare",
        str(write(tmp_path / "old.json", old)),
        str(write(tmp_path / "new.json", new)),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| big-file | accel | wall s | 2 (1..3) | 0.6 (0.5..0.7) | 0.30x | better |" in out
    overlap = "| 0.9 (0.8..1) | 0.8 (0.6..1) | 0.89x | not significant (ranges overlap) |"
    assert f"| straggler-request | accel | wall s {overlap}" in out
    assert "| big-file | accel | CPU s | 0.5 (0.5..0.5) | 0.5 (0.5..0.5) | 1.00x | same |" in out
    assert "| big-file | curl | wall s | 4 (4..4) | 4 (4..4) | 1.00x | same |" in out
    assert "| resume-waste | curl | re-fetched MiB | 2 | 2 | 1.00x | same |" in out
    assert "| many-files | accel | re-run B/file | 0 | 0 | 1.00x | same |" in out
    assert "- scenario huge-list only in the old file" in out
    assert "- curl version: curl 7.88.1 -> curl 8.5.0" in out
