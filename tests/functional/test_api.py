"""The embeddable API (issue 7) against the fault server: run/start/wait/result/done, cancel
from another thread and resume, the context manager, progress snapshots, callbacks (sums,
order, one thread, never concurrent, failures contained), several downloads in one process
sharing a rate limiter and per-host connection slots, the one-liner, and no printing or
sys.exit. The public names themselves are pinned in tests/unit/test_api.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import accel
from accel import Options
from accel import events as ev
from accel._disk import state
from accel.limits import HostSlots, RateLimiter
from tests.helpers import (
    SPLIT,
    KiB,
    MiB,
    accel_env,
    fast_options,
    fast_retry,
    run_in_thread,
    sha256,
    slots_in_use,
    wait_until,
    written,
)
from tests.servers import FaultServer, RequestLog, make_data

FAST = fast_retry(2)


def opts(**kw: Any) -> Options:
    return fast_options(FAST, **kw)


# -- run / start / wait / result / done --------------------------------------------------------


def test_run_returns_the_final_path(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(700 * KiB + 1, seed=1)
    server.add_file("/f.bin", data)
    d = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts())
    path = d.run()
    assert path == tmp_path / "f.bin" == d.path
    assert sha256(path) == sha256(data)


def test_start_wait_result_done(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(512 * KiB, seed=2)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    d = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts())
    with pytest.raises(RuntimeError):
        d.wait(0)
    assert d.start() is d
    assert d.done is False
    assert d.wait(0.01) is False
    with pytest.raises(TimeoutError):
        d.result(timeout=0.01)
    with pytest.raises(accel.UsageError, match="already started"):
        d.start()
    server.faults.rate = None
    assert d.wait(20) is True
    assert d.done is True
    path = d.result()
    assert path == tmp_path / "f.bin"
    assert sha256(path) == sha256(data)


def test_result_reraises_the_error(server: FaultServer, tmp_path: Path) -> None:
    d = accel.Downloader(server.url("/missing"), directory=tmp_path, options=opts()).start()
    assert d.wait(20)
    with pytest.raises(accel.HTTPError) as info:
        d.result()
    assert info.value.status == 404


def test_cancel_from_another_thread_saves_state_and_resumes(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 2 * MiB + 11
    data = make_data(size, seed=3)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    url = server.url("/f.bin")
    d = accel.Downloader(url, directory=tmp_path, options=opts(commit_interval=0.1))
    t, errors = run_in_thread(d.run)
    wait_until(lambda: written(d) >= 128 * KiB, 15, "some progress")
    threading.Thread(target=d.cancel).start()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], accel.CancelledError), errors
    assert d.cancelled

    part, side = tmp_path / "f.bin.part", tmp_path / "f.bin.part.json"
    record = state.load(side, part)
    assert record.size == size
    done = sum(w for _, _, w, _ in record.segments)
    assert 0 < done < size
    content = part.read_bytes()
    for s, _, w, _ in record.segments:
        assert content[s : s + w] == data[s : s + w]

    server.faults.rate = None
    time.sleep(0.2)  # let the server notice run 1's closed connections
    server.reset_counters()
    started: List[ev.Started] = []
    deltas: List[int] = []
    d2 = accel.Downloader(
        url,
        directory=tmp_path,
        options=opts(),
        on_event=lambda e: started.append(e) if isinstance(e, ev.Started) else None,
        on_progress=deltas.append,
    )
    path = d2.run()
    assert sha256(path) == sha256(data)
    assert len(started) == 1 and started[0].resumed >= done
    assert sum(deltas) == size - started[0].resumed
    have = [(s, s + w) for s, _, w, _ in record.segments]
    for r in server.requests:
        assert r.range_header and r.range_header.startswith("bytes=")
        first = int(r.range_header[6:].split("-")[0])
        assert not any(lo <= first < hi for lo, hi in have), f"re-fetched {r.range_header}"
    assert not part.exists() and not side.exists()


def test_context_manager_cancels_on_exception(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(2 * MiB, seed=4)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB

    class Boom(Exception):
        pass

    t0 = 0.0
    with (
        pytest.raises(Boom),
        accel.Downloader(
            server.url("/f.bin"), directory=tmp_path, options=opts(commit_interval=0.1)
        ) as d,
    ):
        d.start()
        wait_until(lambda: written(d) > 64 * KiB, 15, "progress")
        t0 = time.monotonic()
        raise Boom()
    assert time.monotonic() - t0 < 5, "leaving the block did not stop the download promptly"
    assert d.cancelled and d.done
    with pytest.raises(accel.CancelledError):
        d.result()
    assert not (tmp_path / "f.bin").exists()
    record = state.load(tmp_path / "f.bin.part.json", tmp_path / "f.bin.part")
    assert sum(w for _, _, w, _ in record.segments) > 0


def test_context_manager_without_exception_waits(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(512 * KiB, seed=5)
    server.add_file("/f.bin", data)
    server.faults.rate = 1 * MiB
    with accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()) as d:
        d.start()
    assert d.done and not d.cancelled
    assert sha256(d.result()) == sha256(data)


# -- progress and callbacks ------------------------------------------------------------------


def test_progress_snapshot_fields(server: FaultServer, tmp_path: Path) -> None:
    size = 1536 * KiB
    data = make_data(size, seed=6)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    d = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts())
    assert d.progress() is None
    d.start()
    snaps: List[accel.Progress] = []
    while not d.done:
        snap = d.progress()
        if snap is not None:
            snaps.append(snap)
        time.sleep(0.02)
    d.result()
    assert snaps
    for s in snaps:
        assert isinstance(s, accel.Progress)
        assert s.total == size
        assert 0 <= s.written <= size
        assert s.rate >= 0
        assert s.eta is None or s.eta >= 0
        assert 0 <= s.connections <= 4
        assert len(s.segment_map) == len(snaps[0].segment_map) > 0
        assert set(s.segment_map) <= set("#>.")
    assert [s.written for s in snaps] == sorted(s.written for s in snaps)
    assert any(0 < s.written < size for s in snaps)
    assert max(s.connections for s in snaps) >= 2
    assert any(s.rate > 0 and s.eta is not None for s in snaps)
    assert any(">" in s.segment_map for s in snaps)
    final = d.progress()
    assert final is not None and final.written == size
    assert final.segment_map == "#" * len(snaps[0].segment_map)


def test_on_progress_deltas_sum_to_the_size(server: FaultServer, tmp_path: Path) -> None:
    size = 3 * MiB + 123
    data = make_data(size, seed=7)
    server.add_file("/f.bin", data)
    deltas: List[int] = []
    path = accel.Downloader(
        server.url("/f.bin"), directory=tmp_path, options=opts(), on_progress=deltas.append
    ).run()
    assert sha256(path) == sha256(data)
    assert sum(deltas) == size
    assert all(n > 0 for n in deltas)


class EventRecorder:
    """Records events with their thread; detects two callbacks running at once."""

    def __init__(self) -> None:
        self.events: List[ev.Event] = []
        self.threads: set = set()
        self.overlap = False
        self._busy = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlap = True
            return
        try:
            self.threads.add(threading.get_ident())
            self.events.append(event)
            time.sleep(0.002)  # widen the window in which an overlap would be seen
        finally:
            self._busy.release()


def _check_event_sequence(events: List[ev.Event], path: Path, size: int) -> None:
    assert isinstance(events[0], ev.Started), events[0]
    assert isinstance(events[-1], ev.Completed), events[-1]
    assert events[-1].path == path and events[-1].size == size
    assert sum(isinstance(e, ev.Started) for e in events) == 1
    assert sum(isinstance(e, ev.Completed) for e in events) == 1
    assert events[0].size == size and events[0].resumed == 0
    covered = sorted((e.start, e.end) for e in events if isinstance(e, ev.SegmentCompleted))
    assert len(covered) >= 2
    pos = 0
    for start, end in covered:
        assert start == pos, covered
        pos = end + 1
    assert pos == size


def test_on_event_on_the_calling_thread_never_concurrent(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 2 * MiB + 5
    data = make_data(size, seed=8)
    server.add_file("/f.bin", data)
    rec = EventRecorder()
    path = accel.Downloader(
        server.url("/f.bin"), directory=tmp_path, options=opts(connections=8), on_event=rec
    ).run()
    assert sha256(path) == sha256(data)
    assert not rec.overlap
    assert rec.threads == {threading.get_ident()}
    _check_event_sequence(rec.events, path, size)


def test_on_event_after_start_on_one_background_thread(server: FaultServer, tmp_path: Path) -> None:
    size = 2 * MiB + 5
    data = make_data(size, seed=9)
    server.add_file("/f.bin", data)
    rec = EventRecorder()
    progress_threads: set = set()
    d = accel.Downloader(
        server.url("/f.bin"),
        directory=tmp_path,
        options=opts(connections=8),
        on_event=rec,
        on_progress=lambda n: progress_threads.add(threading.get_ident()),
    ).start()
    path = d.result(20)
    assert sha256(path) == sha256(data)
    assert not rec.overlap
    assert len(rec.threads) == 1 and threading.get_ident() not in rec.threads
    assert progress_threads == rec.threads
    _check_event_sequence(rec.events, path, size)


def test_failed_event_on_error(server: FaultServer, tmp_path: Path) -> None:
    rec = EventRecorder()
    with pytest.raises(accel.HTTPError):
        accel.Downloader(
            server.url("/missing"), directory=tmp_path, options=opts(), on_event=rec
        ).run()
    assert isinstance(rec.events[-1], ev.Failed)
    assert isinstance(rec.events[-1].error, accel.HTTPError)


def test_exceptions_in_callbacks_do_not_corrupt_the_download(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 2 * MiB + 9
    data = make_data(size, seed=10)
    server.add_file("/f.bin", data)
    calls = {"event": 0, "progress": 0}

    def bad_event(e: ev.Event) -> None:
        calls["event"] += 1
        raise RuntimeError("callback bug")

    def bad_progress(n: int) -> None:
        calls["progress"] += 1
        raise ValueError("callback bug")

    path = accel.Downloader(
        server.url("/f.bin"),
        directory=tmp_path,
        options=opts(),
        on_event=bad_event,
        on_progress=bad_progress,
    ).run()
    assert sha256(path) == sha256(data)
    assert calls["event"] >= 2 and calls["progress"] >= 1
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


# -- several downloads in one process --------------------------------------------------------


def test_two_downloaders_at_once(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    a, b = make_data(1 * MiB + 1, seed=11), make_data(1 * MiB + 2, seed=12)
    server.add_file("/a.bin", a)
    other_server.add_file("/b.bin", b)
    server.faults.rate = other_server.faults.rate = 512 * KiB
    da = accel.Downloader(server.url("/a.bin"), directory=tmp_path, options=opts()).start()
    db = accel.Downloader(other_server.url("/b.bin"), directory=tmp_path, options=opts()).start()
    wait_until(lambda: (written(da) > 0 and written(db) > 0) or da.done or db.done, 10, "both")
    assert not da.done and not db.done, "the downloads did not overlap"
    pa, pb = da.result(20), db.result(20)
    assert sha256(pa) == sha256(a) and sha256(pb) == sha256(b)


def _max_live(requests_: List[RequestLog], slack: float) -> int:
    """Most requests in flight at one moment, as the server saw them. Each interval is
    shortened by ``slack`` at its end: a throttled server notices a connection the client
    closed (after reading its range) only at its next write."""
    points: List[Tuple[float, int]] = []
    for r in requests_:
        assert r.ended is not None
        end = max(r.started, r.ended - slack)
        points += [(r.started, 1), (end, -1)]
    live = best = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):
        live += step
        best = max(best, live)
    return best


def test_shared_host_slots_cap_live_connections(server: FaultServer, tmp_path: Path) -> None:
    """A download started while another holds both slots of the host must wait for one."""
    a, b = make_data(512 * KiB, seed=13), make_data(512 * KiB + 3, seed=14)
    server.add_file("/a.bin", a)
    server.add_file("/b.bin", b)
    server.faults.rate = 256 * KiB  # 0.5 s per 128 KiB segment
    host = f"127.0.0.1:{server.port}"
    slots = HostSlots(per_host=2)
    o = opts(connections=4, host_slots=slots)
    da = accel.Downloader(server.url("/a.bin"), directory=tmp_path, options=o).start()
    wait_until(
        lambda: slots_in_use(slots, host) == 2 or da.done, 10, "the first download's 2 slots"
    )
    db = accel.Downloader(server.url("/b.bin"), directory=tmp_path, options=o).start()
    pa, pb = da.result(30), db.result(30)
    assert sha256(pa) == sha256(a) and sha256(pb) == sha256(b)
    wait_until(lambda: all(r.ended is not None for r in server.requests), 5, "requests to end")
    got = [r for r in server.requests if r.method == "GET"]
    assert {r.path for r in got} == {"/a.bin", "/b.bin"}
    timeline = [(r.path, r.range_header, round(r.started, 2), round(r.ended or 0, 2)) for r in got]
    assert _max_live(got, slack=0.15) <= 2, timeline
    assert _max_live(got, slack=0.15) == 2, "the test did not use the two slots at once"
    assert slots_in_use(slots, host) == 0


def test_shared_rate_limiter_limits_the_total(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    a, b = make_data(1 * MiB, seed=15), make_data(1 * MiB + 1, seed=16)
    server.add_file("/a.bin", a)
    other_server.add_file("/b.bin", b)
    rate = 1 * MiB
    limiter = RateLimiter(rate)
    kw: Any = dict(directory=tmp_path, connections=2, min_split=SPLIT, limit_rate=limiter)
    t0 = time.monotonic()
    da = accel.Downloader(server.url("/a.bin"), **kw).start()
    db = accel.Downloader(other_server.url("/b.bin"), **kw).start()
    pa, pb = da.result(30), db.result(30)
    elapsed = time.monotonic() - t0
    assert da.options.limit_rate is limiter and db.options.limit_rate is limiter
    assert sha256(pa) == sha256(a) and sha256(pb) == sha256(b)
    # Tokens are taken after each read, so every worker may be one read ahead of the bucket.
    # 2 MiB through one shared 1 MiB/s bucket takes at least ~1.5 s; two private
    # limiters would take about half that.
    workers = 4
    floor = (len(a) + len(b) - limiter.burst - workers * limiter.read_size) / rate
    assert floor > 1.2
    assert elapsed >= floor * 0.95, f"{elapsed:.2f}s < {floor:.2f}s"


# -- the one-liner, no printing, no sys.exit -------------------------------------------------


def test_download_one_liner(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(600 * KiB + 7, seed=17)
    server.add_file("/one.bin", data)
    path = accel.download(server.url("/one.bin"), directory=tmp_path, connections=4)
    assert isinstance(path, Path) and path == tmp_path / "one.bin"
    assert sha256(path) == sha256(data)
    out = accel.download(server.url("/one.bin"), tmp_path / "named.bin", force=True)
    assert sha256(out) == sha256(data)


def test_library_never_prints_nor_exits(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: Any
) -> None:
    exits: List[Any] = []

    def fake_exit(code: Any = None) -> None:
        exits.append(code)
        raise AssertionError("sys.exit called by the library")

    monkeypatch.setattr(sys, "exit", fake_exit)
    monkeypatch.setattr(os, "_exit", fake_exit)
    data = make_data(1 * MiB, seed=18)
    server.add_file("/f.bin", data)
    # success, an HTTP error, a network error, a cancel, a refused overwrite
    assert sha256(accel.download(server.url("/f.bin"), directory=tmp_path)) == sha256(data)
    with pytest.raises(accel.HTTPError):
        accel.download(server.url("/nope"), directory=tmp_path, retries=0)
    with pytest.raises(accel.NetworkError):
        accel.download("http://127.0.0.1:9/x", directory=tmp_path, retries=0)
    (tmp_path / "mine.bin").write_bytes(b"mine")
    with pytest.raises(accel.OutputExistsError):
        accel.download(server.url("/f.bin"), tmp_path / "mine.bin", options=opts())
    server.faults.rate = 128 * KiB
    d = accel.Downloader(server.url("/f.bin"), tmp_path / "g.bin", options=opts()).start()
    wait_until(lambda: written(d) > 0, 10, "progress")
    d.cancel()
    with pytest.raises(accel.CancelledError):
        d.result(10)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert exits == []


def test_library_logging_does_not_reach_stderr(server: FaultServer, tmp_path: Path) -> None:
    """In a program that configured no logging, accel's warnings must not print (a library
    leaves output to the application: ``logging.lastResort`` must never be used)."""
    data = make_data(256 * KiB, seed=19)
    server.add_file("/f.bin", data)
    # A corrupt sidecar makes accel log a warning ("ignoring the saved state").
    (tmp_path / "f.bin.part").write_bytes(b"x" * 10)
    (tmp_path / "f.bin.part.json").write_text("{not json")
    script = (
        "import sys, accel\n"
        "p = accel.download(sys.argv[1], directory=sys.argv[2], retries=0)\n"
        "assert p.read_bytes() == open(sys.argv[3], 'rb').read()\n"
    )
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "data"
    src.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", script, server.url("/f.bin"), str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=60,
        env=accel_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == "", proc.stderr


# -- round 2: cancels, finished progress, lock wording, paths ---------------------------------


def test_a_cancel_is_a_cancelled_event_in_the_librarys_words(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("/c.bin", make_data(2 * MiB, seed=40))
    server.faults.rate = 256 * KiB
    heard: List[ev.Event] = []
    d = accel.Downloader(
        server.url("/c.bin"), directory=tmp_path, options=opts(), on_event=heard.append
    ).start()
    wait_until(lambda: written(d) >= 64 * KiB, 15, "some progress")
    d.cancel()
    error = d.exception(10)
    assert isinstance(error, accel.CancelledError)
    assert "run again" not in str(error)  # no command-line wording in the library
    assert not any(isinstance(e, ev.Failed) for e in heard), heard
    last = heard[-1]
    assert isinstance(last, accel.Cancelled) and last.resumable
    assert last.message == str(error)
    with pytest.raises(accel.UsageError, match=r"a new Downloader .* resumes it"):
        d.start()  # a download runs once: a new Downloader resumes it
    again = accel.Downloader(server.url("/c.bin"), directory=tmp_path, options=opts())
    server.faults.rate = None
    assert sha256(again.run()) == sha256(make_data(2 * MiB, seed=40))


def test_a_cancel_without_ranges_leaves_no_part_file(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/nr.bin", make_data(2 * MiB, seed=41))
    server.faults.ignore_range = True
    server.faults.rate = 256 * KiB
    heard: List[ev.Event] = []
    d = accel.Downloader(
        server.url("/nr.bin"), directory=tmp_path, options=opts(), on_event=heard.append
    ).start()
    wait_until(lambda: written(d) >= 64 * KiB, 15, "some progress")
    started = [e for e in heard if isinstance(e, ev.Started)]
    assert started and not started[0].ranged and not started[0].resumable
    d.cancel()
    assert isinstance(d.exception(10), accel.CancelledError)
    last = heard[-1]
    assert isinstance(last, accel.Cancelled) and not last.resumable
    assert os.listdir(tmp_path) == []  # no useless full-size .part


def test_a_finished_download_reports_rate_and_eta_zero(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/r0.bin", make_data(MiB, seed=42))
    d = accel.Downloader(server.url("/r0.bin"), directory=tmp_path, options=opts())
    d.run()
    snap = d.progress()
    assert snap is not None and snap.written == MiB
    assert snap.rate == 0 and snap.eta == 0


def test_locked_by_another_download_in_this_process(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/lk.bin", make_data(2 * MiB, seed=43))
    server.faults.rate = 256 * KiB
    first = accel.Downloader(server.url("/lk.bin"), directory=tmp_path, options=opts()).start()
    wait_until(lambda: written(first) > 0, 15, "the first download to write")
    second = accel.Downloader(server.url("/lk.bin"), directory=tmp_path, options=opts())
    with pytest.raises(accel.LockedError, match=r"^another download is downloading"):
        second.run()
    first.cancel()
    first.wait(10)


def test_a_missing_directory_is_named(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/m.bin", b"x" * 1000)
    missing = tmp_path / "no" / "such"
    with pytest.raises(
        accel.LocalFileError, match=f"^directory {re.escape(str(missing))} does not exist$"
    ):
        accel.Downloader(server.url("/m.bin"), missing / "m.bin", options=opts()).run()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(accel.LocalFileError, match="not a directory"):
        accel.Downloader(server.url("/m.bin"), tmp_path / "file" / "m.bin", options=opts()).run()
