"""The ``accel`` console script on a pseudo-terminal (the live bar, the total bar, quiet) and
under a real SIGINT (exit 130, state kept, the same command resumes), against the FaultServer.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Sequence, Tuple

import pytest

from tests.helpers import KiB, MiB, run_script, sha256
from tests.servers import FaultServer, make_data

pytestmark = pytest.mark.usefixtures("isolated_cli")


def run_on_pty(
    args: Sequence[str], cwd: Path, cols: int = 100, rows: int = 24, timeout: float = 30
) -> Tuple[int, str]:
    """Run the console script with stderr on a pseudo-terminal; return (exit code, output)."""
    master, slave = pty.openpty()
    if cols:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        ["accel", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_sigint_exits_130_and_keeps_state(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, 22)
    server.add_file("/int.bin", data)
    server.faults.rate = 256 * KiB
    proc = subprocess.Popen(
        ["accel", "-n", "2", server.url("/int.bin")],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while server.bytes_sent_for("/int.bin") < 300 * KiB and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # past one commit interval
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 3.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert not (tmp_path / "int.bin").exists()
    assert (tmp_path / "int.bin.part.json").exists()
    # The same command resumes and completes.
    server.faults.rate = None
    server.reset_counters()
    proc2 = run_script("-n", "2", server.url("/int.bin"), cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert sha256(tmp_path / "int.bin") == sha256(data)
    assert server.bytes_sent_for("/int.bin") < len(data)


# -- progress output on a terminal ------------------------------------------------------------


def test_pty_shows_live_bar_with_segment_map(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, 33)
    server.add_file("/tty.bin", data)
    server.faults.rate = 1 * MiB  # ~1 s: several redraws
    code, out = run_on_pty(["-n", "4", server.url("/tty.bin")], cwd=tmp_path)
    assert code == 0, out
    assert sha256(tmp_path / "tty.bin") == sha256(data)
    assert out.count("\r") >= 3  # redraws
    assert re.search(r"\b\d{1,3}%", out)
    assert re.search(r"\d+ conn \[[#>.]+", out), out
    assert "tty.bin" in out
    assert out.count(f"accel: saved {tmp_path / 'tty.bin'}") == 1  # the bar collapses to it


def test_pty_without_a_size_still_shows_the_bar(server: FaultServer, tmp_path: Path) -> None:
    """pty.openpty() makes a 0x0 terminal; the bar must still be drawn (at a default width)."""
    server.add_file("/tty0.bin", make_data(2 * MiB, 34))
    server.faults.rate = 2 * MiB
    code, out = run_on_pty([server.url("/tty0.bin")], cwd=tmp_path, cols=0)
    assert code == 0, out
    assert "\r" in out
    assert re.search(r"\b\d{1,3}%", out)
    assert f"accel: saved {tmp_path / 'tty0.bin'}" in out


def test_pty_two_jobs_show_total_bar(server: FaultServer, tmp_path: Path) -> None:
    a, b = make_data(2 * MiB, 35), make_data(2 * MiB, 36)
    server.add_file("/t1.bin", a)
    server.add_file("/t2.bin", b)
    server.faults.rate = 1 * MiB
    code, out = run_on_pty(
        ["-j", "2", "-n", "2", server.url("/t1.bin"), server.url("/t2.bin")], cwd=tmp_path
    )
    assert code == 0, out
    assert "total 0/2" in out
    assert "total 2/2" in out
    assert "t1.bin" in out and "t2.bin" in out
    assert sha256(tmp_path / "t1.bin") == sha256(a)
    assert sha256(tmp_path / "t2.bin") == sha256(b)


def test_pty_quiet_prints_nothing(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/tq.bin", make_data(MiB, 37))
    code, out = run_on_pty(["-q", server.url("/tq.bin")], cwd=tmp_path)
    assert code == 0
    assert out == ""
