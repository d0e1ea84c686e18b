"""Zero-copy bodies (accel._http.zerocopy): plain HTTP goes socket -> pipe -> file with splice(2).

Every test runs a real server on loopback and real sockets; ``os.splice`` is only watched
(a wrapper counting what moved from a socket), never replaced.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import requests

import accel
from accel import Options
from accel._http import zerocopy
from accel._http.body import ReadBuffer
from accel.exceptions import InsufficientSpaceError
from tests.helpers import fast_retry, gets, sha256, tmpfs
from tests.servers import FaultServer, make_data

KiB, MiB = 1024, 1024 * 1024

pytestmark = pytest.mark.skipif(not zerocopy.AVAILABLE, reason="splice(2) is Linux only")


def opts(**kw: Any) -> Options:
    kw.setdefault("retry", fast_retry(5))
    return Options(**kw)


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, int]]:
    """Counts the bytes ``os.splice`` moved out of sockets (the real call does the work)."""
    real = os.splice
    seen = {"bytes": 0, "calls": 0}

    def watch(src: int, dst: int, count: int, *args: Any, **kw: Any) -> int:
        n = real(src, dst, count, *args, **kw)
        if stat.S_ISSOCK(os.fstat(src).st_mode):
            seen["bytes"] += n
            seen["calls"] += 1
        return n

    monkeypatch.setattr(os, "splice", watch)
    monkeypatch.setattr(zerocopy, "_enabled", True)
    yield seen


@pytest.fixture(params=["splice", "read"])
def path_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a body reaches the file: spliced, and read into a buffer (TLS, no Linux)."""
    monkeypatch.setattr(zerocopy, "_enabled", request.param == "splice")
    return str(request.param)


def test_plain_http_bodies_are_spliced_and_intact(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int]
) -> None:
    data = make_data(8 * MiB + 123, seed=1)
    server.add_file("/f.bin", data)
    out = accel.Downloader(
        server.url("/f.bin"), tmp_path / "f.bin", options=opts(connections=4)
    ).run()
    assert sha256(out) == sha256(data)
    # All but what http.client buffered with each response's headers came by splice.
    assert spliced["bytes"] >= len(data) - 64 * KiB * len(gets(server, "/f.bin"))


def test_spliced_bodies_leave_the_connection_reusable(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int]
) -> None:
    datas = [make_data(1 * MiB + i, seed=10 + i) for i in range(4)]
    for i, data in enumerate(datas):
        server.add_file(f"/f{i}.bin", data)
    server.reset_counters()
    with accel.Manager(jobs=1, directory=tmp_path, options=opts(connections=1)) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    assert spliced["bytes"] >= sum(map(len, datas)) - 64 * KiB * len(datas)
    assert server.connections == 1, "a spliced body read to its end keeps the connection"


@pytest.mark.parametrize(
    "fault",
    [
        {"cut_after": 300 * KiB, "cut_times": 3},
        {"cut_after": 700 * KiB, "cut_rst": True},
        {"stall_seconds": 1.5, "stall_after_bytes": 100 * KiB},
    ],
    ids=["cut", "reset", "stall"],
)
def test_broken_bodies_are_retried_and_the_file_is_intact(
    server: FaultServer, tmp_path: Path, path_kind: str, fault: Dict[str, Any]
) -> None:
    data = make_data(3 * MiB + 7, seed=3)
    server.add_file("/f.bin", data)
    for key, value in fault.items():
        setattr(server.faults, key, value)
    out = accel.Downloader(
        server.url("/f.bin"),
        tmp_path / "f.bin",
        options=opts(connections=2, timeout=0.5),
    ).run()
    assert sha256(out) == sha256(data)


def test_a_body_cut_short_is_retried_not_taken(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int]
) -> None:
    """A spliced body that ends early is a retry from where it stopped, not a short file."""
    data = make_data(2 * MiB, seed=4)
    server.add_file("/f.bin", data)
    server.faults.cut_after = 1 * MiB + 5
    out = accel.Downloader(
        server.url("/f.bin"), tmp_path / "f.bin", options=opts(connections=1)
    ).run()
    assert sha256(out) == sha256(data)
    ranges = [r.headers.get("Range") for r in gets(server, "/f.bin")]
    assert len(ranges) >= 2 and ranges[-1] is not None
    resumed_from = int(ranges[-1].split("=")[1].split("-")[0])
    assert 0 < resumed_from <= 1 * MiB + 5


def test_tls_bodies_are_read_not_spliced(tmp_path: Path, spliced: Dict[str, int]) -> None:
    trustme = pytest.importorskip("trustme")
    from tests.servers import TLSFaultServer

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    data = make_data(2 * MiB + 1, seed=5)
    with TLSFaultServer(ctx) as srv:
        srv.add_file("/f.bin", data)
        out = accel.Downloader(
            srv.url("/f.bin"), tmp_path / "f.bin", options=opts(verify=str(ca_file))
        ).run()
    assert sha256(out) == sha256(data)
    assert spliced["calls"] == 0


@pytest.mark.parametrize("fault", ["chunked", "no_content_length"])
def test_bodies_of_unknown_length_are_read(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int], fault: str
) -> None:
    data = make_data(1 * MiB + 9, seed=6)
    server.add_file("/f.bin", data)
    setattr(server.faults, fault, True)
    server.faults.ignore_range = True
    out = accel.Downloader(server.url("/f.bin"), tmp_path / "f.bin", options=opts()).run()
    assert sha256(out) == sha256(data)
    assert spliced["calls"] == 0


def test_a_full_disk_while_splicing_is_a_local_error(server: FaultServer, tmp_path: Path) -> None:
    """ENOSPC from the pipe-to-file splice is accel's disk-full error; the pipe is emptied."""
    if not zerocopy._enabled:
        pytest.skip("splice is switched off in this environment")
    server.add_file("/f.bin", make_data(3 * MiB, seed=7))
    with tmpfs(tmp_path / "small", "size=1m") as mnt:
        fd = os.open(mnt / "out.part", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with requests.Session() as session:
                resp = session.get(server.url("/f.bin"), stream=True, timeout=5)
                holder = ReadBuffer(1 * MiB)
                copy = zerocopy.copier(resp, fd, holder)
                assert copy is not None and holder.pipe is not None
                pos = 0
                with pytest.raises(InsufficientSpaceError, match="cannot write the download"):
                    for _ in range(100):
                        pos += copy(256 * KiB, pos)
                assert 0 < pos <= 1 * MiB
                assert holder.pipe.pending == 0
                resp.close()
        finally:
            os.close(fd)


def test_the_pipe_closes_with_its_worker() -> None:
    holder = ReadBuffer()
    holder.pipe = zerocopy.Pipe()
    r, w = holder.pipe.r, holder.pipe.w
    assert holder.pipe.size >= 64 * KiB
    del holder
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_small_bodies_are_read(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int]
) -> None:
    """Below SPLICE_MIN a pipe's set-up costs more than it saves: the body is read."""
    data = make_data(zerocopy.SPLICE_MIN - 1, seed=8)
    server.add_file("/f.bin", data)
    out = accel.Downloader(server.url("/f.bin"), tmp_path / "f.bin", options=opts()).run()
    assert sha256(out) == sha256(data)
    assert spliced["calls"] == 0


def test_no_pipe_outlives_its_download(
    server: FaultServer, tmp_path: Path, spliced: Dict[str, int]
) -> None:
    def pipes() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            except FileNotFoundError:  # the directory listing's own descriptor
                pass
        return count

    before = pipes()
    datas = [make_data(600 * KiB, seed=20 + i) for i in range(6)]
    for i, data in enumerate(datas):
        server.add_file(f"/f{i}.bin", data)
    with accel.Manager(jobs=3, directory=tmp_path, options=opts(connections=2)) as m:
        ds = [m.add(server.url(f"/f{i}.bin")) for i in range(len(datas))]
    for d, data in zip(ds, datas):
        assert sha256(d.result()) == sha256(data)
    assert spliced["calls"] > 0
    assert pipes() == before


@pytest.mark.parametrize("value, enabled", [("1", False), ("0", True), ("", True)])
def test_accel_no_splice_turns_the_path_off(value: str, enabled: bool) -> None:
    env = {**os.environ, "ACCEL_NO_SPLICE": value}
    out = subprocess.run(
        [sys.executable, "-c", "from accel._http import zerocopy; print(zerocopy._enabled)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(enabled)
