"""accel.Manager: many downloads, ``jobs`` at a time, like concurrent.futures: results and
errors per download, as_completed, the job cap, a lazy queue, cancel and resume, one shared
rate limit and host cap, kept-alive connections across files, per-file settings, callbacks,
wait and the context manager. Everything against the real fault server on loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import accel
from accel import Options
from accel import events as ev
from tests.helpers import (
    SPLIT,
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    listing,
    load_sidecar,
    sha256,
    slots_in_use,
    wait_until,
    written,
)
from tests.servers import FaultServer, make_data

FAST = fast_retry(2)


def opts(**kw: Any) -> Options:
    return fast_options(FAST, **kw)


def download_threads() -> List[threading.Thread]:
    """The live threads that run downloads: a Manager's job threads (at most ``jobs``)."""
    return [t for t in threading.enumerate() if t.name.startswith("accel-job-") and t.is_alive()]


def wait_no_download_threads() -> None:
    """Earlier tests' download threads are gone (they may still be unwinding)."""
    wait_until(lambda: not download_threads(), 10, "leftover download threads to end")


def serve(server: FaultServer, count: int, size: int, seed: int, prefix: str = "f") -> List[bytes]:
    """Serve ``count`` files /{prefix}{i}.bin of ``size`` bytes; return their contents."""
    datas = [make_data(size + i, seed=seed + i) for i in range(count)]
    for i, data in enumerate(datas):
        server.add_file(f"/{prefix}{i}.bin", data)
    return datas


# -- many files, results and failures --------------------------------------------------------


def test_many_files_each_result_once_and_a_failure_cancels_nothing(
    server: FaultServer, tmp_path: Path
) -> None:
    files: Dict[str, bytes] = {}
    for i in range(30):
        files[f"s{i}.bin"] = make_data(1 + i * 1531, seed=100 + i)
    files["big0.bin"] = make_data(3 * MiB + 5, seed=200)
    files["big1.bin"] = make_data(2 * MiB + 7, seed=201)
    for name, data in files.items():
        server.add_file("/" + name, data)

    with accel.Manager(jobs=4, directory=tmp_path, options=opts()) as m:
        missing = m.add(server.url("/missing.bin"))  # first: fails while the others run
        added = {m.add(server.url("/" + name)): name for name in files}
        seen = list(m.as_completed(timeout=60))
        assert list(m.as_completed(timeout=5)) == [], "a download was yielded twice"

    assert len(seen) == len(files) + 1
    assert set(seen) == {missing, *added}
    assert len(set(map(id, seen))) == len(seen)

    error = missing.exception()
    assert isinstance(error, accel.HTTPError) and error.status == 404
    with pytest.raises(accel.HTTPError) as info:
        missing.result()
    assert info.value is error
    assert missing.done

    for d, name in added.items():
        assert d.done and d.exception() is None, (name, d.exception())
        assert d.result() == tmp_path / name == d.path
        assert sha256(d.result()) == sha256(files[name]), name
    assert listing(tmp_path) == sorted(files)

    p = m.progress()
    assert (p.done, p.failed, p.queued, p.active) == (len(files), 1, 0, 0)
    assert p.finished == len(files) + 1
    assert p.received == sum(len(v) for v in files.values())


def test_as_completed_yields_in_order_of_ending(server: FaultServer, tmp_path: Path) -> None:
    slow, fast = make_data(768 * KiB, seed=5), make_data(16 * KiB, seed=6)
    server.add_file("/slow.bin", slow)
    server.add_file("/fast.bin", fast)
    server.faults.rate = 512 * KiB
    with accel.Manager(jobs=2, directory=tmp_path, options=opts(connections=1)) as m:
        d_slow = m.add(server.url("/slow.bin"))
        d_fast = m.add(server.url("/fast.bin"))
        order = list(m.as_completed(timeout=30))
    assert order == [d_fast, d_slow]
    with (
        pytest.raises(TimeoutError),
        accel.Manager(jobs=1, directory=tmp_path / "t", options=opts()) as m2,
    ):
        m2.add(server.url("/slow.bin"))
        list(m2.as_completed(timeout=0.2))
    assert m2.cancelled, "the exception in the block must cancel the Manager's downloads"


# -- the job cap and progress ----------------------------------------------------------------


def test_jobs_caps_running_downloads(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The regular path: one job thread per running download (the small-files loop runs
    them all on one thread: tests/test_small.py)."""
    monkeypatch.setenv("ACCEL_LEAN", "0")
    wait_no_download_threads()
    size = 192 * KiB
    datas = serve(server, 6, size, seed=10)
    server.faults.rate = 256 * KiB  # per connection: about 0.4 s per file on 2 connections
    actives: List[int] = []
    threads: List[int] = []
    rates: List[float] = []
    thread_of: Dict[int, threading.Thread] = {}  # id(download) -> the thread it runs on

    def on_event(d: accel.Downloader, e: accel.Event) -> None:
        if isinstance(e, ev.Started):  # callbacks run on the download's own thread
            thread_of[id(d)] = threading.current_thread()

    with accel.Manager(
        jobs=2, directory=tmp_path, options=opts(connections=2), on_event=on_event
    ) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
        p = m.progress()
        assert (p.active, p.queued, p.done, p.failed) == (2, 4, 0, 0)
        while not m.wait(0.005):
            p = m.progress()
            actives.append(p.active)
            rates.append(p.rate)
            # A download's thread may still be unwinding after it ended (and freed its slot):
            # count the threads of downloads that have not ended.
            live = set(download_threads())
            threads.append(sum(thread_of.get(id(d)) in live for d in ds if not d.done))
            assert p.queued + p.active + p.finished == len(ds)
    assert len(actives) > 20, "the test did not sample while the downloads ran"
    assert max(actives) == 2, actives
    assert max(threads) <= 2, threads
    assert 2 in threads
    assert max(rates) > 0
    assert len(thread_of) == len(ds)
    assert all(t.name.startswith("accel-job-") for t in thread_of.values())
    assert len(set(thread_of.values())) <= 2  # the jobs threads, reused from file to file

    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    p = m.progress()
    assert p.done + p.failed == len(ds) and p.failed == 0
    assert p.queued == 0 and p.active == 0
    assert p.received == sum(len(x) for x in datas)
    assert p.rate >= 0
    wait_until(lambda: not download_threads(), 5, "download threads to end")


def test_raw_download_thread_count_never_exceeds_jobs(server: FaultServer, tmp_path: Path) -> None:
    """Counted by thread name alone, as a user would; sampled until every file is done."""
    wait_no_download_threads()
    datas = serve(server, 8, 48 * KiB, seed=20)
    server.faults.rate = 256 * KiB
    counts: List[int] = []
    with accel.Manager(jobs=2, directory=tmp_path, options=opts(connections=1)) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
        while not m.wait(0.002):
            counts.append(len(download_threads()))
    assert all(sha256(d.result()) == sha256(x) for d, x in zip(ds, datas))
    assert counts and max(counts) <= 3, counts  # jobs + one ended thread still unwinding


# -- the lazy queue and cancel ---------------------------------------------------------------


def test_queue_is_lazy_and_cancel_ends_everything(server: FaultServer, tmp_path: Path) -> None:
    wait_no_download_threads()
    data = make_data(1 * MiB, seed=30)
    server.add_file("/f.bin", data)
    server.faults.rate = 64 * KiB  # nothing finishes during the test
    url = server.url("/f.bin")
    n = 5000
    failed: List[accel.Event] = []

    def on_event(d: accel.Downloader, e: accel.Event) -> None:
        if isinstance(e, (ev.Failed, ev.Cancelled)):
            failed.append(e)

    threads_before = threading.active_count()
    with accel.Manager(
        jobs=1, directory=tmp_path, options=opts(connections=2), on_event=on_event
    ) as m:
        t0 = time.monotonic()
        ds = [m.add(url, f"q{i}.bin") for i in range(n)]
        assert time.monotonic() - t0 < 10
        wait_until(lambda: written(ds[0]) > 0, 15, "the first download to write")
        p = m.progress()
        assert (p.active, p.queued, p.done, p.failed) == (1, n - 1, 0, 0)
        assert len(download_threads()) == 1
        # One download: its thread, 2 workers, the server's handler threads; nothing per
        # queued download.
        assert threading.active_count() - threads_before <= 12
        names = listing(tmp_path)
        assert set(names) <= {"q0.bin.part", "q0.bin.part.json", "q0.bin.part.lock"}, names
        assert "q0.bin.part" in names
        assert all(d.progress() is None and not d.done for d in ds[1:])

        t0 = time.monotonic()
        m.cancel()
        assert m.cancelled
        assert m.wait(10)
        assert time.monotonic() - t0 < 5, "cancel did not end the downloads promptly"
        for d in ds:
            assert d.done
            assert isinstance(d.exception(), accel.CancelledError)
            with pytest.raises(accel.CancelledError):
                d.result()
        with pytest.raises(RuntimeError):
            m.add(url, "late.bin")
        assert len(list(m.as_completed(timeout=5))) == n

    p = m.progress()
    assert (p.active, p.queued, p.done, p.failed) == (0, 0, 0, n)
    assert len(failed) == n
    assert all(isinstance(e, accel.Cancelled) for e in failed)  # a cancel is not a Failed
    assert set(listing(tmp_path)) <= {"q0.bin.part", "q0.bin.part.json", "q0.bin.part.lock"}
    assert not (tmp_path / "late.bin").exists()


def test_cancelling_one_queued_download_ends_it_at_once(
    server: FaultServer, tmp_path: Path
) -> None:
    first, second = make_data(1 * MiB, seed=32), make_data(64 * KiB, seed=33)
    server.add_file("/a.bin", first)
    server.add_file("/b.bin", second)
    server.faults.rate = 64 * KiB  # the first download runs far longer than the test waits
    with accel.Manager(jobs=1, directory=tmp_path, options=opts(connections=2)) as m:
        try:
            running = m.add(server.url("/a.bin"))
            queued = m.add(server.url("/b.bin"))
            wait_until(lambda: written(running) > 0, 10, "the first download to write")
            queued.cancel()
            assert queued.cancelled
            ended = queued.wait(2)
            p = m.progress()
            assert not running.done, "the test needs the first download still running"
        finally:
            m.cancel()
    assert isinstance(queued.exception(), accel.CancelledError)
    assert not any(name.startswith("b.bin") for name in listing(tmp_path))
    assert ended, "a cancelled queued download did not end while the job slot stayed busy"
    assert (p.queued, p.failed) == (0, 1)


def test_add_after_close_raises(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(10 * KiB, seed=31)
    server.add_file("/f.bin", data)
    with accel.Manager(jobs=1, directory=tmp_path, options=opts()) as m:
        d = m.add(server.url("/f.bin"))
    assert sha256(d.result()) == sha256(data)
    with pytest.raises(RuntimeError):
        m.add(server.url("/f.bin"), "again.bin")


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5, "2"])
def test_bad_jobs_is_a_usage_error(jobs: Any) -> None:
    with pytest.raises(accel.UsageError):
        accel.Manager(jobs=jobs)


def test_manager_settings_go_through_options() -> None:
    with pytest.raises(accel.UsageError, match="conections"):
        accel.Manager(jobs=2, conections=3)
    with pytest.raises(accel.UsageError):
        accel.Manager(jobs=2, limit_rate="5X")
    with pytest.raises(accel.UsageError):
        accel.Manager(jobs=2, max_per_host=0)
    m = accel.Manager(jobs=2, options=opts(), connections=3, retries=1, limit_rate="1M")
    assert m.options.connections == 3 and m.options.retry.attempts == 1
    assert m.options.min_split == SPLIT
    assert isinstance(m.options.limit_rate, accel.RateLimiter)
    assert m.options.limit_rate.rate == 1 * MiB
    m.close()


# -- cancel everything, then resume with a new Manager ---------------------------------------


def test_cancel_all_then_a_new_manager_resumes(server: FaultServer, tmp_path: Path) -> None:
    datas = serve(server, 3, 2 * MiB, seed=40)
    urls = [server.url(f"/f{i}.bin") for i in range(3)]
    total = sum(len(x) for x in datas)
    server.faults.rate = 256 * KiB
    with accel.Manager(
        jobs=3, directory=tmp_path, options=opts(connections=4, commit_interval=0.1)
    ) as m:
        ds = [m.add(url) for url in urls]
        wait_until(lambda: all(written(d) >= 256 * KiB for d in ds), 20, "progress in all")
        m.cancel()
        assert m.wait(10)
    for d in ds:
        assert isinstance(d.exception(), accel.CancelledError)
    before = []
    for i, data in enumerate(datas):
        part, side = tmp_path / f"f{i}.bin.part", tmp_path / f"f{i}.bin.part.json"
        assert part.exists() and side.exists()
        assert not (tmp_path / f"f{i}.bin").exists()
        segs = load_sidecar(side, part, urls[i], data)
        have = sum(s["written"] for s in segs)
        assert 0 < have < len(data)
        before.append(have)

    server.faults.rate = None
    time.sleep(0.2)  # let the server notice the first run's closed connections
    server.reset_counters()
    started: Dict[str, ev.Started] = {}

    def on_event(d: accel.Downloader, e: accel.Event) -> None:
        if isinstance(e, ev.Started):
            started[d.url] = e

    with accel.Manager(jobs=3, directory=tmp_path, options=opts(), on_event=on_event) as m2:
        ds2 = [m2.add(url) for url in urls]
    for d, data in zip(ds2, datas):
        assert sha256(d.result()) == sha256(data)
    assert listing(tmp_path) == [f"f{i}.bin" for i in range(3)]
    for url, have in zip(urls, before):
        assert started[url].resumed >= have
    resumed = sum(s.resumed for s in started.values())
    assert m2.progress().received == total - resumed
    # The resumed run's own requests (a cancelled response's handler may still be counting
    # into the server's total after the reset).
    asked = gets(server)
    sent = sum(r.body_bytes_sent for r in asked)
    detail = [(r.path, r.range_header, r.body_bytes_sent) for r in asked]
    assert sent < total, f"the resume re-fetched everything ({sent} of {total} bytes): {detail}"
    assert sent <= total - sum(before) + 3 * 256 * KiB, detail


# -- one shared rate limit -------------------------------------------------------------------


@pytest.mark.slow
def test_limit_rate_is_shared_by_all_downloads(server: FaultServer, tmp_path: Path) -> None:
    size = 400 * KiB
    datas = serve(server, 3, size, seed=50)
    t0 = time.monotonic()
    with accel.Manager(
        jobs=3, directory=tmp_path, options=opts(connections=1), limit_rate="400K"
    ) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(3)]
    elapsed = time.monotonic() - t0
    limiter = m.options.limit_rate
    assert isinstance(limiter, accel.RateLimiter) and limiter.rate == 400 * KiB
    assert all(d.options.limit_rate is limiter for d in ds)
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    # 1.2 MiB through one 400 KiB/s bucket: about 3 s (every worker may be one read ahead
    # of the bucket); a private limit per file would take about 1 s.
    workers = 3
    floor = (sum(len(x) for x in datas) - limiter.burst - workers * limiter.read_size) / (
        limiter.rate
    )
    assert floor > 2.4
    assert elapsed >= 0.95 * floor, f"{elapsed:.2f}s < {floor:.2f}s: the limit is not shared"
    assert elapsed < 5.0, f"{elapsed:.2f}s"


# -- connections kept alive across files -----------------------------------------------------


def test_connections_are_reused_across_files(server: FaultServer, tmp_path: Path) -> None:
    datas = serve(server, 20, 20 * KiB, seed=60)
    server.reset_counters()
    with accel.Manager(jobs=2, directory=tmp_path, options=opts()) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    got = len(gets(server))
    assert got >= len(datas)
    # Without reuse: at least one connection per file (20). Two files at a time, one
    # request each: two connections, with room for a spare.
    assert server.connections <= 4, (
        f"{server.connections} TCP connections for {len(datas)} files ({got} GETs)"
    )


def test_sequential_files_reuse_the_one_open_connection(
    server: FaultServer, tmp_path: Path
) -> None:
    """One file at a time: each next file finds the previous file's open connection idle."""
    datas = serve(server, 60, 8 * KiB, seed=65)
    server.reset_counters()
    with accel.Manager(jobs=1, directory=tmp_path, options=opts(connections=8)) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    assert len(gets(server)) == len(datas), "one request per file expected"
    assert server.connections == 1, f"{server.connections} connections, files one at a time"


def test_sessions_are_not_shared_across_origins_or_headers(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    """Reuse never sends one file's headers to another file's request."""
    a, b = make_data(20 * KiB, seed=61), make_data(20 * KiB, seed=62)
    server.add_file("/a.bin", a)
    other_server.add_file("/b.bin", b)
    with accel.Manager(jobs=1, directory=tmp_path, options=opts()) as m:
        da = m.add(server.url("/a.bin"), headers={"X-Team": "one"})
        db = m.add(other_server.url("/b.bin"))
        dc = m.add(server.url("/a.bin"), "c.bin")
    assert sha256(da.result()) == sha256(dc.result()) == sha256(a)
    assert sha256(db.result()) == sha256(b)
    # Both files came from /a.bin: one with the header on every request, one never.
    marked = [r.headers.get("X-Team") for r in server.requests if r.method == "GET"]
    assert marked.count("one") >= 1 and marked.count(None) >= 1, marked
    assert set(marked) == {"one", None}, marked
    assert all(r.headers.get("X-Team") is None for r in other_server.requests)
    by_conn: Dict[int, set] = {}
    for r in server.requests:
        by_conn.setdefault(r.connection_id, set()).add(r.headers.get("X-Team"))
    assert all(len(v) == 1 for v in by_conn.values()), "a session mixed two settings"


# -- per-file settings -----------------------------------------------------------------------


def test_per_file_overrides(server: FaultServer, tmp_path: Path) -> None:
    a, b, c = (make_data(300 * KiB + i, seed=70 + i) for i in range(3))
    server.add_file("/a.bin", a)
    server.add_file("/b.bin", b)
    server.add_file("/c.bin", c)
    with accel.Manager(jobs=3, directory=tmp_path, options=opts()) as m:
        with pytest.raises(accel.UsageError):
            m.add(server.url("/a.bin"), connections=0)
        with pytest.raises(accel.UsageError):
            m.add(server.url("/a.bin"), conections=2)
        with pytest.raises(accel.UsageError):
            m.add("ftp://127.0.0.1/a.bin")
        assert m.progress().queued + m.progress().active == 0
        good = m.add(server.url("/a.bin"), output="x.bin", checksum=f"sha256={sha256(a)}")
        bad = m.add(server.url("/b.bin"), output="y.bin", checksum="sha256=" + "0" * 64)
        plain = m.add(server.url("/c.bin"), connections=2)
        assert m.progress().finished + m.progress().active + m.progress().queued == 3
    assert good.result() == tmp_path / "x.bin"
    assert sha256(good.result()) == sha256(a)
    assert isinstance(bad.exception(), accel.VerificationError)
    with pytest.raises(accel.VerificationError):
        bad.result()
    assert not (tmp_path / "y.bin").exists()
    assert sha256(plain.result()) == sha256(c)
    # Overrides are per file: the Manager's defaults stay as they were.
    assert plain.options.checksum is None and plain.options.connections == 2
    assert good.options.connections == m.options.connections == 4
    assert m.options.checksum is None
    p = m.progress()
    assert (p.done, p.failed) == (2, 1)


def test_per_file_directory_and_mirrors(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(600 * KiB + 3, seed=75)
    server.add_file("/m.bin", data)
    other_server.add_file("/m.bin", data, etag=server.etag("/m.bin"))
    with accel.Manager(jobs=2, directory=tmp_path / "default", options=opts()) as m:
        d = m.add(
            server.url("/m.bin"), directory=tmp_path / "other", mirrors=[other_server.url("/m.bin")]
        )
    assert d.result() == tmp_path / "other" / "m.bin"
    assert sha256(d.result()) == sha256(data)
    assert d.options.mirrors == (other_server.url("/m.bin"),)
    assert m.options.mirrors == ()


# -- the per-host cap ------------------------------------------------------------------------


def test_max_per_host_one_with_several_jobs_does_not_deadlock(
    server: FaultServer, tmp_path: Path
) -> None:
    datas = serve(server, 5, 256 * KiB, seed=80)
    server.faults.rate = 2 * MiB
    host_in_use: List[int] = []
    with accel.Manager(jobs=3, directory=tmp_path, max_per_host=1, options=opts()) as m:
        slots = m.options.host_slots
        assert isinstance(slots, accel.HostSlots) and slots.per_host == 1
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
        assert all(d.options.host_slots is slots for d in ds)
        deadline = time.monotonic() + 20
        while not m.wait(0.01):
            host_in_use.append(slots_in_use(slots, f"127.0.0.1:{server.port}"))
            if time.monotonic() > deadline:
                m.cancel()
                pytest.fail(f"deadlock: {m!r}")
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    assert max(host_in_use, default=0) <= 1
    assert slots_in_use(slots, f"127.0.0.1:{server.port}") == 0


# -- callbacks -------------------------------------------------------------------------------


def test_manager_and_per_file_on_event(server: FaultServer, tmp_path: Path) -> None:
    datas = serve(server, 4, 200 * KiB, seed=90)
    heard: List[Tuple[accel.Downloader, accel.Event]] = []
    lock = threading.Lock()
    own: List[accel.Event] = []
    progress: List[int] = []

    def on_event(d: accel.Downloader, e: accel.Event) -> None:
        with lock:
            heard.append((d, e))

    with accel.Manager(jobs=2, directory=tmp_path, options=opts(), on_event=on_event) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(3)]
        mine = m.add(server.url("/f3.bin"), on_event=own.append, on_progress=progress.append)
        missing = m.add(server.url("/missing.bin"))
    for d, data in zip([*ds, mine], datas):
        assert sha256(d.result()) == sha256(data)
        events = [e for dd, e in heard if dd is d]
        assert isinstance(events[0], ev.Started), events
        assert isinstance(events[-1], ev.Completed), events
        assert sum(isinstance(e, ev.Started) for e in events) == 1
        assert sum(isinstance(e, ev.Completed) for e in events) == 1
        assert events[0].url == d.url
        assert events[-1].path == d.result() and events[-1].size == len(data)
    failed = [e for dd, e in heard if dd is missing]
    assert len(failed) == 1 and isinstance(failed[0], ev.Failed)
    assert isinstance(failed[0].error, accel.HTTPError)
    # The per-file callback hears exactly its own download's events, as the Manager did.
    assert own == [e for dd, e in heard if dd is mine]
    assert isinstance(own[0], ev.Started) and own[0].url == server.url("/f3.bin")
    assert sum(progress) == len(datas[3])


def test_callback_errors_do_not_disturb_the_downloads(server: FaultServer, tmp_path: Path) -> None:
    datas = serve(server, 3, 100 * KiB, seed=95)
    calls: List[int] = []

    def bad(d: accel.Downloader, e: accel.Event) -> None:
        calls.append(1)
        raise RuntimeError("callback bug")

    with accel.Manager(jobs=2, directory=tmp_path, options=opts(), on_event=bad) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(3)]
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    assert len(calls) >= 6


# -- wait, start, the context manager --------------------------------------------------------


def test_wait_and_start_on_a_manager_download(server: FaultServer, tmp_path: Path) -> None:
    datas = serve(server, 2, 384 * KiB, seed=110)
    server.faults.rate = 256 * KiB
    with accel.Manager(jobs=1, directory=tmp_path, options=opts(connections=2)) as m:
        running, queued = (m.add(server.url(f"/f{i}.bin")) for i in range(2))
        assert m.wait(0.05) is False
        assert m.wait(timeout=0) is False
        with pytest.raises(accel.UsageError, match="run by a Manager"):
            running.start()
        with pytest.raises(accel.UsageError, match="run by a Manager"):
            queued.start()
        assert queued.wait(0.01) is False  # a queued download may be waited for
        with pytest.raises(TimeoutError):
            queued.result(timeout=0.01)
        assert not queued.done and queued.progress() is None
        assert m.wait(30) is True
        assert m.wait(0) is True
    for d, data in zip((running, queued), datas):
        assert sha256(d.result()) == sha256(data)
    with pytest.raises(accel.UsageError, match="run by a Manager"):
        running.start()


def test_exception_in_the_block_cancels_and_keeps_state(
    server: FaultServer, tmp_path: Path
) -> None:
    datas = serve(server, 3, 1 * MiB, seed=120)
    urls = [server.url(f"/f{i}.bin") for i in range(3)]
    server.faults.rate = 256 * KiB

    class Boom(Exception):
        pass

    t0 = 0.0
    ds: List[accel.Downloader] = []
    with (
        pytest.raises(Boom),
        accel.Manager(
            jobs=2, directory=tmp_path, options=opts(connections=2, commit_interval=0.1)
        ) as m,
    ):
        ds = [m.add(url) for url in urls]
        wait_until(lambda: written(ds[0]) > 0 and written(ds[1]) > 0, 15, "progress")
        t0 = time.monotonic()
        raise Boom()
    assert time.monotonic() - t0 < 5, "leaving the block did not stop the downloads promptly"
    assert m.cancelled
    for d in ds:
        assert d.done and d.cancelled
        assert isinstance(d.exception(), accel.CancelledError)
    for i in (0, 1):  # they ran: their state is kept for a resume
        part, side = tmp_path / f"f{i}.bin.part", tmp_path / f"f{i}.bin.part.json"
        segs = load_sidecar(side, part, urls[i], datas[i])
        assert sum(s["written"] for s in segs) > 0
        assert not (tmp_path / f"f{i}.bin").exists()
    assert not any(name.startswith("f2.bin") for name in listing(tmp_path))
    p = m.progress()
    assert (p.done, p.failed, p.queued, p.active) == (0, 3, 0, 0)


def test_untracked_manager_forgets_ended_downloads(server: FaultServer, tmp_path: Path) -> None:
    """track=False: an ended download is not kept (memory stays bounded for endless lists);
    done callbacks still see every one, and as_completed() says it cannot work."""
    import gc
    import weakref

    datas = serve(server, 20, 8 * KiB, seed=80)
    ended: List[str] = []
    refs = []
    with accel.Manager(jobs=4, directory=tmp_path, options=opts(), track=False) as m:
        for i in range(len(datas)):
            d = m.add(server.url(f"/f{i}.bin"))
            d.add_done_callback(lambda d: ended.append(d.url))
            refs.append(weakref.ref(d))
        del d
        with pytest.raises(RuntimeError, match="track"):
            next(m.as_completed())
    assert len(ended) == len(datas)
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    for i, data in enumerate(datas):
        assert sha256(tmp_path / f"f{i}.bin") == sha256(data)


def test_the_guard_keeps_no_ended_inline_download_alive(
    server: FaultServer, tmp_path: Path
) -> None:
    """The process-wide guard thread watches one-connection transfers; once one ended, no
    reference to it (nor to its Downloader) may linger in the idle guard."""
    import gc
    import weakref

    data = make_data(32 * KiB, seed=81)
    server.add_file("/f.bin", data)
    server.faults.rate = 128 * KiB  # a quarter second: the guard looks at it several times
    d = accel.Downloader(server.url("/f.bin"), tmp_path / "f.bin", options=opts())
    assert sha256(d.run()) == sha256(data)
    ref = weakref.ref(d)
    del d
    gc.collect()
    assert ref() is None
