"""Input files in aria2's format (accel.cli.inputfile): a URL line and its indented option
lines (out=, dir=, checksum=, header=, connections=); errors name FILE:LINE. Parsing on
in-memory text (the command on such files: tests/functional/test_inputfile.py)."""

from __future__ import annotations

import hashlib
import io
from typing import List

import pytest

from accel.cli.inputfile import Entry, Job, parse
from accel.exceptions import UsageError


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
