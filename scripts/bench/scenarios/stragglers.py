"""The stragglers family (8.x): one 32 MiB [8 MiB] file, slowness in several patterns.

Each member is a scenario of its own (``stragglers`` runs them all), on the FaultServer at a
per-connection rate, with one pattern of slowness:

- ``periodic``: every K-th response with a body is slow (a server whose every K-th request
  hits a cold cache); the count restarts before every run, so every tool meets the slow
  requests at the same positions of its own request order;
- ``random``: each response is slow with probability p, drawn from a seeded RNG (seeds 1-3);
- ``connection``: every K-th connection is slow (the phase aligned before every run);
- ``none``: no straggler at all, at the periodic members' rate: what each tool takes
  where the ideal is reachable (its start-up and its tail), the floor under the others.

The ideal is the straggler-free one, size / (N x rate). Targets (issue 22): accel <= 0.7x
axel's wall and <= 1.4x the ideal in every member.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.endpoints import Endpoint, FaultEndpoint
from scripts.bench.scenarios.download import DownloadScenario
from scripts.bench.workspace import Workspace

#: The name that runs every member.
FAMILY = "stragglers"
SEEDS = (1, 2, 3)


class Stragglers(DownloadScenario):
    """One member of the family (subclasses set the pattern)."""

    filename = "stragglers.bin"
    pattern: ClassVar[str]  # "periodic", "random", "connection" or "none"
    every: ClassVar[int] = 0  # periodic / connection: K
    probability: ClassVar[float] = 0.0  # random: p
    slow_factor: ClassVar[float] = 8.0

    def size(self) -> int:
        return 8 * MiB if self.options.quick else 32 * MiB

    def seeds(self) -> Sequence[Optional[int]]:
        return SEEDS if self.pattern == "random" else (None,)

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        rate = self.rate
        assert rate is not None
        factor = self.slow_factor

        def start() -> FaultEndpoint:
            if self.pattern == "connection":
                return FaultEndpoint(
                    [self.data], rate=rate, straggler_every=self.every, straggler_factor=factor
                )
            if self.pattern == "none":
                return FaultEndpoint([self.data], rate=rate)
            if self.pattern == "random":
                return FaultEndpoint(
                    [self.data],
                    rate=rate,
                    slow_request_probability=self.probability,
                    slow_request_factor=factor,
                )
            return FaultEndpoint(
                [self.data], rate=rate, slow_request_every=self.every, slow_request_factor=factor
            )

        return ws.start(start)

    def params(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"family": FAMILY, "pattern": self.label()}
        if self.pattern == "random":
            extra.update(seeds=list(SEEDS), runs=self.runs())
        if self.pattern == "connection":
            extra["straggler_every"] = self.every
        return {**super().params(), **extra}

    def label(self) -> str:
        """The pattern in a few words, for the family's summary."""
        nth = _ordinal(self.every)
        if self.pattern == "none":
            return "no straggler"
        if self.pattern == "periodic":
            return f"every {nth} request {self.slow_factor:g}x slower"
        if self.pattern == "random":
            return f"requests {self.slow_factor:g}x slower with p = {self.probability:.2g}"
        return f"every {nth} connection {self.slow_factor:g}x slower"

    def title(self) -> str:
        assert self.rate is not None
        return (
            f"Stragglers, {self.label()}: {self.size() / MiB:.0f} MiB at "
            f"{_rate(self.rate)} per connection, {self.options.connections} connections"
        )


def _ordinal(k: int) -> str:
    last = k % 10 if k % 100 not in (11, 12, 13) else 0
    return f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(last, 'th') }"


def _rate(rate: int) -> str:
    return f"{rate // MiB} MiB/s" if rate % MiB == 0 else f"{rate / 1e6:g} MB/s"


def _member(
    name: str, number: str, pattern: str, rate: int, factor: float, **kw: Any
) -> type[Stragglers]:
    attrs: dict[str, Any] = {
        "name": name,
        "number": number,
        "pattern": pattern,
        "rate": rate,
        "slow_factor": factor,
        **kw,
    }
    cls = type(name.replace("-", "_"), (Stragglers,), attrs)
    cls.summary = f"32 MiB [8 MiB] at {_rate(rate)} per connection, {cls.label(cls)}"  # type: ignore[arg-type]
    return cls


#: The members, in run order.
MEMBERS: tuple[type[Stragglers], ...] = (
    _member("stragglers-none", "8.0", "none", 3_000_000, 1),
    _member("stragglers-periodic-4", "8.1", "periodic", 3_000_000, 6, every=4),
    _member("stragglers-periodic-3", "8.2", "periodic", 3_000_000, 8, every=3),
    _member("stragglers-random-33", "8.3", "random", 2_000_000, 8, probability=1 / 3),
    _member("stragglers-random-10", "8.4", "random", 3_000_000, 8, probability=0.1),
    _member("stragglers-connection-3", "8.5", "connection", 4 * MiB, 8, every=3),
)
