"""The one configuration path: :class:`accel.Options` (text sizes, headers, checks) and
:func:`accel.options.resolve`, used alike by ``Downloader(**settings)``, ``Downloader(options=,
**settings)``, the Manager and the command line's defaults."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import pytest

import accel
import accel.cli.args
from accel import Options
from accel.limits import HostSlots, RateLimiter
from accel.options import resolve
from tests.helpers import SPLIT, KiB, MiB, fast_retry, one_line_message

URL = "http://127.0.0.1:9/f.bin"  # never contacted: these Downloaders are not run
FIELDS = [f.name for f in dataclasses.fields(Options)]


def fields_of(options: Options) -> Dict[str, Any]:
    """Every field of ``options`` by name (``dataclasses.asdict`` would deep-copy the
    RateLimiter, lock included)."""
    return {name: getattr(options, name) for name in FIELDS}


def custom() -> Options:
    """Options with many fields away from their defaults."""
    return Options(
        connections=5,
        max_connections=9,
        headers={"X-A": "1"},
        timeout=7.0,
        connect_timeout=3.0,
        retry=fast_retry(7),
        force=True,
        min_split=SPLIT,
        commit_interval=0.5,
        low_speed_limit=1000,
        limit_rate="1M",
        host_slots=HostSlots(3),
        mirrors=("http://127.0.0.1:9/mirror.bin",),
        max_filesize="1G",
        fsync=True,
        checksum="sha256=" + "ab" * 32,
    )


# -- keywords over options -------------------------------------------------------------------


def test_keyword_overrides_only_that_field() -> None:
    opts = custom()
    d = accel.Downloader(URL, options=opts, connections=3)
    assert d.options.connections == 3
    got, want = fields_of(d.options), fields_of(opts)
    del got["connections"], want["connections"]
    assert got == want
    # Shared objects stay shared, not copied.
    assert d.options.limit_rate is opts.limit_rate
    assert d.options.host_slots is opts.host_slots
    assert opts.connections == 5, "the caller's Options must not change"


def test_keyword_alone_uses_the_defaults_otherwise() -> None:
    d = accel.Downloader(URL, connections=3)
    assert d.options == dataclasses.replace(Options(), connections=3)
    defaults = fields_of(Options())
    for name, value in fields_of(d.options).items():
        if name != "connections":
            assert value == defaults[name], name


def test_no_keyword_keeps_the_options_object() -> None:
    opts = custom()
    assert accel.Downloader(URL, options=opts).options is opts
    assert accel.Downloader(URL).options == Options()


def test_unknown_keyword_is_a_usage_error_naming_it() -> None:
    with pytest.raises(accel.UsageError) as info:
        accel.Downloader(URL, conections=3)
    assert "conections" in one_line_message(info.value)
    with pytest.raises(accel.UsageError, match="limit_rat"):
        accel.Downloader(URL, options=custom(), limit_rat="1M")
    with pytest.raises(accel.UsageError, match="conections"):
        resolve(None, conections=3)


def test_options_must_be_options() -> None:
    with pytest.raises(accel.UsageError):
        accel.Downloader(URL, options={"connections": 3})  # type: ignore[arg-type]


def test_retries_shorthand() -> None:
    d = accel.Downloader(URL, retries=2)
    assert d.options.retry.attempts == 2
    assert d.options.retry == dataclasses.replace(Options().retry, attempts=2)
    # Over options, only the attempts change; the rest of that policy stays.
    opts = custom()
    d2 = accel.Downloader(URL, options=opts, retries=2)
    assert d2.options.retry == dataclasses.replace(opts.retry, attempts=2)
    assert d2.options.retry.backoff == opts.retry.backoff == 0.01
    assert accel.Downloader(URL, retries=0).options.retry.attempts == 0


@pytest.mark.parametrize("bad", [-1, True, 2.5, "3"])
def test_bad_retries_is_a_usage_error(bad: Any) -> None:
    with pytest.raises(accel.UsageError):
        accel.Downloader(URL, retries=bad)


def test_retries_and_retry_together_is_a_usage_error() -> None:
    with pytest.raises(accel.UsageError) as info:
        accel.Downloader(URL, retries=2, retry=fast_retry(3))
    one_line_message(info.value)
    with pytest.raises(accel.UsageError):
        resolve(custom(), retries=2, retry=fast_retry(3))


def test_bad_override_is_checked() -> None:
    for bad in (0, 65, "3", 2.0, True, "", "automatic"):
        with pytest.raises(accel.UsageError):
            accel.Downloader(URL, options=custom(), connections=bad)
    with pytest.raises(accel.UsageError):
        accel.Downloader(URL, timeout=0)


# -- connections="auto" ---------------------------------------------------------------------


def test_auto_connections() -> None:
    d = accel.Downloader(URL, connections="auto")
    assert d.options.connections == "auto" and d.options.auto
    assert d.options.max_connections == 16  # the default cap
    assert d.options.initial_connections == 4
    assert d.options.most_connections == 16  # segments are planned for the cap
    assert Options(connections=" AUTO ").connections == "auto"
    opts = resolve(Options(connections="auto"), max_connections=3)
    assert (opts.initial_connections, opts.most_connections) == (3, 3)


def test_a_fixed_count_ignores_max_connections() -> None:
    opts = Options(connections=5, max_connections=2)
    assert not opts.auto
    assert opts.initial_connections == opts.most_connections == 5
    assert not Options().auto and Options().connections == 8  # the default stays 8


@pytest.mark.parametrize("bad", [0, 65, True, 2.5, "16", None])
def test_bad_max_connections(bad: Any) -> None:
    with pytest.raises(accel.UsageError) as info:
        Options(connections="auto", max_connections=bad)
    assert "max_connections" in one_line_message(info.value)


def test_bad_connections_message_names_auto() -> None:
    with pytest.raises(accel.UsageError) as info:
        Options(connections="many")
    assert one_line_message(info.value) == (
        "connections must be an integer from 1 to 64, or 'auto'"
    )


# -- sizes and rates as text -----------------------------------------------------------------


def test_limit_rate_text_makes_a_rate_limiter() -> None:
    opts = Options(limit_rate="20M")
    assert isinstance(opts.limit_rate, RateLimiter)
    assert opts.limit_rate.rate == 20 * 1024**2
    assert accel.Downloader(URL, limit_rate="20M").options.limit_rate.rate == 20 * 1024**2


def test_limit_rate_number_makes_a_rate_limiter() -> None:
    opts = Options(limit_rate=300_000)
    assert isinstance(opts.limit_rate, RateLimiter) and opts.limit_rate.rate == 300_000


def test_max_filesize_text() -> None:
    assert Options(max_filesize="2G").max_filesize == 2 * 1024**3
    assert Options(max_filesize=12345).max_filesize == 12345
    assert Options().max_filesize is None
    assert accel.Downloader(URL, max_filesize="10M").options.max_filesize == 10 * MiB


def test_rate_limiter_accepts_text() -> None:
    assert accel.RateLimiter("30M").rate == 30 * 1024**2
    assert accel.RateLimiter(1000).rate == 1000


@pytest.mark.parametrize(
    ("text", "value"),
    [("500K", 500 * KiB), ("500k", 500 * KiB), ("1.5M", 3 * MiB // 2), ("2MiB", 2 * MiB),
     ("2MB", 2 * MiB), ("1G", 1024**3), ("4096", 4096), (" 3M ", 3 * MiB)],
)  # fmt: skip
def test_size_spellings(text: str, value: int) -> None:
    assert Options(max_filesize=text).max_filesize == value
    assert RateLimiter(text).rate == value
    assert isinstance(Options(limit_rate=text).limit_rate, RateLimiter)
    assert Options(limit_rate=text).limit_rate.rate == value  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["5X", "", "-1M", "M", "1.2.3M", "0", "1M2", "\uff11M"])
def test_bad_size_texts_are_one_line_usage_errors(bad: str) -> None:
    for make in (
        lambda: Options(limit_rate=bad),
        lambda: Options(max_filesize=bad),
        lambda: accel.RateLimiter(bad),
        lambda: accel.Downloader(URL, limit_rate=bad),
    ):
        with pytest.raises(accel.UsageError) as info:
            make()
        one_line_message(info.value)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [True, False, None, [1], object()])
def test_rate_limiter_bad_types_are_usage_errors(bad: Any) -> None:
    with pytest.raises(accel.UsageError):
        accel.RateLimiter(bad)


@pytest.mark.parametrize("bad", [0, -5, -0.5])
def test_rate_limiter_non_positive(bad: float) -> None:
    with pytest.raises(accel.UsageError):
        accel.RateLimiter(bad)


@pytest.mark.parametrize("bad", [True, 0, -1, 1.5, "x", [1]])
def test_options_bad_limit_rate_values(bad: Any) -> None:
    with pytest.raises(accel.UsageError):
        Options(limit_rate=bad)


@pytest.mark.parametrize("bad", [0, -1, True, "2", None])
def test_host_slots_bad_counts(bad: Any) -> None:
    with pytest.raises(accel.UsageError):
        accel.HostSlots(bad)
    assert accel.HostSlots(1).per_host == 1


@pytest.mark.parametrize("bad", [-1, True, [1]])
def test_max_filesize_bad_values(bad: Any) -> None:
    with pytest.raises(accel.UsageError):
        Options(max_filesize=bad)


# -- headers ---------------------------------------------------------------------------------


def test_headers_mapping_becomes_pairs() -> None:
    opts = Options(headers={"X-A": "1", "X-B": " two "})
    assert opts.headers == (("X-A", "1"), ("X-B", "two"))
    assert isinstance(opts.headers, tuple)
    assert Options(headers=[("X-A", "1")]).headers == (("X-A", "1"),)
    d = accel.Downloader(URL, headers={"X-A": "1"})
    assert d.options.headers == (("X-A", "1"),)
    hash(d.options.headers)  # hashable: pooled sessions are keyed by it


@pytest.mark.parametrize("name", ["Range", "range", "If-Range", "Accept-Encoding", "Host"])
def test_reserved_headers_are_usage_errors(name: str) -> None:
    with pytest.raises(accel.UsageError) as info:
        Options(headers={name: "x"})
    one_line_message(info.value)
    with pytest.raises(accel.UsageError):
        accel.Downloader(URL, headers={name: "x"})


@pytest.mark.parametrize(
    "headers", [{"X-A": "1\r\nEvil: 1"}, {"X A": "1"}, {"X:A": "1"}, {"": "1"}]
)
def test_malformed_headers_are_usage_errors(headers: Dict[str, str]) -> None:
    with pytest.raises(accel.UsageError):
        Options(headers=headers)


# -- shared limiter objects ------------------------------------------------------------------


def test_shared_rate_limiter_stays_the_same_object() -> None:
    limiter = RateLimiter("1M")
    opts = Options(limit_rate=limiter)
    assert opts.limit_rate is limiter
    assert resolve(opts).limit_rate is limiter
    assert resolve(opts, connections=2).limit_rate is limiter
    assert resolve(None, limit_rate=limiter).limit_rate is limiter
    assert dataclasses.replace(opts, timeout=5.0).limit_rate is limiter
    assert accel.Downloader(URL, limit_rate=limiter).options.limit_rate is limiter
    assert accel.Downloader(URL, options=opts, retries=1).options.limit_rate is limiter


def test_text_rate_makes_one_limiter_that_later_overrides_keep() -> None:
    opts = Options(limit_rate="1M")
    limiter = opts.limit_rate
    assert isinstance(limiter, RateLimiter)
    assert resolve(opts, connections=2).limit_rate is limiter
    assert dataclasses.replace(opts, force=True).limit_rate is limiter
    # A new text makes a new limiter.
    other = resolve(opts, limit_rate="2M").limit_rate
    assert isinstance(other, RateLimiter) and other is not limiter and other.rate == 2 * MiB


def test_shared_host_slots_stay_the_same_object() -> None:
    slots = HostSlots(2)
    opts = Options(host_slots=slots)
    assert resolve(opts, connections=2).host_slots is slots
    assert accel.Downloader(URL, host_slots=slots).options.host_slots is slots


# -- the command line's defaults are the library's -------------------------------------------


def test_cli_defaults_are_the_library_defaults() -> None:
    assert accel.Options() == accel.cli.args.DEFAULTS
    args = accel.cli.args.build_parser().parse_args(["http://x/"])
    defaults = accel.Options()
    assert args.connections == defaults.connections
    assert args.max_connections == defaults.max_connections
    assert args.timeout == defaults.timeout
    assert args.retries == defaults.retry.attempts
    assert args.limit_rate is None and defaults.limit_rate is None
    assert args.max_filesize is None and defaults.max_filesize is None
    assert args.force is defaults.force is False
    assert args.fsync is defaults.fsync is False
