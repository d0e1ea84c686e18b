"""Input files in aria2's format (accel.cli.inputfile): a URL line and its indented option
lines (out=, dir=, checksum=, header=, connections=); errors name FILE:LINE. Parsing on
in-memory text, then the command against the fault server, from a file and from a pipe."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest

from accel.cli import main as cli
from accel.cli.inputfile import Entry, Job, parse
from accel.exceptions import UsageError
from tests.helpers import KiB, accel_cmd, accel_env, gets, sha256, wait_until
from tests.server import FaultServer, make_data


def entries(text: str) -> List[Entry]:
    return list(parse("list.txt", io.StringIO(text)))


# -- parsing -----------------------------------------------------------------------------------


def test_a_url_line_and_its_option_lines_make_one_job() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    (job,) = entries(
        "# comment\n"
        "http://h/a.iso\thttp://m/a.iso\n"
        "  out=a-2026.iso\n"
        "\tdir=isos\n"
        f"  checksum=sha-256={digest}\n"
        "  header=Authorization: Bearer abc\n"
        "  header=X-Tag: one=two\n"
        "  split=4\n"
        "\n"
    )
    assert job == Job(
        "http://h/a.iso",
        ("http://m/a.iso",),
        "list.txt:2",
        out="a-2026.iso",
        dir="isos",
        settings=(("checksum", ("sha256", digest)), ("connections", 4)),
        headers=(("Authorization", "Bearer abc"), ("X-Tag", "one=two")),
    )


def test_urls_without_options_and_indented_urls_stay_jobs() -> None:
    got = entries("http://h/a\n   http://h/b  \nhttp://h/c\n  connections=auto\n")
    assert [(e.url, e.settings) for e in got if isinstance(e, Job)] == [
        ("http://h/a", ()),
        ("http://h/b", ()),
        ("http://h/c", (("connections", "auto"),)),
    ]


@pytest.mark.parametrize(
    "lines, message",
    [
        ("  bogus=1", "list.txt:2: unknown option line 'bogus=1'"),
        ("  out", "list.txt:2: unknown option line 'out'"),
        ("  out=../x", "list.txt:2: out='../x' must be a file name, not a path"),
        ("  out=a/b", "list.txt:2: out='a/b' must be a file name"),
        ("  out=..", "list.txt:2: out='..' must be a file name"),
        ("  out=a\n  out=b", "list.txt:3: out= given twice"),
        ("  checksum=sha256=zz", "list.txt:2: sha256 checksum must be 64 hex digits"),
        ("  connections=0", "list.txt:2: connections='0' must be from 1 to 64 or auto"),
        ("  header=NoColon", "list.txt:2: header='NoColon' must be 'Name: value'"),
        ("  header=Range: bytes=0-", "list.txt:2: header Range is set by accel itself"),
    ],
)
def test_a_bad_option_line_is_a_usage_error_naming_file_and_line(lines: str, message: str) -> None:
    got = entries(f"http://h/a\n{lines}\nhttp://h/b\n")
    assert isinstance(got[0], UsageError) and str(got[0]).startswith(message), got[0]
    assert isinstance(got[1], Job) and got[1].url == "http://h/b"  # the others go on


def test_an_option_line_without_its_url_is_an_error() -> None:
    got = entries("  out=x\nnot a url\n  out=y\nhttp://h/ok\n")
    assert str(got[0]).startswith("list.txt:1: an option line needs its URL line")
    assert str(got[1]).startswith("list.txt:2: ")  # the bad URL; its option line goes with it
    assert isinstance(got[2], Job) and len(got) == 3


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCEL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-empty"))
    logger = logging.getLogger("accel")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield tmp_path
    logger.handlers[:], logger.level, logger.propagate = saved


def test_options_of_an_input_file_apply_per_url(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b, c = (make_data(600 * KiB + i, seed=60 + i) for i in range(3))
    for name, data in (("a", a), ("b", b), ("c", c)):
        server.add_file(f"/{name}.bin", data)
    absolute = tmp_path / "elsewhere"
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{server.url('/a.bin')}\n"
        "  out=renamed.bin\n"
        "  dir=sub\n"
        "  header=X-Token: t-a\n"
        "  connections=1\n"
        f"{server.url('/b.bin')}\n"
        f"  dir={absolute}\n"
        f"  checksum=sha-256={hashlib.sha256(b).hexdigest()}\n"
        f"{server.url('/c.bin')}\n"
        f"  checksum=sha-256={hashlib.sha256(a).hexdigest()}\n"
    )
    code = cli.main(["-i", str(listing), "-d", "base", "-n", "4", "-H", "X-All: yes", "-q"])
    err = capsys.readouterr().err
    assert code == 5, err  # c.bin's checksum is a.bin's
    assert sha256(tmp_path / "base" / "sub" / "renamed.bin") == sha256(a)
    assert sha256(absolute / "b.bin") == sha256(b)
    assert not (tmp_path / "base" / "c.bin").exists()
    assert "checksum mismatch" in err and "c.bin" in err
    a_gets = gets(server, "/a.bin")
    assert {q.headers.get("X-Token") for q in a_gets} == {"t-a"}
    assert {q.headers.get("X-All") for q in a_gets} == {"yes"}  # added to, not instead of
    assert len({q.connection_id for q in a_gets}) == 1  # connections=1
    assert {q.headers.get("X-Token") for q in gets(server, "/b.bin")} == {None}


def test_a_malformed_line_is_exit_2_and_the_others_download(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/ok.bin", make_data(50 * KiB, seed=70))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{server.url('/ok.bin')}\n{server.url('/x.bin')}\n  outt=y\n")
    code = cli.main(["-i", str(listing), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{listing}:3: unknown option line 'outt=y'" in err
    assert (tmp_path / "ok.bin").exists()
    assert not gets(server, "/x.bin")


def test_option_lines_sent_with_their_url_through_a_pipe(
    server: FaultServer, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        server.add_file(f"/{name}.bin", make_data(20 * KiB, ord(name)))
    proc = subprocess.Popen(
        accel_cmd("-i", "-", "-q"),
        cwd=tmp_path,
        env=accel_env(),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"{server.url('/a.bin')}\n  out=first.bin\n")
        proc.stdin.flush()
        wait_until(lambda: (tmp_path / "first.bin").exists(), 20, "the first file of a pipe")
        proc.stdin.write(f"{server.url('/b.bin')}\n  out=second.bin\n")
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    assert (tmp_path / "second.bin").read_bytes() == make_data(20 * KiB, ord("b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.bin", "second.bin"]
