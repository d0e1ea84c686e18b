"""Ctrl-C at any moment: exit 130 (SIGTERM 143) and never a traceback.

The command is started for real (``python -m accel`` and the console script) and signalled
at chosen moments: while it imports (located with ``PYTHONPROFILEIMPORTTIME``, which makes
the interpreter print each import as it ends), while the probe waits for a server that takes
its time to answer, and while the downloads run. Moments before accel's own code runs (the
interpreter's start-up and ``site``) are Python's, not accel's, and are not tested.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.helpers import REPO, KiB, MiB, accel_env, wait_until
from tests.servers import FaultHandler, FaultServer, RequestLog, make_data

SCRIPT = shutil.which("accel")


def spawn(argv: List[str], cwd: Path) -> subprocess.Popen:
    env = dict(accel_env(), PYTHONPROFILEIMPORTTIME="1")
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def commands(url: str) -> Iterator[List[str]]:
    yield [sys.executable, "-m", "accel", url]
    if SCRIPT is not None:
        yield [SCRIPT, url]


def signal_when_imported(proc: subprocess.Popen, module: str, sig: int) -> str:
    """Send ``sig`` right after the import of ``module`` ends; return stderr to that point."""
    assert proc.stderr is not None
    pattern = re.compile(rf"\|\s+{re.escape(module)}$")
    seen: List[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if pattern.search(line.rstrip()):
            proc.send_signal(sig)
            return "".join(seen)
    raise AssertionError(f"no import of {module} seen:\n{''.join(seen)}")


def finish(proc: subprocess.Popen, before: str = "") -> str:
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return before + err


def assert_clean(code: int, err: str, expected: int) -> None:
    assert "Traceback" not in err, err
    assert "KeyboardInterrupt" not in err, err
    assert code == expected, f"exit {code}, stderr:\n{err}"


@pytest.fixture
def slow_server() -> Iterator[FaultServer]:
    """A server whose answers take 30 s (the probe waits, with nothing written yet)."""
    with FaultServer() as srv:
        srv.add_file("/f", make_data(64 * KiB, seed=90))
        stop = threading.Event()

        def linger(handler: FaultHandler, log: RequestLog) -> bool:
            stop.wait(30)
            return False

        srv.faults.on_request = linger
        yield srv
        stop.set()


# The first accel module, one in the middle of the slow third-party imports, and the last.
MOMENTS = ["accel.cli._startup", "requests", "accel.cli.main"]


@pytest.mark.parametrize("module", MOMENTS)
def test_sigint_while_importing_exits_130_quietly(
    slow_server: FaultServer, tmp_path: Path, module: str
) -> None:
    for argv in commands(slow_server.url("/f")):
        proc = spawn(argv, tmp_path)
        before = signal_when_imported(proc, module, signal.SIGINT)
        err = finish(proc, before)
        assert_clean(proc.returncode, err, 130)
        assert os.listdir(tmp_path) == []  # nothing started, nothing left


def test_sigterm_while_importing_exits_143_quietly(
    slow_server: FaultServer, tmp_path: Path
) -> None:
    for argv in commands(slow_server.url("/f")):
        proc = spawn(argv, tmp_path)
        before = signal_when_imported(proc, "requests", signal.SIGTERM)
        assert_clean(proc.wait(15), finish(proc, before), 143)


@pytest.mark.parametrize("sig, expected", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_the_probe_waits(
    slow_server: FaultServer, tmp_path: Path, sig: int, expected: int
) -> None:
    """The probe cannot be woken; with nothing to save, the command leaves without it."""
    argv = list(commands(slow_server.url("/f")))[-1]  # the console script, if installed
    proc = spawn(argv, tmp_path)
    wait_until(lambda: slow_server.requests or proc.poll() is not None, 20, "the probe")
    time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(sig)
    t0 = time.monotonic()
    err = finish(proc)
    assert time.monotonic() - t0 < 4
    assert_clean(proc.returncode, err, expected)


@pytest.mark.slow
def test_sigint_at_many_moments_of_a_short_run(server: FaultServer, tmp_path: Path) -> None:
    """Whatever the moment (start-up, probe, transfer, the way out), 130 or a finished
    download, never a traceback."""
    data = make_data(2 * MiB, seed=91)
    server.add_file("/f", data)
    server.faults.rate = 4 * MiB
    argv = [sys.executable, "-m", "accel", "-n", "4", server.url("/f")]
    for delay in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
        for name in os.listdir(tmp_path):
            os.unlink(tmp_path / name)
        proc = subprocess.Popen(
            argv, cwd=tmp_path, env=accel_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        err = finish(proc)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)


def test_imports_of_the_library_leave_signals_alone() -> None:
    """Only the command exits quietly: a program that imports accel keeps Python's Ctrl-C."""
    code = (
        "import signal, accel, accel.cli.main\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=accel_env(), cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
