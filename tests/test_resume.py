"""Interrupt and resume, end to end: a real SIGINT to the CLI (and cancel() in the API), a
valid sidecar left behind, and a second run that fetches only the missing bytes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import accel
from tests.conftest import REPO, accel_cmd, run_accel, sha256
from tests.server import FaultServer, RequestLog, make_data

KiB = 1024
MiB = 1024 * KiB
#: The largest read accel makes: a connection cut short may have been sent this much extra.
READ_BUFFER = 1 * MiB


# -- helpers ---------------------------------------------------------------------------------


def start_accel(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        accel_cmd(*args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sidecar_written(side: Path) -> int:
    """Sum of "written" in the sidecar (0 while it does not exist yet)."""
    try:
        doc = json.loads(side.read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(s["written"] for s in doc["segments"])


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def interrupt_cli(proc: subprocess.Popen, side: Path, at_least: int) -> Tuple[int, float, str]:
    """SIGINT ``proc`` once its sidecar records ``at_least`` bytes; return (code, secs, err)."""
    try:
        wait_until(
            lambda: sidecar_written(side) >= at_least or proc.poll() is not None,
            30,
            f"{at_least} bytes in {side}",
        )
        assert proc.poll() is None, f"finished before the interrupt: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=15)
        return proc.returncode, time.monotonic() - t0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def load_sidecar(side: Path, part: Path, url: str, data: bytes) -> List[Dict[str, int]]:
    """Check the sidecar is a valid record whose written prefixes hold the source's bytes."""
    doc = json.loads(side.read_text())
    assert doc["format"] == "accel-sidecar" and doc["version"] == 1
    assert doc["url"] == url
    assert doc["size"] == len(data)
    segs = sorted(doc["segments"], key=lambda s: s["start"])
    expected = 0
    for s in segs:
        assert s["start"] == expected and s["end"] >= s["start"]
        assert 0 <= s["synced"] <= s["written"] <= s["end"] - s["start"] + 1
        expected = s["end"] + 1
    assert expected == len(data)
    assert part.stat().st_size == len(data)
    content = part.read_bytes()
    for s in segs:
        a, b = s["start"], s["start"] + s["written"]
        assert content[a:b] == data[a:b], f"bytes {a}-{b} on disk differ from the source"
    return segs


def holes_of(segs: List[Dict[str, int]]) -> List[Tuple[int, int]]:
    """The unwritten inclusive ranges of the sidecar's segments, coalesced."""
    holes: List[Tuple[int, int]] = []
    for s in segs:
        lo = s["start"] + s["written"]
        if lo > s["end"]:
            continue
        if holes and holes[-1][1] + 1 == lo:
            holes[-1] = (holes[-1][0], s["end"])
        else:
            holes.append((lo, s["end"]))
    return holes


def requested_range(r: RequestLog, size: int) -> Tuple[int, int]:
    header = r.range_header
    assert header and header.startswith("bytes="), f"unranged request in the resume: {header}"
    first, _, last = header[len("bytes=") :].partition("-")
    return int(first), min(int(last) if last else size - 1, size - 1)


def assert_only_holes_fetched(
    srv: FaultServer, path: str, holes: List[Tuple[int, int]], size: int
) -> None:
    """Run 2 asked only for bytes in ``holes`` and was sent about only the missing bytes."""
    gets = [r for r in srv.requests if r.method == "GET" and r.path == path]
    assert gets, "the resume made no request"
    for r in gets:
        assert r.status == 206, (r.status, r.range_header)
        start, end = requested_range(r, size)
        assert any(lo <= start and end <= hi for lo, hi in holes), (
            f"run 2 requested {start}-{end}, outside the holes {holes}"
        )
    missing = sum(hi - lo + 1 for lo, hi in holes)
    # Summed over run 2's own responses: srv.bytes_sent_for() may also count a last chunk
    # that a server thread of run 1 pushed into its dead socket after reset_counters().
    sent = sum(r.body_bytes_sent for r in gets)
    assert sent >= missing
    assert sent <= missing + READ_BUFFER * srv.connections, (sent, missing, srv.connections)


# -- the acceptance scenario -----------------------------------------------------------------


def test_sigint_then_resume_fetches_only_the_missing_bytes(server: FaultServer, tmp_path: Path):
    size = 4 * MiB
    data = make_data(size, seed=21)
    server.add_file("/big.bin", data)
    server.faults.rate = 512 * KiB  # per connection: about 2 s for the whole file with -n 4
    url = server.url("/big.bin")
    out, part = tmp_path / "out.bin", tmp_path / "out.bin.part"
    side = tmp_path / "out.bin.part.json"

    proc = start_accel(url, "-n", "4", "-o", "out.bin", cwd=tmp_path)
    code, secs, err = interrupt_cli(proc, side, at_least=int(size * 0.35))
    assert code == 130, err
    assert secs < 2.0, f"took {secs:.2f}s to exit after SIGINT"
    assert not out.exists()
    assert part.exists() and side.exists()
    segs = load_sidecar(side, part, url, data)
    written = sum(s["written"] for s in segs)
    assert 0 < written < size
    holes = holes_of(segs)

    server.reset_counters()
    server.faults.rate = None
    proc2 = run_accel(url, "-n", "4", "-o", "out.bin", cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert sha256(out) == sha256(data)
    assert not part.exists() and not side.exists()
    assert_only_holes_fetched(server, "/big.bin", holes, size)
    run2 = sum(r.body_bytes_sent for r in server.requests if r.path == "/big.bin")
    assert size - written <= run2 <= (size - written) + READ_BUFFER * server.connections
    assert server.errors == []


@pytest.mark.parametrize(("first_n", "second_n"), [("2", "6"), ("6", "1")])
def test_resume_with_other_connection_count(
    server: FaultServer, tmp_path: Path, first_n: str, second_n: str
):
    size = 3 * MiB + 777
    data = make_data(size, seed=22)
    server.add_file("/n.bin", data)
    server.faults.rate = 512 * KiB
    url = server.url("/n.bin")
    out, part = tmp_path / "n.bin", tmp_path / "n.bin.part"
    side = tmp_path / "n.bin.part.json"

    proc = start_accel(url, "-n", first_n, cwd=tmp_path)
    code, _, err = interrupt_cli(proc, side, at_least=size // 5)
    assert code == 130, err
    segs = load_sidecar(side, part, url, data)
    holes = holes_of(segs)
    assert holes

    server.reset_counters()
    server.faults.rate = 2 * MiB
    proc2 = run_accel(url, "-n", second_n, cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert sha256(out) == sha256(data)
    assert not part.exists() and not side.exists()
    assert_only_holes_fetched(server, "/n.bin", holes, size)


def test_sigterm_exits_143_and_resumes(server: FaultServer, tmp_path: Path):
    size = 2 * MiB
    data = make_data(size, seed=23)
    server.add_file("/t.bin", data)
    server.faults.rate = 256 * KiB
    url = server.url("/t.bin")
    side = tmp_path / "t.bin.part.json"
    proc = start_accel(url, "-n", "2", cwd=tmp_path)
    try:
        wait_until(lambda: sidecar_written(side) > 0 or proc.poll() is not None, 30, "progress")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    segs = load_sidecar(side, tmp_path / "t.bin.part", url, data)
    holes = holes_of(segs)
    server.reset_counters()
    server.faults.rate = None
    proc2 = run_accel(url, cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert sha256(tmp_path / "t.bin") == sha256(data)
    assert_only_holes_fetched(server, "/t.bin", holes, size)


# -- the same through the API ----------------------------------------------------------------


def test_cancel_then_resume_with_a_new_downloader(server: FaultServer, tmp_path: Path):
    size = 2 * MiB + 99
    data = make_data(size, seed=24)
    server.add_file("/api.bin", data)
    server.faults.rate = 512 * KiB
    url = server.url("/api.bin")
    out, part = tmp_path / "api.bin", tmp_path / "api.bin.part"
    side = tmp_path / "api.bin.part.json"

    first = accel.Downloader(url, out, connections=4, min_split=64 * KiB)
    error: List[BaseException] = []
    done_at: List[float] = []

    def run() -> None:
        try:
            first.run()
        except BaseException as exc:
            error.append(exc)
        done_at.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def progressed() -> bool:
        snap = first.progress()
        return (snap is not None and snap.written >= size * 0.4) or not thread.is_alive()

    wait_until(progressed, 30, "40% written")
    assert thread.is_alive(), "finished before the cancel"
    t0 = time.monotonic()
    first.cancel()
    thread.join(10)
    assert not thread.is_alive()
    assert done_at[0] - t0 < 2.0
    assert len(error) == 1 and isinstance(error[0], accel.CancelledError), error
    assert not out.exists()
    segs = load_sidecar(side, part, url, data)
    written = sum(s["written"] for s in segs)
    assert size * 0.4 <= written < size
    holes = holes_of(segs)

    server.reset_counters()
    server.faults.rate = None
    events: List[accel.Event] = []
    second = accel.Downloader(url, out, connections=3, min_split=64 * KiB, on_event=events.append)
    assert second.run() == out
    assert sha256(out) == sha256(data)
    assert not part.exists() and not side.exists()
    started = [e for e in events if isinstance(e, accel.Started)]
    assert len(started) == 1 and started[0].resumed == written
    assert not any(isinstance(e, accel.Restarted) for e in events)
    assert isinstance(events[-1], accel.Completed)
    assert_only_holes_fetched(server, "/api.bin", holes, size)


def test_cancel_twice_then_resume(server: FaultServer, tmp_path: Path):
    """Two interrupted runs in a row still add up to the exact file."""
    size = 2 * MiB
    data = make_data(size, seed=25)
    server.add_file("/twice.bin", data)
    server.faults.rate = 512 * KiB
    url = server.url("/twice.bin")
    out = tmp_path / "twice.bin"
    side = tmp_path / "twice.bin.part.json"
    previous = 0
    for _ in range(2):
        dl = accel.Downloader(url, out, connections=2, min_split=64 * KiB)
        failure: List[Optional[BaseException]] = [None]

        def run(dl: accel.Downloader = dl, failure: List[Optional[BaseException]] = failure):
            try:
                dl.run()
            except BaseException as exc:
                failure[0] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        target = previous + 256 * KiB
        wait_until(
            lambda dl=dl, target=target, thread=thread: (
                (dl.progress() is not None and dl.progress().written >= target)
                or not thread.is_alive()
            ),
            30,
            "more progress",
        )
        dl.cancel()
        thread.join(10)
        assert isinstance(failure[0], accel.CancelledError), failure
        written = sidecar_written(side)
        assert written >= target > previous
        previous = written
    server.faults.rate = None
    assert accel.download(url, out, connections=4, min_split=64 * KiB) == out
    assert sha256(out) == sha256(data)
    assert not side.exists()
