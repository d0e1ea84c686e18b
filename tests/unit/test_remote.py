"""Tests of response header parsing and the check_partial gate (accel._util.remote)."""

from __future__ import annotations

from email.utils import formatdate
from typing import Dict, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from accel._util.remote import (
    BadResponse,
    RangesUnsupported,
    RemoteChanged,
    Retryable,
    Validators,
    check_partial,
    is_strong,
    parse_content_range,
    parse_length,
    parse_retry_after,
    strong_date,
    unsatisfied_total,
    validators_of,
)

MAX = 2**63 - 1

# --- parse_length -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1", 1), ("1048576", 1048576), (" 42 ", 42), (str(MAX), MAX)],
)
def test_parse_length_valid(value: str, expected: int) -> None:
    assert parse_length(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "+5",
        "-1",
        " 1 2",
        "1 2",
        "1e3",
        "1.0",
        "0x10",
        "12a",
        "1,000",
        "\u0661\u0662",  # Arabic-Indic digits
        "\u00b2",  # superscript two
        str(2**63),
        str(10**30),
    ],
)
def test_parse_length_rejects(value: Optional[str]) -> None:
    assert parse_length(value) is None


@given(st.integers(min_value=0, max_value=MAX))
def test_parse_length_round_trip(n: int) -> None:
    assert parse_length(str(n)) == n


# --- parse_content_range / unsatisfied_total --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 50-99/1000", (50, 99, 1000)),
        ("bytes 0-99/*", (0, 99, None)),
        ("  bytes 1-2/3  ", (1, 2, 3)),
        (f"bytes 0-{MAX - 1}/{MAX}", (0, MAX - 1, MAX)),
    ],
)
def test_parse_content_range_valid(value: str, expected: tuple) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "bytes 5-4/100",  # end < start
        "bytes 0-100/100",  # end >= total
        "bytes 0-99/0",
        "bytes */100",
        "bytes 0-99",
        "bytes=0-99/100",
        "items 0-99/100",
        "bytes -1-5/10",
        "bytes 0--5/10",
        "bytes 0-99/100 extra",
        "bytes 0-99/100, bytes 0-1/2",
        "bytes +0-99/100",
        "bytes 0-99/-1",
        f"bytes 0-1/{2**63}",
        f"bytes 0-{2**63}/*",
        "bytes 0-99/1e3",
    ],
)
def test_parse_content_range_rejects(value: Optional[str]) -> None:
    assert parse_content_range(value) is None


def test_unsatisfied_total() -> None:
    assert unsatisfied_total("bytes */1000") == 1000
    assert unsatisfied_total("bytes */0") == 0
    assert unsatisfied_total(" bytes */5 ") == 5
    assert unsatisfied_total(None) is None
    assert unsatisfied_total("bytes */*") is None
    assert unsatisfied_total("bytes 0-1/2") is None
    assert unsatisfied_total("bytes */-1") is None
    assert unsatisfied_total(f"bytes */{2**63}") is None


# --- is_strong --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "strong"),
    [
        ('"abc"', True),
        ('""', True),
        ('W/"abc"', False),
        ("abc", False),
        ('"', False),
        ('"abc', False),
        ("", False),
        (None, False),
    ],
)
def test_is_strong(etag: Optional[str], strong: bool) -> None:
    assert is_strong(etag) is strong


# --- parse_retry_after ------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_retry_after_seconds() -> None:
    assert parse_retry_after("5", cap=60) == 5.0
    assert parse_retry_after(" 7 ", cap=60) == 7.0
    assert parse_retry_after("0", cap=60) == 0.0
    assert parse_retry_after("120", cap=60) == 60.0


def test_retry_after_http_date() -> None:
    future = formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(future, cap=60, now=NOW) == pytest.approx(30.0)
    past = formatdate(NOW - 3600, usegmt=True)
    assert parse_retry_after(past, cap=60, now=NOW) == 0.0
    far = formatdate(NOW + 86400, usegmt=True)
    assert parse_retry_after(far, cap=60, now=NOW) == 60.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-5",
        "1.5",
        "5s",
        "Tue, 99 Foo 2026 10:00:00 GMT",
        "\u00b2",
        "\u00b9\u00b3",
    ],
)
def test_retry_after_junk(value: Optional[str]) -> None:
    """Junk yields None (never an exception): headers are latin-1, so '²' can arrive."""
    assert parse_retry_after(value, cap=60, now=NOW) is None


# --- Validators -------------------------------------------------------------------------


def test_if_range() -> None:
    lm = "Tue, 01 Sep 2026 10:00:00 GMT"
    assert Validators(10, '"e"', lm).if_range == '"e"'
    assert Validators(10, 'W/"e"', lm).if_range == lm
    assert Validators(10, None, lm).if_range == lm
    assert Validators(10, 'W/"e"', None).if_range is None
    assert Validators(10).if_range is None


def test_resumable() -> None:
    lm = "Tue, 01 Sep 2026 10:00:00 GMT"
    assert Validators(10, '"e"').resumable
    assert Validators(10, None, lm).resumable
    assert Validators(0, '"e"').resumable
    assert not Validators(None, '"e"', lm).resumable
    assert not Validators(10, 'W/"e"').resumable
    assert not Validators(10).resumable


def test_same_version() -> None:
    lm1, lm2 = "Tue, 01 Sep 2026 10:00:00 GMT", "Wed, 02 Sep 2026 10:00:00 GMT"
    assert Validators(10, '"a"', lm1).same_version(Validators(10, '"a"', lm1))
    assert not Validators(10, '"a"').same_version(Validators(11, '"a"'))
    assert not Validators(10, '"a"').same_version(Validators(10, '"b"'))
    assert Validators(10, None, lm1).same_version(Validators(10, None, lm1))
    assert not Validators(10, None, lm1).same_version(Validators(10, None, lm2))
    # The ETag decides when both have one, even if the dates differ.
    assert Validators(10, '"a"', lm1).same_version(Validators(10, '"a"', lm2))
    # Nothing to compare but the size.
    assert Validators(10).same_version(Validators(10))
    assert Validators(None).same_version(Validators(10))
    assert not Validators(10).same_version(Validators(20))
    # One side lacks an ETag: fall back to the dates.
    assert not Validators(10, '"a"', lm1).same_version(Validators(10, None, lm2))
    assert Validators(10, '"a"', lm1).same_version(Validators(10, None, lm1))


# --- check_partial ----------------------------------------------------------------------

ETAG = '"v1"'
LM = "Tue, 01 Sep 2026 10:00:00 GMT"
EXPECTED = Validators(1000, ETAG, LM)


def hdrs(**kw: str) -> CaseInsensitiveDict:
    """Headers of a correct 206 for bytes 100-199 of a 1000-byte file, with overrides."""
    base: Dict[str, str] = {
        "Content-Range": "bytes 100-199/1000",
        "Content-Length": "100",
        "Content-Type": "application/octet-stream",
        "ETag": ETAG,
        "Last-Modified": LM,
    }
    for key, value in kw.items():
        name = key.replace("_", "-")
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return CaseInsensitiveDict(base)


def test_check_partial_accepts_exact_range() -> None:
    assert check_partial(206, hdrs(), 100, 199, EXPECTED) == 1000
    assert check_partial(206, hdrs(), 100, 199, None) == 1000
    # Content-Length is optional, identity encoding is fine.
    assert check_partial(206, hdrs(Content_Length=None), 100, 199, EXPECTED) == 1000
    assert check_partial(206, hdrs(Content_Encoding="identity"), 100, 199, EXPECTED) == 1000
    # Lower-case header names as a real response may carry them.
    lower = CaseInsensitiveDict({k.lower(): v for k, v in hdrs().items()})
    assert check_partial(206, lower, 100, 199, EXPECTED) == 1000


def test_check_partial_200_is_ranges_unsupported() -> None:
    with pytest.raises(RangesUnsupported):
        check_partial(200, hdrs(Content_Range=None, Content_Length="1000"), 100, 199, EXPECTED)


@pytest.mark.parametrize("status", [204, 301, 304, 404, 416, 500, 503])
def test_check_partial_wrong_status(status: int) -> None:
    with pytest.raises(BadResponse):
        check_partial(status, hdrs(), 100, 199, EXPECTED)


def test_check_partial_multipart() -> None:
    headers = hdrs(Content_Type="multipart/byteranges; boundary=xyz", Content_Range=None)
    with pytest.raises(BadResponse):
        check_partial(206, headers, 100, 199, EXPECTED)
    with pytest.raises(BadResponse):
        check_partial(206, hdrs(Content_Type="Multipart/ByteRanges; boundary=x"), 100, 199, None)


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "br", " deflate "])
def test_check_partial_encoded(encoding: str) -> None:
    with pytest.raises(RangesUnsupported):
        check_partial(206, hdrs(Content_Encoding=encoding), 100, 199, EXPECTED)


@pytest.mark.parametrize(
    "content_range",
    [None, "", "bytes 100-199", "bytes=100-199/1000", "bytes 100-99/1000", "bytes 100-1000/1000"],
)
def test_check_partial_bad_content_range(content_range: Optional[str]) -> None:
    with pytest.raises(BadResponse):
        check_partial(206, hdrs(Content_Range=content_range), 100, 199, EXPECTED)


def test_check_partial_missing_total() -> None:
    with pytest.raises(BadResponse):
        check_partial(206, hdrs(Content_Range="bytes 100-199/*"), 100, 199, EXPECTED)
    with pytest.raises(BadResponse):
        check_partial(206, hdrs(Content_Range="bytes 100-199/*"), 100, 199, None)


@pytest.mark.parametrize(
    ("content_range", "length"),
    [
        ("bytes 101-200/1000", "100"),  # shifted
        ("bytes 0-199/1000", "200"),  # wrong start
        ("bytes 100-198/1000", "99"),  # short
        ("bytes 100-200/1000", "101"),  # long
        ("bytes 100-999/1000", "900"),  # the whole tail
    ],
)
def test_check_partial_wrong_range(content_range: str, length: str) -> None:
    with pytest.raises(BadResponse):
        check_partial(
            206, hdrs(Content_Range=content_range, Content_Length=length), 100, 199, EXPECTED
        )


@pytest.mark.parametrize("length", ["99", "101", "0", "1000"])
def test_check_partial_content_length_mismatch(length: str) -> None:
    with pytest.raises(BadResponse):
        check_partial(206, hdrs(Content_Length=length), 100, 199, EXPECTED)


def test_check_partial_changed_etag_is_remote_changed() -> None:
    with pytest.raises(RemoteChanged):
        check_partial(206, hdrs(ETag='"v2"'), 100, 199, EXPECTED)


def test_check_partial_changed_size_is_remote_changed() -> None:
    expected = Validators(1000, None, None)
    with pytest.raises(RemoteChanged):
        check_partial(206, hdrs(Content_Range="bytes 100-199/2000", ETag=None), 100, 199, expected)


def test_check_partial_changed_last_modified_is_remote_changed() -> None:
    expected = Validators(1000, None, LM)
    headers = hdrs(ETag=None, Last_Modified="Wed, 02 Sep 2026 10:00:00 GMT")
    with pytest.raises(RemoteChanged):
        check_partial(206, headers, 100, 199, expected)


def test_check_partial_same_strong_etag_other_total_is_bad_response() -> None:
    headers = hdrs(Content_Range="bytes 100-199/1001")
    with pytest.raises(BadResponse) as info:
        check_partial(206, headers, 100, 199, EXPECTED)
    assert not isinstance(info.value, RemoteChanged)
    assert isinstance(info.value, Retryable)


def test_check_partial_weak_etag_other_total_is_remote_changed() -> None:
    expected = Validators(1000, 'W/"v1"', None)
    headers = hdrs(Content_Range="bytes 100-199/1001", ETag='W/"v1"', Last_Modified=None)
    with pytest.raises(RemoteChanged):
        check_partial(206, headers, 100, 199, expected)


def test_check_partial_open_ended() -> None:
    headers = hdrs(Content_Range="bytes 500-999/1000", Content_Length="500")
    assert check_partial(206, headers, 500, None, EXPECTED) == 1000
    assert check_partial(206, headers, 500, None, None) == 1000
    short = hdrs(Content_Range="bytes 500-998/1000", Content_Length="499")
    with pytest.raises(BadResponse):
        check_partial(206, short, 500, None, EXPECTED)
    wrong_start = hdrs(Content_Range="bytes 0-999/1000", Content_Length="1000")
    with pytest.raises(BadResponse):
        check_partial(206, wrong_start, 500, None, EXPECTED)


def test_check_partial_end_beyond_total_is_clamped() -> None:
    """Asking for 900-1999 of a 1000-byte file: the server rightly answers 900-999."""
    headers = hdrs(Content_Range="bytes 900-999/1000", Content_Length="100")
    assert check_partial(206, headers, 900, 1999, EXPECTED) == 1000


def test_signal_hierarchy() -> None:
    assert issubclass(BadResponse, Retryable)
    assert not issubclass(RemoteChanged, Retryable)
    assert not issubclass(RangesUnsupported, Retryable)
    assert Retryable("x", retry_after=3.0).retry_after == 3.0


# -- weak validators (issue 12, #4) -----------------------------------------------------------

DATE_NOW = "Sun, 29 Nov 2026 12:00:00 GMT"
DATE_SECOND_AGO = "Sun, 29 Nov 2026 11:59:59 GMT"
DATE_HOURS_AGO = "Sun, 29 Nov 2026 10:00:00 GMT"
DATE_FIVE_LATER = "Sun, 29 Nov 2026 12:00:05 GMT"


def test_strong_date_needs_a_second_before_date() -> None:
    assert strong_date(DATE_SECOND_AGO, DATE_NOW)
    assert not strong_date(DATE_NOW, DATE_NOW)  # modified this second: may change again, same date
    assert not strong_date("Sun, 29 Nov 2026 12:00:30 GMT", DATE_NOW)  # mtime ahead of the clock
    assert not strong_date(DATE_SECOND_AGO, None)  # no Date: nothing can be deduced
    assert not strong_date(None, DATE_NOW)
    assert not strong_date("junk", DATE_NOW)


def test_if_range_never_carries_a_weak_validator() -> None:
    weak = validators_of({"ETag": 'W/"e"', "Last-Modified": DATE_NOW, "Date": DATE_NOW}, 10)
    assert weak.if_range is None and not weak.resumable
    lm_only = validators_of({"Last-Modified": DATE_SECOND_AGO, "Date": DATE_NOW}, 10)
    assert lm_only.if_range == DATE_SECOND_AGO and lm_only.resumable
    strong_tag = validators_of({"ETag": '"e"', "Last-Modified": DATE_NOW, "Date": DATE_NOW}, 10)
    assert strong_tag.if_range == '"e"'
    # From a sidecar (saved only for strong validators) a date stays usable.
    assert Validators(10, None, DATE_SECOND_AGO).if_range == DATE_SECOND_AGO


def test_weak_etags_compare_weakly() -> None:
    fresh = validators_of({"ETag": 'W/"e"', "Last-Modified": DATE_NOW, "Date": DATE_NOW}, 10)
    later = validators_of({"ETag": '"e"', "Last-Modified": DATE_NOW, "Date": DATE_FIVE_LATER}, 10)
    assert fresh.same_version(later)  # Apache strengthens the tag a second later
    assert not fresh.same_version(validators_of({"ETag": '"other"', "Date": DATE_NOW}, 10))
    assert not fresh.same_version(validators_of({"ETag": 'W/"e"', "Date": DATE_NOW}, 11))
    # A date that is "now" carries no news; two strong dates that differ do.
    clamped = validators_of(
        {"ETag": 'W/"e"', "Last-Modified": DATE_SECOND_AGO, "Date": DATE_SECOND_AGO}, 10
    )
    assert fresh.same_version(clamped)
    old1 = validators_of({"ETag": 'W/"e"', "Last-Modified": DATE_SECOND_AGO, "Date": DATE_NOW}, 10)
    old2 = validators_of(
        {"ETag": 'W/"e"', "Last-Modified": "Sun, 29 Nov 2026 10:00:00 GMT", "Date": DATE_NOW}, 10
    )
    assert not old1.same_version(old2)
