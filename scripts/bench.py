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
5. many files: 1,000 [100] files of 64 KiB from nginx into an empty directory, ``-j 8``:
   ``accel -i LIST -j 8 -n N -d DIR -q`` against ``curl -Z --parallel-max 8`` (URLs from a
   ``-K`` config) and ``aria2c -i LIST -j 8 -d DIR``; every run checks all files (names,
   sizes, SHA-256) and that nothing else is left in DIR.  After each successful accel run the
   same accel command runs again on the finished directory; reported is what nginx sent in
   that re-run per file (body bytes, and response bytes with headers from a second log).
6. huge list: 100,000 [2,000] URLs of distinct names that nginx all serves from one 64-byte
   file, ``accel -i LIST -j 8 -d DIR -q`` (accel only, one run): peak RSS, RSS at 10/50/90 %
   of the list, wall and CPU seconds, time to the first finished file.  The outputs go to a
   tmpfs directory (/dev/shm) when there is one, else under ``--tmpdir``.
7. per-request stragglers: 32 MiB [8 MiB] from the FaultServer at 2 MB/s per connection where
   each request is 8x slower with probability 1/3 (drawn per request from a seeded RNG, as
   when a CDN routes some requests through a congested edge), run with seeds 1, 2 and 3
   (``--runs`` rounds each, every tool meeting the same draws): wall seconds against axel and
   against the straggler-free ideal size / (N x 2 MB/s); server overhead = bytes sent beyond
   the file size.

Scenarios 5 and 6 need nginx (they are skipped with a note without it); axel has no list
input and does not take part in them.

Tools run interleaved (the order rotates every round), each run's output is checked (size and
SHA-256) and failures are marked in the tables.  Peers run only when installed; accel runs as
``python3 -m accel URL -n N -o OUT -q`` with the repository on PYTHONPATH.

Examples::

    python3 scripts/bench.py --quick                  # smoke test, < 1 minute
    python3 scripts/bench.py --runs 5 --out bench.md  # the full benchmark
    python3 scripts/bench.py --tools curl,aria2c,axel --scenarios 1,2
    python3 scripts/bench.py --scenarios 5,6 --runs 3    # many files and the 100,000-URL list
    python3 scripts/bench.py --scenarios 7,3 --runs 3 --tools accel,axel  # stragglers
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
import re
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
from typing import Any, Callable, Optional, Sequence, Union

REPO_ROOT = Path(__file__).resolve().parent.parent
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
ALL_TOOLS = ("accel", "accel-auto", "curl", "aria2c", "axel")
ALL_SCENARIOS = ("1", "2", "3", "4", "5", "6", "7")
LIST_TOOLS = ("accel", "curl", "aria2c")  # tools with a list input (scenario 5)
MANY_FILE_SIZE = 64 * KiB  # size of each file in scenario 5
TINY_SIZE = 64  # the one file behind every URL of scenario 6
RERUN_TARGET = 1 * KiB  # issue 11: a re-run costs at most ~1 KiB per finished file
RSS_TARGET_MIB = 64  # issue 11: peak RSS for 100,000 queued URLs
RATE = 4 * MiB  # per-connection limit in scenarios 2-4 (nginx "4m" = 4 MiB/s)
STRAGGLER_EVERY = 3
STRAGGLER_FACTOR = 8
PER_REQUEST_RATE = 2_000_000  # scenario 7: 2 MB/s per connection (the figures)
SLOW_REQUEST_PROBABILITY = 1 / 3  # scenario 7: one request in three ...
SLOW_REQUEST_FACTOR = 8  # ... is 8x slower
SLOW_REQUEST_SEEDS = (1, 2, 3)  # scenario 7 runs --runs rounds with each seed
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
    monitor: Optional[Callable[[int, float], None]] = None,
) -> ProcOutcome:
    """Run ``cmd``; measure wall time, CPU time (``os.wait4``) and peak RSS.

    The peak RSS is the largest ``VmHWM`` of /proc/PID/status seen while polling every
    10 ms: ``ru_maxrss`` from wait4 cannot be used, because Linux carries the high-water
    mark of the forking Python process across exec into the child.

    ``interrupt(pid, elapsed)`` is polled every 10 ms; when it returns true the child gets
    SIGINT once (and SIGKILL if it has not exited ``SIGINT_GRACE`` seconds later).
    ``monitor(pid, elapsed)``, if given, is called every 10 ms while the child runs.
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
    if tool in ("accel", "accel-auto"):
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
    if tool == "accel-auto":  # -v: each change of the count is logged (see auto_count)
        return [sys.executable, "-m", "accel", url, "-n", "auto", "-o", str(out), "-v"]
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


_CURL_FEATURES: dict[str, bool] = {}


def auto_count(stderr: str) -> int:
    """The connection count ``accel -n auto`` ended with, from its ``-v`` log."""
    from accel._engine.autoscale import START  # accel ran, so it imports (see accel_available)

    found = re.findall(r"auto: (\d+) connections", stderr)
    return int(found[-1]) if found else START


def curl_features() -> dict[str, bool]:
    """Which of curl's list options this curl has (``--parallel-max``: 7.66, ``--output-dir``:
    7.73, ``--no-progress-meter``: 7.67), from ``curl --help all``; cached."""
    if not _CURL_FEATURES:
        try:
            text = subprocess.run(
                ["curl", "--help", "all"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        for option in ("parallel-max", "output-dir", "no-progress-meter"):
            _CURL_FEATURES[option] = f"--{option} " in text
    return _CURL_FEATURES


def list_tool_available(tool: str) -> tuple[bool, str]:
    """Whether ``tool`` can download a list of URLs in parallel (scenario 5)."""
    if tool not in LIST_TOOLS:
        return False, f"{tool} has no list input"
    if tool == "curl" and not curl_features()["parallel-max"]:
        return False, "this curl has no -Z/--parallel-max (curl >= 7.66 needed)"
    return True, ""


def list_command(
    tool: str, listfile: Path, curl_config: Path, outdir: Path, conns: int, jobs: int
) -> list[str]:
    """Command line downloading every URL of ``listfile`` into ``outdir``, ``jobs`` at once.

    curl reads the same URLs from ``curl_config`` (see :func:`write_curl_config`).
    """
    if tool == "accel":
        return [
            *(sys.executable, "-m", "accel", "-i", str(listfile)),
            *("-j", str(jobs), "-n", str(conns), "-d", str(outdir), "-q"),
        ]
    if tool == "curl":
        features = curl_features()
        quiet = ["--no-progress-meter"] if features["no-progress-meter"] else ["-s", "-S"]
        where = ["--remote-name-all", "--output-dir", str(outdir)]
        return [
            "curl",
            *quiet,
            "-f",
            "-Z",
            "--parallel-max",
            str(jobs),
            *(where if features["output-dir"] else []),
            "-K",
            str(curl_config),
        ]
    if tool == "aria2c":
        return [
            *("aria2c", "--no-conf", "-q", "-i", str(listfile), "-j", str(jobs)),
            *("-d", str(outdir), "--allow-overwrite=true", "--auto-file-renaming=false"),
            "--file-allocation=none",
        ]
    raise ValueError(f"{tool!r} has no list mode here")


def tool_version(tool: str) -> str:
    """First line of the tool's version output (best effort)."""
    if tool in ("accel", "accel-auto"):
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
    if tool in ("accel", "accel-auto") and proc.returncode != 0:
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


@dataclass
class FileSet:
    """Many small files in one directory of the server root (scenario 5)."""

    subdir: str
    files: list[DataFile]

    @property
    def size(self) -> int:
        """Total bytes."""
        return sum(f.size for f in self.files)


def make_fileset(root: Path, subdir: str, count: int, size: int) -> FileSet:
    """Write ``count`` random files of ``size`` bytes to ``root/subdir``."""
    directory = root / subdir
    directory.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(count - 1)))
    files = [make_file(directory / f"f{i:0{width}d}.bin", size) for i in range(count)]
    return FileSet(subdir, files)


def _some(names: Sequence[str], limit: int = 3) -> str:
    more = ", ..." if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def verify_fileset(outdir: Path, fileset: FileSet) -> Optional[str]:
    """None if ``outdir`` holds exactly the files of ``fileset``, byte-identical, else what not.

    Every file is hashed (64 MiB for 1,000 x 64 KiB take about 0.2 s); any other entry
    (a ``.part``, a sidecar, a ``.aria2`` control file) is reported as a leftover.
    """
    expected = {f.name: f for f in fileset.files}
    try:
        present = set(os.listdir(outdir))
    except FileNotFoundError:
        return "no output directory"
    problems = []
    missing = sorted(expected.keys() - present)
    if missing:
        problems.append(f"{len(missing)} of {len(expected)} files missing ({_some(missing)})")
    extra = sorted(present - expected.keys())
    if extra:
        problems.append(f"{len(extra)} leftover entries ({_some(extra)})")
    bad: list[str] = []
    for name in sorted(expected.keys() & present):
        problem = verify(outdir / name, expected[name])
        if problem is not None:
            bad.append(f"{name}: {problem}")
    if bad:
        problems.append(f"{len(bad)} files differ ({_some(bad, 2)})")
    return "; ".join(problems) or None


def write_list(path: Path, urls: Sequence[str]) -> None:
    """One URL per line (the list of ``accel -i`` and ``aria2c -i``)."""
    with open(path, "w", encoding="utf-8") as fh:
        for url in urls:
            fh.write(url + "\n")


def _curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_curl_config(path: Path, urls: Sequence[str], outdir: Path) -> None:
    """A ``curl -K`` config: one ``url`` line per URL (plus ``output`` lines if needed)."""
    per_url_output = not curl_features()["output-dir"]
    with open(path, "w", encoding="utf-8") as fh:
        for url in urls:
            fh.write(f"url = {_curl_quote(url)}\n")
            if per_url_output:
                name = url.rsplit("/", 1)[-1]
                fh.write(f"output = {_curl_quote(str(outdir / name))}\n")


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
    """nginx from tests/nginx.py; bytes come from its access log.

    ``wire_log``: also log every response's size with headers (``$bytes_sent``) and the
    request's size (``$request_length``) to this file, line for line beside the access log
    (see :meth:`wire_since`).  ``extra_location``/``note`` go to the ``location /`` block and
    to the description.
    """

    def __init__(
        self,
        root: Path,
        limit_rate: Optional[str] = None,
        *,
        extra_location: str = "",
        wire_log: Optional[Path] = None,
        note: str = "",
    ) -> None:
        from tests.nginx import Nginx

        self.wire_log = wire_log
        extra_http = ""
        if wire_log is not None:
            # A second access_log at the http level: nginx writes both for every request.
            quoted = '"' + str(wire_log).replace("\\", "\\\\").replace('"', '\\"') + '"'
            extra_http = (
                "    log_format accel_bench_wire '$bytes_sent $request_length';\n"
                f"    access_log {quoted} accel_bench_wire;"
            )
        self.server = Nginx(
            root,
            limit_rate=limit_rate,
            worker_processes="auto",
            extra_http=extra_http,
            extra_location=extra_location,
        ).start()
        rate = f", limit_rate {limit_rate} per connection" if limit_rate else ""
        self.description = f"{tool_version('nginx')} (sendfile on{rate}{note})"

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

    def wire_since(self, mark: int) -> Optional[tuple[int, int]]:
        """(response bytes with headers, request bytes) since ``mark``; call after since().

        Both logs get one line per request in the same order, so the access log's position
        is valid here too once the log has settled.
        """
        if self.wire_log is None:
            return None
        try:
            lines = self.wire_log.read_text(errors="replace").splitlines()[mark:]
        except OSError:
            return None
        sent = received = 0
        for line in lines:
            fields = line.split()
            with contextlib.suppress(ValueError, IndexError):
                sent += int(fields[0])
                received += int(fields[1])
        return sent, received

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
        slow_request_probability: Optional[float] = None,
        slow_request_factor: Optional[float] = None,
    ) -> None:
        from tests.server import FaultServer

        self.seed: Optional[int] = None  # per-request slowness: the next run's seed

        self.server = FaultServer().start()
        try:
            for data in files:
                self.server.add_path("/" + data.name, data.path)
            faults = self.server.faults
            parts = []
            if rate is not None:
                faults.rate = rate
                shown = f"{rate / MiB:g} MiB/s" if rate % MiB == 0 else f"{rate / 1e6:g} MB/s"
                parts.append(f"{shown} per connection")
            if straggler_every is not None:
                faults.straggler_every = straggler_every
                faults.straggler_factor = straggler_factor
                parts.append(f"every {straggler_every}rd connection {straggler_factor:g}x slower")
            if slow_request_probability is not None:
                faults.slow_request_probability = slow_request_probability
                faults.slow_request_factor = slow_request_factor
                parts.append(
                    f"each request {slow_request_factor:g}x slower with probability "
                    f"{slow_request_probability:.2g}, seeded"
                )
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

    def slow_since(self, mark: Any) -> Optional[int]:
        """Responses drawn slow (per-request slowness) since ``mark``."""
        if mark[1] is None:
            return None
        return sum(1 for r in self.server.requests[mark[1] :] if getattr(r, "slow", False))

    def prepare_run(self) -> None:
        """Restart the slow-request draws from ``seed``; align the straggler phase: the run's
        first connection gets an id = 0 mod k.

        The FaultServer numbers connections in accept order for its whole life, so idle
        connections are opened and closed until the next id is a multiple of k; every tool
        then meets the slow connections at the same positions (3rd, 6th, ...). Likewise every
        tool run with one seed meets slow requests at the same positions in its request order.
        """
        if self.seed is not None:
            self.server.faults.slow_request_seed = self.seed
            self.server.restart_slow_draws()
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
class Rerun:
    """accel's second run on a directory it has already completed (scenario 5)."""

    ok: bool
    error: str
    wall: float
    cpu: float
    body_bytes: Optional[int]
    requests: Optional[int]
    wire_bytes: Optional[int]  # responses with headers ($bytes_sent), when logged
    request_bytes: Optional[int]  # requests with headers ($request_length), when logged


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
    seed: Optional[int] = None  # per-request stragglers: the seed of the slow draws
    slow_requests: Optional[int] = None  # per-request stragglers: responses drawn slow
    stop_fraction: Optional[float] = None  # resume: share of the file sent before SIGINT
    first_wall: Optional[float] = None  # resume: wall seconds until the interrupted run ended
    rerun: Optional[Rerun] = None  # many files: accel run again on the finished directory
    files_done: Optional[int] = None  # huge list: finished outputs at the end of the run
    first_file: Optional[float] = None  # huge list: seconds until the first output existed
    rss_by_progress: dict[int, float] = field(default_factory=dict)  # % of list -> RSS MiB
    auto_connections: Optional[int] = None  # accel -n auto: the count it ended with


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
    seeds: tuple[int, ...] = ()  # per-request stragglers: --runs rounds with each seed
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
        slowest = self.rate
        if self.key == "3":
            slowest = self.rate / STRAGGLER_FACTOR
        elif self.key == "7":
            slowest = self.rate / SLOW_REQUEST_FACTOR
        return 60.0 + 2.0 * self.data.size / slowest


@dataclass
class ManyScenario:
    """Scenario 5: a list of small files, ``jobs`` at a time, into an empty directory."""

    key: str
    title: str
    fileset: FileSet
    endpoint: NginxEndpoint
    conns: int
    jobs: int
    listfile: Path
    results: dict[str, list[Record]] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        """The URLs in list order."""
        return [self.endpoint.url(f"{self.fileset.subdir}/{f.name}") for f in self.fileset.files]

    def timeout(self, tool: str) -> float:
        """Generous per-run timeout (0.1 s per file; the issue measured 15 ms)."""
        return 120.0 + 0.1 * len(self.fileset.files)


@dataclass
class MemoryScenario:
    """Scenario 6: a huge list of distinct URLs of one tiny body; accel only."""

    key: str
    title: str
    count: int
    endpoint: NginxEndpoint
    jobs: int
    listfile: Path
    outbase: Path  # the outputs go to outbase/accel (tmpfs when available)
    body: bytes  # what every URL serves
    list_bytes: int = 0  # size of the list file
    results: dict[str, list[Record]] = field(default_factory=dict)

    def timeout(self, tool: str) -> float:
        """Generous: 20 ms per URL (accel took about 4 ms per tiny file before issue 11)."""
        return 120.0 + 0.02 * self.count


AnyScenario = Union[Scenario, ManyScenario, MemoryScenario]


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
        seed = slow = None
        if isinstance(scenario.endpoint, FaultEndpoint) and scenario.endpoint.seed is not None:
            seed, slow = scenario.endpoint.seed, scenario.endpoint.slow_since(mark)
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
            seed=seed,
            slow_requests=slow,
            auto_connections=auto_count(outcome.stderr) if tool == "accel-auto" else None,
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


def run_many_once(scenario: ManyScenario, tool: str, workdir: Path) -> Record:
    """Run ``tool`` over the list once, check every file; accel then runs again on them."""
    outdir = workdir / "out" / tool
    clear_dir(outdir)
    urls = scenario.urls
    curl_config = workdir / "lists" / "many.curlrc"
    if tool == "curl":
        write_curl_config(curl_config, urls, outdir)
    cmd = list_command(tool, scenario.listfile, curl_config, outdir, scenario.conns, scenario.jobs)
    env = child_env()
    endpoint = scenario.endpoint
    os.sync()
    mark = endpoint.mark()
    outcome = run_process(cmd, timeout=scenario.timeout(tool), env=env)
    problem = verify_fileset(outdir, scenario.fileset) if outcome.exit_code == 0 else None
    sent, requests = endpoint.since(mark)
    error = _describe_failure(outcome, problem)
    record = Record(
        ok=not error,
        error=error,
        wall=outcome.wall,
        cpu=outcome.cpu,
        rss=outcome.peak_rss_mib,
        server_bytes=sent,
        requests=requests,
    )
    if tool == "accel" and record.ok:
        os.sync()
        mark = endpoint.mark()
        again = run_process(cmd, timeout=scenario.timeout(tool), env=env)
        problem = verify_fileset(outdir, scenario.fileset) if again.exit_code == 0 else None
        sent, requests = endpoint.since(mark)
        wire = endpoint.wire_since(mark)
        error = _describe_failure(again, problem)
        record.rerun = Rerun(
            ok=not error,
            error=error,
            wall=again.wall,
            cpu=again.cpu,
            body_bytes=sent,
            requests=requests,
            wire_bytes=None if wire is None else wire[0],
            request_bytes=None if wire is None else wire[1],
        )
    clear_dir(outdir)
    return record


class ListWatcher:
    """Samples a list download: finished outputs in its directory and the child's RSS.

    Called by :func:`run_process` every 10 ms; it looks every 0.1 s until the first output
    exists, then every second (a directory of 100,000 names takes some ms to list).
    """

    def __init__(self, directory: Path, suffix: str) -> None:
        self.directory = directory
        self.suffix = suffix
        self.samples: list[tuple[float, int, Optional[int]]] = []  # (s, done, VmRSS KiB)
        self.first_file: Optional[float] = None
        self._next = 0.0

    def count(self) -> int:
        """Finished outputs now (names ending in ``suffix``; ``.part`` files do not)."""
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for entry in entries if entry.name.endswith(self.suffix))
        except FileNotFoundError:
            return 0

    def __call__(self, pid: int, elapsed: float) -> None:
        if elapsed < self._next:
            return
        done = self.count()
        if done and self.first_file is None:
            self.first_file = elapsed
        self.samples.append((elapsed, done, proc_status_kib(pid, "VmRSS")))
        self._next = elapsed + (0.1 if self.first_file is None else 1.0)

    def rss_at(self, percent: int, total: int) -> Optional[float]:
        """RSS (MiB) at the first sample with at least ``percent`` % of ``total`` done."""
        for _elapsed, done, rss_kib in self.samples:
            if rss_kib is not None and done * 100 >= percent * total:
                return rss_kib * KiB / MiB
        return None


def verify_tiny_outputs(outdir: Path, count: int, body: bytes) -> Optional[str]:
    """None if ``outdir`` holds ``count`` outputs of ``body`` and nothing else.

    Sizes are checked for all; the contents of every 1,000th file.
    """
    sizes: dict[str, int] = {}
    try:
        with os.scandir(outdir) as entries:
            for entry in entries:
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return "no output directory"
    names = [f"{i:06d}.bin" for i in range(count)]
    problems = []
    missing = [name for name in names if name not in sizes]
    if missing:
        problems.append(f"{len(missing)} of {count} files missing ({_some(missing)})")
    extra = sorted(sizes.keys() - set(names))
    if extra:
        problems.append(f"{len(extra)} leftover entries ({_some(extra)})")
    wrong = [name for name in names if sizes.get(name, len(body)) != len(body)]
    wrong += [
        name
        for name in names[::1000]
        if name in sizes and name not in wrong and (outdir / name).read_bytes() != body
    ]
    if wrong:
        problems.append(f"{len(wrong)} files differ ({_some(wrong)})")
    return "; ".join(problems) or None


def run_memory_once(scenario: MemoryScenario, tool: str, workdir: Path) -> Record:
    """Run accel over the huge list once, sampling its memory."""
    outdir = scenario.outbase / tool
    clear_dir(outdir)
    cmd = [
        *(sys.executable, "-m", "accel", "-i", str(scenario.listfile)),
        *("-j", str(scenario.jobs), "-q", "-d", str(outdir)),
    ]
    watcher = ListWatcher(outdir, ".bin")
    mark = scenario.endpoint.mark()
    try:
        outcome = run_process(cmd, timeout=scenario.timeout(tool), env=child_env(), monitor=watcher)
        done = watcher.count()
        problem = (
            verify_tiny_outputs(outdir, scenario.count, scenario.body)
            if outcome.exit_code == 0
            else None
        )
        sent, requests = scenario.endpoint.since(mark)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    error = _describe_failure(outcome, problem)
    return Record(
        ok=not error,
        error=error,
        wall=outcome.wall,
        cpu=outcome.cpu,
        rss=outcome.peak_rss_mib,
        server_bytes=sent,
        requests=requests,
        files_done=done,
        first_file=watcher.first_file,
        rss_by_progress={
            p: v for p in (10, 50, 90) if (v := watcher.rss_at(p, scenario.count)) is not None
        },
    )


def run_one(scenario: AnyScenario, tool: str, workdir: Path) -> Record:
    """One run of ``tool`` in ``scenario``, whatever its kind."""
    if isinstance(scenario, ManyScenario):
        return run_many_once(scenario, tool, workdir)
    if isinstance(scenario, MemoryScenario):
        return run_memory_once(scenario, tool, workdir)
    return run_once(scenario, tool, workdir)


def _record_summary(record: Record) -> str:
    parts = [f"{record.wall:.2f} s wall", f"{record.cpu:.2f} s CPU"]
    if record.seed is not None:
        parts.append(f"seed {record.seed}, {record.slow_requests} of {record.requests} slow")
    if record.files_done is not None:
        parts.append(f"peak RSS {record.rss:.0f} MiB, {record.files_done} files done")
    parts.append("ok" if record.ok else f"FAILED ({record.error})")
    text = ", ".join(parts)
    rerun = record.rerun
    if rerun is not None:
        text += f"; re-run {rerun.wall:.2f} s, {rerun.body_bytes} body bytes, "
        text += f"{rerun.requests} requests" + ("" if rerun.ok else f", FAILED ({rerun.error})")
    return text


def run_scenario(scenario: AnyScenario, tools: Sequence[str], runs: int, workdir: Path) -> None:
    """Run every tool ``runs`` times, rotating the order each round (A/B interleaving)."""
    scenario.results = {tool: [] for tool in tools}
    seeds: Sequence[Optional[int]] = [None]
    if isinstance(scenario, Scenario) and scenario.seeds:
        seeds = scenario.seeds
    rounds = [seed for seed in seeds for _ in range(runs)]
    for round_no, seed in enumerate(rounds):
        if seed is not None and isinstance(scenario.endpoint, FaultEndpoint):
            scenario.endpoint.seed = seed
        shift = round_no % len(tools)
        order = list(tools[shift:]) + list(tools[:shift])
        for tool in order:
            log(f"scenario {scenario.key} round {round_no + 1}/{len(rounds)}: {tool}")
            try:
                record = run_one(scenario, tool, workdir)
            except (OSError, subprocess.SubprocessError) as exc:
                record = Record(ok=False, error=f"{type(exc).__name__}: {exc}")
            scenario.results[tool].append(record)
            log(f"  {tool}: {_record_summary(record)}")


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
        ended = sorted({r.auto_connections for r in good if r.auto_connections is not None})
        label = tool
        if ended:
            label += f" (ended at {'/'.join(map(str, ended))})"
        row = [
            label,
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


def seed_table(scenario: Scenario) -> list[str]:
    """Markdown lines for a seeded scenario: each seed's medians, the tools side by side."""
    header = ["seed", "tool", "ok runs", "wall s", "wall/ideal", "slow/all requests"]
    header += ["server overhead MiB", "accel/peer wall"]
    size = scenario.data.size
    rows = []
    for seed in scenario.seeds:
        by_tool = {tool: [r for r in rs if r.seed == seed] for tool, rs in scenario.results.items()}
        accel_wall = _median([r.wall for r in _ok(by_tool.get("accel", []))])
        for tool, records in by_tool.items():
            good = _ok(records)
            ideal = scenario.ideal(tool) or math.nan
            slow = [r for r in good if r.slow_requests is not None and r.requests]
            rows.append(
                [
                    str(seed),
                    tool,
                    ok_cell(records),
                    stat([r.wall for r in good]),
                    stat([r.wall / ideal for r in good]),
                    " ".join(f"{r.slow_requests}/{r.requests}" for r in slow) or "-",
                    stat(
                        [(r.server_bytes - size) / MiB for r in good if r.server_bytes is not None]
                    ),
                    "-" if tool == "accel" else ratio(accel_wall, _median([r.wall for r in good])),
                ]
            )
    return table(header, rows)


def many_table(scenario: ManyScenario) -> list[str]:
    """Markdown lines for scenario 5: the tools side by side, then accel's re-runs."""
    count = len(scenario.fileset.files)
    size = scenario.fileset.size
    res = scenario.results

    def med(records: Sequence[Record], attr: str) -> float:
        return _median([getattr(r, attr) for r in _ok(records)])

    header = ["tool", "ok runs", "wall s", "files/s", "MiB/s", "CPU s", "peak RSS MiB"]
    header += ["requests", "server overhead MiB", "accel/peer wall", "accel/peer CPU"]
    accel = res.get("accel", [])
    accel_wall, accel_cpu = med(accel, "wall"), med(accel, "cpu")
    rows = []
    for tool, records in res.items():
        good = _ok(records)
        row = [
            tool,
            ok_cell(records),
            stat([r.wall for r in good]),
            stat([count / r.wall for r in good], "{:.0f}"),
            stat([size / MiB / r.wall for r in good], "{:.1f}"),
            stat([r.cpu for r in good]),
            stat([r.rss for r in good], "{:.0f}"),
            stat([float(r.requests) for r in good if r.requests is not None], "{:.0f}"),
            stat([(r.server_bytes - size) / MiB for r in good if r.server_bytes is not None]),
        ]
        if tool == "accel":
            row += ["-", "-"]
        else:
            row += [ratio(accel_wall, med(records, "wall")), ratio(accel_cpu, med(records, "cpu"))]
        rows.append(row)
    lines = table(header, rows)

    if "accel" not in res:
        return lines
    reruns = [r.rerun for r in accel if r.rerun is not None]
    good_reruns = [r for r in reruns if r.ok]
    errors = sorted({r.error for r in reruns if not r.ok})
    ok_text = f"{len(good_reruns)}/{len(reruns)}"
    if not reruns:
        ok_text += " (no successful accel run to repeat)"
    if errors:
        ok_text += " FAILED: " + "; ".join(e.replace("|", "/") for e in errors)[:200]

    def per_file(values: Sequence[Optional[int]]) -> list[float]:
        return [v / count for v in values if v is not None]

    body = per_file([r.body_bytes for r in good_reruns])
    wire = per_file([r.wire_bytes for r in good_reruns])
    verdict = "-"
    if wire or body:
        worst = max(wire or body)
        verdict = "met" if worst <= RERUN_TARGET else f"missed ({worst / RERUN_TARGET:.1f}x)"
    rerun_header = [
        "accel re-run",
        "ok runs",
        "wall s",
        "CPU s",
        "requests/file",
        "body B/file",
        "response B/file (with headers)",
        "request B/file",
        f"target <= {RERUN_TARGET} B/file",
    ]
    rerun_row = [
        "same command, finished directory",
        ok_text,
        stat([r.wall for r in good_reruns]),
        stat([r.cpu for r in good_reruns]),
        stat(per_file([r.requests for r in good_reruns])),
        stat(body, "{:.0f}"),
        stat(wire, "{:.0f}"),
        stat(per_file([r.request_bytes for r in good_reruns]), "{:.0f}"),
        verdict,
    ]
    return [*lines, "", *table(rerun_header, [rerun_row])]


def memory_table(scenario: MemoryScenario) -> list[str]:
    """Markdown lines for scenario 6 (failed runs are shown too: their RSS still counts)."""
    rows = []
    for tool, records in scenario.results.items():
        ran = [r for r in records if not math.isnan(r.wall)]
        peak = _median([r.rss for r in ran])
        verdict = "-"
        if not math.isnan(peak):
            verdict = "met" if peak <= RSS_TARGET_MIB else f"missed ({peak / RSS_TARGET_MIB:.2f}x)"

        def rss_at(percent: int, ran: Sequence[Record] = ran) -> str:
            values = [r.rss_by_progress[percent] for r in ran if percent in r.rss_by_progress]
            return stat(values, "{:.0f}")

        rows.append(
            [
                tool,
                ok_cell(records),
                stat([float(r.files_done) for r in ran if r.files_done is not None], "{:.0f}"),
                stat([r.wall for r in ran]),
                stat([(r.files_done or 0) / r.wall for r in ran], "{:.0f}"),
                stat([r.cpu for r in ran]),
                stat([r.first_file for r in ran if r.first_file is not None]),
                " / ".join(rss_at(p) for p in (10, 50, 90)),
                stat([r.rss for r in ran], "{:.1f}"),
                verdict,
                stat(
                    [r.requests / scenario.count for r in ran if r.requests is not None],
                    "{:.2f}",
                ),
            ]
        )
    header = [
        "tool",
        "ok runs",
        "files done",
        "wall s",
        "files/s",
        "CPU s",
        "first file after s",
        "RSS MiB at 10 / 50 / 90 % done",
        "peak RSS MiB",
        f"target <= {RSS_TARGET_MIB} MiB",
        "requests/URL",
    ]
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
        "--quick",
        action="store_true",
        help="small sizes (64/16/8 MiB, 100 files, 2,000 URLs) and 1 run: a smoke test",
    )
    parser.add_argument("--runs", type=int, help="runs per tool and scenario (default 5; quick 1)")
    parser.add_argument(
        "--size-gib", type=float, help="size of the unthrottled file in GiB (default 1)"
    )
    parser.add_argument("-n", "--connections", type=int, default=8, help="connections (8)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=8, help="files at once in scenarios 5 and 6 (8)"
    )
    parser.add_argument(
        "--files", type=int, help="files of 64 KiB in scenario 5 (default 1,000; quick 100)"
    )
    parser.add_argument(
        "--urls", type=int, help="URLs in scenario 6 (default 100,000; quick 2,000)"
    )
    parser.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help=f"comma-separated tools among {','.join(ALL_TOOLS)} (default: all installed)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help="comma-separated scenarios: 1 unthrottled, 2 throttled, 3 straggler, 4 resume, "
        "5 many files, 6 huge list (memory), 7 per-request stragglers; default: all",
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
    if args.files is None:
        args.files = 100 if args.quick else 1000
    if args.urls is None:
        args.urls = 2000 if args.quick else 100_000
    if min(args.runs, args.connections, args.jobs, args.files, args.urls) < 1:
        parser.error("--runs, --connections, --jobs, --files and --urls must be positive")
    if args.urls > 1_000_000:
        parser.error("--urls: at most 1,000,000")
    if args.size_gib is not None and args.size_gib <= 0:
        parser.error("--size-gib must be positive")
    return args


def tiny_output_base(count: int) -> Optional[Path]:
    """A tmpfs directory with room for ``count`` tiny outputs (about 5 KiB each), or None."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK | os.X_OK):
        return None
    try:
        free = shutil.disk_usage(shm).free
        inodes = os.statvfs(shm).f_favail
    except OSError:
        return None
    if free < count * 8 * KiB + 256 * MiB or inodes < 2 * count:
        return None
    return shm


def many_scenario(
    args: argparse.Namespace, fileset: FileSet, endpoint: NginxEndpoint, workdir: Path
) -> ManyScenario:
    """Scenario 5 and its list file."""
    count = len(fileset.files)
    title = (
        f"5. Many files: {count:,} x {MANY_FILE_SIZE // KiB} KiB, {args.jobs} at a time, "
        "into an empty directory"
    )
    scenario = ManyScenario(
        "5",
        title,
        fileset,
        endpoint,
        args.connections,
        args.jobs,
        workdir / "lists" / "many.txt",
    )
    write_list(scenario.listfile, scenario.urls)
    return scenario


def memory_scenario(
    args: argparse.Namespace,
    workdir: Path,
    stack: contextlib.ExitStack,
    endpoints: list[Endpoint],
) -> MemoryScenario:
    """Scenario 6: its own nginx serving one tiny file under every name, and the list."""
    root = workdir / "tiny"
    root.mkdir()
    body = os.urandom(TINY_SIZE)
    (root / "tiny.bin").write_bytes(body)
    endpoint = NginxEndpoint(
        root,
        extra_location="            rewrite ^ /tiny.bin break;",
        note=f", every path served from one {TINY_SIZE}-byte file",
    )
    endpoints.append(endpoint)
    shm = tiny_output_base(args.urls)
    outbase = workdir / "tiny-out"
    if shm is not None:
        outbase = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="accel-bench-", dir=shm))
        )
    title = (
        f"6. Huge list: {args.urls:,} URLs of distinct {TINY_SIZE}-byte files, "
        f"{args.jobs} at a time (memory)"
    )
    listfile = workdir / "lists" / "huge.txt"
    write_list(listfile, [endpoint.url(f"u/{i:06d}.bin") for i in range(args.urls)])
    return MemoryScenario(
        "6",
        title,
        args.urls,
        endpoint,
        args.jobs,
        listfile,
        outbase,
        body,
        list_bytes=listfile.stat().st_size,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background with SIGINT ignored: the tools would inherit that and
        # the resume scenario could not interrupt them.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.quick:
        sizes = {"1": 64 * MiB, "2": 16 * MiB, "3": 8 * MiB, "7": 8 * MiB}
    else:
        sizes = {"1": GiB, "2": 128 * MiB, "3": 32 * MiB, "7": 32 * MiB}
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
    if any(tool.startswith("accel") for tool in tools):
        # Byte-compiled first, as an installed package is: with PYTHONDONTWRITEBYTECODE set,
        # every run would otherwise compile accel's modules again.
        import compileall

        compileall.compile_dir(str(REPO_ROOT / "accel"), quiet=1)
    have_nginx, why_nginx = nginx_status()
    have_fault, why_fault = fault_server_status()
    if not have_nginx:
        notes.append(f"nginx unavailable ({why_nginx}); the Python FaultServer serves instead")
    if not have_fault:
        notes.append(f"FaultServer unavailable: {why_fault}")

    needed = {k: sizes[k] for k in args.scenarios if k in ("1", "2", "3", "7")}
    if "4" in args.scenarios:
        needed["2"] = sizes["2"]
    base = args.tmpdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    want = sum(needed.values()) + max(needed.values(), default=0) + 256 * MiB
    if "5" in args.scenarios:
        want += 2 * args.files * (MANY_FILE_SIZE + 4 * KiB)
    if "6" in args.scenarios and tiny_output_base(args.urls) is None:
        want += args.urls * 8 * KiB
    if free < want:
        log(f"not enough space in {base}: {free / GiB:.1f} GiB free, {want / GiB:.1f} needed")
        return 2

    started = datetime.datetime.now().astimezone()
    endpoints: list[Endpoint] = []
    scenarios: list[AnyScenario] = []
    plan: list[tuple[AnyScenario, list[str], int]] = []  # scenario, its tools, runs
    interrupted = False
    with contextlib.ExitStack() as stack:
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="accel-bench-", dir=base))
        )
        datadir = workdir / "data"
        datadir.mkdir()
        (workdir / "lists").mkdir()
        try:
            files: dict[str, DataFile] = {}
            names = {
                "1": "unthrottled.bin",
                "2": "throttled.bin",
                "3": "straggler.bin",
                "7": "per-request.bin",
            }
            for key, size in needed.items():
                log(f"writing {size / MiB:.0f} MiB of random data to {names[key]}")
                files[key] = make_file(datadir / names[key], size)

            fileset: Optional[FileSet] = None
            if "5" in args.scenarios and have_nginx:
                log(f"writing {args.files} files of {MANY_FILE_SIZE // KiB} KiB")
                fileset = make_fileset(datadir, "many", args.files, MANY_FILE_SIZE)

            plain: Optional[Endpoint] = None
            throttled: Optional[Endpoint] = None
            if have_nginx:
                plain = NginxEndpoint(datadir, wire_log=workdir / "nginx-wire.log")
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
                elif key == "7" and have_fault:
                    per_request = FaultEndpoint(
                        [files["7"]],
                        rate=PER_REQUEST_RATE,
                        slow_request_probability=SLOW_REQUEST_PROBABILITY,
                        slow_request_factor=SLOW_REQUEST_FACTOR,
                    )
                    endpoints.append(per_request)
                    title = (
                        f"7. Per-request stragglers: {sizes['7'] / MiB:.0f} MiB at "
                        f"{PER_REQUEST_RATE / 1e6:g} MB/s per connection, one request in "
                        f"{round(1 / SLOW_REQUEST_PROBABILITY)} served {SLOW_REQUEST_FACTOR}x "
                        "slower "
                        f"(seeds {', '.join(map(str, SLOW_REQUEST_SEEDS))}), {n} connections"
                    )
                    scenarios.append(
                        Scenario(
                            key,
                            title,
                            files["7"],
                            per_request,
                            n,
                            rate=PER_REQUEST_RATE,
                            seeds=SLOW_REQUEST_SEEDS,
                        )
                    )
                elif key == "4" and throttled is not None:
                    title = (
                        f"4. Resume waste: {sizes['2'] / MiB:.0f} MiB throttled to "
                        f"{RATE // MiB} MiB/s per connection, SIGINT at ~50 %, then run again"
                    )
                    scenarios.append(
                        Scenario(key, title, files["2"], throttled, n, rate=RATE, resume=True)
                    )
                elif key == "5" and isinstance(plain, NginxEndpoint) and fileset is not None:
                    scenarios.append(many_scenario(args, fileset, plain, workdir))
                elif key == "6" and have_nginx:
                    scenarios.append(memory_scenario(args, workdir, stack, endpoints))
                elif key in ("5", "6"):
                    notes.append(f"scenario {key} skipped: it needs nginx ({why_nginx})")
                else:
                    notes.append(f"scenario {key} skipped: no server for it")

            for scenario in scenarios:
                if isinstance(scenario, ManyScenario):
                    chosen = []
                    for tool in tools:
                        ok, why = list_tool_available(tool)
                        if ok:
                            chosen.append(tool)
                        else:
                            notes.append(f"{tool} not run in scenario {scenario.key}: {why}")
                    plan.append((scenario, chosen, args.runs))
                elif isinstance(scenario, MemoryScenario):
                    if "accel" in tools:
                        plan.append((scenario, ["accel"], 1))
                    else:
                        notes.append(f"scenario {scenario.key} skipped: it measures accel only")
                else:
                    plan.append((scenario, tools, args.runs))
            for scenario, chosen, runs in plan:
                log(f"--- {scenario.title}")
                run_scenario(scenario, chosen, runs, workdir)
        except KeyboardInterrupt:
            log("interrupted; reporting what has been measured")
            notes.append("the benchmark was interrupted")
            interrupted = True
        finally:
            for endpoint in endpoints:
                with contextlib.suppress(Exception):
                    endpoint.stop()

    lines = render(args, tools, [entry[0] for entry in plan], notes, started)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
        log(f"report written to {args.out}")
    return 130 if interrupted else 0


def many_text(scenario: ManyScenario) -> list[str]:
    """Description and tables of scenario 5."""
    tools = scenario.results.keys()
    commands = {
        "accel": f"accel -i LIST -j {scenario.jobs} -n {scenario.conns} -d DIR -q",
        "curl": f"curl --no-progress-meter -f -Z --parallel-max {scenario.jobs} "
        "--remote-name-all --output-dir DIR -K CONFIG (one url line per file)",
        "aria2c": f"aria2c --no-conf -q -i LIST -j {scenario.jobs} -d DIR "
        "--allow-overwrite=true --auto-file-renaming=false --file-allocation=none",
    }
    lines = [
        "Commands: " + "; ".join(f"`{commands[t]}`" for t in tools if t in commands) + ".",
        "Every run starts in an empty directory; afterwards all files are hashed and any "
        "other entry left in the directory fails the run. Issue 11 targets: wall <= 1.5x "
        "curl's, CPU <= 1.0x aria2c's.",
        "",
        *many_table(scenario),
    ]
    if "accel" in scenario.results:
        lines += [
            "",
            "Re-run: after each successful accel run, the same command again on the "
            "finished directory (files checked again). Body bytes are nginx's "
            "$body_bytes_sent, responses with headers its $bytes_sent, requests its "
            "$request_length; per file of the list.",
        ]
    return lines


def memory_text(scenario: MemoryScenario) -> list[str]:
    """Description and table of scenario 6."""
    where = "tmpfs (/dev/shm)" if str(scenario.outbase).startswith("/dev/shm") else "--tmpdir"
    return [
        f"Command: `accel -i LIST -j {scenario.jobs} -q -d DIR` with {scenario.count:,} "
        f"URLs /u/000000.bin, /u/000001.bin, ... (list file "
        f"{scenario.list_bytes / MiB:.1f} MiB); outputs in {where}. "
        "Peak RSS = highest VmHWM seen (polled every 10 ms); RSS at x % = VmRSS when "
        "that share of the outputs existed (sampled every second). One run; a failed or "
        f"timed-out run still shows its figures. Target: peak RSS <= {RSS_TARGET_MIB} MiB.",
        "",
        *memory_table(scenario),
    ]


def render(
    args: argparse.Namespace,
    tools: Sequence[str],
    scenarios: Sequence[AnyScenario],
    notes: Sequence[str],
    started: datetime.datetime,
) -> list[str]:
    """The Markdown report."""
    lines = [
        "# accel benchmark",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}; {args.runs} run(s) per tool and scenario (the huge "
        "list: one), tools interleaved (order rotates every round); cells are median "
        "(min..max) over the successful runs; every output was checked by size and SHA-256 "
        "(the huge list: sizes, and contents of every 1,000th file); all traffic on "
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
    for any_scenario in scenarios:
        lines += ["", f"## {any_scenario.title}", ""]
        lines.append(f"Server: {any_scenario.endpoint.description}.")
        if isinstance(any_scenario, ManyScenario):
            lines += many_text(any_scenario)
            continue
        if isinstance(any_scenario, MemoryScenario):
            lines += memory_text(any_scenario)
            continue
        scenario = any_scenario
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
        if scenario.seeds:
            lines.append(
                f"Each tool ran {args.runs} time(s) with each seed ({len(scenario.seeds)} seeds); "
                "with one seed every tool meets slow requests at the same positions of its own "
                "request order (the ideal is the straggler-free one). Issue 14 targets: "
                "accel <= 0.7x axel and <= 1.4x the ideal. Per seed below the overall table."
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
        if scenario.seeds:
            lines += ["", *seed_table(scenario)]
    lines += ["", "Ratios are accel's median divided by the peer's (below 1 = accel better)."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return lines


if __name__ == "__main__":
    sys.exit(main())
