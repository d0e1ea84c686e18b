"""``connections="auto"``, whole downloads from the real fault server (the pure controller
on an injected clock is in tests/unit/test_autoscale.py)."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, List

import pytest

import accel
from accel.options import AUTO_START
from tests.helpers import MiB, sha256, wait_until
from tests.servers import FaultServer, make_data


def watch(dl: accel.Downloader) -> List[accel.Progress]:
    """The download's progress snapshots every 20 ms until it ends (on a thread)."""
    snaps: List[accel.Progress] = []

    def run() -> None:
        while not dl.wait(0.02):
            snap = dl.progress()
            if snap is not None:
                snaps.append(snap)

    threading.Thread(target=run, daemon=True).start()
    return snaps


def peak_overlap(server: FaultServer, path: str) -> int:
    """The most GET requests for ``path`` the server was answering at one time (a response
    the client stopped reading, e.g. after a steal, may still count for a moment)."""
    points = []
    for r in server.requests:
        if r.method == "GET" and r.path == path:
            points += [(r.started, 1), (r.ended if r.ended is not None else float("inf"), -1)]
    live = peak = 0
    for _, delta in sorted(points):
        live += delta
        peak = max(peak, live)
    return peak


def test_auto_adds_connections_on_a_per_connection_throttle(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(10 * MiB + 321, 90)
    server.add_file("/t.bin", data)
    server.faults.rate = 1 * MiB  # per connection: more connections, more speed
    dl = accel.Downloader(server.url("/t.bin"), tmp_path / "t.bin", connections="auto")
    snaps = watch(dl.start())
    assert dl.result() == tmp_path / "t.bin"
    assert sha256(tmp_path / "t.bin") == sha256(data)
    assert snaps and all(s.auto for s in snaps)
    assert AUTO_START < max(s.connections for s in snaps) <= 16, [s.connections for s in snaps]
    assert peak_overlap(server, "/t.bin") > AUTO_START  # the server saw them too


def test_max_connections_caps_auto(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(6 * MiB, 91)
    server.add_file("/c.bin", data)
    server.faults.rate = 1 * MiB
    out = tmp_path / "c.bin"
    dl = accel.Downloader(server.url("/c.bin"), out, connections="auto", max_connections=5)
    snaps = watch(dl.start())
    dl.result()
    assert sha256(out) == sha256(data)
    assert max(s.connections for s in snaps) == 5
    assert peak_overlap(server, "/c.bin") >= 5


def test_auto_lets_connections_go_when_more_do_not_help(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rate limit of our own caps the total: 8 connections bring no more than 4, so the
    addition is undone and the surplus workers let go after their claim."""
    caplog.set_level(logging.INFO, logger="accel._engine.transfer")
    data = make_data(16 * MiB, 92)
    server.add_file("/l.bin", data)
    out = tmp_path / "l.bin"
    dl = accel.Downloader(server.url("/l.bin"), out, connections="auto", limit_rate="4M")
    snaps = watch(dl.start())

    def counts() -> List[int]:
        return [int(n) for n in re.findall(r": auto: (\d+) connections$", caplog.text, re.M)]

    wait_until(lambda: counts()[-2:] == [8, 4] or dl.done, 20, "auto to try 8 and go back")
    assert counts()[-2:] == [8, 4], caplog.text
    wait_until(lambda: dl.done or snaps[-1].connections <= 4, 20, "surplus workers to let go")
    assert not dl.done, "the download ended before the surplus workers let go"
    assert dl.result() == out
    assert sha256(out) == sha256(data)
    assert max(s.connections for s in snaps) == 8


def test_auto_on_a_small_file_is_one_connection(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/s.bin", make_data(200 * 1024, 93))
    out = accel.Downloader(server.url("/s.bin"), tmp_path / "s.bin", connections="auto").run()
    assert sha256(out) == sha256(make_data(200 * 1024, 93))
    assert len([r for r in server.requests if r.method == "GET"]) == 1


def test_a_429_under_auto_takes_one_connection_away_and_holds(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker that meets the 429 tells the scheduler (its cap) and the transfer (the
    autoscaler): one connection fewer, and no growth again while the scheduler holds it."""
    caplog.set_level(logging.INFO, logger="accel._engine.transfer")
    data = make_data(16 * MiB, 95)
    server.add_file("/q.bin", data)
    server.faults.rate = 1 * MiB  # per connection: the autoscaler grows to the cap
    lock, seen = threading.Lock(), [0]

    def overloaded(handler: Any, log: Any) -> bool:
        if log.method != "GET":
            return False
        with lock:
            seen[0] += 1
            nth = seen[0]
        if nth != 6:  # the probe, 3 workers, then those the autoscaler added
            return False
        handler.send_simple(429, b"slow down", {"Retry-After": "0"})
        return True

    server.faults.on_request = overloaded
    out = tmp_path / "q.bin"
    dl = accel.Downloader(server.url("/q.bin"), out, connections="auto", max_connections=8)
    assert dl.run() == out
    assert sha256(out) == sha256(data)
    assert [r.status for r in server.requests].count(429) == 1
    counts = [int(n) for n in re.findall(r": auto: (\d+) connections$", caplog.text, re.M)]
    assert counts[:2] == [8, 7], caplog.text  # grown to the cap, then one fewer
    assert max(counts[1:]) == 7, counts  # held (the download is far shorter than the hold)
