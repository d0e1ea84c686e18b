"""Unit tests of retrying as values (accel.retry), the slot leases of accel.limits, and the
source pool of accel._engine.sources: refresh of an expired redirect target and switching sources.
No network, no sleeping beyond a few hundredths of a second in the threaded cases.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import List, Optional

import pytest

from accel._engine.sources import MAX_REFRESHES, Source, SourcePool, slot_key
from accel._util.remote import BadResponse, RemoteChanged, Retryable, TotalMismatch, Validators
from accel.exceptions import (
    HTTPError,
    NetworkError,
    RemoteProtocolError,
    UsageError,
)
from accel.limits import HostSlots, SlotLease
from accel.retry import Failure, RetryPolicy, RetryState
from tests.helpers import slots_in_use

MAIN = "https://example.test/file.iso"
SIGNED = "https://cdn.test/file.iso?sig=1"
MIRROR = "https://mirror.test/file.iso"
VALIDATORS = Validators(1000, '"etag"', None)

# -- RetryPolicy and RetryState -------------------------------------------------------------


def no_jitter(**kwargs: float) -> RetryPolicy:
    """A policy with deterministic delays."""
    return RetryPolicy(jitter=0, **kwargs)  # type: ignore[arg-type]


def test_increment_counts_failures_with_growing_delays() -> None:
    state = RetryState(no_jitter(attempts=3, backoff=0.5))
    assert (state.failures, state.delay, state.exhausted()) == (0, 0.0, False)
    delays = []
    for _ in range(4):
        state = state.increment(Retryable("connection reset"))
        delays.append(state.delay)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert state.failures == 4


def test_delays_are_capped_by_backoff_max() -> None:
    state = RetryState(no_jitter(attempts=10, backoff=1.0, backoff_max=3.0))
    delays = []
    for _ in range(5):
        state = state.increment(Retryable("timeout"))
        delays.append(state.delay)
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_spreads_the_delay_downwards() -> None:
    policy = RetryPolicy(backoff=1.0, jitter=0.5)
    assert policy.delay(1, rng=lambda: 0.0) == 1.0
    assert policy.delay(1, rng=lambda: 1.0) == 0.5
    assert policy.delay(2, rng=lambda: 0.5) == 1.5
    for _ in range(50):
        assert 0.5 <= policy.delay(1) <= 1.0


def test_exhausted_after_the_policys_attempts() -> None:
    state = RetryState(no_jitter(attempts=2))
    state = state.increment(Retryable("a")).increment(Retryable("b"))
    assert not state.exhausted()  # 2 retries allowed: the third attempt still happens
    state = state.increment(Retryable("c"))
    assert state.exhausted()


def test_zero_attempts_gives_up_at_the_first_failure() -> None:
    state = RetryState(no_jitter(attempts=0))
    assert not state.exhausted()
    assert state.increment(Retryable("x")).exhausted()


def test_a_stricter_limit_wins_a_looser_one_does_not() -> None:
    state = RetryState(no_jitter(attempts=5))
    for _ in range(3):
        state = state.increment(Retryable("x"))
    assert not state.exhausted()
    assert state.exhausted(2)
    assert not state.exhausted(3)
    loose = RetryState(no_jitter(attempts=1)).increment(Retryable("x")).increment(Retryable("y"))
    assert loose.exhausted(10)  # a larger limit never allows more than the policy


def test_history_is_immutable_and_grows() -> None:
    policy = no_jitter(attempts=5)
    start = RetryState(policy)
    one = start.increment(Retryable("reset by peer"))
    two = one.increment(Retryable("busy", status=503, retry_after=2.0))
    assert start.history == () and start.failures == 0
    assert one.history == (Failure("reset by peer", None, 0.5),)
    assert two.history == (Failure("reset by peer", None, 0.5), Failure("busy", 503, 2.0))
    assert two.history[0] is one.history[0]
    assert isinstance(two.history, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        two.history = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        two.history[0].delay = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.attempts = 9  # type: ignore[misc]


def test_reset_starts_over_with_the_same_policy() -> None:
    policy = no_jitter(attempts=1)
    state = RetryState(policy).increment(Retryable("x")).increment(Retryable("y"))
    assert state.exhausted()
    fresh = state.reset()
    assert fresh.policy is policy
    assert (fresh.failures, fresh.delay, fresh.history, fresh.exhausted()) == (0, 0.0, (), False)
    assert fresh.increment(Retryable("z")).delay == 0.5  # the backoff starts over too
    assert state.failures == 2  # the old state is untouched


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(7.0, 7.0), (0.0, 0.0), (-3.0, 0.0), (1000.0, 60.0)]
)
def test_retry_after_wins_and_is_capped(retry_after: float, expected: float) -> None:
    state = RetryState(RetryPolicy(backoff=0.5, jitter=0.5, retry_after_cap=60.0))
    state = state.increment(Retryable("slow down", status=429, retry_after=retry_after))
    assert state.delay == expected
    # Later failures without Retry-After go back to the backoff.
    assert state.increment(Retryable("reset")).delay <= 1.0


def test_retry_after_cap_is_configurable() -> None:
    policy = RetryPolicy(retry_after_cap=5.0)
    assert policy.delay(1, retry_after=3600) == 5.0
    assert RetryPolicy(retry_after_cap=0.0).delay(1, retry_after=30) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": -1}, {"attempts": 1.5}, {"backoff": -1}, {"backoff_max": -1}, {"jitter": 2}],
)
def test_policy_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        RetryPolicy(**kwargs)


def failed(attempts: int, failures: int) -> RetryState:
    """A state after ``failures`` consecutive failures."""
    state = RetryState(no_jitter(attempts=attempts))
    for i in range(failures):
        state = state.increment(Retryable(f"failure {i}"))
    return state


def test_give_up_on_a_status_is_an_http_error() -> None:
    state = failed(5, 6)
    error = state.give_up(Retryable("HTTP 503", status=503), "https://example.test/f")
    assert type(error) is HTTPError
    assert error.status == 503
    assert error.url == "https://example.test/f"
    assert "gave up after 5 retries" in str(error)
    assert str(error).startswith("https://example.test/f: HTTP 503")


def test_give_up_on_a_bad_response_is_a_protocol_error() -> None:
    error = failed(2, 3).give_up(BadResponse("wrong Content-Range"), "where")
    assert type(error) is RemoteProtocolError
    assert isinstance(error, NetworkError)  # a protocol error is a kind of network error
    assert "wrong Content-Range" in str(error)
    assert "gave up after 2 retries" in str(error)
    assert type(failed(2, 3).give_up(TotalMismatch("size"), "where")) is RemoteProtocolError


def test_give_up_on_anything_else_is_a_network_error() -> None:
    error = failed(3, 4).give_up(Retryable("connection reset"), "where")
    assert type(error) is NetworkError
    assert str(error) == "where: connection reset (gave up after 3 retries)"


def test_give_up_status_wins_over_the_kind_of_failure() -> None:
    error = failed(1, 2).give_up(BadResponse("bad", status=502), "where")
    assert type(error) is HTTPError and error.status == 502


def test_give_up_counts_retries_not_attempts() -> None:
    assert "gave up after 0 retries" in str(failed(0, 1).give_up(Retryable("x"), "w"))
    assert "gave up after 0 retries" in str(failed(0, 0).give_up(Retryable("x"), "w"))
    assert "gave up after 1 retries" in str(failed(5, 2).give_up(Retryable("x"), "w"))


# -- SlotLease and HostSlots ----------------------------------------------------------------


def test_a_lease_is_released_once() -> None:
    slots = HostSlots(2)
    lease = slots.lease("h:80")
    assert isinstance(lease, SlotLease)
    assert lease.held and lease.key == "h:80"
    assert slots_in_use(slots, "h:80") == 1
    other = slots.lease("h:80")
    assert other is not None
    lease.release()
    assert not lease.held
    assert slots_in_use(slots, "h:80") == 1
    lease.release()  # a second release must not free the other holder's slot
    lease.release()
    assert slots_in_use(slots, "h:80") == 1
    assert other.held
    other.release()
    assert slots_in_use(slots, "h:80") == 0
    assert "held=False" in repr(lease)


def test_lease_is_none_when_the_host_is_full_and_hosts_are_separate() -> None:
    slots = HostSlots(1)
    first = slots.lease("a:80")
    assert first is not None
    assert slots.lease("a:80") is None
    assert slots_in_use(slots, "a:80") == 1  # a refused lease takes nothing
    second = slots.lease("b:80")
    assert second is not None and slots_in_use(slots, "b:80") == 1
    first.release()
    again = slots.lease("a:80")
    assert again is not None and again.held


def test_wait_lease_returns_none_when_cancelled() -> None:
    slots = HostSlots(1)
    held = slots.lease("h:80")
    assert held is not None
    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    assert slots.wait_lease("h:80", cancel, poll=5.0) is None  # no waiting for the poll
    assert time.monotonic() - started < 1.0
    assert slots_in_use(slots, "h:80") == 1


def test_wait_lease_takes_a_free_slot_even_when_cancelled() -> None:
    slots = HostSlots(1)
    cancel = threading.Event()
    cancel.set()
    lease = slots.wait_lease("h:80", cancel)
    assert lease is not None and lease.held
    assert slots_in_use(slots, "h:80") == 1


def test_wait_lease_gets_the_slot_another_thread_releases() -> None:
    slots = HostSlots(1)
    held = slots.lease("h:80")
    assert held is not None
    cancel = threading.Event()
    waiting = threading.Event()

    def release_later() -> None:
        waiting.wait(5)
        time.sleep(0.03)
        held.release()

    thread = threading.Thread(target=release_later)
    thread.start()
    waiting.set()
    lease = slots.wait_lease("h:80", cancel, poll=0.01)
    thread.join(5)
    assert lease is not None and lease.held
    assert not held.held
    assert slots_in_use(slots, "h:80") == 1


def test_wait_lease_wakes_up_on_cancel_from_another_thread() -> None:
    slots = HostSlots(1)
    held = slots.lease("h:80")
    assert held is not None
    cancel = threading.Event()
    timer = threading.Timer(0.03, cancel.set)
    timer.start()
    assert slots.wait_lease("h:80", cancel, poll=0.01) is None
    timer.join(5)
    assert slots_in_use(slots, "h:80") == 1 and held.held


# -- SourcePool.refresh ---------------------------------------------------------------------


class Resolver:
    """A fake re-resolution of an expired redirect: counts its calls, each a new signed URL."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: List[str] = []
        self.lock = threading.Lock()

    def __call__(self, original: str) -> str:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls.append(original)
            return f"https://cdn.test/file.iso?sig={len(self.calls) + 1}"


def signed_source() -> Source:
    """The main source, reached through a redirect to a signed URL."""
    return Source(SIGNED, MAIN, VALIDATORS)


def test_one_refresh_for_many_callers() -> None:
    source = signed_source()
    pool = SourcePool([source])
    resolve = Resolver(delay=0.05)
    barrier = threading.Barrier(8)
    results: List[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait(5)
        ok = pool.refresh(source, 0, resolve)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert resolve.calls == [MAIN]  # the original URL is resolved again, once
    assert results == [True] * 8
    assert source.generation == 1
    assert source.url == "https://cdn.test/file.iso?sig=2"
    assert source.original == MAIN


def test_a_refresh_that_did_not_help_is_not_repeated() -> None:
    source = signed_source()
    pool = SourcePool([source])
    resolve = Resolver()
    assert pool.refresh(source, 0, resolve)
    assert source.generation == 1 and source.confirmed == 0
    # The request on generation 1 failed the same way: no request confirmed the new URL.
    assert not pool.refresh(source, 1, resolve)
    assert len(resolve.calls) == 1
    assert source.generation == 1
    # A caller that failed on the old generation is still told to retry with the new one.
    assert pool.refresh(source, 0, resolve)
    assert len(resolve.calls) == 1
    # Once a request succeeded on generation 1, a later expiry is refreshed again.
    source.confirmed = 1
    assert pool.refresh(source, 1, resolve)
    assert len(resolve.calls) == 2 and source.generation == 2


def test_refreshes_are_bounded() -> None:
    source = signed_source()
    pool = SourcePool([source])
    resolve = Resolver()
    for generation in range(MAX_REFRESHES):
        assert pool.refresh(source, generation, resolve)
        source.confirmed = source.generation
    assert source.generation == MAX_REFRESHES
    assert not pool.refresh(source, MAX_REFRESHES, resolve)
    assert len(resolve.calls) == MAX_REFRESHES


def test_no_refresh_without_a_redirect() -> None:
    source = Source(MAIN, MAIN, VALIDATORS)
    pool = SourcePool([source])
    resolve = Resolver()
    assert not pool.refresh(source, 0, resolve)
    assert resolve.calls == [] and source.generation == 0 and source.url == MAIN


def test_a_failing_resolve_leaves_the_source_as_it_was() -> None:
    source = signed_source()
    pool = SourcePool([source])

    def resolve(url: str) -> str:
        raise NetworkError("redirector down")

    with pytest.raises(NetworkError):
        pool.refresh(source, 0, resolve)
    assert source.url == SIGNED and source.generation == 0
    assert not source.refresh_lock.locked()


# -- SourcePool.acquire, release and switch -------------------------------------------------


def two_sources(slots: Optional[HostSlots] = None) -> SourcePool:
    """The main URL and one mirror."""
    return SourcePool([Source(MAIN, MAIN, VALIDATORS), Source(MIRROR, MIRROR, VALIDATORS)], slots)


def test_a_pool_needs_a_source() -> None:
    with pytest.raises(ValueError):
        SourcePool([])


def test_acquire_picks_the_least_busy_live_source() -> None:
    pool = two_sources()
    main, mirror = pool.sources
    picks = [pool.acquire() for _ in range(4)]
    assert [p[0] if p else None for p in picks] == [main, mirror, main, mirror]
    assert (main.active, mirror.active) == (2, 2)
    pool.release(main, None)
    assert (main.active, mirror.active) == (1, 2)
    got = pool.acquire(force=True)
    assert got is not None and got[0] is main
    mirror.dead = True
    got = pool.acquire()
    assert got is not None and got[0] is main
    main.dead = True
    assert pool.acquire() is None
    assert pool.acquire(force=True) is None


def test_switch_moves_a_failing_request_to_another_live_source() -> None:
    pool = two_sources()
    main, mirror = pool.sources
    got = pool.acquire()
    assert got is not None and got[0] is main
    assert pool.several_alive()
    moved = pool.switch(main, None, NetworkError("connection refused"))
    assert moved == (mirror, None)
    assert main.dead and not mirror.dead
    assert (main.active, mirror.active) == (0, 1)
    assert not pool.several_alive()
    # Nothing left to turn to: the failure is final.
    assert pool.switch(mirror, None, NetworkError("again")) is None
    assert not mirror.dead and mirror.active == 1


def test_a_change_of_the_main_file_is_never_switched_around() -> None:
    pool = two_sources()
    main, mirror = pool.sources
    pool.acquire()
    assert pool.switch(main, None, RemoteChanged("new ETag")) is None
    assert not main.dead and main.active == 1
    assert not mirror.dead and mirror.active == 0


def test_a_changed_mirror_is_dropped_for_the_main_source() -> None:
    pool = two_sources()
    main, mirror = pool.sources
    pool.acquire()
    got = pool.acquire()
    assert got is not None and got[0] is mirror
    moved = pool.switch(mirror, None, RemoteChanged("mirror has another file"))
    assert moved == (main, None)
    assert mirror.dead and (main.active, mirror.active) == (2, 0)


def test_no_switch_to_a_dead_source() -> None:
    pool = SourcePool(
        [
            Source(MAIN, MAIN, VALIDATORS),
            Source(MIRROR, MIRROR, VALIDATORS),
            Source("https://third.test/f", "https://third.test/f", VALIDATORS),
        ]
    )
    main, mirror, third = pool.sources
    mirror.dead = True
    pool.acquire(force=True)
    moved = pool.switch(main, None, NetworkError("x"))
    assert moved is not None and moved[0] is third


def test_switch_moves_the_host_slot_to_the_new_host() -> None:
    slots = HostSlots(1)
    pool = two_sources(slots)
    main, mirror = pool.sources
    got = pool.acquire()
    assert got is not None
    source, lease = got
    assert source is main and lease is not None and lease.key == "example.test:443"
    moved = pool.switch(main, lease, NetworkError("x"))
    assert moved is not None
    new_source, new_lease = moved
    assert new_source is mirror
    assert not lease.held and slots_in_use(slots, "example.test:443") == 0
    assert new_lease is not None and new_lease.key == "mirror.test:443"
    assert slots_in_use(slots, "mirror.test:443") == 1


def test_switch_to_a_full_host_goes_over_the_cap_rather_than_stall() -> None:
    slots = HostSlots(1)
    pool = two_sources(slots)
    main, _ = pool.sources
    busy = slots.lease("mirror.test:443")
    assert busy is not None
    got = pool.acquire()
    assert got is not None and got[0] is main
    moved = pool.switch(main, got[1], NetworkError("x"))
    assert moved is not None and moved[1] is None
    assert slots_in_use(slots, "example.test:443") == 0
    assert slots_in_use(slots, "mirror.test:443") == 1


def test_acquire_without_a_free_slot() -> None:
    slots = HostSlots(1)
    pool = SourcePool([Source(MAIN, MAIN, VALIDATORS)], slots)
    first = pool.acquire()
    assert first is not None and first[1] is not None
    assert pool.acquire() is None
    assert pool.sources[0].active == 1  # a refused request is not counted
    forced = pool.acquire(force=True)
    assert forced is not None and forced[1] is None  # over the cap, without a lease
    pool.release(*first)
    assert slots_in_use(slots, "example.test:443") == 0
    pool.release(*first)  # a lease is freed once, however often it is handed back
    assert slots_in_use(slots, "example.test:443") == 0


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://user:secret@Example.TEST/f", "example.test:443"),
        ("http://example.test/f", "example.test:80"),
        ("http://example.test:8080/f", "example.test:8080"),
    ],
)
def test_slot_key_is_host_and_port_only(url: str, key: str) -> None:
    assert slot_key(url) == key
