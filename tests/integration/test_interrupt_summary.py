"""Ctrl-C and SIGTERM on a list: one summary line (done, interrupted with their data kept,
not started) and the hint to run the same command again; each file's line with ``-v``; the
run again resumes them all. The real command, the fault server, real signals.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.helpers import KiB, MiB, popen_accel, run_accel, sha256, wait_until
from tests.servers import FaultServer, make_data

HINT = "run the same command again to resume"


def serve_list(server: FaultServer, tmp_path: Path, small: int, big: int) -> List[str]:
    """``small`` files that end at once, then ``big`` ones that take a while."""
    names = [f"s{i}.bin" for i in range(small)] + [f"b{i:02d}.bin" for i in range(big)]
    for i, name in enumerate(names):
        size = 64 * KiB if name.startswith("s") else 4 * MiB
        server.add_file(f"/{name}", make_data(size, 400 + i))
    (tmp_path / "list.txt").write_text("".join(server.url(f"/{n}") + "\n" for n in names))
    return names


def interrupt(
    tmp_path: Path, sig: int, *args: str, running: int, parts: str = "b*.bin.part"
) -> Tuple[int, str, str]:
    """Run the list, signal it once ``running`` big files have started; (code, out, err)."""
    proc = popen_accel("-i", "list.txt", *args, cwd=tmp_path)
    wait_until(
        lambda: len(list(tmp_path.glob(parts))) >= running or proc.poll() is not None,
        20,
        "the downloads to start",
    )
    time.sleep(0.5)  # every running one has bytes on disk
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_on_a_list_says_it_in_one_line(
    server: FaultServer, tmp_path: Path, sig: int, code: int
) -> None:
    names = serve_list(server, tmp_path, small=2, big=10)
    server.faults.rate = 256 * KiB
    returncode, out, err = interrupt(tmp_path, sig, "-j", "6", "-n", "2", "-q", running=6)
    assert returncode == code, err
    assert out == ""
    lines = err.splitlines()
    assert lines == [
        f"accel: interrupted: 2 of 12 files done, 6 interrupted with their data kept, "
        f"4 not started; {HINT}"
    ], err
    assert sorted(p.name for p in tmp_path.glob("b*.bin.part")) == [f"{n}.part" for n in names[2:8]]
    server.faults.rate = None
    again = run_accel("-i", "list.txt", "-j", "6", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(re.findall(r"^accel: resuming b0\d\.bin: ", again.stderr, re.M)) == 6
    for i, name in enumerate(names):
        data = make_data(64 * KiB if name.startswith("s") else 4 * MiB, 400 + i)
        assert sha256(tmp_path / name) == sha256(data), name


def test_verbose_adds_each_file_s_line(server: FaultServer, tmp_path: Path) -> None:
    names = serve_list(server, tmp_path, small=0, big=6)
    server.faults.rate = 256 * KiB
    returncode, _, err = interrupt(tmp_path, signal.SIGINT, "-j", "3", "-n", "2", "-v", running=3)
    assert returncode == 130, err
    said = [line for line in err.splitlines() if line.startswith("accel: interrupted: ")]
    each = [line for line in said if line.endswith(f": {HINT}") and ".bin:" in line]
    assert sorted(each) == sorted(f"accel: interrupted: {n}: {HINT}" for n in names), said
    assert said[-1] == (
        f"accel: interrupted: 0 of 6 files done, 3 interrupted with their data kept, "
        f"3 not started; {HINT}"
    ), said
    assert len(said) == 7


def test_a_single_file_keeps_its_own_line(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/one.bin", make_data(4 * MiB, 420))
    server.faults.rate = 256 * KiB
    (tmp_path / "list.txt").write_text(server.url("/one.bin") + "\n")
    returncode, _, err = interrupt(tmp_path, signal.SIGINT, "-n", "2", running=1, parts="*.part")
    assert returncode == 130
    assert err.splitlines() == [f"accel: interrupted: one.bin: {HINT}"], err
