"""Tests of local file name selection (accel._util.names): safe_name, URL and
Content-Disposition."""

from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel._util.names import FALLBACK_NAME, content_disposition_name, name_from_url, safe_name

SUFFIX = ".part.json.tmp"
LIMIT = 255 - len(SUFFIX)


# --- safe_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("file.iso", "file.iso"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("a\\b\\c.txt", "c.txt"),
        ("C:\\Users\\x\\setup.exe", "setup.exe"),
        ("dir/sub\\mixed/name.tar.gz", "name.tar.gz"),
        ("  spaced.txt  ", "spaced.txt"),
        ("..hidden", "..hidden"),
        (".bashrc", ".bashrc"),
        ("€ rates.txt", "€ rates.txt"),
    ],
)
def test_safe_name_keeps_basename(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        ".",
        "..",
        "...",
        "a/..",
        "a\\..",
        "dir/",
        "../",
        "a\x00b",
        "a\nb.txt",
        "a\rb",
        "tab\there",
        "bell\x07",
        "del\x7f",
        "c1\x85control",
    ],
)
def test_safe_name_rejects(raw: Optional[str]) -> None:
    assert safe_name(raw) is None


@pytest.mark.parametrize("n", [LIMIT - 1, LIMIT])
def test_safe_name_at_limit_is_unchanged(n: int) -> None:
    name = "a" * n
    assert safe_name(name) == name


def test_safe_name_caps_ascii_and_keeps_extension() -> None:
    out = safe_name("a" * 300 + ".txt")
    assert out is not None
    assert out == "a" * (LIMIT - 4) + ".txt"
    assert len((out + SUFFIX).encode()) <= 255


def test_safe_name_caps_without_extension() -> None:
    out = safe_name("b" * 1000)
    assert out == "b" * LIMIT


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_safe_name_does_not_cut_multibyte_characters(char: str) -> None:
    raw = char * 200 + ".iso"
    out = safe_name(raw)
    assert out is not None
    encoded = out.encode("utf-8")  # would raise on a lone surrogate
    assert len(encoded) <= LIMIT
    assert out.endswith(".iso")
    stem = out[: -len(".iso")]
    assert set(stem) == {char}  # only whole characters, no U+FFFD, nothing half-cut
    width = len(char.encode())
    assert len(stem) == (LIMIT - len(".iso")) // width  # as many as fit


def test_safe_name_long_extension_is_not_kept_whole() -> None:
    raw = "x" * 100 + "." + "y" * 200
    out = safe_name(raw)
    assert out is not None and len(out.encode()) <= LIMIT
    assert out.startswith("x" * 100 + ".")


@given(st.text(min_size=0, max_size=600))
def test_safe_name_properties(raw: str) -> None:
    out = safe_name(raw)
    if out is None:
        return
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert out not in ("", ".", "..")
    assert not set(out) <= {"."}
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in out)
    assert len((out + SUFFIX).encode("utf-8", "surrogateescape")) <= 255
    assert safe_name(out) == out  # idempotent


# --- name_from_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/dir/file.iso", "file.iso"),
        ("https://example.org/dir/file%20name.iso", "file name.iso"),
        ("https://example.org/%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("https://example.org/get.php?file=evil.exe", "get.php"),
        ("https://example.org/a.zip?x=1#frag", "a.zip"),
        ("https://example.org/a.zip#/other/b.zip", "a.zip"),
        ("https://example.org/", FALLBACK_NAME),
        ("https://example.org", FALLBACK_NAME),
        ("https://example.org/dir/", FALLBACK_NAME),
        ("https://example.org/dir/..", FALLBACK_NAME),
        ("https://example.org/dir/.", FALLBACK_NAME),
        ("https://example.org/dir/%2E%2E", FALLBACK_NAME),
        ("https://example.org/dir/%2e", FALLBACK_NAME),
        ("https://example.org/%00", FALLBACK_NAME),
        ("https://example.org/a%0Ab", FALLBACK_NAME),
        ("https://example.org/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("https://example.org/..%5C..%5Cboot.ini", "boot.ini"),
        ("http://user:pw@example.org:8080/x/y.tar.gz", "y.tar.gz"),
    ],
)
def test_name_from_url(url: str, expected: str) -> None:
    assert name_from_url(url) == expected


def test_name_from_url_fallback() -> None:
    assert FALLBACK_NAME == "index.html"


# --- content_disposition_name -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('attachment; filename="a b.txt"', "a b.txt"),
        ("attachment; filename=report.pdf", "report.pdf"),
        ("attachment;filename=report.pdf", "report.pdf"),
        ("attachment; FILENAME=report.pdf", "report.pdf"),
        ("inline; filename = spaced.txt", "spaced.txt"),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ('attachment; filename="a \\"quoted\\" name.txt"', 'a "quoted" name.txt'),
        ('attachment; filename="back\\\\slash.txt"', "slash.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("attachment; filename*=utf-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("attachment; filename*=UTF-8'en'%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("attachment; filename*=iso-8859-1''%E9t%E9.txt", "été.txt"),
        (
            "attachment; filename=\"EUR rates.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
            "€ rates.txt",
        ),
        (
            "attachment; filename*=UTF-8''%E2%82%AC%20rates.txt; filename=\"EUR rates.txt\"",
            "€ rates.txt",
        ),
        # An undecodable or unsafe filename* falls back to filename.
        ("attachment; filename*=UTF-8''%FF%FE; filename=\"ok.txt\"", "ok.txt"),
        ("attachment; filename*=UTF-8''..; filename=\"ok.txt\"", "ok.txt"),
        ("attachment; filename*=KOI8-R''%C1; filename=\"ok.txt\"", "ok.txt"),
        # Unsafe names are made safe or rejected.
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="..\\\\..\\\\boot.ini"', "boot.ini"),
        ("attachment; filename*=UTF-8''..%2F..%2F.bashrc", ".bashrc"),
        ('attachment; filename=".."', None),
        ('attachment; filename="."', None),
        ('attachment; filename=""', None),
        ("attachment; filename*=UTF-8''a%00b.txt", None),
        ("attachment; filename*=UTF-8''a%0D%0Ab.txt", None),
        # No name at all.
        ("attachment", None),
        ("inline", None),
        ("", None),
        (None, None),
        ('attachment; name="field"', None),
        ('attachment; xfilename="evil.txt"', None),
    ],
)
def test_content_disposition_name(value: Optional[str], expected: Optional[str]) -> None:
    assert content_disposition_name(value) == expected


@given(st.text(max_size=300))
def test_content_disposition_never_unsafe(value: str) -> None:
    out = content_disposition_name(value)
    if out is not None:
        assert safe_name(out) == out
        assert "/" not in out and "\\" not in out and out not in (".", "..")
