"""Self-tests of the fault-injecting test server (tests/servers/) and scripts/serve.py."""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import requests

from tests.helpers import REPO
from tests.servers import FaultHandler, FaultServer, RequestLog, make_data

SIZE = 300_000
DATA = make_data(SIZE, seed=1)
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture
def data() -> bytes:
    """What the shared ``srv`` fixture serves at /f here: DATA."""
    return DATA


def get(
    server: FaultServer, path: str = "/f", session: Optional[requests.Session] = None, **hdrs: str
) -> Tuple[requests.Response, bytes]:
    """GET with identity encoding; returns the response and its raw (undecoded) body."""
    headers = dict(IDENTITY)
    headers.update({k.replace("_", "-"): v for k, v in hdrs.items()})
    getter = session.get if session is not None else requests.get
    resp = getter(server.url(path), headers=headers, stream=True, timeout=10)
    body = resp.raw.read(decode_content=False)
    resp.close()
    return resp, body


def raw_get(server: FaultServer, path: str = "/f", headers: Optional[Dict[str, str]] = None):
    """Start a GET with http.client; returns (connection, response) after the headers."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


# --- normal behaviour -------------------------------------------------------------------


def test_full_get_headers_and_log(srv: FaultServer) -> None:
    resp, body = get(srv)
    assert resp.status_code == 200
    assert body == DATA
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 18
    assert etag == srv.etag("/f")
    assert resp.headers["Last-Modified"].endswith(" GMT")
    assert resp.headers["Last-Modified"] == srv.last_modified("/f")
    assert "Content-Disposition" not in resp.headers
    (log,) = srv.requests
    assert (log.method, log.path, log.status, log.range_header) == ("GET", "/f", 200, None)
    assert log.headers["accept-encoding"] == "identity"
    assert log.headers["Accept-Encoding"] == "identity"
    assert "HOST" in log.headers
    assert log.body_bytes_sent == SIZE and log.completed
    assert log.connection_id == 0
    assert log.response_headers["etag"] == etag


def test_head_has_headers_but_no_body_and_ignores_range(srv: FaultServer) -> None:
    resp = requests.head(srv.url("/f"), headers={"Range": "bytes=0-9"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == str(SIZE)
    assert "Content-Range" not in resp.headers
    assert resp.content == b""
    assert srv.bytes_sent == 0
    assert srv.requests[0].method == "HEAD"


def test_unknown_path_is_404_and_connection_survives(srv: FaultServer) -> None:
    with requests.Session() as session:
        resp, body = get(srv, "/nope", session=session)
        assert resp.status_code == 404 and body == b"not found"
        resp, body = get(srv, "/f", session=session)
        assert resp.status_code == 200 and body == DATA
    assert [r.connection_id for r in srv.requests] == [0, 0]
    assert srv.connections == 1
    assert srv.bytes_sent == SIZE  # the 404 body is not counted


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-100", SIZE - 100, SIZE - 1),
        ("bytes=299950-999999", 299950, SIZE - 1),
        ("bytes=-999999", 0, SIZE - 1),
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
        ("bytes = 5 - 9", 5, 9),
    ],
)
def test_single_range_206(srv: FaultServer, header: str, start: int, end: int) -> None:
    resp, body = get(srv, Range=header)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.headers["ETag"] == srv.etag("/f")
    assert body == DATA[start : end + 1]
    assert srv.requests[0].range_header == header
    assert srv.bytes_sent == end - start + 1


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", "bytes=999999-1000000", "bytes=-0"])
def test_unsatisfiable_range_416(srv: FaultServer, header: str) -> None:
    resp, _ = get(srv, Range=header)
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"
    assert srv.bytes_sent == 0


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=-1", "bytes=0-0"])
def test_any_range_on_empty_file_is_416(srv: FaultServer, header: str) -> None:
    srv.add_file("/empty", b"")
    resp, _ = get(srv, "/empty", Range=header)
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == "bytes */0"
    resp, body = get(srv, "/empty")
    assert resp.status_code == 200 and body == b"" and resp.headers["Content-Length"] == "0"


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "bytes=abc", "bytes=9-5", "items=0-5", "bytes=-", "bytes=5", "bytes=\xb2-5"],
)
def test_multi_or_malformed_range_gives_full_200(srv: FaultServer, header: str) -> None:
    resp, body = get(srv, Range=header)
    assert resp.status_code == 200
    assert "Content-Range" not in resp.headers
    assert body == DATA


def test_if_range(srv: FaultServer) -> None:
    etag, lm = srv.etag("/f"), srv.last_modified("/f")
    assert etag and lm
    resp, body = get(srv, Range="bytes=10-19", If_Range=etag)
    assert resp.status_code == 206 and body == DATA[10:20]
    resp, body = get(srv, Range="bytes=10-19", If_Range=lm)
    assert resp.status_code == 206 and body == DATA[10:20]
    resp, body = get(srv, Range="bytes=10-19", If_Range='"0000000000000000"')
    assert resp.status_code == 200 and body == DATA
    resp, body = get(srv, Range="bytes=10-19", If_Range="W/" + etag)
    assert resp.status_code == 200 and body == DATA
    resp, body = get(srv, Range="bytes=10-19", If_Range="Mon, 01 Jan 2001 00:00:00 GMT")
    assert resp.status_code == 200 and body == DATA
    # If-Range failing wins over an unsatisfiable range
    resp, body = get(srv, Range=f"bytes={SIZE}-", If_Range='"other"')
    assert resp.status_code == 200 and body == DATA


def test_weak_etag_never_matches_if_range(srv: FaultServer) -> None:
    srv.add_file("/w", DATA, etag='W/"abc"', last_modified=None)
    resp, body = get(srv, "/w", Range="bytes=0-9", If_Range='W/"abc"')
    assert resp.headers["ETag"] == 'W/"abc"'
    assert "Last-Modified" not in resp.headers
    assert resp.status_code == 200 and body == DATA
    resp, body = get(srv, "/w", Range="bytes=0-9")
    assert resp.status_code == 206 and body == DATA[:10]


def test_explicit_and_absent_validators_and_disposition(srv: FaultServer) -> None:
    lm = "Tue, 15 Nov 1994 08:12:31 GMT"
    srv.add_file(
        "/x",
        b"hello",
        etag='"v1"',
        last_modified=lm,
        content_disposition='attachment; filename="a.bin"',
    )
    srv.add_file("/bare", b"hello", etag=None, last_modified=None)
    resp, _ = get(srv, "/x")
    assert resp.headers["ETag"] == '"v1"'
    assert resp.headers["Last-Modified"] == lm
    assert resp.headers["Content-Disposition"] == 'attachment; filename="a.bin"'
    resp, _ = get(srv, "/x", Range="bytes=1-2", If_Range=lm)
    assert resp.status_code == 206
    resp, body = get(srv, "/bare", Range="bytes=1-2", If_Range="anything")
    assert "ETag" not in resp.headers and "Last-Modified" not in resp.headers
    assert resp.status_code == 200 and body == b"hello"


def test_set_file_changes_content_etag_and_last_modified(srv: FaultServer) -> None:
    etag, lm = srv.etag("/f"), srv.last_modified("/f")
    srv.add_file("/f", DATA)  # same content: validators unchanged
    assert (srv.etag("/f"), srv.last_modified("/f")) == (etag, lm)
    new = make_data(1000, seed=2)
    srv.set_file("/f", new)
    resp, body = get(srv)
    assert body == new
    assert resp.headers["ETag"] not in (None, etag)
    assert resp.headers["Last-Modified"] not in (None, lm)
    resp, body = get(srv, Range="bytes=0-9", If_Range=etag)
    assert resp.status_code == 200 and body == new
    with pytest.raises(KeyError):
        srv.set_file("/missing", b"x")
    srv.remove_file("/f")
    assert get(srv)[0].status_code == 404


def test_keep_alive_reuses_one_connection(srv: FaultServer) -> None:
    with requests.Session() as session:
        for rng in ("bytes=0-9", "bytes=10-19", "bytes=20-"):
            resp, body = get(srv, session=session, Range=rng)
            assert resp.status_code == 206 and body
    ids = {r.connection_id for r in srv.requests}
    assert ids == {0} and srv.connections == 1
    # separate clients get separate connections with new ids
    get(srv)
    get(srv)
    assert srv.connections == 3
    assert [r.connection_id for r in srv.requests[-2:]] == [1, 2]


def test_bytes_sent_counting_and_reset(srv: FaultServer) -> None:
    srv.add_file("/g", b"x" * 1234)
    get(srv)
    get(srv, Range="bytes=100-199")
    get(srv, "/g")
    get(srv, "/nope")
    assert srv.bytes_sent == SIZE + 100 + 1234
    assert srv.bytes_sent_for("/f") == SIZE + 100
    assert srv.bytes_sent_for("/g") == 1234
    assert srv.bytes_sent_for("/nope") == 0
    assert sum(r.body_bytes_sent for r in srv.requests) == srv.bytes_sent
    srv.reset_counters()
    assert (srv.bytes_sent, srv.bytes_sent_for("/f")) == (0, 0)
    assert (srv.requests, srv.connections) == ([], 0)
    get(srv)
    assert srv.bytes_sent == SIZE and srv.connections == 1
    assert srv.requests[0].connection_id == 4  # ids are never reused


def test_add_path_serves_disk_file(srv: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * 1024 * 1024 + 17, seed=3)
    fs = tmp_path / "big.bin"
    fs.write_bytes(data)
    srv.add_path("/big", fs)
    resp, body = get(srv, "/big")
    assert resp.status_code == 200 and body == data
    etag = resp.headers["ETag"]
    resp, body = get(srv, "/big", Range="bytes=1000000-2999999", If_Range=etag)
    assert resp.status_code == 206 and body == data[1000000:3000000]
    srv.faults.rate = 1e12  # forces the chunked pread path instead of sendfile
    resp, body = get(srv, "/big", Range="bytes=5-")
    assert body == data[5:]
    assert srv.bytes_sent_for("/big") == len(data) + 2000000 + len(data) - 5
    # the file changing on disk changes the validators
    fs.write_bytes(data[:100])
    os.utime(fs, (1_500_000_000, 1_500_000_000))
    resp, body = get(srv, "/big")
    assert body == data[:100]
    assert resp.headers["ETag"] != etag
    assert resp.headers["Last-Modified"] == "Fri, 14 Jul 2017 02:40:00 GMT"
    fs.unlink()
    assert get(srv, "/big")[0].status_code == 404


def test_query_string_is_ignored_for_lookup(srv: FaultServer) -> None:
    resp, body = get(srv, "/f?x=1")
    assert resp.status_code == 200 and body == DATA
    assert srv.requests[0].path == "/f" and srv.requests[0].target == "/f?x=1"


# --- fault switches ---------------------------------------------------------------------


def test_rate_throttle(srv: FaultServer) -> None:
    data = make_data(200 * 1024, seed=4)
    srv.add_file("/r", data)
    t0 = time.monotonic()
    assert get(srv, "/r")[1] == data
    fast = time.monotonic() - t0
    srv.faults.rate = 400 * 1024  # expect about 0.5 s
    t0 = time.monotonic()
    assert get(srv, "/r")[1] == data
    slow = time.monotonic() - t0
    assert fast < 0.25
    assert 0.3 < slow < 3.0


def test_straggler_connections(srv: FaultServer) -> None:
    data = make_data(128 * 1024, seed=5)
    srv.add_file("/s", data)
    srv.faults.straggler_every = 2
    srv.faults.straggler_rate = 256 * 1024  # rate is None: slow ones at 256 KiB/s (~0.5 s)
    times = []
    for _ in range(2):  # fresh connection each time: ids 0 (fast) and 1 (slow)
        t0 = time.monotonic()
        assert get(srv, "/s")[1] == data
        times.append(time.monotonic() - t0)
    assert [r.connection_id for r in srv.requests] == [0, 1]
    assert times[0] < 0.2 < 0.3 < times[1] < 3.0
    # with a base rate the slow connection gets rate / factor
    srv.faults.rate = 1024 * 1024
    srv.faults.straggler_factor = 4.0
    t0 = time.monotonic()
    get(srv, "/s")  # connection 2: 1 MiB/s, ~0.125 s
    fast = time.monotonic() - t0
    t0 = time.monotonic()
    get(srv, "/s")  # connection 3: 256 KiB/s, ~0.5 s
    slow = time.monotonic() - t0
    assert 0.3 < slow < 3.0
    assert fast < slow / 2


def test_slow_requests_are_drawn_per_request_from_the_seed(srv: FaultServer) -> None:
    data = make_data(128 * 1024, seed=6)
    srv.add_file("/p", data)
    srv.faults.rate = 4 * 1024 * 1024  # ~31 ms per body; a slow one at 1/8: ~0.25 s
    srv.faults.slow_request_probability = 0.5
    srv.faults.slow_request_seed = 7
    expected = [r < 0.5 for r in _draws(7, 8)]
    assert True in expected and False in expected  # the seed gives both kinds
    times = []
    with requests.Session() as session:  # one connection: slowness is not per connection
        for _ in range(8):
            t0 = time.monotonic()
            assert get(srv, "/p", session)[1] == data
            times.append(time.monotonic() - t0)
    logs = srv.requests
    assert len({r.connection_id for r in logs}) == 1
    assert [r.slow for r in logs] == expected
    slow = [t for t, s in zip(times, expected) if s]
    fast = [t for t, s in zip(times, expected) if not s]
    assert min(slow) > 0.2 and max(fast) < min(slow) / 2
    # The same seed gives the same draws again (after a restart), HEAD and errors draw none.
    srv.restart_slow_draws()
    srv.reset_counters()
    requests.head(srv.url("/p"), timeout=10)
    get(srv, "/missing")
    for _ in range(8):
        get(srv, "/p")
    served = [r for r in srv.requests if r.method == "GET" and r.status == 200]
    assert [r.slow for r in served] == expected
    assert [(r.method, r.status, r.slow) for r in srv.requests[:2]] == [
        ("HEAD", 200, False),
        ("GET", 404, False),
    ]
    srv.faults.slow_request_seed = 8  # a new seed: a new sequence
    srv.reset_counters()
    for _ in range(8):
        get(srv, "/p")
    assert [r.slow for r in srv.requests] == [r < 0.5 for r in _draws(8, 8)]


def _draws(seed: int, count: int) -> List[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(count)]


def test_cut_after_closes_mid_body(srv: FaultServer) -> None:
    srv.faults.cut_after = 1000
    srv.faults.cut_times = 2
    for _ in range(2):
        conn, resp = raw_get(srv)
        assert resp.status == 200 and resp.getheader("Content-Length") == str(SIZE)
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == DATA[:1000]
        conn.close()
    assert srv.faults.cut_after is None and srv.faults.cut_times == 1  # budget used up
    resp, body = get(srv)
    assert body == DATA
    logs = srv.requests
    assert [r.body_bytes_sent for r in logs] == [1000, 1000, SIZE]
    assert [r.completed for r in logs] == [False, False, True]
    assert len({r.connection_id for r in logs}) == 3
    assert srv.bytes_sent == 2000 + SIZE


def test_cut_only_hits_bodies_longer_than_the_cut(srv: FaultServer) -> None:
    srv.faults.cut_after = 1000
    resp, body = get(srv, Range="bytes=0-99")  # short body: not cut, budget kept
    assert resp.status_code == 206 and body == DATA[:100]
    assert srv.faults.cut_after == 1000
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(srv.url("/f"), headers=IDENTITY, timeout=10)
    assert srv.requests[-1].body_bytes_sent == 1000


def test_cut_with_rst(srv: FaultServer) -> None:
    srv.faults.cut_after = 5000
    srv.faults.cut_rst = True
    conn, resp = raw_get(srv)
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        resp.read()
    conn.close()
    assert srv.requests[0].body_bytes_sent == 5000


def test_ignore_range(srv: FaultServer) -> None:
    srv.faults.ignore_range = True
    resp, body = get(srv, Range="bytes=0-9")
    assert resp.status_code == 200 and body == DATA
    assert "Accept-Ranges" not in resp.headers
    assert "Content-Range" not in resp.headers


def test_accept_ranges_none(srv: FaultServer) -> None:
    srv.faults.accept_ranges_none = True
    resp, body = get(srv, Range="bytes=0-9")
    assert resp.status_code == 200 and body == DATA
    assert resp.headers["Accept-Ranges"] == "none"


def test_wrong_content_range(srv: FaultServer) -> None:
    srv.faults.wrong_content_range_times = 1
    resp, body = get(srv, Range="bytes=10-109")
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 11-110/{SIZE}"
    assert body == DATA[11:111]
    resp, body = get(srv, Range="bytes=10-109")
    assert resp.headers["Content-Range"] == f"bytes 10-109/{SIZE}"
    assert body == DATA[10:110]
    assert srv.faults.wrong_content_range_times == 0


def test_wrong_total(srv: FaultServer) -> None:
    srv.faults.wrong_total_times = 2
    get(srv)  # a 200 does not consume it
    for _ in range(2):
        resp, body = get(srv, Range="bytes=10-109")
        assert resp.headers["Content-Range"] == f"bytes 10-109/{SIZE + 1}"
        assert body == DATA[10:110]
    resp, _ = get(srv, Range="bytes=10-109")
    assert resp.headers["Content-Range"] == f"bytes 10-109/{SIZE}"


def test_multipart_byteranges(srv: FaultServer) -> None:
    srv.faults.multipart = True
    resp, body = get(srv, Range="bytes=10-109")
    assert resp.status_code == 206
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    assert "Content-Range" not in resp.headers
    assert resp.headers["Content-Length"] == str(len(body))
    boundary = ctype.split("boundary=", 1)[1].encode()
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    head, _, rest = body.partition(b"\r\n\r\n")
    assert b"Content-Range: bytes 10-109/%d" % SIZE in head
    assert rest[:100] == DATA[10:110]
    assert srv.bytes_sent == len(body)


def test_status_fault_with_retry_after(srv: FaultServer) -> None:
    srv.faults.status_times = 2
    srv.faults.retry_after = "3"
    with requests.Session() as session:
        for _ in range(2):
            resp, body = get(srv, session=session)
            assert resp.status_code == 503 and body == b"error"
            assert resp.headers["Retry-After"] == "3"
        srv.faults.status_times = 1
        srv.faults.status_code = 429
        srv.faults.retry_after = None
        resp, _ = get(srv, session=session)
        assert resp.status_code == 429 and "Retry-After" not in resp.headers
        resp, body = get(srv, session=session)
        assert resp.status_code == 200 and body == DATA
    assert srv.connections == 1
    assert [r.status for r in srv.requests] == [503, 503, 429, 200]


def test_stall_after_headers(srv: FaultServer) -> None:
    srv.faults.stall_seconds = 0.6
    t0 = time.monotonic()
    resp = requests.get(srv.url("/f"), headers=IDENTITY, stream=True, timeout=10)
    t_headers = time.monotonic() - t0
    body = resp.raw.read(decode_content=False)
    t_body = time.monotonic() - t0
    assert body == DATA
    assert t_headers < 0.4 and 0.5 < t_body < 5
    assert srv.faults.stall_seconds == 0.0  # one-shot by default
    t0 = time.monotonic()
    assert get(srv)[1] == DATA
    assert time.monotonic() - t0 < 0.4


def test_stall_after_bytes_triggers_client_read_timeout(srv: FaultServer) -> None:
    srv.faults.stall_seconds = 1.5
    srv.faults.stall_after_bytes = 1000
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=0.5)
    conn.request("GET", "/f")
    resp = conn.getresponse()
    assert resp.read(1000) == DATA[:1000]
    with pytest.raises(socket.timeout):
        resp.read(1)
    conn.close()
    log = srv.requests[0]
    deadline = time.monotonic() + 3
    while log.ended is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # the server noticed the client leaving and gave up before the 1.5 s stall ended
    assert log.ended is not None and log.ended - log.started < 1.3
    assert log.body_bytes_sent == 1000 and not log.completed


def test_gzip(srv: FaultServer) -> None:
    srv.faults.gzip = True
    resp, body = get(srv)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Content-Length"] == str(len(body))
    assert len(body) != SIZE and gzip.decompress(body) == DATA
    resp, body = get(srv, Range="bytes=100-199")
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 100-199/{SIZE}"
    assert gzip.decompress(body) == DATA[100:200]
    resp = requests.get(srv.url("/f"), timeout=10)  # requests decodes it
    assert resp.content == DATA


def test_no_content_length(srv: FaultServer) -> None:
    srv.faults.no_content_length = True
    with requests.Session() as session:
        resp, body = get(srv, session=session)
        assert "Content-Length" not in resp.headers
        assert resp.headers["Connection"] == "close"
        assert body == DATA
        resp, body = get(srv, session=session, Range="bytes=0-9")  # 206 keeps its length
        assert resp.status_code == 206 and resp.headers["Content-Length"] == "10"
    assert [r.connection_id for r in srv.requests] == [0, 1]


def test_chunked(srv: FaultServer) -> None:
    srv.faults.chunked = True
    with requests.Session() as session:
        resp, body = get(srv, session=session)
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        assert body == DATA
        resp, body = get(srv, session=session, Range="bytes=10-19")
        assert resp.status_code == 206 and body == DATA[10:20]
    assert {r.connection_id for r in srv.requests} == {0}  # keep-alive still works
    assert srv.bytes_sent == SIZE + 10


def test_redirects(srv: FaultServer) -> None:
    srv.faults.redirects = {"/old": "/f", "/abs": srv.url("/old")}
    resp = requests.get(srv.url("/abs"), headers=IDENTITY, timeout=10)
    assert resp.status_code == 200 and resp.content == DATA
    assert [h.status_code for h in resp.history] == [302, 302]
    assert resp.history[0].headers["Location"] == srv.url("/old")
    assert resp.history[1].headers["Location"] == "/f"
    srv.faults.redirect_status = 307
    resp = requests.get(srv.url("/old"), allow_redirects=False, timeout=10)
    assert resp.status_code == 307 and resp.headers["Location"] == "/f"


def test_require_header(srv: FaultServer) -> None:
    srv.faults.require_header = ("Authorization", "Bearer t0k3n")
    resp, _ = get(srv)
    assert resp.status_code == 401
    resp, _ = get(srv, Authorization="Bearer wrong")
    assert resp.status_code == 401
    resp, body = get(srv, Authorization="Bearer t0k3n")
    assert resp.status_code == 200 and body == DATA


def test_on_request_hook(srv: FaultServer) -> None:
    seen = []

    def hook(handler: FaultHandler, log: RequestLog) -> bool:
        seen.append(log.path)
        if log.path == "/teapot":
            handler.send_simple(418, b"short and stout", {"X-Hook": "1"})
            return True
        return False

    srv.faults.on_request = hook
    resp, body = get(srv, "/teapot")
    assert resp.status_code == 418 and body == b"short and stout"
    assert resp.headers["X-Hook"] == "1"
    resp, body = get(srv)
    assert resp.status_code == 200 and body == DATA
    assert seen == ["/teapot", "/f"]
    assert srv.requests[0].status == 418


def test_change_after_bytes(srv: FaultServer) -> None:
    new = make_data(5000, seed=6)
    old_etag, old_lm = srv.etag("/f"), srv.last_modified("/f")
    srv.faults.change_after_bytes = 100_000
    srv.faults.change_to = new
    resp, body = get(srv, Range="bytes=0-999")
    assert resp.headers["ETag"] == old_etag and body == DATA[:1000]
    resp, body = get(srv)  # crosses the threshold; this response keeps its snapshot
    assert body == DATA and resp.headers["ETag"] == old_etag
    assert srv.faults.change_after_bytes is None  # one-shot
    resp, body = get(srv, Range="bytes=0-999", If_Range=old_etag)
    assert resp.status_code == 200 and body == new
    assert resp.headers["ETag"] not in (None, old_etag)
    assert resp.headers["Last-Modified"] != old_lm


# --- lifecycle --------------------------------------------------------------------------


def test_stop_is_prompt_with_idle_and_stalled_connections() -> None:
    server = FaultServer().start()
    server.add_file("/f", DATA)
    session = requests.Session()
    get(server, session=session)  # leaves an idle keep-alive connection
    server.faults.stall_seconds = 30
    errors = []

    def stalled() -> None:
        try:
            requests.get(server.url("/f"), timeout=10).content  # noqa: B018
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=stalled)
    thread.start()
    deadline = time.monotonic() + 3
    while len(server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 2.0
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    session.close()
    server.stop()  # idempotent
    assert server.errors == []


def test_loopback_only() -> None:
    for host in ("0.0.0.0", "192.168.1.1", "example.com", "::"):
        with pytest.raises(ValueError):
            FaultServer(host)
    with FaultServer("localhost") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.url("/x") == server.base_url + "/x"


def test_make_data() -> None:
    assert make_data(0) == b""
    a = make_data(1 << 20, seed=7)
    assert len(a) == 1 << 20 and a == make_data(1 << 20, seed=7)
    assert a != make_data(1 << 20, seed=8)
    assert len(set(a[:4096])) > 200  # not a constant fill


# --- scripts/serve.py ---------------------------------------------------------------------


def _load_serve() -> Any:
    spec = importlib.util.spec_from_file_location(
        "accel_serve_script", REPO / "scripts" / "serve.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_parse_rate_and_host_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    serve = _load_serve()
    assert serve.parse_rate("100") == 100
    assert serve.parse_rate("1.5K") == 1536
    assert serve.parse_rate("1M") == 1024**2
    assert serve.parse_rate("2g") == 2 * 1024**3
    assert serve.parse_rate("500KiB/s") == 500 * 1024
    for bad in ("", "fast", "1T", "0", "-1M"):
        with pytest.raises(Exception, match="rate"):
            serve.parse_rate(bad)
    (tmp_path / "a.bin").write_bytes(b"a")
    assert serve.main([str(tmp_path), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "non-loopback" in err and err.count("\n") == 1
    assert serve.main([str(tmp_path / "missing")]) == 2


def test_serve_script_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(DATA)
    (tmp_path / "two words.bin").write_bytes(b"two")
    (tmp_path / "sub").mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "serve.py"), str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = [proc.stdout.readline().strip() for _ in range(2)]
        assert urls[0].startswith("http://127.0.0.1:") and urls[0].endswith("/one.bin")
        assert urls[1].endswith("/two%20words.bin")
        assert requests.get(urls[0], timeout=10).content == DATA
        resp = requests.get(urls[1], headers={"Range": "bytes=1-"}, timeout=10)
        assert resp.status_code == 206 and resp.content == b"wo"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_every_kth_request_is_slow(srv: FaultServer) -> None:
    data = make_data(128 * 1024, seed=9)
    srv.add_file("/k", data)
    srv.faults.rate = 4 * 1024 * 1024  # ~31 ms per body; a slow one at 1/8: ~0.25 s
    srv.faults.slow_request_every = 3
    times = []
    with requests.Session() as session:  # one connection: slowness is per request
        requests.head(srv.url("/k"), timeout=10)  # no body: not counted
        for _ in range(6):
            t0 = time.monotonic()
            assert get(srv, "/k", session)[1] == data
            times.append(time.monotonic() - t0)
    served = [r for r in srv.requests if r.method == "GET"]
    assert [r.slow for r in served] == [False, False, True, False, False, True]
    slow, fast = [times[2], times[5]], times[:2] + times[3:5]
    assert min(slow) > 0.2 and max(fast) < min(slow) / 2
    srv.restart_slow_draws()  # the count starts again
    srv.reset_counters()
    for _ in range(3):
        get(srv, "/k")
    assert [r.slow for r in srv.requests] == [False, False, True]
