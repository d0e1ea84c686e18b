"""Tests of sessions and the retry policy (accel._http.session), against real loopback servers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import pytest

import accel
from accel._http.session import RetryPolicy, new_session, urllib3_retry
from accel._util.urls import origin
from tests.servers import FaultServer, make_data

# --- RetryPolicy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": -1},
        {"backoff": -0.1},
        {"backoff_max": -1.0},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_retry_policy_rejects(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_retry_policy_accepts_edges() -> None:
    p = RetryPolicy(attempts=0, backoff=0, backoff_max=0, jitter=0)
    assert p.delay(1) == 0.0
    RetryPolicy(jitter=1.0)
    with pytest.raises(Exception):  # frozen  # noqa: B017
        p.attempts = 3  # type: ignore[misc]


def test_delay_grows_and_caps() -> None:
    p = RetryPolicy(backoff=0.5, backoff_max=4.0, jitter=0.0)
    assert [p.delay(n) for n in range(0, 7)] == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert p.delay(1000) == 4.0  # no overflow for huge counts


def test_delay_jitter_uses_rng() -> None:
    p = RetryPolicy(backoff=1.0, backoff_max=100.0, jitter=0.5)
    assert p.delay(3, rng=lambda: 0.0) == 4.0
    assert p.delay(3, rng=lambda: 1.0) == 2.0
    assert p.delay(3, rng=lambda: 0.5) == 3.0
    calls: List[int] = []

    def rng() -> float:
        calls.append(1)
        return 0.25

    assert p.delay(1, rng=rng) == pytest.approx(0.875)
    assert calls == [1]


def test_delay_with_random_jitter_within_bounds() -> None:
    p = RetryPolicy(backoff=1.0, backoff_max=8.0, jitter=0.5)
    for n in range(1, 8):
        base = min(8.0, 2 ** (n - 1))
        for _ in range(50):
            assert base * 0.5 <= p.delay(n) <= base


def test_retry_after_wins_and_is_capped() -> None:
    p = RetryPolicy(backoff=0.5, backoff_max=4.0, jitter=0.5, retry_after_cap=10.0)
    assert p.delay(1, retry_after=7.0, rng=lambda: 1.0) == 7.0
    assert p.delay(5, retry_after=0.0) == 0.0
    assert p.delay(1, retry_after=3600.0) == 10.0
    assert p.delay(1, retry_after=-5.0) == 0.0


# --- origin -----------------------------------------------------------------------------


def test_origin() -> None:
    assert origin("http://Example.COM/x") == ("http", "example.com", 80)
    assert origin("https://h/x?y") == ("https", "h", 443)
    assert origin("https://h:8443/") == ("https", "h", 8443)
    assert origin("http://h:80/a") == origin("http://h/b")
    assert origin("http://u:p@h:81/") == ("http", "h", 81)
    assert origin("http://h/") != origin("https://h/")
    assert origin("http://127.0.0.1:1000/") != origin("http://127.0.0.1:1001/")


# --- sessions against real servers ------------------------------------------------------

CREDS = {"Authorization": "Bearer s3cret", "Cookie": "session=abc123"}
DATA = make_data(50_000, seed=7)


def test_cross_origin_redirect_drops_credentials(
    server: FaultServer, other_server: FaultServer
) -> None:
    other_server.add_file("/f", DATA)
    server.faults.redirects["/start"] = other_server.url("/f")
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.status_code == 200 and r.content == DATA
    first = server.requests
    assert len(first) == 1 and first[0].status == 302
    assert first[0].headers.get("Authorization") == "Bearer s3cret"
    assert first[0].headers.get("Cookie") == "session=abc123"
    second = other_server.requests
    assert len(second) == 1 and second[0].path == "/f"
    assert "Authorization" not in second[0].headers
    assert "Cookie" not in second[0].headers


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_drops_credentials_any_status(
    server: FaultServer, other_server: FaultServer, status: int
) -> None:
    other_server.add_file("/f", DATA)
    server.faults.redirects["/start"] = other_server.url("/f")
    server.faults.redirect_status = status
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.content == DATA
    assert server.requests[0].headers.get("Authorization") == "Bearer s3cret"
    sent = other_server.requests[0].headers
    assert "Authorization" not in sent and "Cookie" not in sent


def test_cross_origin_chain_does_not_regain_credentials(
    server: FaultServer, other_server: FaultServer
) -> None:
    """A -> B -> back to A: once dropped, the credentials are not sent again."""
    server.add_file("/f", DATA)
    server.faults.redirects["/start"] = other_server.url("/hop")
    other_server.faults.redirects["/hop"] = server.url("/f")
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.content == DATA
    logs = server.requests
    assert [log.path for log in logs] == ["/start", "/f"]
    assert logs[0].headers.get("Authorization") == "Bearer s3cret"
    assert "Authorization" not in other_server.requests[0].headers
    assert "Cookie" not in other_server.requests[0].headers
    assert "Authorization" not in logs[1].headers
    assert "Cookie" not in logs[1].headers


def test_same_origin_redirect_keeps_authorization(server: FaultServer) -> None:
    server.add_file("/f", DATA)
    server.faults.redirects["/start"] = "/f"
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.content == DATA
    logs = server.requests
    assert [log.path for log in logs] == ["/start", "/f"]
    assert logs[1].headers.get("Authorization") == "Bearer s3cret"


def test_same_origin_redirect_keeps_cookie(server: FaultServer) -> None:
    """A Cookie the caller set (-H 'Cookie: ...') must survive a same-origin redirect."""
    server.add_file("/f", DATA)
    server.faults.redirects["/start"] = server.url("/f")
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.content == DATA
    logs = server.requests
    assert [log.path for log in logs] == ["/start", "/f"]
    assert logs[1].headers.get("Cookie") == "session=abc123"


def test_same_origin_redirect_to_protected_file(server: FaultServer) -> None:
    """End to end: a cookie-protected file behind a same-origin redirect downloads."""
    server.add_file("/f", DATA)
    server.faults.redirects["/start"] = "/f"
    server.faults.require_header = ("Cookie", "session=abc123")
    with new_session(headers=CREDS, retry=RetryPolicy(attempts=0)) as s:
        r = s.get(server.url("/start"), timeout=10)
    assert r.status_code == 200 and r.content == DATA


@pytest.mark.parametrize("passed", [None, "gzip", "gzip, deflate, br", "*"])
def test_accept_encoding_is_identity(server: FaultServer, passed: str) -> None:
    server.add_file("/f", DATA)
    headers = {} if passed is None else {"Accept-Encoding": passed}
    with new_session(headers=headers) as s:
        r = s.get(server.url("/f"), timeout=10)
    assert r.content == DATA
    sent = server.requests[0].headers
    assert sent.get("Accept-Encoding") == "identity"
    assert sent.get("User-Agent", "").startswith("accel/")


def test_urllib3_never_sleeps_or_retries_statuses(server: FaultServer) -> None:
    """urllib3 hands every 503 straight back (accel's own loop waits, cancellably)."""
    retry = urllib3_retry(RetryPolicy(attempts=5, backoff=10.0))
    assert retry.status == 0 and retry.backoff_factor == 0 and retry.connect <= 2
    server.add_file("/f", DATA)
    server.faults.status_times = 100
    server.faults.status_code = 503
    server.faults.retry_after = "3600"
    t0 = time.monotonic()
    with new_session(retry=RetryPolicy(attempts=5, backoff=10.0)) as s:
        r = s.get(server.url("/f"), timeout=10)
    assert r.status_code == 503
    assert len(server.requests) == 1
    assert time.monotonic() - t0 < 2.0


def test_status_retries_are_bounded_and_final_status_is_http_error(
    server: FaultServer, tmp_path: Path
) -> None:
    """--retries N means N + 1 requests for a status that stays 500, then HTTPError(500)."""
    server.add_file("/f", DATA)
    server.faults.status_times = 100
    server.faults.status_code = 500
    options = accel.Options(retry=RetryPolicy(attempts=2, backoff=0.01, backoff_max=0.02))
    with pytest.raises(accel.HTTPError) as info:
        accel.Downloader(server.url("/f"), tmp_path / "f", options=options).run()
    assert info.value.status == 500
    assert len(server.requests) == 3  # one try and two retries
    assert not (tmp_path / "f").exists()


def test_retry_after_is_capped(server: FaultServer, tmp_path: Path) -> None:
    """A 503 with Retry-After: 3600 is retried after at most retry_after_cap seconds."""
    server.add_file("/f", DATA)
    server.faults.status_times = 2
    server.faults.status_code = 503
    server.faults.retry_after = "3600"
    policy = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.05, retry_after_cap=0.2)
    t0 = time.monotonic()
    path = accel.Downloader(
        server.url("/f"), tmp_path / "f", options=accel.Options(retry=policy)
    ).run()
    assert path.read_bytes() == DATA
    assert [log.status for log in server.requests] == [503, 503, 206]
    assert time.monotonic() - t0 < 5.0


def test_cancel_during_a_retry_after_wait_is_prompt(server: FaultServer, tmp_path: Path) -> None:
    """Waiting out a Retry-After never delays cancel(): the wait is on the cancel event."""
    server.add_file("/f", DATA)
    server.faults.status_times = 100
    server.faults.status_code = 503
    server.faults.retry_after = "30"
    dl = accel.Downloader(server.url("/f"), tmp_path / "f").start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    t0 = time.monotonic()
    dl.cancel()
    assert dl.wait(timeout=5)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(accel.CancelledError):
        dl.result()
    assert len(server.requests) == 1


def test_no_retry_on_404(server: FaultServer) -> None:
    policy = RetryPolicy(attempts=3, backoff=0.01)
    with new_session(retry=policy) as s:
        r = s.get(server.url("/missing"), timeout=10)
    assert r.status_code == 404
    assert len(server.requests) == 1
