"""Interrupt and resume, end to end: a real SIGINT to the CLI (and cancel() in the API), a
valid sidecar left behind, and a second run that fetches only the missing bytes.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import accel
from tests.helpers import (
    KiB,
    MiB,
    gets,
    interrupt,
    load_sidecar,
    popen_accel,
    range_bounds,
    run_accel,
    sha256,
    sidecar_written,
    wait_until,
)
from tests.servers import FaultServer, RequestLog, make_data

#: The largest read accel makes: a connection cut short may have been sent this much extra.
READ_BUFFER = 1 * MiB


# -- helpers ---------------------------------------------------------------------------------


def interrupt_cli(proc: subprocess.Popen, side: Path, at_least: int) -> Tuple[int, float, str]:
    """SIGINT ``proc`` once its sidecar records ``at_least`` bytes; return (code, secs, err)."""
    return interrupt(
        proc,
        lambda: sidecar_written(side) >= at_least,
        30,
        f"{at_least} bytes in {side}",
        interval=0.02,
    )


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
    first, last = range_bounds(header)
    return first, min(last if last is not None else size - 1, size - 1)


def assert_only_holes_fetched(
    srv: FaultServer, path: str, holes: List[Tuple[int, int]], size: int
) -> None:
    """Run 2 asked only for bytes in ``holes`` and was sent about only the missing bytes."""
    run2 = gets(srv, path)
    assert run2, "the resume made no request"
    for r in run2:
        assert r.status == 206, (r.status, r.range_header)
        start, end = requested_range(r, size)
        assert any(lo <= start and end <= hi for lo, hi in holes), (
            f"run 2 requested {start}-{end}, outside the holes {holes}"
        )
    missing = sum(hi - lo + 1 for lo, hi in holes)
    # Summed over run 2's own responses: srv.bytes_sent_for() may also count a last chunk
    # that a server thread of run 1 pushed into its dead socket after reset_counters().
    sent = sum(r.body_bytes_sent for r in run2)
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

    proc = popen_accel(url, "-n", "4", "-o", "out.bin", cwd=tmp_path)
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

    proc = popen_accel(url, "-n", first_n, cwd=tmp_path)
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
    proc = popen_accel(url, "-n", "2", cwd=tmp_path)
    _, _, err = interrupt(
        proc, lambda: sidecar_written(side) > 0, 30, "progress", signal.SIGTERM, interval=0.02
    )
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

    wait_until(progressed, 30, "40% written", interval=0.02)
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
            interval=0.02,
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
