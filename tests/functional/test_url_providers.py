"""URL providers: wherever the library takes a URL, a zero-argument callable that returns one
(a presigned-link maker) is accepted. Against the fault server with links that expire: only
the newest signature is served, older ones answer 403 "Request has expired"."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, List
from urllib.parse import parse_qs, urlsplit

import pytest

import accel
from accel import Options
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    run_in_thread,
    sha256,
    wait_until,
    written,
)
from tests.servers import FaultHandler, FaultServer, RequestLog, make_data


def opts(**kw: Any) -> Options:
    return fast_options(fast_retry(2), **kw)


class Presigner:
    """Mints ``/real?sig=N`` links; only the newest ``sig`` is served (older: 403)."""

    def __init__(self, srv: FaultServer) -> None:
        self.srv = srv
        self.sig = 0
        self.minted: List[int] = []
        self.expired: List[RequestLog] = []
        self.lock = threading.Lock()
        srv.faults.on_request = self.hook

    def __call__(self) -> str:
        with self.lock:
            self.sig += 1
            self.minted.append(self.sig)
            return self.srv.url(f"/real?sig={self.sig}&expires=soon")

    def hook(self, handler: FaultHandler, log: RequestLog) -> bool:
        with self.lock:
            current = self.sig
        if log.path == "/real" and parse_qs(urlsplit(log.target).query).get("sig") != [
            str(current)
        ]:
            with self.lock:
                self.expired.append(log)
            handler.send_simple(403, b"Request has expired")
            return True
        return False

    def expire(self) -> None:
        """Every link minted so far expires, and every open connection drops."""
        with self.lock:
            self.sig += 1  # no link carries this one until the next mint
        self.srv.drop_connections()


def test_an_expiring_link_is_minted_again_once_for_all_connections(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(4 * MiB + 3, seed=140)
    server.add_file("/real", data)
    links = Presigner(server)
    server.faults.rate = 256 * KiB
    dl = accel.Downloader(links, tmp_path / "out.bin", options=opts(connections=8))
    assert links.minted == [1] and "sig=1" in dl.url  # called when the download is made
    thread, errors = run_in_thread(dl.run)

    def running() -> bool:
        live = dl.progress()
        return live is not None and live.connections >= 8 and live.written >= 2 * MiB

    wait_until(running, 30, "8 live connections and half the file")
    links.expire()
    server.faults.rate = None
    thread.join(60)
    assert not errors, errors
    assert sha256(tmp_path / "out.bin") == sha256(data)
    assert len(links.expired) >= 2, "the expiry did not hit several connections"
    assert links.minted == [1, 3], links.minted  # one fresh link for every connection
    fresh = [r for r in gets(server, "/real") if "sig=3" in r.target]
    # What was downloaded was kept: the fresh link brought about the other half (socket
    # buffers and a race at the end cost a little more), not the whole file again.
    assert sum(r.body_bytes_sent for r in fresh) < len(data) - MiB // 2


def test_a_link_that_expired_before_the_start_is_minted_again(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(700 * KiB, seed=141)
    server.add_file("/real", data)
    links = Presigner(server)
    dl = accel.Downloader(links, tmp_path / "late.bin", options=opts())
    links.expire()  # e.g. queued in a Manager for longer than the link lives
    assert dl.run() == tmp_path / "late.bin"
    assert sha256(tmp_path / "late.bin") == sha256(data)
    assert links.minted == [1, 3]
    assert [r.status for r in links.expired] == [403]


def test_a_new_run_with_a_fresh_link_resumes(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, seed=142)
    server.add_file("/real", data)
    links = Presigner(server)
    server.faults.rate = 512 * KiB
    out = tmp_path / "r.bin"
    first = accel.Downloader(links, out, options=opts()).start()
    wait_until(lambda: written(first) > 3 * MiB // 2, 20, "half the file written")
    first.cancel()
    assert isinstance(first.exception(10), accel.CancelledError)
    sidecar = Path(f"{out}.part.json").read_text()
    assert "sig=" not in sidecar  # recorded without the link's signature
    before = sum(r.body_bytes_sent for r in gets(server, "/real"))
    server.faults.rate = None
    assert accel.Downloader(links, out, options=opts()).run() == out  # a new signature
    assert sha256(out) == sha256(data)
    again = sum(r.body_bytes_sent for r in gets(server, "/real")) - before
    assert again < len(data) - MiB // 2, (again, before)  # resumed, not fetched from zero


@pytest.mark.parametrize(
    "provider, message",
    [
        (lambda: 42, "the URL provider returned int, not a URL string"),
        (lambda: "ftp://example.org/x", "need http:// or https://"),
        (lambda: 1 / 0, "the URL provider failed: ZeroDivisionError"),
    ],
)
def test_a_bad_provider_is_a_usage_error(provider: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(accel.UsageError, match=message):
        accel.Downloader(provider, tmp_path / "x")


def test_manager_add_and_adownload_take_providers(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(200 * KiB, seed=143)
    server.add_file("/real", data)
    links = Presigner(server)
    with accel.Manager(jobs=1, directory=tmp_path, options=opts()) as m:
        d = m.add(links, "m.bin")
    assert sha256(d.result()) == sha256(data)
    path = asyncio.run(accel.adownload(links, tmp_path / "a.bin", options=opts()))
    assert sha256(path) == sha256(data)
    assert len(links.minted) == 2
