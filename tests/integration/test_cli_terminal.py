"""The ``accel`` console script on a pseudo-terminal, rendered by pyte (the live bar, a pty
of no size, the total bar, quiet), and under a real SIGINT (exit 130, state kept, the same
command resumes), against the FaultServer.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Sequence

import pytest

from tests.helpers import KiB, MiB, accel_env, run_script, sha256
from tests.servers import FaultServer, make_data
from tests.servers.terminal import Pty, Screen

pytestmark = pytest.mark.usefixtures("isolated_cli")


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


# -- progress output on a terminal, as pyte renders it ------------------------------------------


def on_pty(args: Sequence[str], cwd: Path, cols: int = 100, *, sized: bool = True) -> Pty:
    """``accel ARGS`` run to its end with stderr on a pty (see :class:`Pty`)."""
    term = Pty(["accel", *args], cwd, cols, env=accel_env(), stdout=subprocess.DEVNULL, sized=sized)
    assert term.run() == 0, term.raw
    return term


def rows(screen: Screen) -> List[str]:
    """The screen's lines: a row that does not begin as accel's lines do (``accel:``,
    ``total``, a file's name: ``t``) continues the row above, which filled the width."""
    lines: List[str] = []
    for row in screen:
        if not row.strip():
            continue
        if lines and not row.startswith(("accel:", "t")):
            lines[-1] += " " + row.strip()
        else:
            lines.append(row.rstrip())
    return lines


def progress_rows(screen: Screen) -> List[str]:
    return [r for r in rows(screen) if re.search(r"\d+%", r) and not r.startswith("accel:")]


def test_pty_shows_live_bar_with_segment_map(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, 33)
    server.add_file("/tty.bin", data)
    server.faults.rate = 1 * MiB  # ~1 s: several redraws
    term = on_pty(["-n", "4", server.url("/tty.bin")], tmp_path)
    assert sha256(tmp_path / "tty.bin") == sha256(data)
    live = [progress_rows(s) for s in term.screens if progress_rows(s)]
    assert len(live) >= 3, term.raw  # redrawn while running, always on one row
    for shown in live:
        (row,) = shown
        assert row.startswith("tty.bin"), row
        assert re.search(r" \d+ conn \[[#>.]+\]", row), row
    final = rows(term.now())  # the bar collapsed into the one line that stays
    assert final == [final[0]] and final[0].startswith(f"accel: saved {tmp_path / 'tty.bin'} ("), (
        final
    )


def test_pty_without_a_size_still_shows_the_bar(server: FaultServer, tmp_path: Path) -> None:
    """A pty that reports 0 x 0 (as pty.openpty() makes it): the bar is drawn at 80 columns."""
    server.add_file("/tty0.bin", make_data(2 * MiB, 34))
    server.faults.rate = 2 * MiB
    term = on_pty([server.url("/tty0.bin")], tmp_path, cols=120, sized=False)
    live = [progress_rows(s) for s in term.screens if progress_rows(s)]
    assert live, term.raw
    for shown in live:
        (row,) = shown
        assert row.startswith("tty0.bin") and len(row) <= 80, row
    final = rows(term.now())
    assert len(final) == 1, final
    assert final[0].startswith(f"accel: saved {tmp_path / 'tty0.bin'} ("), final


def test_pty_two_jobs_show_total_bar(server: FaultServer, tmp_path: Path) -> None:
    a, b = make_data(2 * MiB, 35), make_data(2 * MiB, 36)
    server.add_file("/t1.bin", a)
    server.add_file("/t2.bin", b)
    server.faults.rate = 1 * MiB
    term = on_pty(["-j", "2", "-n", "2", server.url("/t1.bin"), server.url("/t2.bin")], tmp_path)
    assert sha256(tmp_path / "t1.bin") == sha256(a)
    assert sha256(tmp_path / "t2.bin") == sha256(b)
    both = [rows(s) for s in term.screens if len(progress_rows(s)) == 2]
    assert both, term.raw
    for shown in both:  # a line per file, and the total under them
        assert sorted(r.split()[0] for r in shown[:2]) == ["t1.bin", "t2.bin"], shown
        assert shown[2].startswith("total 0/2 "), shown
    final = rows(term.now())
    assert len(final) == 3, final
    assert final[-1].startswith("accel: 2 files: 2 ok, 0 failed; "), final


def test_pty_quiet_prints_nothing(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/tq.bin", make_data(MiB, 37))
    term = on_pty(["-q", server.url("/tq.bin")], tmp_path)
    assert term.raw == b""
    assert rows(term.now()) == []
