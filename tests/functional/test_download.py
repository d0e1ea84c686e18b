"""End-to-end tests of the core engine: CLI downloads, the Downloader API, output naming,
existing files, sparse preallocation, work stealing and hedging, against the real FaultServer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

import accel
from accel import Options, RetryPolicy
from accel._engine.scheduler import DEFAULT_READ_MARGIN
from tests.helpers import (
    SPLIT,
    KiB,
    MiB,
    fast_retry,
    gets,
    load_sidecar,
    range_bounds,
    run_accel,
    sha256,
    wait_until,
)
from tests.servers import FaultServer, make_data

FAST_RETRY = fast_retry(3, jitter=RetryPolicy().jitter)  # the default jitter


# -- helpers ---------------------------------------------------------------------------------


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """``bytes=a-b`` / ``bytes=a-`` -> inclusive (a, b); None for no/other Range."""
    if not header or not header.startswith("bytes="):
        return None
    start, last = range_bounds(header)
    end = last if last is not None else size - 1
    return start, min(end, size - 1)


def union_covers(intervals: List[Tuple[int, int]], size: int) -> bool:
    """True if half-open ``[a, b)`` intervals cover ``[0, size)``."""
    covered = 0
    for a, b in sorted(intervals):
        if a > covered:
            return False
        covered = max(covered, b)
    return covered >= size


def files_under(root: Path) -> Set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


class Background:
    """Run ``fn`` in a thread, keeping its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.finished_at: Optional[float] = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "download thread did not finish"


def assert_segments_tile(events: List[accel.Event], size: int) -> None:
    """The SegmentCompleted events cover ``[0, size)`` exactly once."""
    spans = sorted((e.start, e.end) for e in events if isinstance(e, accel.SegmentCompleted))
    expected = 0
    for start, end in spans:
        assert start == expected, f"segment {start}-{end} reported twice or out of place: {spans}"
        expected = end + 1
    assert expected == size, spans


# -- CLI -------------------------------------------------------------------------------------


def test_cli_full_download_is_byte_identical(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f.bin", data)
    proc = run_accel(server.url("/f.bin"), "-n", "8", "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "out.bin") == sha256(data)
    assert files_under(tmp_path) == {"out.bin"}  # no .part / .part.json left
    assert server.errors == []


def test_cli_dir_option(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/g.bin", data)
    target = tmp_path / "sub"
    target.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_accel(server.url("/g.bin"), "-d", str(target), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert sha256(target / "g.bin") == sha256(data)
    assert files_under(tmp_path) == {"sub/g.bin"}


def test_cli_default_name_is_percent_decoded(server: FaultServer, tmp_path: Path):
    body = make_data(50_000, seed=3)
    server.add_file("/dir/my file.bin", body)
    proc = run_accel(server.url("/dir/my%20file.bin"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {"my file.bin"}
    assert sha256(tmp_path / "my file.bin") == sha256(body)


def test_cli_default_name_falls_back_to_index_html(server: FaultServer, tmp_path: Path):
    body = make_data(20_000, seed=4)
    server.add_file("/dir/", body)
    proc = run_accel(server.url("/dir/"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {"index.html"}
    assert (tmp_path / "index.html").read_bytes() == body


def test_cli_quiet_prints_nothing(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f.bin", data)
    proc = run_accel(server.url("/f.bin"), "-q", "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout == ""
    assert sha256(tmp_path / "out.bin") == sha256(data)


def test_cli_on_a_pipe_prints_one_summary_line(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f.bin", data)
    proc = run_accel(server.url("/f.bin"), "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "out.bin" in lines[0]
    assert proc.stdout == ""


def test_cli_help_lists_exit_codes():
    proc = run_accel("--help")
    assert proc.returncode == 0
    assert "exit codes" in proc.stdout
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert any(line.split()[:1] == [code] for line in proc.stdout.splitlines()), code


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://127.0.0.1/file", "http://", "http://127.0.0.1:99999/x"]
)
def test_cli_bad_url_is_a_usage_error(url: str, tmp_path: Path):
    proc = run_accel(url, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("accel: error:")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("n", ["0", "65", "-1", "x"])
def test_cli_connections_out_of_range(server: FaultServer, n: str, tmp_path: Path):
    server.add_file("/f.bin", b"abc")
    proc = run_accel(server.url("/f.bin"), "-n", n, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("accel: error:")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert files_under(tmp_path) == set()
    assert gets(server, "/f.bin") == []


def test_python_m_accel_version():
    proc = run_accel("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"accel {accel.__version__}"


# -- names from the server -------------------------------------------------------------------


def test_name_from_content_disposition(server: FaultServer, tmp_path: Path):
    body = make_data(100_000, seed=5)
    server.add_file("/download", body, content_disposition='attachment; filename="report.pdf"')
    proc = run_accel(server.url("/download"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {"report.pdf"}
    assert sha256(tmp_path / "report.pdf") == sha256(body)


def test_output_option_wins_over_content_disposition(server: FaultServer, tmp_path: Path):
    body = make_data(10_000, seed=6)
    server.add_file("/download", body, content_disposition='attachment; filename="report.pdf"')
    proc = run_accel(server.url("/download"), "-o", "mine.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {"mine.bin"}


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../../evil"',
        'attachment; filename="/tmp/../../evil"',
        "attachment; filename*=UTF-8''..%2F..%2Fevil",
    ],
)
def test_unsafe_content_disposition_stays_inside_directory(
    server: FaultServer, tmp_path: Path, disposition: str
):
    body = make_data(30_000, seed=7)
    server.add_file("/download", body, content_disposition=disposition)
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    proc = run_accel(server.url("/download"), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {"a/b/c/evil"}
    assert (cwd / "evil").read_bytes() == body
    assert not (tmp_path.parent / "evil").exists()


def test_api_content_disposition_in_directory(server: FaultServer, tmp_path: Path):
    body = make_data(30_000, seed=8)
    server.add_file("/x", body, content_disposition='attachment; filename="../../evil"')
    path = accel.Downloader(server.url("/x"), directory=tmp_path, connections=2).run()
    assert path == tmp_path / "evil"
    assert files_under(tmp_path) == {"evil"}
    assert path.read_bytes() == body


# -- sizes and connection counts -------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1])
def test_tiny_files(server: FaultServer, tmp_path: Path, size: int):
    body = make_data(size, seed=9)
    server.add_file("/tiny", body)
    proc = run_accel(server.url("/tiny"), "-n", "8", "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.bin"
    assert out.read_bytes() == body
    assert files_under(tmp_path) == {"out.bin"}


@pytest.mark.parametrize("size", [0, 1])
def test_tiny_files_api(server: FaultServer, tmp_path: Path, size: int):
    body = make_data(size, seed=10)
    server.add_file("/tiny", body)
    out = tmp_path / "out.bin"
    assert accel.download(server.url("/tiny"), out, connections=8, min_split=SPLIT) == out
    assert out.read_bytes() == body
    assert files_under(tmp_path) == {"out.bin"}


def test_small_file_uses_one_connection(server: FaultServer, tmp_path: Path):
    body = make_data(10 * KiB, seed=11)
    server.add_file("/small", body)
    proc = run_accel(server.url("/small"), "-n", "8", "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.bin").read_bytes() == body
    assert server.connections == 1
    assert len(gets(server, "/small")) == 1
    assert server.bytes_sent == len(body)


def test_large_file_uses_parallel_connections(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/big", data)
    server.faults.rate = 2 * MiB  # per connection: long enough to see requests overlap
    out = tmp_path / "out.bin"
    dl = accel.Downloader(server.url("/big"), out, connections=8, min_split=SPLIT)
    job = Background(dl.run)
    peak = 0
    while job.thread.is_alive():
        in_flight = [r for r in gets(server, "/big") if r.status == 206 and not r.completed]
        peak = max(peak, len({r.connection_id for r in in_flight}))
        time.sleep(0.01)
    job.join(30)
    assert job.error is None, job.error
    assert sha256(out) == sha256(data)
    ranged = [r for r in gets(server, "/big") if r.status == 206 and r.range_header]
    assert len({r.connection_id for r in ranged}) >= 4
    assert peak >= 4, f"at most {peak} ranged responses were in flight at once"


# -- Downloader API --------------------------------------------------------------------------


def test_downloader_run_returns_path(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f", data)
    out = tmp_path / "f.out"
    result = accel.Downloader(server.url("/f"), out, connections=4).run()
    assert isinstance(result, Path)
    assert result == out
    assert sha256(out) == sha256(data)
    assert files_under(tmp_path) == {"f.out"}


def test_download_function(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f", data)
    out = tmp_path / "g.out"
    assert accel.download(server.url("/f"), str(out), connections=3) == out
    assert sha256(out) == sha256(data)


def test_download_into_directory_output(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/name.iso", data)
    assert accel.download(server.url("/name.iso"), tmp_path) == tmp_path / "name.iso"
    assert sha256(tmp_path / "name.iso") == sha256(data)


def test_cancel_from_another_thread(server: FaultServer, tmp_path: Path):
    body = make_data(2 * MiB, seed=12)
    server.add_file("/slow", body)
    server.faults.rate = 256 * KiB
    out = tmp_path / "out.bin"
    url = server.url("/slow")
    dl = accel.Downloader(url, out, connections=4, min_split=SPLIT)
    job = Background(dl.run)
    wait_until(
        lambda: (dl.progress() or accel.Progress(0, None, 0, None, 0)).written > 256 * KiB,
        20,
        "some progress",
    )
    t0 = time.monotonic()
    dl.cancel()
    job.join(10)
    assert job.finished_at is not None and job.finished_at - t0 < 2.0
    assert isinstance(job.error, accel.CancelledError)
    assert dl.cancelled
    assert not out.exists()
    part = tmp_path / "out.bin.part"
    segs = load_sidecar(tmp_path / "out.bin.part.json", part, url, body, synced=False)
    written = sum(s["written"] for s in segs)
    assert 0 < written < len(body)


def test_progress_snapshot(server: FaultServer, tmp_path: Path):
    body = make_data(2 * MiB, seed=13)
    server.add_file("/p", body)
    server.faults.rate = 512 * KiB
    dl = accel.Downloader(server.url("/p"), tmp_path / "p", connections=4, min_split=SPLIT)
    assert dl.progress() is None
    job = Background(dl.run)
    snaps: List[accel.Progress] = []
    while job.thread.is_alive():
        snap = dl.progress()
        if snap is not None:
            snaps.append(snap)
        time.sleep(0.02)
    job.join(30)
    assert job.error is None, job.error
    assert len(snaps) >= 3
    for snap in snaps:
        assert isinstance(snap, accel.Progress)
        assert snap.total == len(body)
        assert 0 <= snap.written <= len(body)
        assert snap.rate >= 0
        assert 0 <= snap.connections <= 4
        assert snap.eta is None or snap.eta >= 0
        assert snap.segment_map and set(snap.segment_map) <= set("#>.")
    written = [s.written for s in snaps]
    assert written == sorted(written)
    assert any(0 < s.written < len(body) for s in snaps)
    assert any(s.connections >= 2 for s in snaps)
    assert any(s.rate > 0 for s in snaps)
    final = dl.progress()
    assert final is not None and final.written == len(body)
    assert {len(s.segment_map) for s in snaps} == {len(final.segment_map)}  # a fixed width
    assert set(final.segment_map) == {"#"}
    assert any("." in s.segment_map or ">" in s.segment_map for s in snaps)


def test_events_in_order_on_calling_thread(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/e", data)
    server.faults.rate = 4 * MiB
    caller = threading.get_ident()
    events: List[accel.Event] = []
    threads: Set[int] = set()
    busy = threading.Lock()
    overlaps: List[str] = []
    progress_total = [0]

    def enter(what: str) -> None:
        threads.add(threading.get_ident())
        if not busy.acquire(blocking=False):
            overlaps.append(what)
            return
        time.sleep(0.002)  # widen the window in which a concurrent call would be caught
        busy.release()

    def on_event(event: accel.Event) -> None:
        enter(type(event).__name__)
        events.append(event)

    def on_progress(delta: int) -> None:
        enter("progress")
        progress_total[0] += delta

    out = tmp_path / "e.out"
    path = accel.Downloader(
        server.url("/e"),
        out,
        connections=4,
        min_split=SPLIT,
        on_event=on_event,
        on_progress=on_progress,
    ).run()
    assert sha256(path) == sha256(data)
    assert threads == {caller}
    assert overlaps == []
    assert progress_total[0] == len(data)
    assert isinstance(events[0], accel.Started)
    assert events[0].size == len(data) and events[0].resumed == 0 and events[0].path == out
    assert isinstance(events[-1], accel.Completed)
    assert events[-1].path == out and events[-1].size == len(data)
    middle = events[1:-1]
    assert middle and all(isinstance(e, accel.SegmentCompleted) for e in middle), middle
    assert_segments_tile(events, len(data))


def test_failing_callbacks_do_not_break_the_download(
    server: FaultServer, data: bytes, tmp_path: Path
):
    server.add_file("/f", data)
    calls: Dict[str, int] = {"event": 0, "progress": 0}

    def on_event(event: accel.Event) -> None:
        calls["event"] += 1
        raise RuntimeError("callback bug")

    def on_progress(delta: int) -> None:
        calls["progress"] += 1
        raise ZeroDivisionError("callback bug")

    out = tmp_path / "out.bin"
    path = accel.download(
        server.url("/f"),
        out,
        connections=4,
        min_split=SPLIT,
        on_event=on_event,
        on_progress=on_progress,
    )
    assert sha256(path) == sha256(data)
    assert calls["event"] >= 2 and calls["progress"] >= 1
    assert files_under(tmp_path) == {"out.bin"}


# -- the .part file --------------------------------------------------------------------------


def test_part_file_is_sparse_and_preallocated(server: FaultServer, tmp_path: Path):
    size = 4 * MiB
    body = make_data(size, seed=14)
    server.add_file("/sparse", body)
    server.faults.rate = 256 * KiB
    out = tmp_path / "out.bin"
    part = tmp_path / "out.bin.part"
    dl = accel.Downloader(server.url("/sparse"), out, connections=2, min_split=SPLIT)
    job = Background(dl.run)
    try:
        wait_until(part.exists, 10, ".part to appear")
        st = os.stat(part)
        assert st.st_size == size
        assert st.st_blocks * 512 < size // 2
        wait_until(
            lambda: (dl.progress() or accel.Progress(0, None, 0, None, 0)).written >= 256 * KiB,
            10,
            "some progress",
        )
        st = os.stat(part)
        assert st.st_size == size
        assert st.st_blocks * 512 < size // 2
    finally:
        dl.cancel()
        job.join(10)
    assert isinstance(job.error, accel.CancelledError)


# -- existing output -------------------------------------------------------------------------


@pytest.mark.parametrize("same_size", [False, True])
def test_existing_unrelated_file_is_kept(
    server: FaultServer, data: bytes, tmp_path: Path, same_size: bool
):
    server.add_file("/f", data)
    out = tmp_path / "out.bin"
    old = make_data(len(data), seed=99) if same_size else b"precious"
    out.write_bytes(old)
    with pytest.raises(accel.OutputExistsError):
        accel.Downloader(server.url("/f"), out, connections=4, min_split=SPLIT).run()
    assert out.read_bytes() == old
    assert files_under(tmp_path) == {"out.bin"}

    proc = run_accel(server.url("/f"), "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 6
    assert "accel: error:" in proc.stderr
    assert out.read_bytes() == old
    assert files_under(tmp_path) == {"out.bin"}


def test_force_replaces_existing_file(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f", data)
    out = tmp_path / "out.bin"
    out.write_bytes(b"precious")
    proc = run_accel(server.url("/f"), "--force", "-o", "out.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(out) == sha256(data)
    assert files_under(tmp_path) == {"out.bin"}


def test_force_via_api(server: FaultServer, data: bytes, tmp_path: Path):
    server.add_file("/f", data)
    out = tmp_path / "out.bin"
    out.write_bytes(b"precious")
    assert accel.download(server.url("/f"), out, force=True) == out
    assert sha256(out) == sha256(data)


def test_rerun_of_finished_download_is_already_complete(
    server: FaultServer, data: bytes, tmp_path: Path
):
    server.add_file("/f", data)
    first = run_accel(server.url("/f"), "-o", "out.bin", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out.bin"
    from email.utils import parsedate_to_datetime

    lm = parsedate_to_datetime(server.last_modified("/f")).timestamp()
    assert int(out.stat().st_mtime) == int(lm)  # the mtime is the server's Last-Modified
    server.reset_counters()
    second = run_accel(server.url("/f"), "-o", "out.bin", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already complete" in second.stderr
    assert sha256(out) == sha256(data)
    assert len(gets(server, "/f")) <= 1  # the probe only
    assert server.bytes_sent <= 1 * MiB  # at most the probe's bounded range, never the file
    assert files_under(tmp_path) == {"out.bin"}


# -- work stealing and hedging ---------------------------------------------------------------


def test_work_stealing_writes_nothing_twice(server: FaultServer, tmp_path: Path):
    size = 6 * MiB + 4321
    body = make_data(size, seed=15)
    server.add_file("/steal", body)
    server.faults.rate = 2 * MiB
    server.faults.straggler_every = 3
    server.faults.straggler_factor = 8
    out = tmp_path / "out.bin"
    opts = Options(connections=4, min_split=SPLIT, retry=FAST_RETRY)
    path = accel.Downloader(server.url("/steal"), out, options=opts).run()
    assert sha256(path) == sha256(body)

    reqs = gets(server, "/steal")
    ranged = [r for r in reqs if r.status == 206]
    assert all(r.status == 206 for r in reqs), [(r.status, r.range_header) for r in reqs]
    assert len(ranged) > 4, "no work was stolen"
    delivered = []
    for r in ranged:
        rng = parse_range(r.range_header, size)
        assert rng is not None
        start, end = rng
        assert r.body_bytes_sent <= end - start + 1
        delivered.append((start, start + r.body_bytes_sent))
    assert union_covers(delivered, size)
    total_sent = sum(r.body_bytes_sent for r in ranged)
    assert total_sent == server.bytes_sent_for("/steal")
    conns = len({r.connection_id for r in ranged})
    assert size <= total_sent <= size + conns * DEFAULT_READ_MARGIN, (total_sent, conns)


@pytest.mark.parametrize("hedge_after", [1.0, None])
def test_hedging_beats_a_stalled_connection(
    server: FaultServer, tmp_path: Path, hedge_after: Optional[float]
):
    size = 2 * MiB
    body = make_data(size, seed=16)
    server.add_file("/stall", body)
    server.faults.stall_seconds = 30
    server.faults.stall_times = 1
    server.faults.stall_after_bytes = 128 * KiB
    out = tmp_path / "out.bin"
    extra = {} if hedge_after is None else {"hedge_after": hedge_after}
    opts = Options(connections=4, min_split=SPLIT, retry=FAST_RETRY, **extra)
    events: List[accel.Event] = []
    t0 = time.monotonic()
    path = accel.Downloader(server.url("/stall"), out, options=opts, on_event=events.append).run()
    elapsed = time.monotonic() - t0
    assert sha256(path) == sha256(body)
    assert elapsed < 15, f"took {elapsed:.1f}s: the stalled connection was waited for"
    assert server.faults.stall_seconds == 0  # the stall really happened (budget consumed)
    assert files_under(tmp_path) == {"out.bin"}
    # Once the hedge won, the finished segment is neither fetched nor reported again.
    ranges = [r.range_header for r in gets(server, "/stall")]
    repeated = sorted({h for h in ranges if ranges.count(h) > 1})
    assert repeated == [], f"ranges requested more than once: {repeated}"
    assert_segments_tile(events, size)
