"""The "never a wrong byte" guarantees, against the real FaultServer.

Bad ranged responses are never written; servers without ranges are downloaded as one
stream from byte 0; bytes are stored exactly as served; a remote change restarts the
download instead of mixing versions; retries resume where the bytes stopped; stalls and
slow connections are replaced; the sidecar never claims a byte that is not on disk;
signals leave a valid sidecar; local errors give a clean exit code.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

import accel
from accel import Options
from accel._disk import state
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    popen_accel,
    range_bounds,
    run_accel,
    run_in_thread,
    sha256,
    tmpfs,
)
from tests.servers import FaultHandler, FaultServer, RequestLog, make_data

FAST_RETRY = fast_retry(4)

Hook = Callable[[FaultHandler, RequestLog], bool]


# -- helpers ---------------------------------------------------------------------------------


def options(**kw) -> Options:
    """Options for fast tests: 4 connections, small segments, quick retries."""
    kw.setdefault("connect_timeout", 5.0)
    return fast_options(FAST_RETRY, **kw)


def downloader(
    url: str, out: Path, events: Optional[List[accel.Event]] = None, **kw
) -> accel.Downloader:
    return accel.Downloader(
        url,
        out,
        options=options(**kw),
        on_event=None if events is None else events.append,
    )


def parse_range(header: Optional[str]) -> Optional[Tuple[int, Optional[int]]]:
    """``bytes=a-b`` -> (a, b); ``bytes=a-`` -> (a, None); None without a Range header."""
    if not header:
        return None
    assert header.startswith("bytes="), header
    return range_bounds(header)


def body_gets(srv: FaultServer) -> List[RequestLog]:
    """GETs that carried file content."""
    return [r for r in gets(srv) if r.body_bytes_sent > 0]


def part_paths(out: Path) -> Tuple[Path, Path]:
    part = out.with_name(out.name + ".part")
    return part, state.sidecar_path(part)


def check_claims(
    out: Path, data: bytes, *, holes_are_zero: bool = False, size_slack: int = 0
) -> int:
    """Load the sidecar; every byte it claims must equal ``data``. Returns the claimed total.

    With ``holes_are_zero``, every byte it does not claim must still be a zero of the sparse
    file (used where nothing but the claimed bytes may ever have been written).
    ``size_slack``: the record may plan up to this many bytes more than ``data`` (a server
    that consistently lies about the total), but it may never claim a byte past ``data``.
    """
    part, side = part_paths(out)
    record = state.load(side, part)
    content = part.read_bytes()
    assert record.size == len(content)
    assert len(data) <= record.size <= len(data) + size_slack
    claimed = 0
    for start, end, written, synced in record.segments:
        assert synced <= written <= end - start + 1
        assert content[start : start + written] == data[start : start + written], (
            f"sidecar claims bytes {start}-{start + written - 1} that are not the file's"
        )
        if holes_are_zero:
            hole = content[start + written : end + 1]
            assert hole.count(0) == len(hole), (
                f"bytes {start + written}-{end} are not claimed but were written"
            )
        assert start + written <= len(data), f"claims bytes past the file's end at {start}"
        claimed += written
    return claimed


class Canceller:
    """Cancel ``dl`` from another thread once it reports ``at_least`` written bytes."""

    def __init__(self, dl: accel.Downloader, at_least: int, timeout: float = 15.0) -> None:
        self.dl = dl
        self.at_least = at_least
        self.timeout = timeout
        self.fired_at: Optional[float] = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            snap = self.dl.progress()
            if snap is not None and snap.written >= self.at_least:
                self.fired_at = time.monotonic()
                self.dl.cancel()
                return
            time.sleep(0.005)


def interrupted_run(url: str, out: Path, at_least: int, **kw) -> None:
    """Run a download and cancel it from another thread after ``at_least`` bytes."""
    dl = downloader(url, out, **kw)
    canceller = Canceller(dl, at_least)
    with pytest.raises(accel.CancelledError):
        dl.run()
    canceller.thread.join(5)
    assert canceller.fired_at is not None, "the download was not cancelled by the test"
    assert not out.exists()


def on_requests(actions: Dict[int, Callable[[], None]]) -> Hook:
    """A hook that calls ``actions[n]`` when request number ``n`` (1-based) arrives."""
    lock = threading.Lock()
    count = [0]

    def hook(handler: FaultHandler, log: RequestLog) -> bool:
        with lock:
            count[0] += 1
            action = actions.get(count[0])
        if action is not None:
            action()
        return False

    return hook


def on_nth_request(n: int, action: Callable[[], None]) -> Hook:
    """A hook that calls ``action`` when request number ``n`` (1-based) arrives."""
    return on_requests({n: action})


def restarted(events: List[accel.Event]) -> List[accel.Restarted]:
    return [e for e in events if isinstance(e, accel.Restarted)]


def started(events: List[accel.Event]) -> List[accel.Started]:
    return [e for e in events if isinstance(e, accel.Started)]


# -- 1. ranged-response validation -----------------------------------------------------------


def is_bad_answer(r: RequestLog, size: int) -> bool:
    """A 206 that does not describe exactly the requested range of the file."""
    if r.status != 206:
        return False
    if r.response_headers.get("Content-Type", "").startswith("multipart/"):
        return True
    span, _, total = r.response_headers["Content-Range"][len("bytes ") :].partition("/")
    return total != str(size) or int(span.split("-")[0]) != parse_range(r.range_header)[0]


def arm_fault(srv: FaultServer, fault: str, times: int) -> None:
    if fault == "multipart":
        srv.faults.multipart = True
    else:
        setattr(srv.faults, fault, times)


@pytest.mark.parametrize("fault", ["wrong_content_range_times", "wrong_total_times", "multipart"])
def test_bad_ranged_responses_are_retried(
    srv: FaultServer, data: bytes, tmp_path: Path, fault: str
) -> None:
    """Two bad 206s after the probe: nothing of them is kept, their ranges are refetched."""
    srv.faults.on_request = on_requests(
        {
            2: lambda: arm_fault(srv, fault, 2),
            4: lambda: setattr(srv.faults, "multipart", False),  # two multipart answers
        }
    )
    # The multipart switch is global: one connection keeps requests 2 and 3 the bad ones.
    connections = 1 if fault == "multipart" else 4
    path = downloader(srv.url("/f"), tmp_path / "out.bin", connections=connections).run()
    assert sha256(path) == sha256(data)
    reqs = gets(srv)
    bad = [r for r in reqs if is_bad_answer(r, len(data))]
    assert len(bad) == 2, "the fault was not served as planned"
    for r in bad:  # the same range was asked for again and answered properly
        start = parse_range(r.range_header)[0]
        assert any(
            x.started > r.started
            and parse_range(x.range_header)[0] == start
            and x.status == 206
            and not is_bad_answer(x, len(data))
            for x in reqs
        )


@pytest.mark.parametrize("fault", ["wrong_content_range_times", "wrong_total_times", "multipart"])
def test_always_bad_ranged_responses_write_nothing(
    srv: FaultServer, data: bytes, tmp_path: Path, fault: str
) -> None:
    """After a good probe every 206 is bad: RemoteProtocolError, no file, holes stay zero."""
    out = tmp_path / "out.bin"

    srv.faults.on_request = on_nth_request(2, lambda: arm_fault(srv, fault, 10**6))
    # A total that keeps disagreeing with the probe may also be taken for a changed file.
    errors = (
        (accel.RemoteProtocolError, accel.RemoteChangedError)
        if fault == "wrong_total_times"
        else accel.RemoteProtocolError
    )
    with pytest.raises(errors):
        downloader(srv.url("/f"), out).run()
    assert not out.exists()
    # After a restart the new probe lies too (size + 1), consistently: accel may plan for it,
    # but must still claim only correct bytes.
    slack = 1 if fault == "wrong_total_times" else 0
    claimed = check_claims(out, data, holes_are_zero=True, size_slack=slack)
    assert 0 < claimed < len(data)  # the probe's segment, nothing of the bad answers


def test_bad_content_range_on_the_probe_is_retried(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    srv.faults.wrong_content_range_times = 2
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    first = gets(srv)[:3]
    assert [parse_range(r.range_header)[0] for r in first] == [0, 0, 0]


def test_wrong_total_on_the_probe_once(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    """One lying probe (complete length size+1) must not make the download fail or be wrong."""
    srv.faults.wrong_total_times = 1
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)


def test_cli_always_wrong_content_range_exits_3(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    srv.faults.wrong_content_range_times = 10**6
    out = tmp_path / "out.bin"
    res = run_accel(srv.url("/f"), "-o", str(out), "-q", "--retries", "1", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert not out.exists()
    part = out.with_name("out.bin.part")
    assert not part.exists() or part.read_bytes().count(0) == part.stat().st_size


# -- 2. servers without ranges -----------------------------------------------------------------


@pytest.mark.parametrize(
    "switches",
    [
        {"ignore_range": True},
        {"accept_ranges_none": True},
        {"ignore_range": True, "no_content_length": True},
        {"ignore_range": True, "chunked": True},
        {"accept_ranges_none": True, "no_content_length": True},
    ],
    ids=["ignore_range", "accept_ranges_none", "no_length", "chunked", "none_no_length"],
)
def test_no_ranges_is_one_stream(
    srv: FaultServer, data: bytes, tmp_path: Path, switches: dict
) -> None:
    for name, value in switches.items():
        setattr(srv.faults, name, value)
    out = tmp_path / "out.bin"
    path = downloader(srv.url("/f"), out).run()
    assert sha256(path) == sha256(data)
    carrying = body_gets(srv)
    assert len(carrying) == 1, [(r.range_header, r.status) for r in carrying]
    assert carrying[0].status == 200
    assert srv.bytes_sent == len(data)
    part, side = part_paths(out)
    assert not part.exists() and not side.exists()


def test_chunked_ranges_are_byte_identical(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    srv.faults.chunked = True
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    assert all(r.status == 206 for r in body_gets(srv))


@pytest.mark.parametrize("rst", [False, True])
def test_single_stream_cut_restarts_from_byte_zero(
    srv: FaultServer, data: bytes, tmp_path: Path, rst: bool
) -> None:
    """A 200 stream that breaks is fetched again from 0; it is never written at an offset."""
    srv.faults.ignore_range = True
    srv.faults.cut_after = 700 * KiB
    srv.faults.cut_rst = rst
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    carrying = body_gets(srv)
    assert len(carrying) == 2
    assert all(r.status == 200 for r in carrying)
    assert carrying[0].completed is False and carrying[1].completed is True


def test_server_stops_honouring_ranges_mid_download(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    """200s to ranged requests after the probe: restart as one stream, never a 200 at offset."""
    srv.faults.rate = 2 * MiB
    srv.faults.on_request = on_nth_request(2, lambda: setattr(srv.faults, "ignore_range", True))
    events: List[accel.Event] = []
    path = downloader(srv.url("/f"), tmp_path / "out.bin", events).run()
    assert sha256(path) == sha256(data)
    assert restarted(events)
    last = body_gets(srv)[-1]
    assert last.status == 200 and last.completed


# -- 3. content encoding -------------------------------------------------------------------------


def test_gzip_is_stored_as_served(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    srv.faults.gzip = True
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    served = gzip.compress(data, mtime=0)
    assert path.read_bytes() == served  # the raw bytes, never decompressed
    # The encoded 206 answer to the probe was not used for segments: then one 200 stream.
    reqs = gets(srv)
    assert reqs[0].status == 206 and reqs[0].response_headers.get("Content-Encoding") == "gzip"
    rest = [(r.status, r.range_header) for r in reqs[1:]]
    assert rest == [(200, None)]
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in srv.requests)


def test_every_request_asks_for_identity(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    srv.faults.cut_after = 200 * KiB
    srv.faults.cut_times = 2
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    assert len(srv.requests) > 4
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in srv.requests)


# -- 4. remote changes --------------------------------------------------------------------------


@pytest.mark.parametrize("new_size", [1536 * KiB, 1200 * KiB], ids=["same_size", "other_size"])
def test_change_between_runs_restarts(server: FaultServer, tmp_path: Path, new_size: int) -> None:
    old = make_data(1536 * KiB, seed=10)
    new = make_data(new_size, seed=11)
    server.add_file("/f", old)
    out = tmp_path / "out.bin"
    server.faults.rate = 512 * KiB
    interrupted_run(server.url("/f"), out, 300 * KiB)
    part, side = part_paths(out)
    assert check_claims(out, old) > 0

    server.faults.rate = None
    server.set_file("/f", new)
    server.reset_counters()
    events: List[accel.Event] = []
    path = downloader(server.url("/f"), out, events).run()
    assert sha256(path) == sha256(new)
    assert restarted(events)
    assert server.bytes_sent_for("/f") >= len(new)
    assert not part.exists() and not side.exists()
    assert server.errors == []


@pytest.mark.parametrize("new_size", [1536 * KiB, 1300 * KiB], ids=["same_size", "other_size"])
@pytest.mark.parametrize("when", ["after_probe", "seen_by_a_retry"])
def test_change_mid_run_restarts(
    server: FaultServer, tmp_path: Path, new_size: int, when: str
) -> None:
    """The file changes while it downloads: the result is the new file, never a mix."""
    old = make_data(1536 * KiB, seed=20)
    new = make_data(new_size, seed=21)
    server.add_file("/f", old)
    server.faults.rate = 1 * MiB
    server.faults.change_to = new
    if when == "after_probe":
        # Right after the probe's first bytes: every other request sees the new file.
        server.faults.change_after_bytes = 1
    else:
        # After a third of the bytes; the probe's answer is cut later, and its retry is
        # the first request that sees the new file.
        server.faults.change_after_bytes = len(old) // 3
        server.faults.cut_after = 300 * KiB
    events: List[accel.Event] = []
    path = downloader(server.url("/f"), tmp_path / "out.bin", events).run()
    assert sha256(path) == sha256(new)
    assert restarted(events)
    assert server.errors == []


def test_ranged_requests_carry_if_range_strong_etag(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    srv.faults.cut_after = 300 * KiB
    srv.faults.cut_times = 2
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    etag = srv.etag("/f")
    reqs = gets(srv)
    assert len(reqs) >= 4
    assert reqs[0].headers.get("If-Range") is None  # the probe knows nothing yet
    for r in reqs[1:]:
        assert r.range_header is not None
        assert r.headers.get("If-Range") == etag, r


@pytest.mark.parametrize(
    "etag, last_modified",
    [('W/"x"', None), (None, None)],
    ids=["weak_etag_only", "no_validators"],
)
def test_unverifiable_partial_restarts_from_zero(
    server: FaultServer, tmp_path: Path, etag: Optional[str], last_modified: Optional[str]
) -> None:
    """Without a strong validator an interrupted download is never resumed (no mix)."""
    old = make_data(1536 * KiB, seed=30)
    new = make_data(1536 * KiB, seed=31)  # same size, same (weak or absent) validators
    server.add_file("/f", old, etag=etag, last_modified=last_modified)
    out = tmp_path / "out.bin"
    server.faults.rate = 512 * KiB
    interrupted_run(server.url("/f"), out, 300 * KiB)

    server.faults.rate = None
    server.set_file("/f", new)
    server.reset_counters()
    path = downloader(server.url("/f"), out).run()
    assert sha256(path) == sha256(new)
    assert server.bytes_sent_for("/f") >= len(new)
    assert server.errors == []


def test_last_modified_only_resumes(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(1536 * KiB, seed=40)
    server.add_file("/f", data, etag=None, last_modified="auto")
    lm = server.last_modified("/f")
    out = tmp_path / "out.bin"
    server.faults.rate = 512 * KiB
    interrupted_run(server.url("/f"), out, 400 * KiB)
    part, side = part_paths(out)
    claimed = check_claims(out, data)
    assert claimed > 0
    record = state.load(side, part)
    written = [(s, s + w - 1) for s, _, w, _ in record.segments if w]

    server.faults.rate = None
    server.reset_counters()
    events: List[accel.Event] = []
    path = downloader(server.url("/f"), out, events).run()
    assert sha256(path) == sha256(data)
    assert not restarted(events)
    assert started(events)[0].resumed == claimed
    reqs = gets(server, "/f")
    assert reqs
    for r in reqs:  # nothing already written was asked for again
        assert r.headers.get("If-Range") == lm
        start, end = parse_range(r.range_header)
        end = len(data) - 1 if end is None else end
        for a, b in written:
            assert end < a or start > b, f"{r.range_header} refetches written bytes {a}-{b}"


# -- 5. retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_cut_connections_resume_at_the_cut(
    srv: FaultServer, data: bytes, tmp_path: Path, rst: bool
) -> None:
    cut = 100_000
    srv.faults.cut_after = cut
    srv.faults.cut_times = 3
    srv.faults.cut_rst = rst
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    reqs = gets(srv)
    cuts = [r for r in reqs if r.status == 206 and not r.completed and r.body_bytes_sent == cut]
    assert len(cuts) == 3
    for r in cuts:
        start = parse_range(r.range_header)[0]
        later = [parse_range(x.range_header)[0] for x in reqs if x.started > r.started]
        if rst:  # a reset may drop bytes the client had not read yet
            assert any(start <= p <= start + cut for p in later)
        else:
            assert start + cut in later, (r.range_header, later)


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(
    srv: FaultServer, data: bytes, tmp_path: Path, status: int
) -> None:
    srv.faults.status_times = 1
    srv.faults.status_code = status
    srv.faults.retry_after = "1"
    path = downloader(srv.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    reqs = gets(srv)
    assert reqs[0].status == status
    assert reqs[1].started - reqs[0].started >= 0.9


def test_permanent_404_fails_cleanly(server: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(accel.HTTPError) as info:
        downloader(server.url("/missing"), out).run()
    assert info.value.status == 404
    assert not out.exists()
    assert not out.with_name("out.bin.part").exists()


def test_cli_permanent_404_exits_4(server: FaultServer, tmp_path: Path) -> None:
    res = run_accel(server.url("/missing"), "-q", cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_404_mid_download_writes_no_error_body(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "out.bin"
    srv.faults.on_request = on_nth_request(2, lambda: srv.remove_file("/f"))
    with pytest.raises(accel.HTTPError) as info:
        downloader(srv.url("/f"), out).run()
    assert info.value.status == 404
    assert not out.exists()
    assert 0 < check_claims(out, data, holes_are_zero=True) < len(data)


def redirect_to_real(srv: FaultServer, data: bytes) -> None:
    srv.add_file("/real", data)
    srv.faults.redirects = {"/f": "/real"}


def fail_ranged_real(srv: FaultServer, status: int, times: int) -> List[RequestLog]:
    """Answer ``status`` to the next ``times`` If-Range requests for /real."""
    lock = threading.Lock()
    left = [times]
    failed: List[RequestLog] = []

    def hook(handler: FaultHandler, log: RequestLog) -> bool:
        if log.path != "/real" or log.headers.get("If-Range") is None:
            return False
        with lock:
            if left[0] <= 0:
                return False
            left[0] -= 1
        failed.append(log)
        handler.send_simple(status, b"expired")
        return True

    srv.faults.on_request = hook
    return failed


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_expired_redirect_target_is_resolved_again(
    server: FaultServer, data: bytes, tmp_path: Path, status: int
) -> None:
    redirect_to_real(server, data)
    failed = fail_ranged_real(server, status, 1)
    path = downloader(server.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    assert len(failed) == 1
    originals = gets(server, "/f")
    assert len(originals) == 2  # the probe, then exactly one new resolution
    assert originals[1].started > failed[0].started


def test_final_http_error_after_redirect_fails_cleanly(
    server: FaultServer, data: bytes, tmp_path: Path
) -> None:
    redirect_to_real(server, data)
    fail_ranged_real(server, 403, 10**6)
    out = tmp_path / "out.bin"
    with pytest.raises(accel.HTTPError) as info:
        downloader(server.url("/f"), out).run()
    assert info.value.status == 403
    assert not out.exists()
    assert len(gets(server, "/f")) == 2  # resolved again once, not in a loop
    check_claims(out, data, holes_are_zero=True)


# -- 6. stalls and slow connections ---------------------------------------------------------------


def test_stalled_connection_is_overtaken(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(4 * MiB + 7, seed=50)
    server.add_file("/f", data)
    server.faults.stall_seconds = 40
    server.faults.stall_times = 1
    server.faults.stall_after_bytes = 128 * KiB
    t0 = time.monotonic()
    path = downloader(server.url("/f"), tmp_path / "out.bin", hedge_after=0.5, timeout=30.0).run()
    elapsed = time.monotonic() - t0
    assert sha256(path) == sha256(data)
    assert elapsed < 15
    stalled = [r for r in gets(server) if not r.completed]
    assert stalled, "no response was stalled"


def test_slow_connection_is_replaced(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_data(1 * MiB + 5, seed=51)
    server.add_file("/f", data)
    server.faults.rate = 20 * KiB
    server.faults.on_request = on_nth_request(2, lambda: setattr(server.faults, "rate", None))
    caplog.set_level(logging.INFO, logger="accel")
    t0 = time.monotonic()
    dl = downloader(
        server.url("/f"),
        tmp_path / "out.bin",
        connections=1,
        low_speed_limit=100 * KiB,
        low_speed_time=0.5,
    )
    path = dl.run()
    assert sha256(path) == sha256(data)
    assert time.monotonic() - t0 < 10  # at 20 KiB/s the first connection needs ~50 s
    first, second = gets(server)[:2]
    assert not first.completed
    start, end = parse_range(second.range_header)
    assert 0 < start <= first.body_bytes_sent  # the rest of the range, not from zero
    assert end in (None, len(data) - 1)


# -- 7. 416 when everything is already written --------------------------------------------------


def test_complete_part_is_finished_without_refetch(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    part.write_bytes(data)
    half = len(data) // 2
    state.save(
        side,
        state.Record(
            srv.url("/f"),
            len(data),
            srv.etag("/f"),
            srv.last_modified("/f"),
            [(0, half - 1, half, 0), (half, len(data) - 1, len(data) - half, 0)],
            state.boot_id(),
        ),
    )
    events: List[accel.Event] = []
    path = downloader(srv.url("/f"), out, events).run()
    assert sha256(path) == sha256(data)
    assert srv.bytes_sent == 0
    assert [r.status for r in gets(srv)] == [416]
    assert not part.exists() and not side.exists()
    assert any(isinstance(e, accel.Completed) for e in events)


def test_interrupted_at_the_end_then_resumed(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    """Cancel when (nearly) everything is written; the resume fetches at most the rest."""
    out = tmp_path / "out.bin"
    srv.faults.rate = 512 * KiB
    interrupted_run(srv.url("/f"), out, len(data) - 384 * KiB)
    claimed = check_claims(out, data)
    srv.faults.rate = None
    srv.reset_counters()
    path = downloader(srv.url("/f"), out).run()
    assert sha256(path) == sha256(data)
    assert claimed >= len(data) - 384 * KiB
    assert all(r.status in (206, 416) for r in gets(srv))


# -- 8. crash consistency ---------------------------------------------------------------------


def good_record(srv: FaultServer, size: int, url: Optional[str] = None) -> state.Record:
    return state.Record(
        url or srv.url("/f"),
        size,
        srv.etag("/f"),
        srv.last_modified("/f"),
        [(0, size - 1, size, size)],
        state.boot_id(),
    )


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "other_url", "part_size_differs", "missing_part", "bad_segments"],
)
def test_untrustworthy_sidecar_restarts_from_zero(
    srv: FaultServer,
    data: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    """The .part is full of junk that a wrongly trusted sidecar would keep."""
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    size = len(data)
    part.write_bytes(b"\xff" * size)
    state.save(side, good_record(srv, size))
    if damage == "truncated":
        raw = side.read_bytes()
        side.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        side.write_bytes(os.urandom(300))
    elif damage == "other_url":
        state.save(side, good_record(srv, size, url=srv.url("/other")))
    elif damage == "part_size_differs":
        state.save(side, good_record(srv, size + 10))
    elif damage == "missing_part":
        part.unlink()
    elif damage == "bad_segments":
        doc = json.loads(side.read_text())
        doc["segments"] = [{"start": 0, "end": 10, "written": 11, "synced": 0}]
        side.write_text(json.dumps(doc))
    caplog.set_level(logging.WARNING, logger="accel")
    path = downloader(srv.url("/f"), out).run()
    assert sha256(path) == sha256(data)
    assert srv.bytes_sent_for("/f") >= size
    assert any(r.levelno == logging.WARNING for r in caplog.records), "no warning was logged"
    assert not side.exists()


def test_sidecar_size_disagrees_with_remote_same_etag(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    """A consistent .part + sidecar for another size (same ETag) must not block the download."""
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    other = len(data) + 4096
    part.write_bytes(b"\xff" * other)
    rec = good_record(srv, other)
    rec.segments = [(0, other - 1, 0, 0)]
    state.save(side, rec)
    path = downloader(srv.url("/f"), out).run()
    assert sha256(path) == sha256(data)


def watch_sidecar(side: Path, part: Path, stop: threading.Event) -> List[state.Record]:
    seen: List[state.Record] = []
    while not stop.is_set():
        if side.exists():
            with contextlib.suppress(state.InvalidState):  # the .part may be renamed meanwhile
                seen.append(state.load(side, part))
        time.sleep(0.02)
    return seen


def run_watched(srv: FaultServer, out: Path, **kw) -> Tuple[List[state.Record], Path]:
    part, side = part_paths(out)
    stop = threading.Event()
    records: List[List[state.Record]] = []
    t = threading.Thread(target=lambda: records.append(watch_sidecar(side, part, stop)))
    t.start()
    try:
        path = downloader(srv.url("/f"), out, **kw).run()
    finally:
        stop.set()
        t.join(5)
    return records[0], path


def written_total(rec: state.Record) -> int:
    return sum(w for _, _, w, _ in rec.segments)


def synced_total(rec: state.Record) -> int:
    return sum(y for _, _, _, y in rec.segments)


def test_sidecar_is_committed_while_running(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    srv.faults.rate = 512 * KiB  # ~1.5 s with 4 connections
    out = tmp_path / "out.bin"
    seen, path = run_watched(srv, out, commit_interval=0.1, sync_interval=0.2)
    assert sha256(path) == sha256(data)
    totals = [written_total(r) for r in seen]
    assert len(set(totals)) >= 4, totals  # updated again and again
    assert totals == sorted(totals)
    assert any(synced_total(r) > 0 for r in seen)  # fdatasync every 0.2 s


def test_slow_link_progress_is_committed_promptly(server: FaultServer, tmp_path: Path) -> None:
    """On a slow link, bytes that arrived are written and committed within about a commit
    interval: a crash must not lose seconds of received data (Options.commit_interval)."""
    data = make_data(2 * MiB, seed=52)
    server.add_file("/f", data)
    server.faults.rate = 32 * KiB  # per connection
    out = tmp_path / "out.bin"
    # Default segment size (1 MiB): two connections, the default read sizes.
    dl = downloader(server.url("/f"), out, connections=2, min_split=1 * MiB, commit_interval=0.1)
    t, errors = run_in_thread(dl.run)
    try:
        time.sleep(2.5)
        received = server.bytes_sent
        claimed = check_claims(out, data)
    finally:
        dl.cancel()
        t.join(10)
    assert received >= 120 * KiB
    assert claimed >= 32 * KiB, f"{received} bytes arrived, the sidecar claims {claimed}"
    assert len(errors) == 1 and isinstance(errors[0], accel.CancelledError)


def test_long_intervals_are_respected(srv: FaultServer, data: bytes, tmp_path: Path) -> None:
    """The first sidecar is saved after one commit interval: a transfer shorter than that
    writes none (issue: no sidecar for what ends within about a second)."""
    srv.faults.rate = 1 * MiB
    out = tmp_path / "out.bin"
    seen, path = run_watched(srv, out, commit_interval=60.0, sync_interval=60.0)
    assert sha256(path) == sha256(data)
    assert seen == [], "a sidecar was saved before the first commit interval"


def test_first_sidecar_after_one_commit_interval(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    srv.faults.rate = 256 * KiB
    out = tmp_path / "out.bin"
    seen, path = run_watched(srv, out, commit_interval=0.5, sync_interval=60.0)
    assert sha256(path) == sha256(data)
    assert seen, "no sidecar during a multi-second transfer"
    assert all(written_total(r) > 0 for r in seen)  # never an empty initial record


def test_live_sidecar_never_claims_unwritten_bytes(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    srv.faults.rate = 512 * KiB
    srv.faults.cut_after = 150 * KiB
    srv.faults.cut_times = 3
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    stop = threading.Event()
    problems: List[str] = []

    def check() -> None:
        while not stop.is_set():
            try:
                rec = state.load(side, part)
                content = part.read_bytes()
            except (state.InvalidState, OSError):
                time.sleep(0.01)
                continue
            for s, _, w, _ in rec.segments:
                if content[s : s + w] != data[s : s + w]:
                    problems.append(f"claimed {s}-{s + w - 1} is not on disk")
            time.sleep(0.02)

    t = threading.Thread(target=check)
    t.start()
    try:
        path = downloader(srv.url("/f"), out, commit_interval=0.05).run()
    finally:
        stop.set()
        t.join(5)
    assert sha256(path) == sha256(data)
    assert problems == []


# -- 9. signals ------------------------------------------------------------------------------


def wait_for_progress(srv: FaultServer, proc: subprocess.Popen, nbytes: int) -> None:
    deadline = time.monotonic() + 15
    while srv.bytes_sent < nbytes:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "signals, code",
    [((signal.SIGINT,), 130), ((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
    ids=["sigint", "sigterm", "double_sigint"],
)
def test_signal_leaves_valid_sidecar_then_resume(
    srv: FaultServer, data: bytes, tmp_path: Path, signals: Tuple[int, ...], code: int
) -> None:
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    srv.faults.rate = 256 * KiB
    proc = popen_accel(srv.url("/f"), "-o", str(out), "-n", "4", "-q", cwd=tmp_path)
    try:
        wait_for_progress(srv, proc, 400 * KiB)
        time.sleep(1.2)  # let at least one commit with progress happen
        t0 = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.01)
        proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    if len(signals) == 2:
        # The second Ctrl-C may land after accel already restored the default handler on its
        # way out: death by SIGINT, which a shell reports as 130 too.
        assert proc.returncode in (code, -signal.SIGINT)
    else:
        assert proc.returncode == code
    assert elapsed < 2.0
    assert not out.exists()
    check_claims(out, data)

    srv.faults.rate = None
    res = run_accel(srv.url("/f"), "-o", str(out), "-n", "4", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sha256(out) == sha256(data)
    assert not part.exists() and not side.exists()


# -- 10. local errors ---------------------------------------------------------------------------


def assert_one_line_error(res: subprocess.CompletedProcess) -> None:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("accel: error:"), res.stderr
    assert "Traceback" not in res.stderr


def test_output_under_a_regular_file_exits_6(srv: FaultServer, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    res = run_accel(srv.url("/f"), "-o", str(blocker / "out.bin"), "-q", cwd=tmp_path)
    assert res.returncode == 6, res.stderr
    assert_one_line_error(res)
    assert blocker.read_text() == "not a directory"


def test_unwritable_directory_exits_6(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/f", make_data(100 * KiB, seed=60))
    target = tmp_path / "ro"
    if os.geteuid() == 0:
        ctx = tmpfs(target, "ro,size=1m")
    else:
        target.mkdir()
        target.chmod(0o555)
        ctx = contextlib.nullcontext(target)
    with ctx:
        res = run_accel(server.url("/f"), "-o", str(target / "out.bin"), "-q", cwd=tmp_path)
        assert res.returncode == 6, res.stderr
        assert_one_line_error(res)
        assert list(target.iterdir()) == []


@pytest.mark.parametrize("known_size", [True, False], ids=["precheck", "enospc_while_writing"])
def test_disk_full_exits_6(server: FaultServer, tmp_path: Path, known_size: bool) -> None:
    data = make_data(3 * MiB, seed=61)
    server.add_file("/f", data)
    if not known_size:  # no size: no free-space check up front, the writes hit ENOSPC
        server.faults.ignore_range = True
        server.faults.no_content_length = True
    with tmpfs(tmp_path / "small", "size=1m") as mnt:
        out = mnt / "out.bin"
        res = run_accel(server.url("/f"), "-o", str(out), "-q", cwd=tmp_path)
        assert res.returncode == 6, res.stderr
        assert_one_line_error(res)
        assert not out.exists()
