"""Integration with a real nginx on loopback: ranged downloads over several connections, a
server without range support, per-connection rate limits with SIGINT and resume, and a file
replaced between runs. (TLS integration lives in test_security.py.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import accel
from accel import Options
from accel import events as ev
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    interrupt,
    popen_accel,
    run_accel,
    run_in_thread,
    sha256,
    sidecar_written,
    wait_until,
)
from tests.servers import make_data
from tests.servers.nginx import Nginx

pytestmark = pytest.mark.nginx

FAST = fast_retry(3)


def opts(**kw: Any) -> Options:
    return fast_options(FAST, **kw)


def file_gets(ngx: Nginx, name: str) -> List[Dict[str, Any]]:
    return [e for e in ngx.access_log() if e["request"].startswith(f"GET /{name} ")]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    return root


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_ranged_download_with_several_connections(
    nginx_factory: Callable[..., Nginx], www: Path, out: Path
) -> None:
    data = make_data(3 * MiB + 123, seed=1)
    (www / "big.bin").write_bytes(data)
    ngx = nginx_factory(www)
    path = accel.Downloader(ngx.url("big.bin"), directory=out, options=opts()).run()
    assert sha256(path) == sha256(data)
    wait_until(
        lambda: sum(e["body_bytes_sent"] for e in file_gets(ngx, "big.bin")) >= len(data),
        5,
        "the access log",
        interval=0.02,
    )
    log = file_gets(ngx, "big.bin")
    assert len(log) >= 4, log
    assert {e["status"] for e in log} == {206}
    assert all(e["range"] and e["range"].startswith("bytes=") for e in log)
    assert len({e["range"] for e in log}) == len(log), "a range was requested twice"
    assert len({e["connection"] for e in log}) >= 2, "only one connection was used"


def test_server_without_ranges_single_stream(
    nginx_factory: Callable[..., Nginx], www: Path, out: Path
) -> None:
    data = make_data(2 * MiB + 7, seed=2)
    (www / "plain.bin").write_bytes(data)
    ngx = nginx_factory(www, max_ranges=0)
    path = accel.Downloader(ngx.url("plain.bin"), directory=out, options=opts()).run()
    assert sha256(path) == sha256(data)
    wait_until(lambda: file_gets(ngx, "plain.bin"), 5, "the access log", interval=0.02)
    log = file_gets(ngx, "plain.bin")
    assert [e["status"] for e in log] == [200], log
    assert log[0]["body_bytes_sent"] == len(data)


def test_cli_ranged_download(nginx_factory: Callable[..., Nginx], www: Path, out: Path) -> None:
    data = make_data(2 * MiB + 1, seed=3)
    (www / "cli.bin").write_bytes(data)
    ngx = nginx_factory(www)
    proc = run_accel(ngx.url("cli.bin"), "-n", "4", "-q", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert sha256(out / "cli.bin") == sha256(data)


def test_limit_rate_sigint_then_resume(
    nginx_factory: Callable[..., Nginx], www: Path, out: Path
) -> None:
    size = 3 * MiB + 5
    data = make_data(size, seed=4)
    (www / "slow.bin").write_bytes(data)
    # Per connection; nginx lets the first second's worth through at once (1 MiB for -n 4),
    # then 1 MiB/s in all.
    ngx = nginx_factory(www, limit_rate="256k")
    url = ngx.url("slow.bin")
    side = out / "slow.bin.part.json"
    proc = popen_accel(url, "-n", "4", cwd=out)
    part = out / "slow.bin.part"
    _, _, err = interrupt(proc, part.exists, 20, "the part file", settle=0.6, interval=0.02)
    assert proc.returncode == 130, err
    assert not (out / "slow.bin").exists()
    saved = sidecar_written(side)
    assert 0 < saved < size

    events: List[ev.Event] = []
    deltas: List[int] = []
    path = accel.Downloader(
        url, directory=out, options=opts(), on_event=events.append, on_progress=deltas.append
    ).run()
    assert sha256(path) == sha256(data)
    started = [e for e in events if isinstance(e, ev.Started)]
    assert len(started) == 1 and started[0].resumed >= saved
    assert not any(isinstance(e, ev.Restarted) for e in events)
    assert sum(deltas) == size - started[0].resumed
    assert not side.exists()


def test_file_replaced_between_runs_restarts(
    nginx_factory: Callable[..., Nginx], www: Path, out: Path
) -> None:
    size = 3 * MiB
    old, new = make_data(size, seed=5), make_data(size, seed=6)
    src = www / "swap.bin"
    src.write_bytes(old)
    ngx = nginx_factory(www, limit_rate="256k")  # 1 MiB at once for 4 connections, then 1 MiB/s
    url = ngx.url("swap.bin")
    d = accel.Downloader(url, directory=out, options=opts(commit_interval=0.1))
    t, errors = run_in_thread(d.run)
    side = out / "swap.bin.part.json"
    wait_until(
        lambda: sidecar_written(side) >= 256 * KiB or not t.is_alive(),
        20,
        "progress",
        interval=0.02,
    )
    d.cancel()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], accel.CancelledError), errors
    assert sidecar_written(side) > 0

    # Same size, new content, new mtime: nginx's ETag and Last-Modified change.
    tmp = www / ".swap.tmp"
    tmp.write_bytes(new)
    st = src.stat()
    os.utime(tmp, (st.st_atime + 1000, st.st_mtime + 1000))
    os.replace(tmp, src)

    events: List[ev.Event] = []
    path = accel.Downloader(
        url, directory=out, options=opts(connections=8), on_event=events.append
    ).run()
    assert path.read_bytes() == new, "the result mixes the old and the new file"
    assert any(isinstance(e, ev.Restarted) for e in events), events
    started = [e for e in events if isinstance(e, ev.Started)]
    assert started and started[-1].resumed == 0
    assert not side.exists() and not (out / "swap.bin.part").exists()
