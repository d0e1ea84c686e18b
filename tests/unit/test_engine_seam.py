"""The engine over the HTTP seam, with no sockets: the probe, the transfer and its workers,
and the whole Downloader, each talking to a :class:`~tests.servers.MockTransport`.

The functional tests prove these paths against real servers; here the same paths run in
milliseconds, deterministically, with faults that are awkward to arrange with sockets (a
wrong Content-Range on exactly one request, a body cut after exactly N bytes, an ETag that
changes between two requests). Every test runs under :func:`no_sockets`.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest
import requests

import accel
from accel import Options
from accel._disk import state
from accel._disk.storage import PartFile
from accel._engine.context import Context
from accel._engine.plan import initial_plan
from accel._engine.probe import probe
from accel._engine.transfer import Transfer
from accel.cli.exitcodes import EXIT_HTTP, EXIT_NETWORK, exit_code_for
from accel.retry import RetryPolicy
from tests.helpers import SPLIT, fast_options, fast_retry, sha256
from tests.servers import MockRequest, MockResponse, MockTransport, RangedFile, make_data

URL = "http://files.invalid/f"  # never resolved: nothing here touches the network
SIZE = 3 * 1024 * 1024 + 123
RETRY = fast_retry(3)


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """Fail any attempt to connect or resolve during the test (and the test, afterwards)."""
    attempts: List[str] = []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kw: Any) -> Any:
            attempts.append(name)
            # An OSError, as a network failure would be (the check after the test tells).
            raise OSError(f"a unit test of the seam used the network ({name})")

        return refused

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse(name))
    yield attempts
    assert attempts == []


@pytest.fixture
def data() -> bytes:
    return make_data(SIZE, seed=18)


def options(**kw: Any) -> Options:
    kw.setdefault("hedge_after", 30.0)  # instant reads: no straggler to hedge, keep it so
    return fast_options(RETRY, **kw)


def download(
    transport: MockTransport, out: Path, events: Optional[List[accel.Event]] = None, **kw: Any
) -> Path:
    sink = events.append if events is not None else None
    return accel.Downloader(
        URL, out, options=options(**kw), session_factory=transport, on_event=sink
    ).run()


def on_request(n: int, handler: Any, fault: Any) -> Any:
    """``handler``, except that its ``n``-th GET (0-based) is answered by ``fault(req)``."""
    seen = [0]
    lock = threading.Lock()

    def answer(req: MockRequest) -> MockResponse:
        with lock:
            mine = seen[0] if req.method == "GET" else -1
            seen[0] += req.method == "GET"
        return fault(req) if mine == n else handler(req)

    return answer


def tiles(spans: List[Tuple[int, int]], size: int) -> bool:
    """Whether the (first, count) spans cover [0, size) exactly, with no gap or overlap."""
    pos = 0
    for first, count in sorted(spans):
        if first != pos:
            return False
        pos += count
    return pos == size


# -- the guard ---------------------------------------------------------------------------------


def test_the_guard_refuses_a_real_connection(no_sockets: List[str]) -> None:
    with pytest.raises(requests.exceptions.ConnectionError, match="used the network"):
        requests.get("http://127.0.0.1:9/", timeout=1)
    assert no_sockets
    no_sockets.clear()  # the fixture's own check would fail this test otherwise


# -- the probe, alone ----------------------------------------------------------------------------


def context(transport: MockTransport, **kw: Any) -> Context:
    return Context(URL, options(**kw), transport, threading.Event(), lambda e: None, lambda n: None)


def test_probe_learns_the_file_and_keeps_the_first_range_open(data: bytes) -> None:
    transport = MockTransport(RangedFile(data))
    with probe(context(transport), 0, SPLIT - 1, None) as found:
        assert found.remote.size == SIZE and found.remote.ranges
        assert found.remote.validators.etag == '"v1"' and found.remote.validators.resumable
        assert found.response is not None and found.response.status_code == 206
        assert found.response.raw.sent == 0  # the body is the transfer's to read
    [req] = transport.requests
    assert req.headers["range"] == f"bytes=0-{SPLIT - 1}" and "If-Range" not in req.headers
    assert transport.all_closed()


def test_probe_of_a_server_without_ranges_is_a_plain_stream(data: bytes) -> None:
    transport = MockTransport(RangedFile(data, ranges=False))
    with probe(context(transport), 0, SPLIT - 1, None) as found:
        assert not found.remote.ranges and found.remote.size == SIZE
        assert found.response is not None and found.response.status_code == 200
    assert len(transport.requests) == 1


def test_probe_head_falls_back_to_one_byte_when_head_is_refused(data: bytes) -> None:
    file = RangedFile(data)

    def no_head(req: MockRequest) -> MockResponse:
        return MockResponse(405) if req.method == "HEAD" else file(req)

    transport = MockTransport(no_head)
    with probe(context(transport), 0, None, None, head=True) as found:
        assert found.response is None and found.remote.size == SIZE
    assert [(r.method, r.headers.get("Range")) for r in transport.requests] == [
        ("HEAD", None),
        ("GET", "bytes=0-0"),
    ]


# -- the transfer and its workers, without the Downloader ---------------------------------------


def test_transfer_over_the_probe_tiles_the_file(data: bytes, tmp_path: Path) -> None:
    transport = MockTransport(RangedFile(data))
    ctx = context(transport, connections=4)
    found = probe(ctx, 0, 1024 * 1024 - 1, None)
    segments = initial_plan(SIZE, 4, SPLIT, ranged=True)
    part = PartFile.create(tmp_path / "f.part", SIZE)
    try:
        transfer = Transfer(ctx, part, segments, found.remote, None, ranged=True)
        assert transfer.run(*found.take()) == SIZE
    finally:
        part.close()
    assert (tmp_path / "f.part").read_bytes() == data
    assert tiles(transport.delivered(), SIZE)
    assert transport.all_closed()


# -- the whole Downloader ------------------------------------------------------------------------


def test_four_connections_tile_the_file_exactly(data: bytes, tmp_path: Path) -> None:
    transport = MockTransport(RangedFile(data))
    path = download(transport, tmp_path / "out.bin", connections=4)
    assert sha256(path) == sha256(data)
    gets = transport.gets()
    assert len(gets) == 4  # the probe's range goes on as the first segment
    spans = [r.range for r in gets]
    assert all(s is not None for s in spans)
    asked = sorted((s[0], SIZE - 1 if s[1] is None else s[1]) for s in spans if s)
    assert asked[0][0] == 0 and asked[-1][1] == SIZE - 1
    for (_, end), (start, _) in zip(asked, asked[1:]):
        assert start <= end + 1  # no gap between the ranges asked for
    # Asked-for ranges may overlap (the probe asks for more than its segment, and a
    # stolen range shrinks): what was read may not, beyond the steal margin.
    delivered = transport.delivered()
    assert sum(n for _, n in delivered) - SIZE <= SPLIT
    assert tiles(delivered, SIZE)
    assert all(r.headers.get("If-Range") == '"v1"' for r in gets[1:])
    assert transport.all_closed()


def test_a_server_without_ranges_is_one_stream(data: bytes, tmp_path: Path) -> None:
    transport = MockTransport(RangedFile(data, ranges=False))
    events: List[accel.Event] = []
    path = download(transport, tmp_path / "out.bin", events, connections=4)
    assert sha256(path) == sha256(data)
    assert len(transport.requests) == 1
    assert transport.delivered() == [(0, SIZE)]
    [started] = [e for e in events if isinstance(e, accel.Started)]
    assert not started.ranged and started.connections == 1


def test_a_wrong_content_range_is_never_written_and_is_retried(data: bytes, tmp_path: Path) -> None:
    file = RangedFile(data)

    def shifted(req: MockRequest) -> MockResponse:
        good = file(req)
        first, last = req.range or (0, None)
        assert last is not None
        # Off by one byte, and consistent with itself (length, total): only the start is wrong.
        good.headers["Content-Range"] = f"bytes {first + 1}-{last}/{SIZE}"
        good.headers["Content-Length"] = str(last - first)
        return MockResponse(206, good.headers, b"\xee" * (last - first))

    transport = MockTransport(on_request(1, file, shifted))
    events: List[accel.Event] = []
    path = download(transport, tmp_path / "out.bin", events, connections=2)
    assert sha256(path) == sha256(data)
    bad = transport.gets()[1]
    assert bad.response is not None and bad.response.raw.sent == 0  # not a byte read
    again = [r for r in transport.gets()[2:] if r.headers.get("Range") == bad.headers["Range"]]
    assert again, "the range was not asked for again"
    assert any("Content-Range" in e.reason for e in events if isinstance(e, accel.Retrying))


@pytest.mark.parametrize(
    "fault",
    [
        {"cut_after": 100_000},  # the body ends early (EOF)
        {"fail_after": 100_000},  # the connection is reset
        {"fail_after": 100_000, "error": TimeoutError("timed out")},  # a read times out
    ],
    ids=["cut", "reset", "timeout"],
)
def test_a_body_cut_short_resumes_from_the_last_byte_written(
    data: bytes, tmp_path: Path, fault: Any
) -> None:
    file = RangedFile(data)

    def cut(req: MockRequest) -> MockResponse:
        resp = file(req)
        for key, value in fault.items():
            setattr(resp.raw, key, value)
        return resp

    transport = MockTransport(on_request(1, file, cut))
    path = download(transport, tmp_path / "out.bin", connections=2)
    assert sha256(path) == sha256(data)
    broken = transport.gets()[1]
    assert broken.response is not None and broken.response.raw.sent == 100_000
    assert broken.start is not None
    starts = [r.start for r in transport.gets()[2:]]
    assert broken.start + 100_000 in starts  # the rest, from the first byte not written
    assert broken.start not in starts  # not the written part again
    assert tiles(transport.delivered(), SIZE)


@pytest.mark.parametrize("which", [0, 1], ids=["probe", "worker"])
def test_a_503_with_retry_after_is_retried_after_the_delay(
    data: bytes, tmp_path: Path, which: int
) -> None:
    file = RangedFile(data)
    transport = MockTransport(
        on_request(which, file, lambda req: MockResponse(503, {"Retry-After": "30"}))
    )
    # Retry-After: 30, capped at 0.3 s; the backoff alone would wait 10 ms.
    retry = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.01, retry_after_cap=0.3)
    out = tmp_path / "out.bin"
    events: List[accel.Event] = []
    path = accel.Downloader(
        URL,
        out,
        options=options(connections=1, retry=retry),
        session_factory=transport,
        on_event=events.append,
    ).run()
    assert sha256(path) == sha256(data)
    gets = transport.gets()
    refused = gets[which]
    assert refused.response is not None and refused.response.status_code == 503
    retried = gets[which + 1]
    assert retried.headers.get("Range") == refused.headers.get("Range")
    assert retried.at - refused.at >= 0.3 - 0.01
    if which:  # a worker says so
        retrying = [e for e in events if isinstance(e, accel.Retrying)]
        assert [e.delay for e in retrying] == [0.3]


def test_a_changed_etag_restarts_from_zero(data: bytes, tmp_path: Path) -> None:
    file = RangedFile(data)
    new = make_data(SIZE, seed=19)

    def change(req: MockRequest) -> MockResponse:
        resp = file(req)  # the probe's answer is still the old version...
        file.data, file.etag = new, '"v2"'  # ...every later one is the new
        return resp

    transport = MockTransport(on_request(0, file, change))
    events: List[accel.Event] = []
    path = download(transport, tmp_path / "out.bin", events, connections=4)
    assert sha256(path) == sha256(new)
    assert [e for e in events if isinstance(e, accel.Restarted)]
    gets = transport.gets()
    assert gets[1].headers["If-Range"] == '"v1"' and gets[1].response is not None
    assert gets[1].response.status_code == 200  # If-Range failed: the whole new file
    fresh = [r for r in gets if r.headers.get("If-Range") is None][1]  # the new probe
    assert fresh.start == 0
    assert all(r.headers.get("If-Range") == '"v2"' for r in gets[gets.index(fresh) + 1 :])


def test_a_416_on_resume_of_a_complete_record_finishes_without_a_body(
    data: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "out.bin"
    part = out.with_name(out.name + ".part")
    part.write_bytes(data)
    file = RangedFile(data)
    half = SIZE // 2
    rows = [(0, half - 1, half, 0), (half, SIZE - 1, SIZE - half, 0)]
    record = state.Record(URL, SIZE, file.etag, file.last_modified, rows, state.boot_id())
    state.save(state.sidecar_path(part), record)
    transport = MockTransport(file)
    events: List[accel.Event] = []
    path = download(transport, out, events)
    assert sha256(path) == sha256(data)
    [req] = transport.requests
    assert req.headers["Range"] == f"bytes={SIZE}-" and req.headers["If-Range"] == '"v1"'
    assert req.response is not None and req.response.status_code == 416
    assert transport.delivered() == []
    assert not part.exists() and not state.sidecar_path(part).exists()
    assert [e for e in events if isinstance(e, accel.Completed)]


def test_a_404_is_an_http_error(tmp_path: Path) -> None:
    transport = MockTransport(lambda req: MockResponse(404, {"Content-Length": "9"}, b"not found"))
    out = tmp_path / "out.bin"
    with pytest.raises(accel.HTTPError) as info:
        download(transport, out)
    assert info.value.status == 404 and info.value.url == URL
    assert str(info.value).startswith("HTTP 404 Not Found from ")
    assert exit_code_for(info.value) == EXIT_HTTP
    assert len(transport.requests) == 1  # final: not retried
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ConnectionError("Connection aborted: reset by peer"),
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=10.0)"),
        requests.exceptions.ConnectTimeout("Connection to files.invalid timed out"),
    ],
    ids=["connection", "read-timeout", "connect-timeout"],
)
def test_requests_errors_become_a_network_error_after_retries(
    tmp_path: Path, error: Exception
) -> None:
    def fail(req: MockRequest) -> MockResponse:
        raise error

    transport = MockTransport(fail)
    with pytest.raises(accel.NetworkError) as info:
        download(transport, tmp_path / "out.bin")
    assert not isinstance(info.value, accel.RemoteProtocolError)
    assert "gave up after 3 retries" in str(info.value)
    assert exit_code_for(info.value) == EXIT_NETWORK
    assert len(transport.requests) == RETRY.attempts + 1


def test_a_refused_first_contact_is_reported_at_once(tmp_path: Path) -> None:
    def refuse(req: MockRequest) -> MockResponse:
        cause = ConnectionRefusedError(111, "Connection refused")
        raise requests.exceptions.ConnectionError(cause)

    transport = MockTransport(refuse)
    with pytest.raises(accel.NetworkError, match="connection refused"):
        download(transport, tmp_path / "out.bin")
    assert len(transport.requests) == 2  # one quick retry, not the policy's three


def test_workers_failing_after_the_probe_become_a_network_error(
    data: bytes, tmp_path: Path
) -> None:
    file = RangedFile(data)

    def flaky(req: MockRequest) -> MockResponse:
        if req.headers.get("If-Range"):  # every request after the probe
            raise requests.exceptions.ConnectionError("Connection reset by peer")
        return file(req)

    transport = MockTransport(flaky)
    out = tmp_path / "out.bin"
    with pytest.raises(accel.NetworkError, match="gave up after 3 retries"):
        download(transport, out, connections=2)
    assert not out.exists()
    assert transport.all_closed()
