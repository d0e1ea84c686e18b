"""``connections="auto"``: the pure controller on an injected clock (simulated servers: a
per-connection throttle, a shared bottleneck, 429/503, answer how many bytes a count of
connections brings in a tick). Whole downloads from the fault server are in
tests/functional/test_autoscale.py."""

from __future__ import annotations

from typing import Callable, List

import pytest

import accel
from accel._engine.autoscale import BURST_PERIOD, INTERVAL, RETRY_AFTER, Autoscaler
from accel._engine.scheduler import THROTTLE_PERIOD
from accel.options import AUTO_START
from tests.servers import FakeClock

MiB = 1024 * 1024
TICK = 0.05


class Sim:
    """An autoscaler driven every ``TICK`` by a server model: ``rate(count)`` bytes/s.

    The simulation is the owner of the count (the transfer's part): it starts with
    ``AUTO_START`` (at most ``cap``) and runs whatever the autoscaler answers.
    """

    def __init__(self, rate: Callable[[int], float], cap: int = 16, **kw: float) -> None:
        self.clock = FakeClock()
        self.rate = rate
        self.scaler = Autoscaler(cap, clock=self.clock, **kw)
        self.written = 0
        self.count = min(AUTO_START, cap)
        self.counts: List[int] = [self.count]

    def run(self, seconds: float, throttled_at: float = -1.0) -> int:
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.now += TICK
            self.written += int(self.rate(self.count) * TICK)
            hit = throttled_at >= 0 and abs(self.clock.now - throttled_at) < TICK / 2
            until = self.clock.now + THROTTLE_PERIOD if hit else None  # the scheduler's hold
            self.count = self.scaler.update(self.count, self.written, until)
            self.counts.append(self.count)
        return self.count


def per_connection(rate: float) -> Callable[[int], float]:
    """A server throttling each connection to ``rate``: more connections, more speed."""
    return lambda n: n * rate


def bottleneck(total: float, single: float) -> Callable[[int], float]:
    """A link (or a CPU) that tops out at ``total``; one connection alone gets ``single``."""
    return lambda n: min(total, n * single)


def test_starts_with_a_few_connections() -> None:
    assert accel.Options(connections="auto").initial_connections == AUTO_START == 4
    assert accel.Options(connections="auto", max_connections=2).initial_connections == 2
    scaler = Autoscaler(clock=FakeClock())
    assert scaler.update(AUTO_START, 0) == AUTO_START  # the first step has only begun


def test_grows_to_the_cap_on_a_per_connection_throttle() -> None:
    sim = Sim(per_connection(2 * MiB))
    assert sim.run(3.0) == 16
    assert sim.counts == sorted(sim.counts), "it only ever grows here"
    # Slow start: twice as many each step, so the cap comes within a few steps.
    assert sorted(set(sim.counts)) == [4, 8, 16]
    assert sim.counts.index(16) * TICK <= 3 * INTERVAL + 0.01
    assert sim.run(10.0) == 16  # and stays there


def test_never_above_the_cap() -> None:
    sim = Sim(per_connection(MiB), cap=7)
    sim.run(5.0)
    assert max(sim.counts) == 7 and sim.count == 7
    assert Sim(per_connection(MiB), cap=1).run(3.0) == 1


def test_undoes_an_addition_that_does_not_pay() -> None:
    # The link is full with 4: 8 bring nothing more, so it goes back to 4 and holds.
    sim = Sim(bottleneck(400 * MiB, 100 * MiB))
    sim.run(1.5)
    assert max(sim.counts) == 8
    assert sim.count == 4 and not sim.scaler.growing


def test_stops_where_the_gain_ends() -> None:
    # A link of 10 connections' worth: 16 do not pay, so it goes back to 8; then one more
    # at a time while that pays.
    sim = Sim(bottleneck(10 * MiB, MiB))
    sim.run(1.5)
    assert sim.count == 8 and max(sim.counts) == 16
    sim.run(RETRY_AFTER + 4 * INTERVAL)
    assert sim.count == 10, sim.counts
    assert max(sim.counts[-int(RETRY_AFTER / TICK) :]) <= 11


def test_a_small_gain_is_not_enough() -> None:
    # Going from 4 to 8 brings 30 %: less than half of the 100 % a throttle would give.
    sim = Sim(lambda n: 100 * MiB * (1.0 if n <= 4 else 1.3))
    sim.run(1.5)
    assert sim.count == 4


def test_tries_one_more_after_a_while_and_keeps_it_when_it_pays() -> None:
    limit = [4]  # the link widens later
    sim = Sim(lambda n: min(limit[0], n) * MiB)
    sim.run(1.5)
    assert sim.count == 4
    sim.run(RETRY_AFTER - 1.0)
    assert max(sim.counts[-10:]) == 4  # not tried again yet
    limit[0] = 8
    seen = len(sim.counts)
    sim.run(RETRY_AFTER + 10 * INTERVAL)
    later = sim.counts[seen:]
    steps = [b - a for a, b in zip(later, later[1:]) if b != a]
    assert steps[:5] == [1, 1, 1, 1, 1], later  # one more, which paid, and on one at a time
    assert max(later) == 9  # ...until the one that did not pay, which is undone
    assert later[later.index(9) :].count(8) > 0 and sim.count in (8, 9)


def test_a_retry_that_does_not_pay_is_undone_again() -> None:
    sim = Sim(bottleneck(4 * MiB, MiB))
    sim.run(1.5)
    seen = len(sim.counts)
    sim.run(3 * (RETRY_AFTER + 1.0))
    later = sim.counts[seen:]
    assert max(later) == 5 and min(later) == 4  # a try of one more, undone
    assert sim.count == 4


def test_a_429_takes_one_away_and_holds() -> None:
    sim = Sim(per_connection(MiB))
    sim.run(1.5)
    before = sim.count
    assert before > AUTO_START
    sim.run(1.0, throttled_at=sim.clock.now + TICK)
    assert sim.count == before - 1
    sim.run(THROTTLE_PERIOD - 2.0)
    assert sim.count == before - 1  # no growth while the server is overloaded
    seen = len(sim.counts)
    sim.run(3 * INTERVAL + 1.0)
    assert max(sim.counts[seen:]) == before  # then it tries one more again


def test_throttled_never_goes_below_one() -> None:
    clock = FakeClock()
    scaler = Autoscaler(4, clock=clock)
    count = 1
    for _ in range(3):
        clock.now += TICK
        count = scaler.update(count, 0, clock.now + THROTTLE_PERIOD)
        assert count == 1


def test_no_data_is_no_reason_to_grow() -> None:
    # A stalled server (or one between retries): nothing arrives, the count stays.
    sim = Sim(lambda n: 0.0)
    sim.run(3.0)
    assert max(sim.counts) <= 2 * AUTO_START and sim.count == AUTO_START


def test_judged_only_after_the_step_settles() -> None:
    clock = FakeClock()
    scaler = Autoscaler(clock=clock)
    written = 0
    for _ in range(int(INTERVAL / TICK) - 1):
        clock.now += TICK
        written += MiB
        assert scaler.update(AUTO_START, written) == AUTO_START  # the first step still runs
    clock.now += 2 * TICK
    assert scaler.update(AUTO_START, written + 2 * MiB) == 2 * AUTO_START


def whole_seconds(rate: float, start: float, seconds: float, cap: int = 16) -> List[int]:
    """The counts of an autoscaler against a server that sends each connection ``rate``
    bytes at once every whole second (nginx's limit_rate), a new connection's first second
    at once when it starts; ``start`` is where in a second the download starts."""
    clock = FakeClock()
    clock.now = 100.0 + start
    scaler = Autoscaler(cap, clock=clock)
    count, written, counts = AUTO_START, int(AUTO_START * rate), [AUTO_START]
    end = clock.now + seconds
    while clock.now < end:
        before = clock.now
        clock.now += TICK
        if int(clock.now) > int(before):  # a whole second: every connection's next burst
            written += int(count * rate)
        new = scaler.update(count, written)
        if new > count:
            written += int((new - count) * rate)  # the new ones' first second
        count = new
        counts.append(count)
    return counts


@pytest.mark.parametrize("start", [0.0, 0.3, 0.55, 0.8])
def test_a_server_that_sends_in_whole_seconds_is_measured_over_whole_seconds(
    start: float,
) -> None:
    # Over 0.3 s a connection shows all of its second's worth or nothing: only a whole
    # second tells its rate. Wherever in a second the download starts, it grows to the cap.
    counts = whole_seconds(4 * MiB, start, 4.0)
    assert sorted(set(counts)) == [4, 8, 16], counts
    assert counts == sorted(counts)
    assert counts.index(16) * TICK <= 2 * INTERVAL + 2 * TICK  # doubling on, step by step


def test_after_the_slow_start_bursts_are_judged_over_whole_seconds() -> None:
    # A link that is full, delivered in bursts: 16 MiB each whole second, however many
    # connections. After a 429 (no slow start any more), one more is tried, over whole
    # seconds found to bring nothing, and undone.
    clock = FakeClock()
    scaler = Autoscaler(clock=clock)
    count = scaler.update(6, 0, throttled_until=clock.now + 1.0)
    written, counts = 0, []
    for _ in range(int((1.0 + RETRY_AFTER + 6.0) / TICK)):
        clock.now += TICK
        if round(clock.now * 100) % 100 == 0:
            written += 16 * MiB
        count = scaler.update(count, written)
        counts.append(count)
    assert max(counts) == 6 and counts[-1] == 5, counts
    tried = counts.index(6)
    assert counts[tried:].index(5) * TICK >= BURST_PERIOD  # judged over a whole second


@pytest.mark.parametrize(("cap", "settle"), [(0, 0.1), (4, 1.0), (4, -0.1)])
def test_bad_settings(cap: int, settle: float) -> None:
    with pytest.raises(ValueError):
        Autoscaler(cap, settle=settle, clock=FakeClock())
