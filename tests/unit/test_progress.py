"""Tests of accel.cli.progress: summary lines on a pipe (saved, resumed, no ranges, outages),
the live lines (layout by priority at every width, the segment map squeezed or dropped, never
a one-cell bar), the lines drawn by tqdm through a VT100 emulator (messages above, nothing
left behind, rows cleared instead of padded), the total line, and the IEC units.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import List, Optional

import pyte
import pytest

from accel import events as ev
from accel._util.units import human_amount, human_duration, human_rate
from accel.cli.progress import Reporter, TotalBar, human_size
from accel.cli.screen import BAR_MIN, Parts, Screen, layout, squeeze
from tests.helpers import MiB

SIZE = 3 * MiB
MAP = "#" * 12 + ">" * 4 + "." * 16


def snap(
    connections: int = 3, segment_map: str = "##>..", written: int = MiB, auto: bool = False
) -> ev.Progress:
    return ev.Progress(
        written=written, total=SIZE, rate=float(MiB), eta=2.0, connections=connections,
        segment_map=segment_map, auto=auto,
    )  # fmt: skip


def started(
    path: Path = Path("/tmp/dl/a.bin"),
    size: Optional[int] = SIZE,
    resumed: int = 0,
    *,
    ranged: bool = True,
    resumable: bool = True,
) -> ev.Started:
    return ev.Started(
        "http://127.0.0.1/a.bin", path, size, resumed, 3, ranged=ranged, resumable=resumable
    )


def lines(text: str) -> List[str]:
    return [line for line in text.split("\n") if line]


class Term(io.StringIO):
    """A terminal of ``cols`` x ``rows``: what is written goes through pyte."""

    encoding = "utf-8"

    def __init__(self, cols: int = 80, rows: int = 12) -> None:
        super().__init__()
        self.cols, self.rows = cols, rows
        self.screen = pyte.Screen(cols, rows)
        self.vt = pyte.Stream(self.screen)

    def write(self, text: str) -> int:
        self.vt.feed(text.replace("\n", "\r\n"))  # the tty's onlcr
        return super().write(text)

    def shown(self) -> List[str]:
        return [row.rstrip() for row in self.screen.display if row.strip()]


class TermScreen(Screen):
    def size(self) -> tuple:
        term = self.stream
        assert isinstance(term, Term)
        return term.cols, term.rows


# -- summary lines (not a terminal) ------------------------------------------------------------


def test_pipe_mode_prints_exactly_one_summary_line_with_the_full_path() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=False, snapshot=snap)
    rep.on_event(started(Path("rel/a.bin")))
    rep.on_event(ev.SegmentCompleted(0, SIZE - 1))
    rep.on_event(ev.Completed(Path("rel/a.bin"), SIZE))
    rep.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    full = re.escape(str(Path("rel/a.bin").resolve()))
    assert re.fullmatch(
        rf"accel: saved {full} \(3\.0 MiB in \d+\.\ds, [0-9.]+ (B|KiB|MiB|GiB)/s\)\n", text
    ), text


def test_resume_is_announced_and_the_summary_counts_this_run() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=False)
    rep.on_event(started(resumed=2 * MiB))
    rep.on_event(ev.Completed(Path("/tmp/dl/a.bin"), SIZE))
    first, second = lines(out.getvalue())
    assert first == "accel: resuming a.bin: 2.0 MiB of 3.0 MiB already on disk"
    assert re.fullmatch(
        r"accel: saved /tmp/dl/a\.bin \(3\.0 MiB; 1\.0 MiB in \d+\.\ds this run, .+/s\)", second
    ), second


def test_a_server_without_ranges_is_announced_without_verbose() -> None:
    out = io.StringIO()
    Reporter(out, bar=False).on_event(started(ranged=False, resumable=False))
    assert out.getvalue() == (
        "accel: a.bin: the server does not support ranges: 1 connection, cannot resume\n"
    )
    out = io.StringIO()
    Reporter(out, bar=False).on_event(started(resumable=False))
    assert "cannot resume if interrupted" in out.getvalue()


def test_an_outage_is_one_line_and_its_end_another() -> None:
    out = io.StringIO()
    written = [MiB]
    rep = Reporter(out, bar=False, snapshot=lambda: snap(written=written[0]))
    rep.on_event(started())
    rep.on_event(ev.Retrying(0, 1, 0.5, "connection refused by 127.0.0.1:9"))
    rep.tick()
    assert out.getvalue() == ""  # a hiccup is not an outage
    rep._retry_at -= 2  # as if two seconds passed without a byte
    for attempt in (2, 3):
        rep.on_event(ev.Retrying(0, attempt, 0.5, "connection refused by 127.0.0.1:9"))
        rep.tick()
    assert lines(out.getvalue()) == [
        "accel: a.bin: no data; retrying (attempt 2: connection refused by 127.0.0.1:9)"
    ]  # once per outage, however many retries
    written[0] += 1
    rep.tick()
    assert lines(out.getvalue())[-1] == "accel: a.bin: receiving again"


def test_already_complete_line() -> None:
    out = io.StringIO()
    Reporter(out, bar=False).on_event(ev.AlreadyComplete(Path("x/a.bin")))
    assert out.getvalue() == "accel: x/a.bin is already complete\n"


def test_restarted_line_without_bar() -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=False)
    rep.on_event(started())
    rep.on_event(ev.Restarted("the remote file changed"))
    assert out.getvalue() == "accel: a.bin: restarting: the remote file changed\n"


@pytest.mark.parametrize("bar", [False, True])
def test_quiet_prints_nothing(bar: bool) -> None:
    out = io.StringIO()
    rep = Reporter(out, bar=bar, quiet=True, snapshot=snap)
    path = Path("a.bin")
    rep.on_event(started(path, resumed=MiB, ranged=False))
    rep.on_progress(SIZE)
    rep.on_event(ev.Restarted("changed"))
    rep.on_event(ev.Completed(path, SIZE))
    rep.on_event(ev.AlreadyComplete(path))
    rep.on_event(ev.Failed(RuntimeError("x")))
    rep.close()
    assert out.getvalue() == ""


# -- the layout of one file's line -------------------------------------------------------------


def parts(name: str = "ubuntu-24.04-desktop-amd64.iso", retry: bool = False) -> Parts:
    status = "retrying (3)" if retry else "8 conn"
    detail = "connection refused" if retry else f"[{MAP}]"
    return Parts(
        name, " 42%", 0.42, "84.0/200.0 MiB", "12.5 MiB/s", "ETA 0:09", status, retry, detail
    )


def bar_cells(line: str) -> int:
    m = re.search(r"\|([^|]*)\|", line)
    return len(m.group(1)) if m else 0


@pytest.mark.parametrize("width", range(8, 160))
def test_a_line_always_fits_and_never_has_a_tiny_bar(width: int) -> None:
    for p in (parts(), parts("t1.bin"), parts(retry=True)):
        line = layout(p, width)
        assert len(line) <= width, (width, line)
        assert "\n" not in line
        cells = bar_cells(line)
        assert cells == 0 or cells >= BAR_MIN, line


def test_layout_degrades_by_priority() -> None:
    p = parts("t1.bin")
    wide = layout(p, 119)
    assert f"[{MAP}]" in wide and "ETA 0:09" in wide and "8 conn" in wide
    squeezed = layout(p, 99)
    assert re.search(r"\[[#>.]{16}\]", squeezed) and "ETA" in squeezed  # the map shrinks
    no_map = layout(p, 79)
    assert "[" not in no_map and "ETA 0:09" in no_map  # then goes, before the ETA
    no_eta = layout(p, 59)
    assert "ETA" not in no_eta and "t1.bin" in no_eta and "8 conn" in no_eta
    long = parts()
    assert long.name in layout(long, 99)  # the name is kept whole while it can be
    short = layout(long, 59)
    assert long.name not in short and "…" in short and short.split()[0].endswith(".iso")
    tiny = layout(long, 24)
    assert bar_cells(tiny) == 0 and "42%" in tiny


def test_retrying_is_never_dropped() -> None:
    for width in (39, 59, 79, 119):
        assert "retrying (3)" in layout(parts(retry=True), width)
    assert "connection refused" in layout(parts("t.bin", retry=True), 119)


def test_squeeze_keeps_in_flight_and_missing_cells() -> None:
    assert squeeze("[####>>>>........]", 4) == "[#>..]"
    assert squeeze("[##]", 8) == "[##]"
    assert squeeze("[##>.]", 0) == ""
    assert squeeze("not a map", 4) == "not a map"


# -- the live region, through a VT100 emulator -----------------------------------------------


def test_live_line_then_saved_line_and_nothing_left_behind() -> None:
    term = Term(60)
    screen = TermScreen(term)
    rep = Reporter(term, bar=True, snapshot=lambda: snap(3, MAP), label="a.bin", screen=screen)
    assert term.shown() == ["a.bin starting"]
    rep.on_event(started())
    (line,) = term.shown()
    assert line.startswith("a.bin  33% |") and "1.0/3.0 MiB" in line, line
    screen.message("accel: a warning")
    assert term.shown()[0] == "accel: a warning"
    assert term.shown()[1].startswith("a.bin  33% |")
    rep.on_event(ev.Completed(Path("/tmp/dl/a.bin"), SIZE))
    rep.close()
    screen.close()
    shown = term.shown()
    assert len(shown) == 2 and shown[0] == "accel: a warning"
    assert shown[1].startswith("accel: saved /tmp/dl/a.bin (3.0 MiB in ")


def test_the_live_connection_count_is_drawn_and_auto_says_so() -> None:
    term = Term(100)
    screen = TermScreen(term)
    current = [snap(4, MAP, auto=True)]
    rep = Reporter(term, bar=True, snapshot=lambda: current[0], label="a.bin", screen=screen)
    rep.on_event(started())
    (line,) = term.shown()
    assert " 4 conn (auto) " in line, line
    current[0] = snap(9, MAP, auto=True)  # the autoscaler added connections
    screen.refresh(force=True)
    (line,) = term.shown()
    assert " 9 conn (auto) " in line, line
    current[0] = snap(8, MAP)
    screen.refresh(force=True)
    (line,) = term.shown()
    assert " 8 conn " in line and "auto" not in line, line
    rep.close()
    screen.close()


def test_several_files_and_a_total_line_collapse_cleanly() -> None:
    term = Term(80)
    screen = TermScreen(term)
    total = TotalBar(term, 3, screen=screen, slots=3)
    reps = []
    for name in ("a.bin", "b.bin", "c.bin"):
        rep = Reporter(term, bar=True, snapshot=snap, label=name, screen=screen)
        rep.on_event(started(Path(f"/d/{name}")))
        reps.append(rep)
    total.update(3 * MiB)
    total.files(0, 0, 3, 0)
    shown = term.shown()
    assert [s.split()[0] for s in shown] == ["a.bin", "b.bin", "c.bin", "total"]
    assert shown[-1].startswith("total 0/3 3.0 MiB ")
    assert "3 running, 0 queued, 0 failed" in shown[-1]
    reps[1].on_event(ev.Completed(Path("/d/b.bin"), SIZE))
    reps[1].close()
    total.files(1, 0, 2, 0)
    shown = term.shown()
    assert shown[0].startswith("accel: saved /d/b.bin")
    assert [s.split()[0] for s in shown[1:]] == ["a.bin", "c.bin", "total"]
    assert shown[-1].startswith("total 1/3")
    for rep in (reps[0], reps[2]):
        rep.on_event(ev.Failed(RuntimeError("boom")))
        rep.close()
    total.close()
    screen.close()
    assert term.shown() == [shown[0]]


def test_more_files_than_rows_are_counted_not_drawn() -> None:
    term = Term(60, rows=5)
    screen = TermScreen(term)
    for i in range(8):
        Reporter(term, bar=True, label=f"f{i}.bin", screen=screen)
    shown = term.shown()
    assert shown == [*(f"f{i}.bin starting" for i in range(4)), " ... (more hidden) ..."]
    screen.close()
    assert term.shown() == []


def test_a_resize_is_followed() -> None:
    term = Term(120)
    screen = TermScreen(term)
    rep = Reporter(term, bar=True, snapshot=lambda: snap(3, MAP), screen=screen)
    rep.on_event(started())
    assert f"[{MAP}]" in term.shown()[0]
    term.cols = 40
    term.screen.resize(term.rows, 40)
    screen.refresh(force=True)
    (line,) = term.shown()
    assert len(line) < 40 and "[" not in line and line.startswith("a.bin")
    assert "\x1b[K" in term.getvalue() and "     \r" not in term.getvalue()  # cleared, not padded
    rep.close()
    screen.close()


def test_total_line_without_a_known_count() -> None:
    term = Term(80)
    total = TotalBar(term, None, screen=TermScreen(term))
    total.files(5, 0, 2, None)
    (line,) = term.shown()
    assert line.startswith("total 5/?") and "queued" not in line
    assert len(total.render(20)) <= 20
    total.close()
    total.screen.close()
    assert term.shown() == []


def test_bar_without_utf8_is_ascii() -> None:
    out = io.StringIO()  # no encoding: ASCII
    screen = Screen(out)
    assert not screen.unicode
    rep = Reporter(out, bar=True, snapshot=snap, screen=screen)
    rep.on_event(started())
    drawn = rep.render(79)
    assert drawn.isascii() and re.search(r"\|#{6}[0-9] {13}\|", drawn), drawn  # tqdm's ASCII bar
    rep.close()
    screen.close()


def test_progress_redraws_at_most_five_times_a_second() -> None:
    term = Term(80)
    screen = TermScreen(term)
    rep = Reporter(term, bar=True, screen=screen)
    rep.on_event(started())
    before = term.getvalue().count("\x1b[K")  # each row drawn ends with it
    assert before >= 1
    for _ in range(50):
        rep.on_progress(1000)
    assert term.getvalue().count("\x1b[K") - before <= 1
    time.sleep(0.25)
    rep.on_progress(1000)
    assert 1 <= term.getvalue().count("\x1b[K") - before <= 2
    rep.close()
    screen.close()


# -- units -----------------------------------------------------------------------------------


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


def test_other_units() -> None:
    assert human_rate(1.5 * MiB) == "1.5 MiB/s"
    assert human_amount(84 * MiB, 200 * MiB) == "84.0/200.0 MiB"
    assert human_amount(5, 1000) == "5/1000 B"
    assert human_amount(MiB, None) == "1.0 MiB"
    assert human_duration(9) == "0:09"
    assert human_duration(3723) == "1:02:03"
