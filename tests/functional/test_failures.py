"""Failure classes of issue 12, against the FaultServer (a real lighttpd: tests/integration/
test_lighttpd.py; the pure validator checks: tests/unit/test_remote.py).

A sidecar that claims holes is not trusted; weak validators never go into ``If-Range`` and
still let a freshly published file download; a host that does not resolve or refuses on
first contact is reported at once; an expiring signed URL is resolved again once for all
8 connections; a checksum mismatch keeps the downloaded data for the right checksum.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

import accel
from accel import Options, RetryPolicy
from accel._disk import state
from accel._disk.storage import data_until
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    one_line,
    range_bounds,
    run_accel,
    run_in_thread,
    sha256,
    wait_until,
)
from tests.servers import FaultHandler, FaultServer, RequestLog, free_port, make_data

#: Seconds within which a permanent error on first contact must be reported.
FAIL_FAST = 1.0


def options(**kw) -> Options:
    kw.setdefault("connect_timeout", 5.0)
    return fast_options(fast_retry(4), **kw)


def downloader(
    url: str, out: Path, events: Optional[List[accel.Event]] = None, **kw
) -> accel.Downloader:
    return accel.Downloader(
        url, out, options=options(**kw), on_event=None if events is None else events.append
    )


def part_paths(out: Path) -> Tuple[Path, Path]:
    part = out.with_name(out.name + ".part")
    return part, state.sidecar_path(part)


def restarted(events: List[accel.Event]) -> List[accel.Restarted]:
    return [e for e in events if isinstance(e, accel.Restarted)]


# -- #2: the sidecar never outranks the disk ------------------------------------------------


def holes_detectable(directory: Path) -> bool:
    """Whether the file system under ``directory`` reports holes to ``SEEK_HOLE``."""
    probe = directory / ".holes"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, 4 * MiB)
        os.pwrite(fd, b"x" * 4096, 0)
        return data_until(fd, 0, 4 * MiB) < 4 * MiB
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture
def sparse_dir(tmp_path: Path) -> Path:
    if not holes_detectable(tmp_path):
        pytest.skip(f"the file system of {tmp_path} does not report holes (SEEK_HOLE)")
    return tmp_path


def sparse_part(part: Path, size: int, pieces: List[Tuple[int, bytes]]) -> None:
    """A sparse ``.part`` of ``size`` bytes holding only ``pieces`` (offset, bytes)."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for offset, chunk in pieces:
            os.pwrite(fd, chunk, offset)
    finally:
        os.close(fd)


def test_data_until_finds_the_first_hole(sparse_dir: Path) -> None:
    path = sparse_dir / "sparse"
    sparse_part(path, 4 * MiB, [(MiB, b"x" * (256 * KiB))])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_until(fd, 0, 4 * MiB) == 0  # starts in a hole
        assert data_until(fd, MiB, MiB + 256 * KiB) == MiB + 256 * KiB  # all data
        assert data_until(fd, MiB, 2 * MiB) == MiB + 256 * KiB  # data, then a hole
        assert data_until(fd, MiB + 4096, 2 * MiB) == MiB + 256 * KiB
    finally:
        os.close(fd)


def test_check_data_cuts_each_segment_at_its_first_hole(sparse_dir: Path) -> None:
    part = sparse_dir / "x.part"
    size = 3 * MiB
    # Segment 1 is backed up to 256 KiB, segment 2 wholly, segment 3 not at all.
    sparse_part(part, size, [(0, b"a" * (256 * KiB)), (MiB, b"b" * MiB)])
    rows = [(0, MiB - 1, MiB, MiB), (MiB, 2 * MiB - 1, MiB, 0), (2 * MiB, size - 1, 4096, 4096)]
    record = state.Record("http://h/x", size, '"e"', None, rows, state.boot_id())
    checked = state.check_data(record, part)
    assert checked.segments == [
        (0, MiB - 1, 256 * KiB, 256 * KiB),
        (MiB, 2 * MiB - 1, MiB, 0),
        (2 * MiB, size - 1, 0, 0),
    ]


@pytest.mark.parametrize("backed", [0, 512 * KiB], ids=["nothing_on_disk", "first_half_MiB"])
def test_sidecar_claiming_holes_is_not_trusted(
    srv: FaultServer,
    data: bytes,
    sparse_dir: Path,
    caplog: pytest.LogCaptureFixture,
    backed: int,
) -> None:
    """A sidecar that says "all written" beside a .part with holes (restored from a backup,
    copied, edited): the holes are fetched, the backed bytes are not, the result is right."""
    out = sparse_dir / "out.bin"
    part, side = part_paths(out)
    size = len(data)
    sparse_part(part, size, [(0, data[:backed])] if backed else [])
    half = size // 2
    state.save(
        side,
        state.Record(
            srv.url("/f"),
            size,
            srv.etag("/f"),
            srv.last_modified("/f"),
            [(0, half - 1, half, half), (half, size - 1, size - half, size - half)],
            state.boot_id(),
        ),
    )
    caplog.set_level(logging.WARNING, logger="accel")
    path = downloader(srv.url("/f"), out).run()
    assert sha256(path) == sha256(data), "holes of zeros were taken for received bytes"
    assert any("lacks" in r.getMessage() for r in caplog.records), "no warning was logged"
    for r in gets(srv, "/f"):  # the backed bytes were not asked for again
        start, _ = range_bounds(r.range_header or "bytes=0-")
        assert start >= backed, r.range_header
    assert srv.bytes_sent_for("/f") >= size - backed


def test_cli_restored_sidecar_with_holes_exits_0_with_the_right_bytes(
    srv: FaultServer, data: bytes, sparse_dir: Path
) -> None:
    """The copied-beside-another-.part case end to end: never exit 0 with holes."""
    out = sparse_dir / "f.bin"
    part, side = part_paths(out)
    sparse_part(part, len(data), [])
    rows = [(0, len(data) - 1, len(data), len(data))]
    record = state.Record(srv.url("/f"), len(data), srv.etag("/f"), None, rows, state.boot_id())
    state.save(side, record)
    res = run_accel(srv.url("/f"), "-o", str(out), "-q")
    assert res.returncode == 0, res.stderr
    assert sha256(out) == sha256(data)
    assert srv.bytes_sent_for("/f") >= len(data)


# -- #4: weak validators ----------------------------------------------------------------------


def ranged(srv: FaultServer, path: str = "/f") -> List[RequestLog]:
    return [r for r in gets(srv, path) if r.range_header]


@pytest.mark.parametrize(
    "etag, last_modified, lm_now, weak_times",
    [
        ('W/"x"', "auto", True, 0),  # weak ETag, Last-Modified = Date (Apache, future mtime)
        ("auto", "ahead", False, 1),  # W/ on the first answer, strong later (Apache, fresh)
        (None, "ahead", False, 0),  # no ETag, an mtime ahead of the server's clock
    ],
    ids=["weak_etag_lm_is_date", "weak_then_strong_etag", "lm_ahead_no_etag"],
)
def test_freshly_published_file_downloads(
    server: FaultServer,
    tmp_path: Path,
    etag: Optional[str],
    last_modified: str,
    lm_now: bool,
    weak_times: int,
) -> None:
    """The server ignores Range under an If-Range with a weak date (RFC 9110 13.1.5, as
    Apache does): accel must not send one, and finishes in this run from every answer."""
    data = make_data(2 * MiB + 17, seed=120)
    lm = formatdate(time.time() + 3600, usegmt=True) if last_modified == "ahead" else "auto"
    server.add_file("/f", data, etag=etag, last_modified=lm)
    server.faults.last_modified_now = lm_now
    server.faults.weak_etag_times = weak_times
    server.faults.rate = 512 * KiB  # several seconds: the dates move on during the run
    events: List[accel.Event] = []
    path = downloader(server.url("/f"), tmp_path / "out.bin", events).run()
    assert sha256(path) == sha256(data)
    assert not restarted(events)
    reqs = gets(server, "/f")
    assert len({r.connection_id for r in reqs}) >= 2  # a segmented download, not one stream
    for r in reqs:
        value = r.headers.get("If-Range")
        assert value is None or value.startswith('"'), f"If-Range with a weak validator: {value}"
    assert all(r.status == 206 for r in reqs)
    assert server.errors == []


def test_weak_validators_write_no_sidecar_and_a_later_run_restarts(
    server: FaultServer, tmp_path: Path
) -> None:
    """Without a strong validator nothing is kept for a later run: it starts from zero."""
    old = make_data(1536 * KiB, seed=121)
    new = make_data(1536 * KiB, seed=122)
    server.add_file("/f", old, etag='W/"x"', last_modified="auto")
    server.faults.last_modified_now = True
    server.faults.rate = 256 * KiB
    out = tmp_path / "out.bin"
    _, side = part_paths(out)
    dl = downloader(server.url("/f"), out)
    thread, errors = run_in_thread(dl.run)
    wait_until(lambda: server.bytes_sent_for("/f") >= 300 * KiB, 15, "progress")
    dl.cancel()
    thread.join(10)
    assert [type(e) for e in errors] == [accel.CancelledError]
    assert not side.exists()
    server.faults.rate = None
    server.set_file("/f", new)  # same size, same weak validators
    server.reset_counters()
    path = downloader(server.url("/f"), out).run()
    assert sha256(path) == sha256(new)
    assert server.bytes_sent_for("/f") >= len(new)


def test_strong_last_modified_still_goes_into_if_range(server: FaultServer, tmp_path: Path) -> None:
    """A date a second older than Date stays a validator: every later request carries it."""
    data = make_data(1 * MiB, seed=123)
    server.add_file("/f", data, etag=None, last_modified="auto")
    server.faults.cut_after = 200 * KiB
    path = downloader(server.url("/f"), tmp_path / "out.bin").run()
    assert sha256(path) == sha256(data)
    later = ranged(server)[1:]
    assert later
    assert {r.headers.get("If-Range") for r in later} == {server.last_modified("/f")}


# -- #5: fail fast on permanent errors -------------------------------------------------------


def refused_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    return free_port()


def patient() -> Options:
    """Default-like patience: retries that would take ~10 s if a refusal were retried."""
    return Options(retry=RetryPolicy(attempts=5, backoff=0.5), connect_timeout=5.0)


@pytest.mark.parametrize("kind", ["resolve", "refused"])
def test_permanent_error_on_first_contact_is_reported_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "resolve":
        url, message = "http://nosuchhost.invalid/f", "cannot resolve host nosuchhost.invalid"
    else:
        port = refused_port()
        url, message = f"http://127.0.0.1:{port}/f", f"connection refused by 127.0.0.1:{port}"
    out = tmp_path / "out.bin"
    t0 = time.monotonic()
    with pytest.raises(accel.NetworkError) as info:
        accel.Downloader(url, out, options=patient()).run()
    elapsed = time.monotonic() - t0
    assert elapsed <= FAIL_FAST, f"took {elapsed:.2f}s"
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["resolve", "refused"])
def test_cli_permanent_error_is_one_line_in_accels_words(tmp_path: Path, kind: str) -> None:
    if kind == "resolve":
        url, message = "http://nosuchhost.invalid/f", "cannot resolve host nosuchhost.invalid"
    else:
        port = refused_port()
        url, message = f"http://127.0.0.1:{port}/f", f"connection refused by 127.0.0.1:{port}"
    t0 = time.monotonic()
    version = run_accel("--version", cwd=tmp_path)
    startup = time.monotonic() - t0
    assert version.returncode == 0
    t0 = time.monotonic()
    res = run_accel(url, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert res.returncode == 3
    assert one_line(res.stderr) == f"accel: error: {message}"
    for internal in ("urllib3", "HTTPConnection", "Errno", "retries"):
        assert internal not in res.stderr
    assert elapsed <= startup + FAIL_FAST + 0.5, f"{elapsed:.2f}s (start-up {startup:.2f}s)"


def test_refusals_once_under_way_are_retried(tmp_path: Path) -> None:
    """The server goes away for a second mid-download (reset, then refused): it resumes."""
    data = make_data(2 * MiB + 9, seed=125)
    first = FaultServer().start()
    second: Optional[FaultServer] = None
    try:
        first.add_file("/f", data)
        first.faults.rate = 512 * KiB
        retry = RetryPolicy(attempts=6, backoff=0.2, backoff_max=1.0, jitter=0.0)
        dl = accel.Downloader(
            first.url("/f"), tmp_path / "out.bin", options=fast_options(retry, connect_timeout=5.0)
        )
        thread, errors = run_in_thread(dl.run)
        wait_until(lambda: first.bytes_sent_for("/f") >= 256 * KiB, 15, "progress")
        port = first.port
        first.stop()  # every connection reset, then refused
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        time.sleep(1.0)
        second = FaultServer(port=port).start()
        second.add_file("/f", data)
        thread.join(30)
        assert not thread.is_alive()
        assert errors == [], "the download did not survive the outage"
        assert sha256(tmp_path / "out.bin") == sha256(data)
        assert gets(second, "/f"), "nothing was retried after the outage"
    finally:
        first.stop()
        if second is not None:
            second.stop()


# -- #3: signed URLs at -n 8 -----------------------------------------------------------------


class SignedLinks:
    """``/f`` redirects to ``/real?sig=N``; only the current signature is accepted (403)."""

    def __init__(self, srv: FaultServer) -> None:
        self.srv = srv
        self.sig = 1
        self.lock = threading.Lock()
        self.expired: List[RequestLog] = []
        srv.faults.on_request = self.hook

    def hook(self, handler: FaultHandler, log: RequestLog) -> bool:
        with self.lock:
            sig = self.sig
        if log.path == "/f":
            handler.send_simple(302, b"", {"Location": f"/real?sig={sig}"})
            return True
        if log.path == "/real" and parse_qs(urlsplit(log.target).query).get("sig") != [str(sig)]:
            with self.lock:
                self.expired.append(log)
            handler.send_simple(403, b"Request has expired")
            return True
        return False

    def expire(self) -> None:
        """The link expires: a new signature, and every open connection drops."""
        with self.lock:
            self.sig += 1
        self.srv.drop_connections()


def test_signed_url_expiring_under_8_connections_is_resolved_once(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(4 * MiB + 11, seed=126)
    server.add_file("/real", data)
    links = SignedLinks(server)
    server.faults.rate = 256 * KiB
    dl = downloader(server.url("/f"), tmp_path / "out.bin", connections=8)
    thread, errors = run_in_thread(dl.run)

    def eight_running() -> bool:
        live = dl.progress()
        return live is not None and live.connections >= 8 and live.written >= 512 * KiB

    wait_until(eight_running, 20, "8 live connections")
    links.expire()
    thread.join(60)
    assert not errors, errors
    assert sha256(tmp_path / "out.bin") == sha256(data)
    assert len(links.expired) >= 2, "the expiry did not hit several connections"
    originals = gets(server, "/f")
    assert len(originals) == 2  # the probe, then exactly one re-resolution for all
    assert server.errors == []


# -- #7: a checksum mismatch keeps the data ----------------------------------------------------


@pytest.mark.parametrize(
    "etag, last_modified", [("auto", "auto"), ('W/"x"', None)], ids=["strong", "weak_etag"]
)
def test_checksum_mismatch_keeps_the_data_for_the_right_checksum(
    server: FaultServer,
    data: bytes,
    tmp_path: Path,
    etag: Optional[str],
    last_modified: Optional[str],
) -> None:
    server.add_file("/f", data, etag=etag, last_modified=last_modified)
    out = tmp_path / "out.bin"
    part, side = part_paths(out)
    wrong = "sha256=" + "0" * 64
    with pytest.raises(accel.VerificationError) as info:
        downloader(server.url("/f"), out, checksum=wrong).run()
    assert str(part) in str(info.value)
    assert not out.exists()
    assert part.read_bytes() == data
    record = state.load(side, part)
    assert all(w == e - s + 1 for s, e, w, _ in record.segments)  # marked complete

    server.reset_counters()
    right = "sha256=" + sha256(data)
    path = downloader(server.url("/f"), out, checksum=right).run()
    assert sha256(path) == sha256(data)
    assert server.bytes_sent_for("/f") == 0, "the body was transferred again"
    assert not part.exists() and not side.exists()


def test_cli_checksum_mismatch_exits_5_and_says_where_the_data_is(
    srv: FaultServer, data: bytes, tmp_path: Path
) -> None:
    res = run_accel(srv.url("/f"), "--checksum", "sha256=" + "1" * 64, "-q", cwd=tmp_path)
    assert res.returncode == 5
    line = one_line(res.stderr)
    assert "checksum mismatch" in line and "f.part" in line
    assert (tmp_path / "f.part").read_bytes() == data
    srv.reset_counters()
    res = run_accel(srv.url("/f"), "--checksum", "sha256=" + sha256(data), "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sha256(tmp_path / "f") == sha256(data)
    assert srv.bytes_sent_for("/f") == 0
    assert sorted(os.listdir(tmp_path)) == ["f"]
