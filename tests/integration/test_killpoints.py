"""kill -9 at random points of a multi-connection CLI download, then resume, many times.

Between kills the sidecar must always load (it may be absent only before its first save)
and must never claim a byte that is not on disk; the final resume ends byte-identical and
never asks again for a byte the last sidecar claimed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from accel._disk import state
from tests.helpers import KiB, MiB, listing, popen_accel, run_accel, sha256
from tests.servers import FaultServer, make_data

SIZE = 8 * MiB + 13
KILLS = 20
SEED = 20261122
#: Bytes/s per connection at the start; it shrinks with what is left, so that 20 short
#: runs never finish the file.
BASE_RATE = 160 * KiB


def check_sidecar(part: Path, side: Path, data: bytes) -> Tuple[int, List[Tuple[int, int]]]:
    """Load the sidecar strictly and check its claims; return (claimed bytes, claimed ranges)."""
    record = state.load(side, part)
    assert record.size == len(data)
    content = part.read_bytes()
    claimed: List[Tuple[int, int]] = []
    for start, end, written, synced in record.segments:
        assert synced <= written <= end - start + 1
        assert content[start : start + written] == data[start : start + written], (
            f"the sidecar claims bytes {start}-{start + written - 1} that are not on disk"
        )
        if written:
            claimed.append((start, start + written - 1))
    return sum(b - a + 1 for a, b in claimed), claimed


@pytest.mark.slow
def test_random_kill9_points_then_resume(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(SIZE, seed=7)
    server.add_file("/big.bin", data)
    url = server.url("/big.bin")
    out = tmp_path / "big.bin"
    part = out.with_name(out.name + ".part")
    side = state.sidecar_path(part)
    server.faults.rate = BASE_RATE
    rng = random.Random(SEED)
    args = (url, "-o", str(out), "-n", "4", "-q")

    seen_sidecar = False
    best = 0
    claimed: List[Tuple[int, int]] = []
    for i in range(KILLS):
        delay = rng.uniform(0.3, 3.0)
        proc = popen_accel(*args, cwd=tmp_path, stdout=subprocess.DEVNULL, text=False)
        try:
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, f"run {i} ended by itself: {err!r}"
        assert not out.exists()
        if side.exists():
            total, claimed = check_sidecar(part, side, data)
            assert total >= best, "committed progress went backwards"
            best = max(best, total)
            seen_sidecar = True
        else:
            assert not seen_sidecar, f"the sidecar disappeared after kill {i}"
        server.faults.rate = max(8 * KiB, BASE_RATE * (SIZE - best) // SIZE)

    assert seen_sidecar
    assert best > 0, "no progress was ever committed: the kills tested nothing"
    server.faults.rate = None
    server.reset_counters()
    res = run_accel(url, "-o", str(out), "-n", "4", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sha256(out) == sha256(data)
    assert listing(tmp_path) == [out.name]  # no leftovers
    for r in server.requests:  # the final resume never fetched a claimed byte again
        if r.method != "GET" or not r.range_header or r.status != 206:
            continue
        first, _, last = r.range_header[len("bytes=") :].partition("-")
        start, end = int(first), int(last) if last else SIZE - 1
        for a, b in claimed:
            assert end < a or start > b, f"{r.range_header} refetches claimed bytes {a}-{b}"
    assert server.errors == []
