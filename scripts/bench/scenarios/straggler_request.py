"""straggler-request (7): 32 MiB [8 MiB] at 2 MB/s, each request 8x slower with p = 1/3.

The slowness is drawn per request from a seeded RNG (as when a CDN routes some requests
through a congested edge); ``--runs`` rounds with each of the seeds 1, 2 and 3, every tool
meeting the same draws.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from scripts.bench.common import MiB
from scripts.bench.endpoints import Endpoint, FaultEndpoint
from scripts.bench.scenarios.download import DownloadScenario
from scripts.bench.workspace import Workspace

PER_REQUEST_RATE = 2_000_000  # 2 MB/s per connection (the figures)
SLOW_REQUEST_PROBABILITY = 1 / 3  # one request in three ...
SLOW_REQUEST_FACTOR = 8  # ... is 8x slower
SLOW_REQUEST_SEEDS = (1, 2, 3)


class StragglerRequest(DownloadScenario):
    """Wall against axel and against the straggler-free ideal size / (N x 2 MB/s)."""

    name = "straggler-request"
    number = "7"
    summary = "32 MiB [8 MiB] at 2 MB/s per connection, 1 request in 3 8x slower, seeds 1-3"
    filename = "per-request.bin"
    rate = PER_REQUEST_RATE
    slow_factor = SLOW_REQUEST_FACTOR

    def size(self) -> int:
        return 8 * MiB if self.options.quick else 32 * MiB

    def seeds(self) -> Sequence[Optional[int]]:
        return SLOW_REQUEST_SEEDS

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        return ws.start(
            lambda: FaultEndpoint(
                [self.data],
                rate=PER_REQUEST_RATE,
                slow_request_probability=SLOW_REQUEST_PROBABILITY,
                slow_request_factor=SLOW_REQUEST_FACTOR,
            )
        )

    def params(self) -> dict[str, Any]:
        return {**super().params(), "seeds": list(SLOW_REQUEST_SEEDS), "runs": self.runs()}

    def title(self) -> str:
        return (
            f"Per-request stragglers: {self.size() / MiB:.0f} MiB at "
            f"{PER_REQUEST_RATE / 1e6:g} MB/s per connection, one request in "
            f"{round(1 / SLOW_REQUEST_PROBABILITY)} served {SLOW_REQUEST_FACTOR}x slower "
            f"(seeds {', '.join(map(str, SLOW_REQUEST_SEEDS))}), "
            f"{self.options.connections} connections"
        )
