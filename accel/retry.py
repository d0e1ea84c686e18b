"""Retrying, as values: the policy (how patient) and the state of one retried operation.

:class:`RetryPolicy` is configuration. :class:`RetryState` is an immutable record of one
operation's consecutive failures, in the spirit of urllib3's ``Retry.increment()``: each
failure returns a new state with the delay to wait and the history so far, and tells when to
give up. The probe and every worker use it the same way; the waiting itself happens on the
caller's cancel event, so a cancel is never stuck behind a sleep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from accel._util.remote import BadResponse, Retryable
from accel.exceptions import AccelError, HTTPError, NetworkError, RemoteProtocolError, UsageError


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. Immutable; share it freely.

    ``attempts`` counts consecutive failures of one range without progress; any progress
    resets the count. Delays grow as ``backoff * 2**n`` up to ``backoff_max``, with up to
    ``jitter`` (a fraction) of random spread; a server's ``Retry-After`` wins, up to
    ``retry_after_cap`` seconds.
    """

    attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 20.0
    jitter: float = 0.5
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 0:
            raise UsageError("attempts must be a whole number >= 0")
        if self.backoff < 0 or self.backoff_max < 0 or not 0 <= self.jitter <= 1:
            raise UsageError("backoff values must be >= 0 and jitter within [0, 1]")

    def delay(
        self,
        failures: int,
        retry_after: Optional[float] = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before attempt number ``failures + 1``."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.retry_after_cap)
        base = min(self.backoff_max, self.backoff * (2 ** max(0, failures - 1)))
        return float(base * (1 - self.jitter * rng()))


@dataclass(frozen=True)
class Failure:
    """One failed attempt: why, the HTTP status if any, and the wait that followed."""

    reason: str
    status: Optional[int]
    delay: float


@dataclass(frozen=True)
class RetryState:
    """Consecutive failures of one operation under ``policy``; immutable.

    >>> state = RetryState(RetryPolicy(attempts=1, jitter=0))
    >>> state = state.increment(Retryable("reset"))
    >>> state.failures, state.delay, state.exhausted()
    (1, 0.5, False)
    >>> state.increment(Retryable("reset")).exhausted()
    True
    """

    policy: RetryPolicy
    history: Tuple[Failure, ...] = ()

    @property
    def failures(self) -> int:
        """Consecutive failures so far."""
        return len(self.history)

    @property
    def delay(self) -> float:
        """Seconds to wait after the latest failure (0 before any)."""
        return self.history[-1].delay if self.history else 0.0

    def increment(self, exc: Retryable) -> RetryState:
        """The state after ``exc``: one more failure, with its delay."""
        delay = self.policy.delay(self.failures + 1, exc.retry_after)
        return RetryState(self.policy, (*self.history, Failure(str(exc), exc.status, delay)))

    def exhausted(self, limit: Optional[int] = None) -> bool:
        """Whether the failures exceed the policy's attempts (or a stricter ``limit``)."""
        allowed = self.policy.attempts if limit is None else min(limit, self.policy.attempts)
        return self.failures > allowed

    def reset(self) -> RetryState:
        """A fresh state (progress was made)."""
        return RetryState(self.policy)

    def give_up(self, exc: Retryable, where: str) -> AccelError:
        """The error to raise when ``exc`` is still happening after these retries."""
        retries = max(0, self.failures - 1)
        message = f"{where}: {exc} (gave up after {retries} retries)"
        if exc.status is not None:
            return HTTPError(message, status=exc.status, url=where)
        if isinstance(exc, BadResponse):
            return RemoteProtocolError(message)
        return NetworkError(message)
