"""Running one tool as a child process and measuring it: wall, CPU (user+sys), peak RSS."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from scripts.bench.common import KiB, MiB

SIGINT_GRACE = 15.0  # seconds a tool gets to exit after SIGINT before SIGKILL
POLL = 0.01  # seconds between two looks at the child

#: ``interrupt(pid, elapsed)``: true = send SIGINT now; ``monitor(pid, elapsed)``: sample.
Interrupt = Callable[[int, float], bool]
Monitor = Callable[[int, float], None]


@dataclass
class ProcOutcome:
    """How one child process ended and what it cost."""

    exit_code: Optional[int]
    wall: float
    cpu: float
    peak_rss_mib: float
    stderr: str
    timed_out: bool = False
    interrupted_at: Optional[float] = None
    killed: bool = False

    def failure(self, problem: Optional[str] = None) -> str:
        """'' for a clean exit with no ``problem`` (from verification), else what went wrong."""
        if self.timed_out:
            return "timed out"
        if self.killed:
            return "did not exit after SIGINT"
        if self.exit_code != 0:
            tail = " ".join(self.stderr.strip().splitlines()[-1:])[:120]
            return f"exit code {self.exit_code}" + (f": {tail}" if tail else "")
        return problem or ""


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _proc_field(pid: int, table: str, key: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/{table}") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_status_kib(pid: int, key: str) -> Optional[int]:
    """A ``kB`` field (e.g. ``VmHWM``, the peak RSS) of /proc/PID/status."""
    return _proc_field(pid, "status", key)


def proc_wchar(pid: int) -> Optional[int]:
    """Bytes the process has written with write(2) and friends, from /proc/PID/io."""
    return _proc_field(pid, "io", "wchar")


class _Reaper:
    """Waits for the child with ``os.wait4`` in a thread: exit status, rusage, end time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.done = threading.Event()
        self.end = 0.0
        self.status = 0
        self.cpu = 0.0
        self.thread = threading.Thread(target=self._wait, name="wait4", daemon=True)
        self.thread.start()

    def _wait(self) -> None:
        _pid, status, usage = os.wait4(self.pid, 0)
        self.end = time.perf_counter()
        self.status = status
        self.cpu = usage.ru_utime + usage.ru_stime
        self.done.set()


def run_process(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Optional[dict[str, str]] = None,
    interrupt: Optional[Interrupt] = None,
    monitor: Optional[Monitor] = None,
) -> ProcOutcome:
    """Run ``cmd``; measure wall time, CPU time (``os.wait4``) and peak RSS.

    The peak RSS is the largest ``VmHWM`` of /proc/PID/status seen while polling every
    10 ms: ``ru_maxrss`` from wait4 cannot be used, because Linux carries the high-water
    mark of the forking Python process across exec into the child.

    ``interrupt`` is polled every 10 ms; when it returns true the child gets SIGINT once
    (and SIGKILL if it has not exited ``SIGINT_GRACE`` seconds later).  ``monitor``, if
    given, is called every 10 ms while the child runs.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        reaper = _Reaper(proc.pid)
        timed_out = killed = False
        interrupted_at: Optional[float] = None
        peak_kib = 0
        try:
            while True:
                hwm = proc_status_kib(proc.pid, "VmHWM")
                if hwm is not None and not reaper.done.is_set():
                    peak_kib = max(peak_kib, hwm)
                if reaper.done.wait(POLL):
                    break
                elapsed = time.perf_counter() - start
                if monitor is not None:
                    monitor(proc.pid, elapsed)
                if elapsed > timeout:
                    timed_out = True
                    _killpg(proc.pid, signal.SIGKILL)
                    break
                if interrupted_at is None:
                    if interrupt is not None and interrupt(proc.pid, elapsed):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(proc.pid, signal.SIGINT)
                        interrupted_at = elapsed
                elif elapsed - interrupted_at > SIGINT_GRACE:
                    killed = True
                    _killpg(proc.pid, signal.SIGKILL)
                    break
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)
            reaper.done.wait(10)
            raise
        reaper.done.wait()
        reaper.thread.join()
        # Remaining children of the tool (if any) must not outlive the run.
        _killpg(proc.pid, signal.SIGKILL)
        exit_code = os.waitstatus_to_exitcode(reaper.status)
        proc.returncode = exit_code  # reaped by wait4; keep Popen from waiting again
        err.seek(0)
        stderr = err.read()[-4000:].decode(errors="replace")
    return ProcOutcome(
        exit_code=exit_code,
        wall=reaper.end - start,
        cpu=reaper.cpu,
        peak_rss_mib=peak_kib * KiB / MiB if peak_kib else math.nan,
        stderr=stderr,
        timed_out=timed_out,
        interrupted_at=interrupted_at,
        killed=killed,
    )
