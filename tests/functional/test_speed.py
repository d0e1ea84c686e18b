"""The low-speed floor (``--speed-limit``/``--speed-time``): a trickle never runs forever.

A server (or middlebox) that sends one byte a second after the first bytes is progress to
every other detector. With the floor, a connection below it is replaced while another one
shows it can be reached; a download below it as a whole ends with exit 3 and its state
kept; a slow but steady link above it is never cut; ``--speed-limit 0`` turns it off. All
against the real FaultServer, through the threaded loop and the inline one-connection path.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import accel
from accel.cli import args as cli_args
from accel.cli import main as cli
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    load_sidecar,
    one_line,
    range_bounds,
    run_accel,
    run_in_thread,
    sha256,
    wait_until,
)
from tests.servers import FaultServer, RequestLog, make_data

TOO_SLOW = re.compile(
    r"^accel: error: transfer too slow: below 1\.0 KiB/s for 1 s on every connection "
    r"\(--speed-limit/--speed-time\); state saved, run again to resume$"
)


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="accel")
    yield caplog


def options(**kw: object) -> accel.Options:
    kw.setdefault("connect_timeout", 5.0)
    return fast_options(fast_retry(4), **kw)


def range_start(req: RequestLog) -> int:
    assert req.range_header is not None
    return range_bounds(req.range_header)[0]


def reconnects(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]


# -- a trickle everywhere ends, and resumes later ----------------------------------------------


def test_trickle_on_every_connection_exits_3_then_resumes(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(2 * MiB + 7, seed=71)
    server.add_file("/f", data)
    server.faults.trickle_from = 256 * KiB  # then one byte a second, on every response
    t0 = time.monotonic()
    first = run_accel(server.url("/f"), "-n", "4", "-o", "out", "--speed-time", "1", cwd=tmp_path)
    elapsed = time.monotonic() - t0
    assert first.returncode == 3, first.stderr
    assert TOO_SLOW.match(one_line(first.stderr)), first.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s to give up"  # about 2 s, start-up included
    part, side = tmp_path / "out.part", tmp_path / "out.part.json"
    assert not (tmp_path / "out").exists()
    segs = load_sidecar(side, part, server.url("/f"), data)
    kept = sum(s["written"] for s in segs)
    assert kept >= 200 * KiB  # the bytes before the trickle are kept

    server.faults.trickle_from = None
    server.reset_counters()
    second = run_accel(server.url("/f"), "-n", "4", "-o", "out", "--speed-time", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert sha256(tmp_path / "out") == sha256(data)
    assert server.bytes_sent_for("/f") < len(data) - 200 * KiB  # resumed, not from zero
    assert not part.exists() and not side.exists()


def test_trickle_on_the_inline_stream_ends(server: FaultServer, tmp_path: Path) -> None:
    """A server without ranges runs on one connection on the calling thread, whose chores
    wait for a write that a trickling read never finishes: the guard thread ends it."""
    data = make_data(512 * KiB, seed=72)
    server.add_file("/f", data)
    server.faults.ignore_range = True
    server.faults.trickle_from = 128 * KiB
    dl = accel.Downloader(server.url("/f"), tmp_path / "out", options=options(low_speed_time=0.5))
    t0 = time.monotonic()
    with pytest.raises(accel.NetworkError) as info:
        dl.run()
    assert time.monotonic() - t0 < 5
    assert str(info.value) == (
        "transfer too slow: below 1.0 KiB/s for 0.5 s on every connection "
        "(--speed-limit/--speed-time); a new run starts over"
    )
    assert len(gets(server)) == 1  # a plain stream is not replaced: it would start over


def test_lone_trickling_connection_gets_one_new_connection(
    server: FaultServer, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    """Inline ranged path (the probe's response covers the file): the one connection is
    replaced once; the new one is not trickled, and the download completes."""
    data = make_data(512 * KiB, seed=73)
    server.add_file("/f", data)
    server.faults.trickle_from = 128 * KiB
    server.faults.trickle_times = 1
    dl = accel.Downloader(
        server.url("/f"), tmp_path / "out", options=options(connections=1, low_speed_time=0.5)
    )
    t0 = time.monotonic()
    path = dl.run()
    assert time.monotonic() - t0 < 5
    assert sha256(path) == sha256(data)
    first, second = gets(server)
    assert not first.completed and second.completed
    assert 0 < range_start(second) <= first.body_bytes_sent  # the rest of the range, not from zero
    assert len(reconnects(caplog_info)) == 1


# -- one slow connection among fast ones --------------------------------------------------------


def test_one_trickling_connection_is_replaced_while_the_others_run(
    server: FaultServer, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    data = make_data(4 * MiB, seed=74)
    server.add_file("/f", data)
    server.faults.rate = 1 * MiB  # the other connection stays busy for 2 s
    server.faults.trickle_from = 2 * MiB + 128 * KiB  # in the second of two segments
    server.faults.trickle_times = 1
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(connections=2, min_split=1 * MiB, low_speed_time=0.5),
    )
    path = dl.run()
    assert sha256(path) == sha256(data)
    assert reconnects(caplog_info), "the slow connection was not replaced"
    reqs = [r for r in gets(server, settle=5) if r.range_header]
    trickled = next(r for r in reqs if not r.completed and r.body_bytes_sent > 0)
    begin = range_start(trickled)
    assert begin >= 2 * MiB
    # Its range was asked for again, from where it stopped, while the other connection was
    # still at work on the first half: the watchdog did it, not an idle worker's hedge.
    again = [
        r
        for r in reqs
        if r is not trickled and begin < range_start(r) <= begin + trickled.body_bytes_sent
    ]
    first_half_done = max(r.ended or 0 for r in reqs if range_start(r) < 2 * MiB)
    assert again and min(r.started for r in again) < first_half_done


# -- never cut what is not too slow -------------------------------------------------------------


def test_slow_but_steady_link_above_the_floor_is_never_cut(
    server: FaultServer, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    data = make_data(2 * MiB + 3, seed=75)
    server.add_file("/f", data)
    server.faults.rate = 512 * KiB  # per connection: twice the floor
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(low_speed_limit="256K", low_speed_time=0.5),
    )
    path = dl.run()
    assert sha256(path) == sha256(data)
    assert not reconnects(caplog_info)


def test_slow_but_steady_inline_stream_is_never_cut(
    server: FaultServer, tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    data = make_data(128 * KiB, seed=76)
    server.add_file("/f", data)
    server.faults.ignore_range = True
    server.faults.rate = 64 * KiB  # 16 KiB reads every quarter second, four a window
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(low_speed_limit="32K", low_speed_time=1.0),
    )
    path = dl.run()
    assert sha256(path) == sha256(data)
    assert len(gets(server)) == 1 and not reconnects(caplog_info)


def test_a_plain_stream_starting_over_is_not_taken_for_slow(
    server: FaultServer, tmp_path: Path
) -> None:
    """Without ranges, a cut stream writes its first bytes again: that is no slowness."""
    data = make_data(1 * MiB, seed=81)
    server.add_file("/f", data)
    server.faults.ignore_range = True
    server.faults.rate = 1 * MiB
    server.faults.cut_after = 700 * KiB
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(low_speed_limit="256K", low_speed_time=0.5),
    )
    path = dl.run()
    assert sha256(path) == sha256(data)
    assert len(gets(server)) == 2


def test_time_held_back_by_the_rate_limit_does_not_count(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(48 * KiB, seed=77)
    server.add_file("/f", data)
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(limit_rate="16K", low_speed_limit="64K", low_speed_time=0.5),
    )
    t0 = time.monotonic()
    path = dl.run()
    assert time.monotonic() - t0 > 1.0  # the limit did hold it below the floor
    assert sha256(path) == sha256(data)


# -- off, and the knobs ------------------------------------------------------------------------


def test_speed_limit_zero_turns_it_off(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(2 * MiB, seed=78)
    server.add_file("/f", data)
    server.faults.trickle_from = 256 * KiB
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(low_speed_limit=0, low_speed_time=0.3),
    )
    thread, errors = run_in_thread(dl.run)
    time.sleep(1.5)  # five windows
    assert thread.is_alive() and not errors
    dl.cancel()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], accel.CancelledError)


def test_cancel_wakes_a_trickling_inline_read(server: FaultServer, tmp_path: Path) -> None:
    """The inline worker's read may not return for hours: cancel() must not wait for it."""
    data = make_data(512 * KiB, seed=79)
    server.add_file("/f", data)
    server.faults.ignore_range = True
    server.faults.trickle_from = 64 * KiB
    dl = accel.Downloader(server.url("/f"), tmp_path / "out", options=options(low_speed_limit=0))
    thread, errors = run_in_thread(dl.run)
    wait_until(lambda: server.bytes_sent_for("/f") > 64 * KiB, 5, "the trickle")
    time.sleep(0.3)
    t0 = time.monotonic()
    dl.cancel()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 2
    assert len(errors) == 1 and isinstance(errors[0], accel.CancelledError)


def test_command_line_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("ACCEL_CONFIG", raising=False)

    def options_of(*argv: str) -> accel.Options:
        return cli._manager(cli_args.parse_args([*argv, "http://x.invalid/f"])).options

    default = options_of()
    assert (default.low_speed_limit, default.low_speed_time) == (1024, 60.0)
    assert options_of("--speed-limit", "0").low_speed_limit == 0
    assert options_of("--speed-limit", "2K").low_speed_limit == 2048
    assert options_of("--speed-limit", "500", "--speed-time", "2.5").low_speed_time == 2.5
    for bad in (["--speed-limit", "fast"], ["--speed-limit", "-1"], ["--speed-time", "0"]):
        with pytest.raises(accel.UsageError):
            cli_args.parse_args([*bad, "http://x.invalid/f"])
    config = tmp_path / "accel.conf"
    config.write_text("speed-limit = 0\nspeed-time = 5\n")
    monkeypatch.setenv("ACCEL_CONFIG", str(config))
    assert (options_of().low_speed_limit, options_of().low_speed_time) == (0, 5.0)


def test_library_options() -> None:
    assert accel.Options(low_speed_limit="1M").low_speed_limit == MiB
    assert accel.Options(low_speed_limit="0").low_speed_limit == 0
    for bad in ({"low_speed_limit": -1}, {"low_speed_time": 0}, {"low_speed_limit": "x"}):
        with pytest.raises(accel.UsageError):
            accel.Options(**bad)  # type: ignore[arg-type]


def test_message_is_one_line_for_the_threaded_loop(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(2 * MiB, seed=80)
    server.add_file("/f", data)
    server.faults.trickle_from = 0  # not a byte
    dl = accel.Downloader(
        server.url("/f"),
        tmp_path / "out",
        options=options(low_speed_limit=100, low_speed_time=0.5),
    )
    t0 = time.monotonic()
    with pytest.raises(accel.NetworkError) as info:
        dl.run()
    assert time.monotonic() - t0 < 4
    assert str(info.value).startswith("transfer too slow: below 100 B/s for 0.5 s")
    assert "\n" not in str(info.value)
