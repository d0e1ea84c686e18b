"""The scripts shipped in scripts/ run: the example download manager and the benchmark."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, accel_env, sha256
from tests.servers import FaultServer, make_data
from tests.servers.nginx import nginx_binary

MANAGER = REPO / "scripts" / "manager.py"
BENCH = REPO / "scripts" / "bench.py"


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
    """The benchmark runs end to end and prints its tables with ratios: one big file, then
    (with nginx) many small files with accel's re-run, and the huge list's memory."""
    proc = run_script(
        str(BENCH),
        "--quick",
        "--scenarios",
        "1,5,6",
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
    assert "| accel |" in report and "| curl |" in report
    assert "accel/peer" in report
    if nginx_binary() is None:
        assert "scenario 5 skipped" in report and "scenario 6 skipped" in report
    else:
        assert "## 5. Many files: 100 x 64 KiB" in report
        assert "| same command, finished directory |" in report  # accel's re-run
        assert "## 6. Huge list: 500 URLs" in report
        assert "peak RSS MiB" in report
