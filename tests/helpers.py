"""Plain helpers shared by the test modules (fixtures live in conftest.py): running the CLI
in a fresh interpreter, polling, fast options, reading the sidecar, the server's request log,
file listings and hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import pytest

import accel
from accel import Options, RetryPolicy
from tests.servers import FaultServer, RequestLog

REPO = Path(__file__).resolve().parents[1]

KiB = 1024
MiB = 1024 * KiB
#: A small ``min_split``: several segments even for files of a few hundred KiB.
SPLIT = 64 * KiB


# -- files -----------------------------------------------------------------------------------


def sha256(path_or_bytes) -> str:
    """sha256 hex of a file path or bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return hashlib.sha256(path_or_bytes).hexdigest()
    return hashlib.sha256(Path(path_or_bytes).read_bytes()).hexdigest()


def listing(directory: Path) -> List[str]:
    """The sorted names of the entries directly in ``directory``."""
    return sorted(p.name for p in directory.iterdir())


# -- the CLI in a fresh interpreter ----------------------------------------------------------


def accel_cmd(*args: str) -> List[str]:
    """argv that runs the accel CLI in a fresh interpreter."""
    return [sys.executable, "-m", "accel", *args]


def accel_env() -> Dict[str, str]:
    """The environment with PYTHONPATH set so that a fresh interpreter imports this accel."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def run_accel(
    *args: str, cwd: Optional[Path] = None, timeout: float = 60, **kw
) -> subprocess.CompletedProcess:
    """Run the CLI as a subprocess and capture its output."""
    return subprocess.run(
        accel_cmd(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=accel_env(),
        **kw,
    )


def run_script(
    *args: str,
    cwd: Optional[Path] = None,
    env: Optional[dict] = None,
    input: Optional[str] = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """The installed console script ``accel``, output captured on pipes."""
    return subprocess.run(
        ["accel", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen_accel(*args: str, cwd: Path, **kw: Any) -> subprocess.Popen:
    """Start the CLI as a subprocess, stdout and stderr on text pipes (``kw`` overrides)."""
    popen_kw: Dict[str, Any] = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    popen_kw.update(kw)
    return subprocess.Popen(accel_cmd(*args), cwd=cwd, env=accel_env(), **popen_kw)


def interrupt(
    proc: subprocess.Popen,
    cond: Callable[[], Any],
    timeout: float,
    what: str,
    sig: int = signal.SIGINT,
    *,
    settle: float = 0.0,
    interval: float = 0.01,
) -> Tuple[int, float, str]:
    """Once ``cond()`` holds (or ``proc`` ended), and ``settle`` seconds more, check ``proc``
    still runs, send it ``sig`` and wait (15 s at most) for it to exit; return (exit code,
    seconds from the signal to the exit, stderr). ``proc`` never outlives this call."""
    try:
        wait_until(lambda: cond() or proc.poll() is not None, timeout, what, interval=interval)
        if settle:
            time.sleep(settle)
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=15)
        return proc.returncode, time.monotonic() - t0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def one_line(stderr: str) -> str:
    """The only non-blank line of ``stderr`` (asserted), which holds no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def one_line_message(exc: BaseException) -> str:
    """``str(exc)``, asserted to be one non-blank line."""
    text = str(exc)
    assert text.strip() and "\n" not in text, repr(text)
    return text


# -- polling ---------------------------------------------------------------------------------


def wait_until(
    cond: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.01
) -> None:
    """Poll ``cond`` every ``interval`` seconds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# -- the library -----------------------------------------------------------------------------


def slots_in_use(slots: accel.HostSlots, host: str) -> int:
    """How many slots of ``slots`` are taken for ``host`` (what a test may watch; the
    library's HostSlots has no such query: nothing but tests needed one)."""
    with slots._lock:
        return slots._used[host]


def fast_retry(attempts: int, *, backoff_max: float = 0.05, jitter: float = 0.0) -> RetryPolicy:
    """A retry policy with 10 ms backoff, for tests that must not wait."""
    return RetryPolicy(attempts=attempts, backoff=0.01, backoff_max=backoff_max, jitter=jitter)


def fast_options(
    default_retry: RetryPolicy, headers: Optional[Mapping[str, str]] = None, **kw: Any
) -> Options:
    """Options for fast tests: 4 connections, SPLIT segments, ``default_retry``, a 10 s
    timeout, ``headers``; ``kw`` overrides any of them."""
    kw.setdefault("connections", 4)
    kw.setdefault("min_split", SPLIT)
    kw.setdefault("retry", default_retry)
    kw.setdefault("timeout", 10.0)
    return Options(headers=tuple((headers or {}).items()), **kw)


def run_in_thread(fn: Callable[[], Any]) -> Tuple[threading.Thread, List[BaseException]]:
    """Start ``fn`` on a new thread; return the thread and the list that receives whatever
    ``fn`` raises."""
    errors: List[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def written(d: accel.Downloader) -> int:
    """The bytes ``d`` has written so far (0 before its first progress snapshot)."""
    snap = d.progress()
    return snap.written if snap is not None else 0


# -- the sidecar -----------------------------------------------------------------------------


def sidecar_written(side: Path) -> int:
    """Sum of "written" in a sidecar (0 while it does not exist or is being replaced)."""
    try:
        doc = json.loads(side.read_bytes())
    except (OSError, ValueError):
        return 0
    return sum(s["written"] for s in doc["segments"])


def load_sidecar(
    side: Path, part: Path, url: str, data: bytes, *, synced: bool = True
) -> List[Dict[str, int]]:
    """Check the sidecar is a valid record for ``url`` whose segments tile ``data`` and whose
    written prefixes hold the source's bytes (with ``synced``, also that 0 <= synced <=
    written); return its segments sorted by start."""
    doc = json.loads(side.read_text())
    assert doc["format"] == "accel-sidecar" and doc["version"] == 1
    assert doc["url"] == url
    assert doc["size"] == len(data)
    segs = sorted(doc["segments"], key=lambda s: s["start"])
    expected = 0
    for s in segs:
        assert s["start"] == expected and s["end"] >= s["start"]
        assert 0 <= s["written"] <= s["end"] - s["start"] + 1
        if synced:
            assert 0 <= s["synced"] <= s["written"]
        expected = s["end"] + 1
    assert expected == len(data)
    assert part.stat().st_size == len(data)
    content = part.read_bytes()
    for s in segs:
        a, b = s["start"], s["start"] + s["written"]
        assert content[a:b] == data[a:b], f"bytes {a}-{b} on disk differ from the source"
    return segs


# -- what the server saw ---------------------------------------------------------------------


def gets(srv: FaultServer, path: Optional[str] = None, *, settle: float = 0.0) -> List[RequestLog]:
    """The GET requests (for ``path``). With ``settle``, first wait up to that many seconds
    for the server to finish handling them (the client may finish reading before the
    handler's bookkeeping)."""
    deadline = time.monotonic() + settle
    while settle and any(r.ended is None for r in srv.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    return [r for r in srv.requests if r.method == "GET" and (path is None or r.path == path)]


def range_bounds(value: str) -> Tuple[int, Optional[int]]:
    """``bytes=a-b`` -> (a, b); ``bytes=a-`` -> (a, None)."""
    first, _, last = value[len("bytes=") :].partition("-")
    return int(first), (int(last) if last else None)


@contextlib.contextmanager
def tmpfs(path: Path, opts: str) -> Iterator[Path]:
    """Mount a small tmpfs at ``path`` (root only); skip when that is impossible here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr!r}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
