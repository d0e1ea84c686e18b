"""Tests of accel.progress: the summary line on a pipe, the live tqdm bar (percent, connection
count, segment map), quiet mode, restarts, the -j total bar, terminals that report no size,
and human_size.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import termios
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from accel import events as ev
from accel.progress import Reporter, TotalBar, human_size
from tests.helpers import MiB

SIZE = 3 * MiB


def snap(connections: int = 3, segment_map: str = "##>..") -> ev.Progress:
    return ev.Progress(
        written=MiB, total=SIZE, rate=1.0, eta=1.0, connections=connections,
        segment_map=segment_map,
    )  # fmt: skip


def started(path: Path = Path("/tmp/dl/a.bin"), size: Optional[int] = SIZE, resumed: int = 0):
    return ev.Started("http://127.0.0.1/a.bin", path, size, resumed, 3)


def lines(text: str) -> List[str]:
    return [line for line in text.split("\n") if line]


# -- summary lines (not a terminal) ------------------------------------------------------------


def test_pipe_mode_prints_exactly_one_summary_line() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=False, snapshot=snap)
    path = Path("/tmp/dl/a.bin")
    rep.on_event(started(path))
    for _ in range(3):
        rep.on_progress(MiB)
    rep.on_event(ev.SegmentCompleted(0, SIZE - 1))
    rep.on_event(ev.Completed(path, SIZE))
    rep.close()
    text = out.getvalue()
    assert "\r" not in text
    assert len(lines(text)) == 1
    assert re.fullmatch(
        r"accel: saved /tmp/dl/a\.bin \(3\.0 MiB in \d+\.\ds, [0-9.]+ [KMGT]?i?B/s\)\n", text
    ), text


def test_already_complete_line() -> None:
    out = io.StringIO()
    Reporter(out, bar=False).on_event(ev.AlreadyComplete(Path("x/a.bin")))
    assert out.getvalue() == "accel: x/a.bin is already complete\n"


def test_restarted_line_without_bar() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=False)
    rep.on_event(started())
    rep.on_event(ev.Restarted("the remote file changed"))
    assert out.getvalue() == "accel: restarting: the remote file changed\n"


@pytest.mark.parametrize("bar", [False, True])
def test_quiet_prints_nothing(bar: bool) -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=bar, quiet=True, snapshot=snap)
    path = Path("a.bin")
    rep.on_event(started(path))
    rep.on_progress(SIZE)
    rep.on_event(ev.Restarted("changed"))
    rep.on_event(ev.Completed(path, SIZE))
    rep.on_event(ev.AlreadyComplete(path))
    rep.on_event(ev.Failed(RuntimeError("x")))
    rep.close()
    assert out.getvalue() == ""


# -- the live bar ----------------------------------------------------------------------------


def test_bar_shows_percent_connections_and_segment_map() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=True, snapshot=lambda: snap(3, "##>.."))
    path = Path("a.bin")
    rep.on_event(started(path))
    rep.on_progress(MiB)  # takes the first snapshot for the postfix
    time.sleep(0.3)  # past tqdm's mininterval: the next update redraws
    rep.on_progress(MiB)
    text = out.getvalue()
    assert text.startswith("\r")
    assert "a.bin" in text
    assert "67%" in text
    assert "3 conn [##>..]" in text
    rep.on_progress(MiB)
    rep.on_event(ev.Completed(path, SIZE))
    final = out.getvalue().split("\r")[-1]
    assert "100%" in final
    assert final.endswith("\n")  # the bar is left on screen
    assert "accel: saved" not in out.getvalue()  # the bar replaces the summary line


def test_bar_starts_at_resumed_bytes() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=True)
    rep.on_event(started(resumed=MiB))
    rep.close()
    first = out.getvalue().split("\r")[1]
    assert "33%" in first
    assert "1.00M/3.00M" in first


def test_bar_restart_message_is_printed_above_the_bar() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=True)
    rep.on_event(started())
    rep.on_event(ev.Restarted("the remote file changed"))
    rep.close()
    assert "accel: restarting: the remote file changed\n" in out.getvalue()


def test_failed_closes_the_bar() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=True)
    rep.on_event(started())
    rep.on_progress(MiB)
    rep.on_event(ev.Failed(RuntimeError("boom")))
    after = out.getvalue()
    rep.on_progress(MiB)  # no bar any more: ignored
    rep.close()
    assert out.getvalue() == after


def test_long_label_is_shortened_and_label_wins() -> None:
    out = io.StringIO()
    name = "a-very-long-file-name-for-a-download-0123456789.iso"
    rep = Reporter(out, bar=True)
    rep.on_event(started(Path(name)))
    rep.close()
    assert name[:23] + "…" in out.getvalue()
    assert name not in out.getvalue()

    out = io.StringIO()
    rep = Reporter(out, bar=True, label="mine")
    rep.on_event(started(Path("other.bin")))
    rep.close()
    assert "mine:" in out.getvalue()
    assert "other.bin" not in out.getvalue()


def test_unknown_size_bar_counts_bytes() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=True)
    rep.on_event(started(size=None))
    rep.on_progress(2 * MiB)
    rep.on_event(ev.Completed(Path("a.bin"), 2 * MiB))
    assert "2.00M" in out.getvalue().split("\r")[-1]


# -- total bar -------------------------------------------------------------------------------


def test_total_bar_counts_files_and_bytes() -> None:
    out = io.StringIO()
    total = TotalBar(out, 3)
    total.update(MiB)
    total.files(1, 0, 1, 1)
    total.update(2 * MiB)
    total.files(1, 1, 1, 0)
    total.close()
    text = out.getvalue()
    assert "total 0/3" in text
    final = text.split("\r")[-1]
    assert "total 2/3" in final
    assert "1 failed, 1 running, 0 queued" in final
    assert "3.00M" in final


def test_total_bar_without_a_known_count() -> None:
    out = io.StringIO()
    total = TotalBar(out, None)
    total.files(5, 0, 2, None)
    total.close()
    final = out.getvalue().split("\r")[-1]
    assert "total 5/?" in final and "queued" not in final


# -- terminals -------------------------------------------------------------------------------


@pytest.fixture
def pty_stream() -> Iterator[Tuple[int, io.TextIOWrapper]]:
    """(master fd, a text stream on the slave side) of a new pseudo-terminal."""
    master, slave = pty.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        yield master, stream
    finally:
        stream.close()
        os.close(master)


def read_pty(master: int) -> str:
    os.set_blocking(master, False)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("cols", [0, 60])
def test_bar_on_a_terminal_fits_its_width(
    pty_stream: Tuple[int, io.TextIOWrapper], cols: int
) -> None:
    """A pty that reports no size (0x0, as pty.openpty() makes it) still gets a visible bar."""
    master, stream = pty_stream
    if cols:
        fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    rep = Reporter(stream, bar=True, snapshot=snap)
    rep.on_event(started())
    rep.on_progress(SIZE)
    rep.on_event(ev.Completed(Path("a.bin"), SIZE))
    stream.flush()
    text = read_pty(master)
    draws = [d.strip("\r\n") for d in re.split(r"\r", text) if d.strip("\r\n")]
    assert draws, repr(text)
    assert "100%" in draws[-1]
    assert "a.bin" in draws[-1]
    width = cols or 100
    assert all(len(d) <= width for d in draws), draws


# -- human_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (MiB, "1.0 MiB"),
        (3 * MiB + MiB // 2, "3.5 MiB"),
        (5 * 1024**3, "5.0 GiB"),
        (2 * 1024**4, "2.0 TiB"),
        (3 * 1024**5, "3072.0 TiB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text
