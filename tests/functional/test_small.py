"""The many-small-files path (accel._engine.loop): every check of the regular path, on one
thread, against the real FaultServer. Each test runs with both parsers (h11 and llhttp)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

import accel
from accel import events as ev
from accel.exceptions import HTTPError, OutputExistsError
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    popen_accel,
    run_accel,
    sha256,
    wait_until,
)
from tests.servers import FaultHandler, FaultServer, RequestLog, TLSFaultServer, make_data

FAST = fast_retry(3)


@pytest.fixture(autouse=True, params=["h11", "httptools"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ACCEL_PARSER", request.param)
    monkeypatch.setenv("ACCEL_LEAN", "1")  # opt-in for now
    yield request.param


def opts(**kw: Any) -> accel.Options:
    return fast_options(FAST, **kw)


def gets(server: FaultServer, path: str) -> List[RequestLog]:
    return [r for r in server.requests if r.path == path and r.method == "GET"]


def run_all(tmp_path: Path, urls: List[str], **kw: Any) -> Tuple[List[accel.Downloader], List[str]]:
    """Download ``urls`` with a Manager; the downloads and the threads their Started ran on."""
    threads: List[str] = []

    def on_event(d: accel.Downloader, e: ev.Event) -> None:
        if isinstance(e, ev.Started):
            threads.append(threading.current_thread().name)

    kw.setdefault("options", opts())
    with accel.Manager(jobs=kw.pop("jobs", 4), directory=tmp_path, on_event=on_event, **kw) as m:
        ds = [m.add(u) for u in urls]
    return ds, threads


def test_small_files_run_on_one_thread_jobs_at_a_time(server: FaultServer, tmp_path: Path) -> None:
    datas = [make_data(100 * KiB + i, seed=i) for i in range(6)]
    for i, data in enumerate(datas):
        server.add_file(f"/f{i}.bin", data)
    server.faults.rate = 512 * KiB
    actives: List[int] = []
    threads: List[str] = []

    def on_event(d: accel.Downloader, e: ev.Event) -> None:
        if isinstance(e, ev.Started):
            threads.append(threading.current_thread().name)

    with accel.Manager(jobs=2, directory=tmp_path, options=opts(), on_event=on_event) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
        while not m.wait(0.005):
            actives.append(m.progress().active)
    assert [sha256(d.result()) for d in ds] == [sha256(x) for x in datas]
    assert threads == ["accel-loop"] * len(datas)  # no thread per file
    assert actives and max(actives) == 2, actives
    assert len({r.connection_id for r in server.requests}) == 2  # kept alive, file to file
    assert sorted(os.listdir(tmp_path)) == sorted(f"f{i}.bin" for i in range(len(datas)))
    assert all(r.range_header == f"bytes=0-{MiB - 1}" for r in server.requests)


def test_short_body_goes_to_the_regular_path(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(300 * KiB, 1)
    server.add_file("/short.bin", data)
    server.faults.cut_after = 100 * KiB  # the first answer stops early: connection closed
    (d,), _ = run_all(tmp_path, [server.url("/short.bin")])
    assert sha256(d.result()) == sha256(data)
    assert len(gets(server, "/short.bin")) >= 2
    assert os.listdir(tmp_path) == ["short.bin"]


def test_body_longer_than_its_length(server: FaultServer, tmp_path: Path) -> None:
    """Bytes past Content-Length are not the body: the file has the length said, and the
    connection they spoilt is not used again."""
    server.add_file("/next.bin", make_data(10 * KiB, 2))

    def overlong(handler: FaultHandler, log: RequestLog) -> bool:
        if log.path != "/long.bin":
            return False
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789EXTRA")
        handler.wfile.flush()
        return True

    server.faults.on_request = overlong
    ds, _ = run_all(tmp_path, [server.url("/long.bin"), server.url("/next.bin")], jobs=1)
    assert ds[0].result().read_bytes() == b"0123456789"
    assert sha256(ds[1].result()) == sha256(make_data(10 * KiB, 2))
    first, second = gets(server, "/long.bin")[0], gets(server, "/next.bin")[0]
    assert first.connection_id != second.connection_id


def test_wrong_content_range_is_never_written(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(200 * KiB, 3)
    server.add_file("/shifted.bin", data)
    server.faults.wrong_content_range_times = 1  # the first 206 is shifted by one byte
    (d,), _ = run_all(tmp_path, [server.url("/shifted.bin")])
    assert sha256(d.result()) == sha256(data)
    assert len(gets(server, "/shifted.bin")) >= 2  # the shifted answer, then the regular path


def test_error_statuses_and_retries_as_on_the_regular_path(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(50 * KiB, 4)
    server.add_file("/busy.bin", data)
    server.faults.status_times, server.faults.status_code = 2, 503
    ds, _ = run_all(tmp_path, [server.url("/busy.bin"), server.url("/missing.bin")], jobs=1)
    assert sha256(ds[0].result()) == sha256(data)
    error = ds[1].exception()
    assert isinstance(error, HTTPError) and error.status == 404
    assert not (tmp_path / "missing.bin").exists()
    assert not (tmp_path / "missing.bin.part").exists()


def test_redirect_to_another_origin_drops_credentials(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(20 * KiB, 5)
    other_server.add_file("/there.bin", data)
    server.faults.redirects = {"/here.bin": other_server.url("/there.bin")}
    secret = {"Authorization": "Bearer s3cret", "Cookie": "session=1"}
    (d,), _ = run_all(tmp_path, [server.url("/here.bin")], options=opts(headers=secret))
    assert sha256(d.result()) == sha256(data)
    asked_here = gets(server, "/here.bin")
    assert asked_here and all(r.headers.get("Authorization") == "Bearer s3cret" for r in asked_here)
    there = gets(other_server, "/there.bin")
    assert there and all("Authorization" not in r.headers for r in there)
    assert all("Cookie" not in r.headers for r in there)


def test_content_disposition_names_the_file(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(30 * KiB, 6)
    server.add_file("/get", data, content_disposition='attachment; filename="named.bin"')
    (d,), _ = run_all(tmp_path, [server.url("/get?id=7")])
    assert d.result() == tmp_path / "named.bin"
    assert os.listdir(tmp_path) == ["named.bin"]
    assert sha256(tmp_path / "named.bin") == sha256(data)
    assert len(gets(server, "/get")) == 1  # named on the way, not asked again


def test_no_overwrite_without_force(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(40 * KiB, 7)
    server.add_file("/there.bin", data)
    (tmp_path / "there.bin").write_bytes(b"mine")
    (d,), _ = run_all(tmp_path, [server.url("/there.bin")])
    assert isinstance(d.exception(), OutputExistsError)
    assert (tmp_path / "there.bin").read_bytes() == b"mine"
    (d,), _ = run_all(tmp_path, [server.url("/there.bin")], options=opts(force=True))
    assert sha256(d.result()) == sha256(data)
    assert os.listdir(tmp_path) == ["there.bin"]


def test_a_big_file_continues_in_the_segmented_engine_without_refetching(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(5 * MiB + 123, 8)
    server.add_file("/big.bin", data)
    small = make_data(10 * KiB, 9)
    server.add_file("/small.bin", small)
    ds, threads = run_all(
        tmp_path, [server.url("/big.bin"), server.url("/small.bin")], options=opts(connections=4)
    )
    assert sha256(ds[0].result()) == sha256(data)
    assert sha256(ds[1].result()) == sha256(small)
    assert server.bytes_sent_for("/big.bin") == len(data)  # the first MiB was not fetched again
    ranges = [r.range_header for r in gets(server, "/big.bin")]
    assert ranges[0] == f"bytes=0-{MiB - 1}"
    assert len(ranges) >= 3  # and the rest came in segments
    assert "accel-loop" in threads and any(t.startswith("accel-job-") for t in threads)
    assert sorted(os.listdir(tmp_path)) == ["big.bin", "small.bin"]


def test_cancel_keeps_what_arrived_for_a_resume(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(600 * KiB, 10)
    server.add_file("/slow.bin", data)
    server.faults.rate = 128 * KiB
    with accel.Manager(jobs=2, directory=tmp_path, options=opts()) as m:
        d = m.add(server.url("/slow.bin"))
        wait_until(
            lambda: (d.progress() or ev.Progress(0, None, 0, None, 0)).written > 64 * KiB,
            10,
            "bytes to arrive",
        )
        m.cancel()
    assert isinstance(d.exception(), accel.CancelledError)
    part = tmp_path / "slow.bin.part"
    assert part.exists() and (tmp_path / "slow.bin.part.json").exists()
    kept = server.bytes_sent_for("/slow.bin")
    server.faults.rate = None
    server.reset_counters()
    (d,), _ = run_all(tmp_path, [server.url("/slow.bin")])
    assert sha256(d.result()) == sha256(data)
    assert server.bytes_sent_for("/slow.bin") <= len(data) - kept + 256 * KiB
    first = gets(server, "/slow.bin")[0].range_header or ""
    assert first.startswith("bytes=") and not first.startswith("bytes=0-")  # resumed
    assert os.listdir(tmp_path) == ["slow.bin"]


def test_a_crash_leaves_a_part_holding_the_bytes_received(
    server: FaultServer, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a small file: its .part holds exactly a prefix of the body
    (its size is how far it got), no sidecar; the next run fetches it whole."""
    data = make_data(900 * KiB, 11)
    server.add_file("/c.bin", data)
    server.faults.rate = 256 * KiB
    listed = tmp_path / "list.txt"
    listed.write_text(server.url("/c.bin") + "\n")
    out = tmp_path / "out"
    proc = popen_accel("-i", str(listed), "-j", "2", "-d", str(out), "-q", cwd=tmp_path)
    part = out / "c.bin.part"
    try:
        wait_until(lambda: part.exists() and part.stat().st_size > 100 * KiB, 10, "a .part")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    got = part.read_bytes()
    assert 0 < len(got) < len(data) and got == data[: len(got)]
    assert not (out / "c.bin.part.json").exists()
    server.faults.rate = None
    rerun = run_accel("-i", str(listed), "-j", "2", "-d", str(out), "-q", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert sha256(out / "c.bin") == sha256(data)
    assert os.listdir(out) == ["c.bin"]


def test_the_shared_rate_limit_holds(server: FaultServer, tmp_path: Path) -> None:
    datas = [make_data(64 * KiB, 20 + i) for i in range(8)]
    for i, data in enumerate(datas):
        server.add_file(f"/r{i}.bin", data)
    started = time.monotonic()
    ds, _ = run_all(
        tmp_path, [server.url(f"/r{i}.bin") for i in range(8)], options=opts(limit_rate="1M")
    )
    elapsed = time.monotonic() - started
    assert [sha256(d.result()) for d in ds] == [sha256(x) for x in datas]
    # 512 KiB at 1 MiB/s, less the burst the bucket allows (a tenth of a second).
    assert elapsed >= 0.35, elapsed


def test_the_per_host_cap_holds(server: FaultServer, tmp_path: Path) -> None:
    datas = [make_data(48 * KiB, 30 + i) for i in range(6)]
    for i, data in enumerate(datas):
        server.add_file(f"/h{i}.bin", data)
    server.faults.rate = 256 * KiB
    ds, _ = run_all(tmp_path, [server.url(f"/h{i}.bin") for i in range(6)], max_per_host=1)
    assert [sha256(d.result()) for d in ds] == [sha256(x) for x in datas]
    spans = sorted((r.started, r.ended or 0.0) for r in server.requests)
    assert all(b[0] >= a[1] - 0.01 for a, b in zip(spans, spans[1:])), spans  # one at a time


def test_a_kept_connection_the_server_closed_is_replaced(
    server: FaultServer, tmp_path: Path
) -> None:
    first, second = make_data(20 * KiB, 40), make_data(20 * KiB, 41)
    server.add_file("/one.bin", first)
    server.add_file("/two.bin", second)
    with accel.Manager(jobs=1, directory=tmp_path, options=opts()) as m:
        a = m.add(server.url("/one.bin"))
        assert sha256(a.result()) == sha256(first)
        server.drop_connections()  # the idle keep-alive connection goes away
        b = m.add(server.url("/two.bin"))
        assert sha256(b.result()) == sha256(second)
    asked = gets(server, "/two.bin")
    assert len(asked) == 1 and asked[0].range_header == f"bytes=0-{MiB - 1}"  # the loop's own
    assert asked[0].connection_id != gets(server, "/one.bin")[0].connection_id


# -- TLS: the loop's sockets are made and verified by urllib3, as requests configures them --


@pytest.fixture
def tls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tuple[TLSFaultServer, str]]:
    import ssl

    import trustme

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with TLSFaultServer(ctx) as srv, ca.cert_pem.tempfile() as ca_file:
        yield srv, ca_file


def test_https_with_the_ca_bundle_runs_on_the_loop(
    tls: Tuple[TLSFaultServer, str], tmp_path: Path
) -> None:
    srv, ca_file = tls
    datas = [make_data(70 * KiB + i, 50 + i) for i in range(4)]
    for i, data in enumerate(datas):
        srv.add_file(f"/t{i}.bin", data)
    ds, threads = run_all(
        tmp_path, [srv.url(f"/t{i}.bin") for i in range(4)], jobs=2, options=opts(verify=ca_file)
    )
    assert [sha256(d.result()) for d in ds] == [sha256(x) for x in datas]
    assert threads == ["accel-loop"] * 4
    assert len({r.connection_id for r in srv.requests}) == 2  # TLS sessions kept alive


def test_https_with_an_unknown_certificate_fails_as_before(
    tls: Tuple[TLSFaultServer, str], tmp_path: Path
) -> None:
    srv, _ = tls
    srv.add_file("/t.bin", make_data(10 * KiB, 60))
    (d,), _ = run_all(tmp_path, [srv.url("/t.bin")])
    error = d.exception()
    assert isinstance(error, accel.NetworkError) and "TLS" in str(error), error
    assert os.listdir(tmp_path) == []
    (d,), threads = run_all(tmp_path, [srv.url("/t.bin")], options=opts(verify=False))
    assert sha256(d.result()) == sha256(make_data(10 * KiB, 60))
    assert threads == ["accel-loop"]


def test_a_second_process_on_the_same_small_file_never_spoils_it(
    server: FaultServer, tmp_path: Path
) -> None:
    """The loop takes no lock file for a small file: a second process takes the name over
    (lock free, .part replaced) and the first one, finding its .part gone, steps aside."""
    data = make_data(700 * KiB, 61)
    server.add_file("/s.bin", data)
    server.faults.rate = 256 * KiB
    first = popen_accel(server.url("/s.bin"), "-q", cwd=tmp_path)
    try:
        part = tmp_path / "s.bin.part"
        wait_until(lambda: part.exists() and part.stat().st_size > 64 * KiB, 10, "a .part")
        second = popen_accel(server.url("/s.bin"), "-q", cwd=tmp_path)
        codes = sorted([first.wait(30), second.wait(30)])
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
    assert codes[0] == 0 and codes[1] in (0, 6), codes
    assert sha256(tmp_path / "s.bin") == sha256(data)
    assert os.listdir(tmp_path) == ["s.bin"]


def test_a_host_slow_to_connect_does_not_stall_the_others(
    server: FaultServer, tmp_path: Path
) -> None:
    """Connections are made beside the loop: while one host takes its connect timeout
    (a loopback listener whose backlog is full drops new SYNs), the others go on."""
    import socket

    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    try:
        for _ in range(3):  # fill the accept queue: later connects hang
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(stuck.getsockname())
            fillers.append(c)
        time.sleep(0.1)
        port = stuck.getsockname()[1]
        datas = [make_data(30 * KiB, 70 + i) for i in range(6)]
        for i, data in enumerate(datas):
            server.add_file(f"/g{i}.bin", data)
        ended: List[float] = []
        started = time.monotonic()
        with accel.Manager(
            jobs=4, directory=tmp_path, options=opts(connect_timeout=3.0, retry=fast_retry(0))
        ) as m:
            slow = m.add(f"http://127.0.0.1:{port}/x.bin")
            ds = [m.add(server.url(f"/g{i}.bin")) for i in range(len(datas))]
            for d in ds:
                d.add_done_callback(lambda d: ended.append(time.monotonic() - started))
            assert [sha256(d.result()) for d in ds] == [sha256(x) for x in datas]
            assert max(ended) < 2.0, ended  # long before the stuck connect times out
            assert not slow.done
            m.cancel()
    finally:
        for c in fillers:
            c.close()
        stuck.close()
