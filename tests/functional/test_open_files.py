"""A small open-file limit (``ulimit -n 64``): the command fits its downloads and connections
under it, says so once, and every file arrives (it failed with "Too many open files").
The pure arithmetic of accel._util.fdlimit is checked first."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

from accel._util.fdlimit import PER_CONNECTION, PER_DOWNLOAD, RESERVE, fit
from tests.helpers import KiB, accel_cmd, accel_env, sha256
from tests.servers import FaultServer, make_data


def test_fit_gives_up_connections_first_then_jobs() -> None:
    assert fit(32, 8, None) == (32, 8)
    assert fit(32, 8, 100_000) == (32, 8)
    jobs, conns = fit(32, 8, 64)
    assert conns == 1 and jobs == (64 - RESERVE) // (PER_DOWNLOAD + PER_CONNECTION)
    assert fit(4, 8, 64) == (4, 2)  # 4 * (4 + 3 * 2) = 40
    assert fit(2, 8, 64) == (2, 5)  # 2 * (4 + 3 * 5) = 38 <= 40
    assert fit(1, 1, 10) == (1, 1)  # never below one of each


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_a_list_under_ulimit_64_with_j32_n8_completes(server: FaultServer, tmp_path: Path) -> None:
    datas = [make_data(700 * KiB + i, seed=200 + i) for i in range(40)]
    for i, data in enumerate(datas):
        server.add_file(f"/f{i}.bin", data)
    server.faults.rate = 4 * 1024 * KiB
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.url(f"/f{i}.bin") + "\n" for i in range(len(datas))))
    out = tmp_path / "out"
    proc = subprocess.run(
        accel_cmd("-i", str(listing), "-j", "32", "-n", "8", "-d", str(out)),
        env=accel_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_open_files,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Too many open files" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "open-file limit" in line]
    assert warnings == [
        "accel: the open-file limit (64) fits 5 downloads at a time with at most 1 connection "
        "each, instead of 32 with 8"
    ], proc.stderr
    for i, data in enumerate(datas):
        assert sha256(out / f"f{i}.bin") == sha256(data)
