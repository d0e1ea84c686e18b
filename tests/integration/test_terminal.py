"""The terminal as a person sees it: the console script runs on a real pseudo-terminal, its
output goes through a VT100 emulator (pyte), and the tests look at the screens: mid-run and
final, at 40, 60, 80 and 120 columns, for one file and for ``-j 3``; a resize; Ctrl-C; a
resume; an outage; a server without ranges. Every download is from the fault server on
loopback, throttled per connection so that a run lasts about a second.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

from accel.cli.screen import BAR_MIN
from tests.helpers import KiB, MiB, accel_env, sha256
from tests.servers import FaultServer, make_data
from tests.servers.terminal import Pty, Screen

#: How the lines accel prints begin (anything else on a row continues the row above).
STARTS = ("accel:", "total ", " ... (more hidden)")


class Terminal(Pty):
    """``accel ARGS`` on a pty (see :class:`tests.servers.terminal.Pty`)."""

    def __init__(self, args: Sequence[str], cwd: Path, cols: int, rows: int = 24) -> None:
        super().__init__(
            ["accel", *args], cwd, cols, rows, env=accel_env(), stdout=subprocess.DEVNULL
        )


def logical(screen: Screen, names: Sequence[str] = ()) -> List[str]:
    """The lines on the screen, wrapped rows joined again: a row that does not begin as
    accel's lines do (``STARTS`` or a file's name) continues the row above."""
    lines: List[str] = []
    for row in screen:
        if not row.strip():
            continue
        if lines and not row.startswith(STARTS) and not any(row.startswith(n[:3]) for n in names):
            lines[-1] = lines[-1] + row  # the row above is full width: nothing is lost
        else:
            lines.append(row)
    return [line.rstrip() for line in lines]


def text(screen: Screen) -> List[str]:
    return [row.rstrip() for row in screen if row.strip()]


def joined(screen: Screen, cols: int = 0) -> str:
    """Everything on the screen as one text (wrapped rows joined again)."""
    return "\n".join(logical(screen))


def is_progress(row: str) -> bool:
    return bool(re.search(r"\d+%", row)) and not row.startswith("accel:")


def live(screens: Sequence[Screen]) -> List[Screen]:
    """The screens that show progress lines."""
    return [s for s in screens if any(is_progress(r) for r in s)]


def percent(term: Terminal) -> int:
    """The percent on the last progress screen (0 before one)."""
    screens = live(term.screens)
    found = re.findall(r"(\d+)%", "".join(screens[-1])) if screens else []
    return int(found[0]) if found else 0


def mib(amount: str) -> float:
    number, unit = amount.split()
    return float(number) / (1024 if unit == "KiB" else 1)


def check_live_rows(screen: Screen, cols: int, names: Sequence[str]) -> List[str]:
    """Every progress row fits (no wrap: each starts with a file's name), has no tiny bar;
    returns the progress rows."""
    rows = [r for r in logical(screen, names) if not r.startswith("accel:")]
    for row in rows:
        assert len(row) < cols, (cols, row)
        assert row.split()[0] in ("total", "...") or any(
            row.startswith(n) or row.startswith(n[:3]) for n in names
        ), f"a wrapped or stray row: {row!r} in {screen}"
        bar = re.search(r"\|([^|]*)\|", row)
        assert bar is None or len(bar.group(1)) >= BAR_MIN, row
    return rows


# -- one file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cols", [40, 60, 80, 120])
def test_one_file(server: FaultServer, tmp_path: Path, cols: int) -> None:
    data = make_data(2 * MiB, 71)
    server.add_file("/one.bin", data)
    server.faults.rate = 512 * KiB  # 4 connections: about a second
    term = Terminal(["-n", "4", server.url("/one.bin")], tmp_path, cols)
    assert term.run() == 0, term.raw
    assert sha256(tmp_path / "one.bin") == sha256(data)
    screens = live(term.screens)
    assert len(screens) >= 2, term.raw  # it was drawn while running
    for screen in screens:
        (row,) = check_live_rows(screen, cols, ["one.bin"])
        assert re.search(r"\d+%", row)
        assert "MiB/s" in row or "KiB/s" in row or " B/s" in row
        assert "MB/s" not in row and "kB/s" not in row  # IEC units only
        has_map = re.search(r"\[[#>.]+\]", row) is not None
        if cols >= 100:
            assert has_map, row
        if cols <= 60:
            assert not has_map and "ETA" not in row, row  # the map goes first, then the ETA
    final = text(term.now())
    assert not any(is_progress(r) for r in final), final  # nothing left behind
    said = logical(term.now())
    assert len(said) == 1, said
    assert said[0].startswith(f"accel: saved {tmp_path / 'one.bin'} (2.0 MiB in "), said


def test_auto_shows_the_live_connection_count(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(8 * MiB, 79)
    server.add_file("/auto.bin", data)
    server.faults.rate = 1 * MiB  # per connection: adding connections pays
    term = Terminal(["-n", "auto", server.url("/auto.bin")], tmp_path, 120)
    assert term.run() == 0, term.raw
    assert sha256(tmp_path / "auto.bin") == sha256(data)
    counts = []
    for screen in live(term.screens):
        (row,) = check_live_rows(screen, 120, ["auto.bin"])
        m = re.search(r" (\d+) conn \(auto\) ", row)
        assert m, row
        counts.append(int(m.group(1)))
    assert counts and max(counts) > 4, counts  # it started with 4 and added more
    assert max(counts) <= 16, counts


# -- several files -----------------------------------------------------------------------------


@pytest.mark.parametrize("cols", [40, 60, 80, 120])
def test_three_files_at_once(server: FaultServer, tmp_path: Path, cols: int) -> None:
    names = ["alpha.bin", "bravo.bin", "charlie-with-a-long-name.bin"]
    files = {n: make_data(MiB + i * 1000, 80 + i) for i, n in enumerate(names)}
    for name, data in files.items():
        server.add_file(f"/{name}", data)
    server.faults.rate = 384 * KiB
    args = ["-j", "3", "-n", "2", *(server.url(f"/{n}") for n in names)]
    term = Terminal(args, tmp_path, cols)
    assert term.run() == 0, term.raw
    for name, data in files.items():
        assert sha256(tmp_path / name) == sha256(data)
    screens = live(term.screens)
    assert screens, term.raw
    full = 0
    for screen in screens:
        rows = check_live_rows(screen, cols, names)
        assert rows[-1].startswith("total "), rows  # the total line is the last
        files = rows[:-1]
        assert len(files) == len({r.split()[0] for r in files}) <= 3  # one line per file
        full += len(files) == 3
        if len(files) == 3:
            assert re.match(r"total 0/3 ", rows[-1]), rows
    assert full, "never saw the three files at once"
    final = logical(term.now())
    assert len(final) == 4, final  # nothing left behind
    for name in names:
        assert sum(line.startswith(f"accel: saved {tmp_path / name} (") for line in final) == 1
    assert final[-1].startswith("accel: 3 files: 3 ok, 0 failed; "), final


def test_a_resize_is_followed(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/rs.bin", make_data(3 * MiB, 72))
    server.faults.rate = 512 * KiB
    term = Terminal(["-n", "4", server.url("/rs.bin")], tmp_path, 120)
    term.run(until=lambda t: len(live(t.screens)) >= 1)
    wide = live(term.screens)[-1]
    assert any(re.search(r"\[[#>.]+\]", r) for r in wide), wide
    term.resize(50)
    seen = len(term.screens)
    assert term.run() == 0, term.raw
    narrow = live(term.screens[seen + 1 :])
    assert narrow, term.raw
    for screen in narrow:
        (row,) = check_live_rows(screen, 50, ["rs.bin"])
        assert "[" not in row


# -- messages on a terminal ----------------------------------------------------------------------


def test_ctrl_c_without_ranges_says_the_next_run_starts_over(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("/nr.bin", make_data(2 * MiB, 73))
    server.faults.ignore_range = True
    server.faults.rate = 512 * KiB
    term = Terminal([server.url("/nr.bin")], tmp_path, 80)
    term.run(until=lambda t: len(live(t.screens)) >= 2)
    said = joined(term.now(), 80)
    assert "the server does not support ranges: 1 connection, cannot resume" in said
    term.proc.send_signal(signal.SIGINT)
    assert term.run() == 130
    said = joined(term.now(), 80).replace("\n", "")
    assert (
        "accel: interrupted: nr.bin: the server cannot resume it, so the next run starts over"
        in said
    )
    assert not any(is_progress(r) for r in text(term.now()))
    assert sorted(os.listdir(tmp_path)) == []  # no useless full-size .part


def test_resume_is_announced_and_the_summary_counts_this_run(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(3 * MiB, 74)
    server.add_file("/re.bin", data)
    server.faults.rate = 512 * KiB
    first = Terminal(["-n", "2", server.url("/re.bin")], tmp_path, 80)
    first.run(until=lambda t: percent(t) >= 30)
    first.proc.send_signal(signal.SIGINT)
    assert first.run() == 130
    said = joined(first.now(), 80).replace("\n", "")
    assert "accel: interrupted: re.bin: run the same command again to resume" in said
    server.faults.rate = 2 * MiB
    second = Terminal(["-n", "2", server.url("/re.bin")], tmp_path, 80)
    assert second.run() == 0, second.raw
    said = joined(second.now(), 80).replace("\n", "")
    m = re.search(r"accel: resuming re\.bin: ([0-9.]+ [KM]iB) of 3\.0 MiB already on disk", said)
    assert m, said
    on_disk = mib(m.group(1))
    assert 0.5 <= on_disk < 3.0, said
    m = re.search(
        r"accel: saved \S+re\.bin \(3\.0 MiB; ([0-9.]+ [KM]iB) in [0-9.]+s this run", said
    )
    assert m, said
    assert abs(mib(m.group(1)) + on_disk - 3.0) < 0.1, said
    assert sha256(tmp_path / "re.bin") == sha256(data)


@pytest.mark.slow
def test_an_outage_shows_retrying_instead_of_a_frozen_count(
    server: FaultServer, tmp_path: Path
) -> None:
    """The server goes away mid-run (connections cut, then 503s): the line says so."""
    data = make_data(4 * MiB, 75)
    server.add_file("/out.bin", data)
    server.faults.rate = 512 * KiB
    term = Terminal(["-n", "4", server.url("/out.bin")], tmp_path, 100)
    term.run(until=lambda t: len(live(t.screens)) >= 2)
    server.faults.status_code, server.faults.status_times = 503, 10_000
    server.drop_connections()
    term.run(until=lambda t: any("retrying (" in r for r in t.now()), timeout=8)
    assert any("retrying (" in r for r in term.now()), term.raw
    (row,) = check_live_rows(term.now(), 100, ["out.bin"])
    assert "conn" not in row
    server.faults.status_times = 0
    server.faults.rate = 4 * MiB
    assert term.run() == 0, term.raw
    assert sha256(tmp_path / "out.bin") == sha256(data)
    assert not any("retrying (" in r for r in text(term.now())), text(term.now())


# -- accel's own words: paths, usage errors, --help, exit codes ---------------------------------


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> Tuple[int, str]:
    from accel.cli import main as cli

    code = cli.main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-empty"))
    monkeypatch.delenv("ACCEL_CONFIG", raising=False)
    return tmp_path


def test_output_with_a_trailing_slash_is_a_directory(
    server: FaultServer, here: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/d.bin", make_data(100 * KiB, 76))
    code, err = run_cli(capsys, server.url("/d.bin"), "-o", "newdir/")
    assert code == 0, err
    assert (here / "newdir").is_dir() and os.listdir(here / "newdir") == ["d.bin"]
    assert err == f"accel: saved {here / 'newdir' / 'd.bin'} (100.0 KiB in " + err.split(" in ")[1]
    code, err = run_cli(capsys, server.url("/d.bin"), "-d", "base", "-o", "sub/")
    assert code == 0, err
    assert os.listdir(here / "base" / "sub") == ["d.bin"]


def test_a_missing_parent_directory_is_named(
    server: FaultServer, here: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/x.bin", make_data(1000, 77))
    code, err = run_cli(capsys, server.url("/x.bin"), "-o", "/no/such/dir/x.bin")
    assert code == 6
    assert err == "accel: error: directory /no/such/dir does not exist\n"


def test_too_large_is_a_refusal_with_its_own_exit_code(
    server: FaultServer, here: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/big.bin", make_data(300 * KiB, 78))
    code, err = run_cli(capsys, server.url("/big.bin"), "--max-filesize", "100K")
    assert code == 7
    assert "300.0 KiB" in err and "100.0 KiB" in err
    assert os.listdir(here) == ["xdg-empty"] or os.listdir(here) == []
    from accel.cli import args as cli_args

    assert re.search(
        r"^\s+7\s+refused: the remote file is larger than --max-filesize", cli_args.EPILOG, re.M
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--limit-rate", "5X"],
            "argument --limit-rate: invalid rate '5X' (use e.g. 500K, 2M, 1G)",
        ),
        (["--max-filesize", "huge"], "argument --max-filesize: invalid size 'huge' (use e.g."),
        (["--checksum", "foo"], "argument --checksum: invalid checksum 'foo' (expected ALGO=HEX"),
        (
            ["-n", "two"],
            "argument -n/--connections: invalid connection count 'two': "
            "use a number from 1 to 64, or auto\n",
        ),
        (["-n", "99"], "invalid connection count '99': use a number from 1 to 64, or auto\n"),
        (
            ["--max-connections", "0"],
            "argument --max-connections: invalid connection cap '0': must be from 1 to 64\n",
        ),
    ],
)
def test_usage_errors_say_it_once(
    here: Path, capsys: pytest.CaptureFixture, argv: List[str], message: str
) -> None:
    code, err = run_cli(capsys, *argv, "http://127.0.0.1:9/x")
    assert code == 2
    assert message in err, err
    value = argv[1]
    assert err.count(repr(value)) == 1, err  # no "invalid rate '5X': invalid rate '5X'"
    assert "literal" not in err and "int()" not in err


def test_help_has_examples_and_the_segment_map_key(here: Path) -> None:
    proc = subprocess.run(["accel", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    out = proc.stdout
    examples = out.split("examples:", 1)[1].split("\n\n", 1)[0]
    assert len([line for line in examples.splitlines() if line.strip().startswith("accel ")]) >= 4
    assert "accel --demo" in examples
    assert "'#' written, '>' in flight, '.' missing" in out
    assert "KiB" in out and "MiB/s" in out and "MB/s" not in out


# -- the demo -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_offline_and_leaves_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path), no_proxy="*", NO_PROXY="*")
    began = time.monotonic()
    proc = subprocess.run(
        ["accel", "--demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    m = re.search(r"1 connection: ([0-9.]+) s, 8 connections: ([0-9.]+) s: ([0-9.]+)x faster", err)
    assert m and float(m.group(3)) >= 2.5, err
    assert re.search(r"interrupted with [0-9.]+ [KM]iB of 6\.0 MiB on disk", err), err
    assert re.search(
        r"accel: resuming resumed\.bin: [0-9.]+ [KM]iB of 6\.0 MiB already on disk", err
    )
    assert "all three files match the original (sha256 " in err
    assert took < 20, took
    assert os.listdir(tmp_path) == []  # the temporary directory is gone
