"""Many files at curl's pace: no body for files already complete, the one-connection path
for files that one response brings, and lists re-run at the cost of header-only requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List

import accel
from tests.helpers import KiB, MiB, fast_options, fast_retry, listing, run_accel, sha256
from tests.servers import FaultHandler, FaultServer, RequestLog, make_data

FAST = fast_retry(2)


def body_bytes(server: FaultServer) -> int:
    """Body bytes the server sent, whatever the method."""
    return sum(r.body_bytes_sent for r in server.requests)


def test_rerun_of_a_finished_file_sends_no_body(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, 90)
    server.add_file("/done.bin", data)
    first = run_accel(server.url("/done.bin"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    server.reset_counters()
    n = len(server.requests)
    again = run_accel(server.url("/done.bin"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr
    asked = server.requests[n:]
    assert [r.method for r in asked] == ["HEAD"]
    assert body_bytes(server) - sum(r.body_bytes_sent for r in server.requests[:n]) == 0
    assert server.bytes_sent <= 1 * KiB  # headers only (the counter covers bodies)


def test_head_refused_falls_back_to_one_byte(server: FaultServer, tmp_path: Path) -> None:
    """A server (or a signed URL) that refuses HEAD is asked for one byte instead."""
    data = make_data(2 * MiB, 91)
    server.add_file("/nohead.bin", data)
    assert run_accel(server.url("/nohead.bin"), cwd=tmp_path).returncode == 0

    def refuse_head(handler: FaultHandler, log: RequestLog) -> bool:
        if handler.command == "HEAD":
            handler.send_simple(405, b"")
            return True
        return False

    server.faults.on_request = refuse_head
    n = len(server.requests)
    again = run_accel(server.url("/nohead.bin"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr
    asked = server.requests[n:]
    assert [r.method for r in asked] == ["HEAD", "GET"]
    assert asked[1].range_header == "bytes=0-0"
    assert sum(r.body_bytes_sent for r in asked) <= 1


def test_existing_other_file_is_in_the_way_without_a_body(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("/other.bin", make_data(MiB, 92))
    (tmp_path / "other.bin").write_bytes(b"not this one")
    r = run_accel(server.url("/other.bin"), cwd=tmp_path)
    assert r.returncode == 6, r.stderr
    assert "already exists" in r.stderr
    assert body_bytes(server) == 0
    assert (tmp_path / "other.bin").read_bytes() == b"not this one"


def test_list_rerun_costs_one_header_request_per_file(server: FaultServer, tmp_path: Path) -> None:
    files = {f"/m{i}.bin": make_data(64 * KiB + i, 100 + i) for i in range(30)}
    for path, data in files.items():
        server.add_file(path, data)
    listfile = tmp_path / "list.txt"
    listfile.write_text("".join(server.url(p) + "\n" for p in files))
    out = tmp_path / "out"
    assert run_accel("-i", str(listfile), "-j", "4", "-d", str(out), cwd=tmp_path).returncode == 0
    for path, data in files.items():
        assert sha256(out / path.lstrip("/")) == sha256(data)
    n = len(server.requests)
    again = run_accel("-i", str(listfile), "-j", "4", "-d", str(out), "-q", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    asked = server.requests[n:]
    assert len(asked) == len(files) and {r.method for r in asked} == {"HEAD"}
    assert sum(r.body_bytes_sent for r in asked) == 0
    assert len({r.connection_id for r in asked}) <= 4  # kept-alive connections, reused


def test_one_response_file_runs_without_a_worker_pool(server: FaultServer, tmp_path: Path) -> None:
    """A file the first response brings whole is fetched on the download's own thread, and
    still leaves a sidecar once it has run for a commit interval."""
    data = make_data(512 * KiB, 93)
    server.add_file("/slow.bin", data)
    server.faults.rate = 128 * KiB  # about 4 s
    out = tmp_path / "slow.bin"
    side = tmp_path / "slow.bin.part.json"
    d = accel.Downloader(
        server.url("/slow.bin"), out, options=fast_options(FAST, connections=8, min_split=MiB)
    ).start()
    workers: List[int] = []
    seen_sidecar = False
    while not d.done:
        workers.append(sum(t.name.startswith("accel-worker") for t in threading.enumerate()))
        seen_sidecar = seen_sidecar or side.exists()
        if seen_sidecar and len(workers) > 20:
            break
        time.sleep(0.05)
    d.cancel()
    try:
        d.result(10)
    except accel.CancelledError:
        pass
    assert max(workers) == 0, "a worker pool was started for a one-response file"
    assert seen_sidecar, "no sidecar while a one-response transfer ran for seconds"
    assert len(server.requests) == 1
    server.faults.rate = None
    n = len(server.requests)
    path = accel.Downloader(server.url("/slow.bin"), out, options=fast_options(FAST)).run()
    assert sha256(path) == sha256(data)
    again = server.requests[n:]
    # Resumed, not fetched again (counted per request: the cancelled response's handler may
    # still be writing into its closed socket, so the server's total counter is not used).
    assert again and again[0].range_header is not None
    assert not again[0].range_header.startswith("bytes=0-")
    assert sum(r.body_bytes_sent for r in again) < len(data)
    assert listing(tmp_path) == ["slow.bin"]


def test_small_file_leaves_no_sidecar_behind(server: FaultServer, tmp_path: Path) -> None:
    """A transfer shorter than a commit interval never writes a sidecar (nor fsyncs one)."""
    data = make_data(200 * KiB, 94)
    server.add_file("/small.bin", data)
    seen: List[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(p.name for p in tmp_path.glob("*.json"))
            time.sleep(0.001)

    t = threading.Thread(target=watch)
    t.start()
    try:
        path = accel.Downloader(server.url("/small.bin"), directory=tmp_path).run()
    finally:
        stop.set()
        t.join()
    assert sha256(path) == sha256(data)
    assert seen == []
