#!/usr/bin/env python3
"""Benchmark accel against curl, aria2c and axel on loopback servers.

Not a test: nothing is asserted, the script prints Markdown tables (and writes them to
``--out``).  All servers listen on 127.0.0.1 only.

Scenarios (sizes in brackets are the ``--quick`` ones):

1. unthrottled: a 1 GiB [64 MiB] file from nginx, N connections: wall seconds, CPU seconds
   (user+sys of the child) and peak RSS of the child.
2. throttled: 128 MiB [16 MiB] from nginx with ``limit_rate 4m`` per connection: wall
   seconds against the ideal size / (N * 4 MiB/s).
3. straggler: 32 MiB [8 MiB] from the Python FaultServer (tests/server.py) at 4 MiB/s per
   connection where every third connection is 8x slower.
4. resume waste: the throttled file; the tool gets SIGINT at about 50 %, then runs again to
   completion; reported is how many bytes the server sent across both runs beyond the file
   size (from nginx's access log, or the FaultServer's byte counter).

Tools run interleaved (the order rotates every round), each run's output is checked (size and
SHA-256) and failures are marked in the tables.  Peers run only when installed; accel runs as
``python3 -m accel URL -n N -o OUT -q`` with the repository on PYTHONPATH.

Examples::

    python3 scripts/bench.py --quick                  # smoke test, < 1 minute
    python3 scripts/bench.py --runs 5 --out bench.md  # the full benchmark
    python3 scripts/bench.py --tools curl,aria2c,axel --scenarios 1,2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib
import importlib.util
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
ALL_TOOLS = ("accel", "curl", "aria2c", "axel")
ALL_SCENARIOS = ("1", "2", "3", "4")
RATE = 4 * MiB  # per-connection limit in scenarios 2-4 (nginx "4m" = 4 MiB/s)
STRAGGLER_EVERY = 3
STRAGGLER_FACTOR = 8
SIGINT_GRACE = 15.0  # seconds a tool gets to exit after SIGINT before SIGKILL


def log(message: str) -> None:
    """Print a progress message to stderr (stdout carries the report)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes -------------------------------------------------------------------------------


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


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def proc_status_kib(pid: int, key: str) -> Optional[int]:
    """A ``kB`` field (e.g. ``VmHWM``, the peak RSS) of /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_process(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Optional[dict[str, str]] = None,
    interrupt: Optional[Callable[[int, float], bool]] = None,
) -> ProcOutcome:
    """Run ``cmd``; measure wall time, CPU time (``os.wait4``) and peak RSS.

    The peak RSS is the largest ``VmHWM`` of /proc/PID/status seen while polling every
    10 ms: ``ru_maxrss`` from wait4 cannot be used, because Linux carries the high-water
    mark of the forking Python process across exec into the child.

    ``interrupt(pid, elapsed)`` is polled every 10 ms; when it returns true the child gets
    SIGINT once (and SIGKILL if it has not exited ``SIGINT_GRACE`` seconds later).
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
        box: dict[str, Any] = {}
        done = threading.Event()

        def waiter() -> None:
            _pid, status, usage = os.wait4(proc.pid, 0)
            box["end"] = time.perf_counter()
            box["status"] = status
            box["usage"] = usage
            done.set()

        thread = threading.Thread(target=waiter, name="wait4", daemon=True)
        thread.start()
        timed_out = killed = False
        interrupted_at: Optional[float] = None
        peak_kib = 0
        try:
            while True:
                hwm = proc_status_kib(proc.pid, "VmHWM")
                if hwm is not None and not done.is_set():
                    peak_kib = max(peak_kib, hwm)
                if done.wait(0.01):
                    break
                elapsed = time.perf_counter() - start
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
            done.wait(10)
            raise
        done.wait()
        thread.join()
        # Remaining children of the tool (if any) must not outlive the run.
        _killpg(proc.pid, signal.SIGKILL)
        exit_code = os.waitstatus_to_exitcode(box["status"])
        proc.returncode = exit_code  # reaped by wait4; keep Popen from waiting again
        usage = box["usage"]
        err.seek(0)
        stderr = err.read()[-4000:].decode(errors="replace")
    return ProcOutcome(
        exit_code=exit_code,
        wall=box["end"] - start,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=peak_kib * KiB / MiB if peak_kib else math.nan,
        stderr=stderr,
        timed_out=timed_out,
        interrupted_at=interrupted_at,
        killed=killed,
    )


def proc_wchar(pid: int) -> Optional[int]:
    """Bytes the process has written with write(2) and friends, from /proc/PID/io."""
    try:
        with open(f"/proc/{pid}/io") as fh:
            for line in fh:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


# -- tools -----------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """Environment for the tools: the repository first on PYTHONPATH, no proxies."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        env.pop(var, None)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def accel_available() -> tuple[bool, str]:
    """Whether ``python3 -m accel`` can run from this repository."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        spec = importlib.util.find_spec("accel.__main__")
    except Exception as exc:  # a half-written package may raise anything on import
        return False, f"accel does not import: {type(exc).__name__}: {exc}"
    if spec is None:
        return False, "accel/__main__.py does not exist yet"
    return True, ""


def tool_available(tool: str) -> tuple[bool, str]:
    """Whether ``tool`` can run here, and why not."""
    if tool == "accel":
        return accel_available()
    if shutil.which(tool) is None:
        return False, f"{tool} is not installed"
    return True, ""


def tool_connections(tool: str, conns: int) -> int:
    """Connections the tool actually uses (curl: one; aria2c: at most 16)."""
    if tool == "curl":
        return 1
    if tool == "aria2c":
        return max(1, min(conns, 16))
    return conns


def tool_command(tool: str, url: str, out: Path, conns: int, *, resume: bool = False) -> list[str]:
    """Command line of one download; ``resume`` = the second run of the resume scenario."""
    n = str(tool_connections(tool, conns))
    if tool == "accel":
        return [sys.executable, "-m", "accel", url, "-n", n, "-o", str(out), "-q"]
    if tool == "curl":
        return ["curl", "-s", *(["-C", "-"] if resume else []), "-o", str(out), url]
    if tool == "aria2c":
        return [
            "aria2c",
            "--no-conf",
            "-q",
            *(["-c"] if resume else []),
            "-x",
            n,
            "-s",
            n,
            "-k",
            "1M",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "-d",
            str(out.parent),
            "-o",
            out.name,
            url,
        ]
    if tool == "axel":  # resumes by itself from OUT.st
        return ["axel", "-q", "-n", n, "-o", str(out), url]
    raise ValueError(f"unknown tool {tool!r}")


def tool_version(tool: str) -> str:
    """First line of the tool's version output (best effort)."""
    if tool == "accel":
        cmd = [sys.executable, "-c", "import accel; print(getattr(accel, '__version__', '?'))"]
    elif tool == "nginx":
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        cmd = [binary, "-v"]
    else:
        cmd = [tool, "--version"]
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            env=child_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "not available"
    text = (proc.stdout or proc.stderr).strip()
    if tool == "accel" and proc.returncode != 0:
        return "not importable"
    first = text.splitlines()[0] if text else "?"
    return first.replace("nginx version: ", "").split(" (")[0]


# -- data ------------------------------------------------------------------------------------


@dataclass
class DataFile:
    """A source file served to the tools."""

    name: str
    path: Path
    size: int
    sha256: str


def make_file(path: Path, size: int, block: int = 16 * MiB) -> DataFile:
    """Write ``size`` random bytes to ``path`` in 16 MiB blocks and hash them on the way."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "wb") as fh:
        while remaining:
            chunk = os.urandom(min(block, remaining))
            digest.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    return DataFile(path.name, path, size, digest.hexdigest())


def verify(out: Path, source: DataFile) -> Optional[str]:
    """Return None if ``out`` equals ``source`` (size and SHA-256), else what is wrong."""
    try:
        size = out.stat().st_size
    except FileNotFoundError:
        return "no output file"
    if size != source.size:
        return f"size {size} != {source.size}"
    digest = hashlib.sha256()
    with open(out, "rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    if digest.hexdigest() != source.sha256:
        return "sha256 mismatch"
    return None


def clear_dir(path: Path) -> None:
    """Empty ``path`` (outputs, sidecars, control files) and create it if needed."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


# -- servers ---------------------------------------------------------------------------------


class Endpoint:
    """A loopback server and its byte accounting."""

    description = "server"

    def url(self, name: str) -> str:
        """URL of ``name``."""
        raise NotImplementedError

    def mark(self) -> Any:
        """An opaque position for :meth:`since`."""
        raise NotImplementedError

    def since(self, mark: Any) -> tuple[Optional[int], Optional[int]]:
        """(body bytes sent, requests) since ``mark``; None where unknown."""
        raise NotImplementedError

    def prepare_run(self) -> None:
        """Called right before each tool run."""

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError


class NginxEndpoint(Endpoint):
    """nginx from tests/nginx.py; bytes come from its access log."""

    def __init__(self, root: Path, limit_rate: Optional[str] = None) -> None:
        from tests.nginx import Nginx

        self.server = Nginx(root, limit_rate=limit_rate, worker_processes="auto").start()
        rate = f", limit_rate {limit_rate} per connection" if limit_rate else ""
        self.description = f"{tool_version('nginx')} (sendfile on{rate})"

    def url(self, name: str) -> str:
        return self.server.url(name)

    def _settled_log(self) -> list[dict[str, Any]]:
        # Aborted requests are logged once nginx notices the closed connection.
        entries = self.server.access_log()
        stable_since = time.monotonic()
        deadline = stable_since + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.server.access_log()
            if len(now) != len(entries):
                entries = now
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= 0.25:
                break
        return entries

    def mark(self) -> int:
        return len(self._settled_log())

    def since(self, mark: Any) -> tuple[Optional[int], Optional[int]]:
        entries = self._settled_log()[mark:]
        return sum(e["body_bytes_sent"] for e in entries), len(entries)

    def stop(self) -> None:
        self.server.stop()


class FaultEndpoint(Endpoint):
    """The Python FaultServer from tests/server.py."""

    def __init__(
        self,
        files: Sequence[DataFile],
        *,
        rate: Optional[int] = None,
        straggler_every: Optional[int] = None,
        straggler_factor: Optional[float] = None,
    ) -> None:
        from tests.server import FaultServer

        self.server = FaultServer().start()
        try:
            for data in files:
                self.server.add_path("/" + data.name, data.path)
            faults = self.server.faults
            parts = []
            if rate is not None:
                faults.rate = rate
                parts.append(f"{rate / MiB:g} MiB/s per connection")
            if straggler_every is not None:
                faults.straggler_every = straggler_every
                faults.straggler_factor = straggler_factor
                parts.append(f"every {straggler_every}rd connection {straggler_factor:g}x slower")
        except BaseException:
            self.server.stop()
            raise
        self.description = "Python FaultServer" + (f" ({', '.join(parts)})" if parts else "")

    def url(self, name: str) -> str:
        return str(self.server.url("/" + name))

    def _counters(self) -> tuple[int, Optional[int]]:
        value = self.server.bytes_sent
        sent = int(value() if callable(value) else value)
        requests = getattr(self.server, "requests", None)
        return sent, None if requests is None else len(requests)

    def mark(self) -> Any:
        time.sleep(0.2)
        return self._counters()

    def since(self, mark: Any) -> tuple[Optional[int], Optional[int]]:
        time.sleep(0.3)
        sent, requests = self._counters()
        if requests is None or mark[1] is None:
            return sent - mark[0], None
        return sent - mark[0], requests - mark[1]

    def prepare_run(self) -> None:
        """Align the straggler phase: the run's first connection gets an id = 0 mod k.

        The FaultServer numbers connections in accept order for its whole life, so idle
        connections are opened and closed until the next id is a multiple of k; every tool
        then meets the slow connections at the same positions (3rd, 6th, ...).
        """
        every = getattr(self.server.faults, "straggler_every", 0) or 0
        accepted = getattr(self.server, "connections", None)
        if every <= 1 or accepted is None:
            return
        for _ in range((-accepted) % every):
            before = self.server.connections
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=5):
                deadline = time.monotonic() + 5
                while self.server.connections == before and time.monotonic() < deadline:
                    time.sleep(0.005)

    def stop(self) -> None:
        self.server.stop()


def fault_server_status() -> tuple[bool, str]:
    """Whether tests/server.py provides FaultServer."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        module = importlib.import_module("tests.server")
    except Exception as exc:  # a half-written module may raise anything
        return False, f"tests/server.py does not import: {type(exc).__name__}: {exc}"
    if not hasattr(module, "FaultServer"):
        return False, "tests/server.py has no FaultServer"
    return True, ""


def nginx_status() -> tuple[bool, str]:
    """Whether tests/nginx.py and an nginx binary are available."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.nginx import nginx_binary
    except Exception as exc:
        return False, f"tests/nginx.py does not import: {type(exc).__name__}: {exc}"
    if nginx_binary() is None:
        return False, "nginx is not installed"
    return True, ""


# -- measurements ----------------------------------------------------------------------------


@dataclass
class Record:
    """One run of one tool in one scenario."""

    ok: bool
    error: str = ""
    wall: float = math.nan
    cpu: float = math.nan
    rss: float = math.nan
    server_bytes: Optional[int] = None
    requests: Optional[int] = None
    stop_fraction: Optional[float] = None  # resume: share of the file sent before SIGINT
    first_wall: Optional[float] = None  # resume: wall seconds until the interrupted run ended


@dataclass
class Scenario:
    """A benchmark scenario and its results."""

    key: str
    title: str
    data: DataFile
    endpoint: Endpoint
    conns: int
    rate: Optional[int] = None  # per-connection rate limit, bytes/s
    resume: bool = False
    results: dict[str, list[Record]] = field(default_factory=dict)

    def ideal(self, tool: str) -> Optional[float]:
        """Wall seconds at exactly the rate limit on every connection the tool opens."""
        if self.rate is None:
            return None
        return self.data.size / (tool_connections(tool, self.conns) * self.rate)

    def timeout(self, tool: str) -> float:
        """Generous per-run timeout."""
        if self.rate is None:
            return 120.0 + self.data.size / (20 * MiB)
        slowest = self.rate / STRAGGLER_FACTOR if self.key == "3" else self.rate
        return 60.0 + 2.0 * self.data.size / slowest


def _describe_failure(outcome: ProcOutcome, problem: Optional[str]) -> str:
    if outcome.timed_out:
        return "timed out"
    if outcome.killed:
        return "did not exit after SIGINT"
    if outcome.exit_code != 0:
        tail = " ".join(outcome.stderr.strip().splitlines()[-1:])[:120]
        return f"exit code {outcome.exit_code}" + (f": {tail}" if tail else "")
    return problem or ""


def run_once(scenario: Scenario, tool: str, workdir: Path) -> Record:
    """Run ``tool`` once in ``scenario`` and check its output."""
    outdir = workdir / "out" / tool
    clear_dir(outdir)
    out = outdir / scenario.data.name
    url = scenario.endpoint.url(scenario.data.name)
    env = child_env()
    os.sync()
    mark = scenario.endpoint.mark()
    scenario.endpoint.prepare_run()
    if not scenario.resume:
        cmd = tool_command(tool, url, out, scenario.conns)
        outcome = run_process(cmd, timeout=scenario.timeout(tool), env=env)
        problem = verify(out, scenario.data) if outcome.exit_code == 0 else None
        sent, requests = scenario.endpoint.since(mark)
        clear_dir(outdir)
        error = _describe_failure(outcome, problem)
        return Record(
            ok=not error,
            error=error,
            wall=outcome.wall,
            cpu=outcome.cpu,
            rss=outcome.peak_rss_mib,
            server_bytes=sent,
            requests=requests,
        )

    # Resume: SIGINT at ~50 % (by bytes written, else by time), then run to completion.
    size = scenario.data.size
    ideal = scenario.ideal(tool) or 1.0
    time_trigger = 0.2 + ideal / 2  # 0.2 s allowance for interpreter/process start-up

    def halfway(pid: int, elapsed: float) -> bool:
        written = proc_wchar(pid)
        return elapsed >= time_trigger or (written is not None and written >= size // 2)

    first = run_process(
        tool_command(tool, url, out, scenario.conns),
        timeout=scenario.timeout(tool),
        env=env,
        interrupt=halfway,
    )
    first_sent, _ = scenario.endpoint.since(mark)
    if first.timed_out or first.killed:
        clear_dir(outdir)
        return Record(ok=False, error="first run: " + _describe_failure(first, None))
    second = run_process(
        tool_command(tool, url, out, scenario.conns, resume=True),
        timeout=scenario.timeout(tool),
        env=env,
    )
    problem = verify(out, scenario.data) if second.exit_code == 0 else None
    sent, requests = scenario.endpoint.since(mark)
    clear_dir(outdir)
    error = _describe_failure(second, problem)
    if not error and first.interrupted_at is None:
        error = "finished before SIGINT"
    return Record(
        ok=not error,
        error=error,
        wall=second.wall,
        cpu=first.cpu + second.cpu,
        rss=max(first.peak_rss_mib, second.peak_rss_mib),
        server_bytes=sent,
        requests=requests,
        stop_fraction=None if first_sent is None else first_sent / size,
        first_wall=first.wall,
    )


def run_scenario(scenario: Scenario, tools: Sequence[str], runs: int, workdir: Path) -> None:
    """Run every tool ``runs`` times, rotating the order each round (A/B interleaving)."""
    scenario.results = {tool: [] for tool in tools}
    for round_no in range(runs):
        shift = round_no % len(tools)
        order = list(tools[shift:]) + list(tools[:shift])
        for tool in order:
            log(f"scenario {scenario.key} round {round_no + 1}/{runs}: {tool}")
            try:
                record = run_once(scenario, tool, workdir)
            except (OSError, subprocess.SubprocessError) as exc:
                record = Record(ok=False, error=f"{type(exc).__name__}: {exc}")
            scenario.results[tool].append(record)
            state = "ok" if record.ok else f"FAILED ({record.error})"
            log(f"  {tool}: {record.wall:.2f} s wall, {record.cpu:.2f} s CPU, {state}")


# -- report ----------------------------------------------------------------------------------


def _ok(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.ok]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def stat(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'median (min..max)' of ``values``, or '-' when empty."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def ratio(accel_value: float, peer_value: float) -> str:
    """accel / peer as '0.85x'."""
    if math.isnan(accel_value) or math.isnan(peer_value) or peer_value == 0:
        return "n/a"
    return f"{accel_value / peer_value:.2f}x"


def ok_cell(records: Sequence[Record]) -> str:
    """'3/3' or '2/3 FAILED: reason'."""
    good = len(_ok(records))
    cell = f"{good}/{len(records)}"
    errors = sorted({r.error for r in records if not r.ok})
    if errors:
        cell += " FAILED: " + "; ".join(e.replace("|", "/") for e in errors)[:200]
    return cell


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def scenario_table(scenario: Scenario) -> list[str]:
    """Markdown lines for one scenario's results."""
    size = scenario.data.size
    res = scenario.results
    accel = _ok(res.get("accel", []))

    def med(records: Sequence[Record], attr: str) -> float:
        return _median([getattr(r, attr) for r in records if getattr(r, attr) is not None])

    def overhead(records: Sequence[Record]) -> list[float]:
        return [(r.server_bytes - size) / MiB for r in records if r.server_bytes is not None]

    rows = []
    if scenario.resume:
        header = [
            "tool",
            "ok runs",
            "stopped at (% of file)",
            "re-fetched MiB",
            "re-fetched % of file",
            "resume run wall s",
            "accel/peer re-fetched",
        ]
        accel_waste = _median(overhead(accel))
        for tool, records in res.items():
            good = _ok(records)
            waste = overhead(good)
            rows.append(
                [
                    tool,
                    ok_cell(records),
                    stat(
                        [100 * r.stop_fraction for r in good if r.stop_fraction is not None],
                        "{:.0f}",
                    ),
                    stat(waste, "{:.2f}"),
                    stat([100 * w * MiB / size for w in waste], "{:.1f}"),
                    stat([r.wall for r in good]),
                    "-" if tool == "accel" else ratio(accel_waste, _median(waste)),
                ]
            )
        return table(header, rows)

    header = ["tool", "ok runs", "wall s", "MiB/s"]
    if scenario.rate is not None:
        header += ["ideal s", "wall/ideal"]
    header += ["CPU s", "peak RSS MiB", "server overhead MiB", "requests"]
    header += ["accel/peer wall", "accel/peer CPU"]
    accel_wall = med(accel, "wall")
    accel_cpu = med(accel, "cpu")
    for tool, records in res.items():
        good = _ok(records)
        row = [
            tool,
            ok_cell(records),
            stat([r.wall for r in good]),
            stat([size / MiB / r.wall for r in good], "{:.0f}"),
        ]
        if scenario.rate is not None:
            ideal = scenario.ideal(tool) or math.nan
            row += [f"{ideal:.2f}", stat([r.wall / ideal for r in good])]
        row += [
            stat([r.cpu for r in good]),
            stat([r.rss for r in good], "{:.0f}"),
            stat(overhead(good), "{:.2f}"),
            stat([float(r.requests) for r in good if r.requests is not None], "{:.0f}"),
        ]
        if tool == "accel":
            row += ["-", "-"]
        else:
            row += [ratio(accel_wall, med(good, "wall")), ratio(accel_cpu, med(good, "cpu"))]
        rows.append(row)
    return table(header, rows)


def machine_lines() -> list[str]:
    """Markdown bullet list describing this machine."""
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / MiB:.1f} GiB"
                break
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return [
        f"- CPU: {cpu_model}; nproc {usable} (of {os.cpu_count()})",
        f"- memory: {mem}",
        f"- OS: {os_name}; kernel {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()} ({sys.executable})",
    ]


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark accel against curl, aria2c and axel on loopback servers.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (64/16/8 MiB) and 1 run: a smoke test"
    )
    parser.add_argument("--runs", type=int, help="runs per tool and scenario (default 5; quick 1)")
    parser.add_argument(
        "--size-gib", type=float, help="size of the unthrottled file in GiB (default 1)"
    )
    parser.add_argument("-n", "--connections", type=int, default=8, help="connections (8)")
    parser.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help="comma-separated tools among accel,curl,aria2c,axel (default: all installed)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma-separated scenarios: 1 unthrottled, 2 throttled, 3 straggler, 4 resume",
    )
    parser.add_argument(
        "--throttle-server",
        choices=("nginx", "python"),
        default="nginx",
        help="server for scenarios 2 and 4: nginx limit_rate (default) or the FaultServer",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--tmpdir", type=Path, help="where to put the temporary files")
    args = parser.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for tool in args.tools:
        if tool not in ALL_TOOLS:
            parser.error(f"unknown tool {tool!r}; choose from {', '.join(ALL_TOOLS)}")
    for key in args.scenarios:
        if key not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {key!r}; choose from {', '.join(ALL_SCENARIOS)}")
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.runs < 1 or args.connections < 1:
        parser.error("--runs and --connections must be positive")
    if args.size_gib is not None and args.size_gib <= 0:
        parser.error("--size-gib must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background with SIGINT ignored: the tools would inherit that and
        # the resume scenario could not interrupt them.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.quick:
        sizes = {"1": 64 * MiB, "2": 16 * MiB, "3": 8 * MiB}
    else:
        sizes = {"1": GiB, "2": 128 * MiB, "3": 32 * MiB}
    if args.size_gib is not None:
        sizes["1"] = int(args.size_gib * GiB)

    notes: list[str] = []
    tools: list[str] = []
    for tool in args.tools:
        ok, why = tool_available(tool)
        if ok:
            tools.append(tool)
        else:
            notes.append(f"{tool} skipped: {why}")
            log(f"{tool} skipped: {why}")
    if not tools:
        log("no tool to benchmark")
        return 2
    have_nginx, why_nginx = nginx_status()
    have_fault, why_fault = fault_server_status()
    if not have_nginx:
        notes.append(f"nginx unavailable ({why_nginx}); the Python FaultServer serves instead")
    if not have_fault:
        notes.append(f"FaultServer unavailable: {why_fault}")

    needed = {k: sizes[k] for k in args.scenarios if k in ("1", "2", "3")}
    if "4" in args.scenarios:
        needed["2"] = sizes["2"]
    base = args.tmpdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    want = sum(needed.values()) + max(needed.values(), default=0) + 256 * MiB
    if free < want:
        log(f"not enough space in {base}: {free / GiB:.1f} GiB free, {want / GiB:.1f} needed")
        return 2

    started = datetime.datetime.now().astimezone()
    endpoints: list[Endpoint] = []
    scenarios: list[Scenario] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="accel-bench-", dir=base) as tmp:
        workdir = Path(tmp)
        datadir = workdir / "data"
        datadir.mkdir()
        try:
            files: dict[str, DataFile] = {}
            names = {"1": "unthrottled.bin", "2": "throttled.bin", "3": "straggler.bin"}
            for key, size in needed.items():
                log(f"writing {size / MiB:.0f} MiB of random data to {names[key]}")
                files[key] = make_file(datadir / names[key], size)

            plain: Optional[Endpoint] = None
            throttled: Optional[Endpoint] = None
            if have_nginx:
                plain = NginxEndpoint(datadir)
                endpoints.append(plain)
            elif have_fault:
                plain = FaultEndpoint(list(files.values()))
                endpoints.append(plain)
            if {"2", "4"} & set(args.scenarios):
                if have_nginx and (args.throttle_server == "nginx" or not have_fault):
                    throttled = NginxEndpoint(datadir, limit_rate=f"{RATE // MiB}m")
                    endpoints.append(throttled)
                elif have_fault:
                    throttled = FaultEndpoint(list(files.values()), rate=RATE)
                    endpoints.append(throttled)
            n = args.connections
            for key in args.scenarios:
                if key == "1" and plain is not None:
                    title = f"1. Unthrottled, {sizes['1'] / MiB:.0f} MiB, {n} connections"
                    scenarios.append(Scenario(key, title, files["1"], plain, n))
                elif key == "2" and throttled is not None:
                    title = (
                        f"2. Throttled to {RATE // MiB} MiB/s per connection, "
                        f"{sizes['2'] / MiB:.0f} MiB, {n} connections"
                    )
                    scenarios.append(Scenario(key, title, files["2"], throttled, n, rate=RATE))
                elif key == "3" and have_fault:
                    straggler = FaultEndpoint(
                        [files["3"]],
                        rate=RATE,
                        straggler_every=STRAGGLER_EVERY,
                        straggler_factor=STRAGGLER_FACTOR,
                    )
                    endpoints.append(straggler)
                    title = (
                        f"3. Straggler: {sizes['3'] / MiB:.0f} MiB at {RATE // MiB} MiB/s per "
                        f"connection, every {STRAGGLER_EVERY}rd connection "
                        f"{STRAGGLER_FACTOR}x slower, {n} connections"
                    )
                    scenarios.append(Scenario(key, title, files["3"], straggler, n, rate=RATE))
                elif key == "4" and throttled is not None:
                    title = (
                        f"4. Resume waste: {sizes['2'] / MiB:.0f} MiB throttled to "
                        f"{RATE // MiB} MiB/s per connection, SIGINT at ~50 %, then run again"
                    )
                    scenarios.append(
                        Scenario(key, title, files["2"], throttled, n, rate=RATE, resume=True)
                    )
                else:
                    notes.append(f"scenario {key} skipped: no server for it")

            for scenario in scenarios:
                log(f"--- {scenario.title}")
                run_scenario(scenario, tools, args.runs, workdir)
        except KeyboardInterrupt:
            log("interrupted; reporting what has been measured")
            notes.append("the benchmark was interrupted")
            interrupted = True
        finally:
            for endpoint in endpoints:
                with contextlib.suppress(Exception):
                    endpoint.stop()

    lines = render(args, tools, scenarios, notes, started)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
        log(f"report written to {args.out}")
    return 130 if interrupted else 0


def render(
    args: argparse.Namespace,
    tools: Sequence[str],
    scenarios: Sequence[Scenario],
    notes: Sequence[str],
    started: datetime.datetime,
) -> list[str]:
    """The Markdown report."""
    lines = [
        "# accel benchmark",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}; {args.runs} run(s) per tool and scenario, tools "
        "interleaved (order rotates every round); cells are median (min..max) over the "
        "successful runs; every output was checked by size and SHA-256; all traffic on "
        "127.0.0.1.",
        "",
        "## Machine",
        "",
        *machine_lines(),
        "",
        "## Tools",
        "",
    ]
    for tool in tools:
        n = tool_connections(tool, args.connections)
        lines.append(f"- {tool}: {tool_version(tool)}; {n} connection(s)")
    for scenario in scenarios:
        lines += ["", f"## {scenario.title}", "", f"Server: {scenario.endpoint.description}."]
        if isinstance(scenario.endpoint, NginxEndpoint) and scenario.rate is not None:
            lines.append(
                "Note: nginx lets every request send one second's worth (limit_rate bytes) "
                "before throttling, with one-second granularity, so wall/ideal can fall "
                "below 1 and tools that split into many small requests are throttled less "
                "(see the requests column; --throttle-server python paces strictly)."
            )
        if scenario.rate is not None and not scenario.resume:
            lines.append(
                "Ideal = size / (connections the tool uses x per-connection rate); "
                "stragglers make it unreachable in scenario 3."
                if scenario.key == "3"
                else "Ideal = size / (connections the tool uses x per-connection rate)."
            )
        if scenario.resume:
            lines.append(
                "Re-fetched = bytes the server sent over both runs minus the file size; "
                "stopped at = share of the file the server had sent when the first run ended. "
                "Bytes still in socket buffers at SIGINT count as sent, so even curl's "
                "single-stream resume shows a little."
            )
        lines.append("")
        lines += scenario_table(scenario)
    lines += ["", "Ratios are accel's median divided by the peer's (below 1 = accel better)."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return lines


if __name__ == "__main__":
    sys.exit(main())
