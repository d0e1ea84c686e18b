"""straggler-connection (3): 32 MiB [8 MiB] at 4 MiB/s, every third connection 8x slower."""

from __future__ import annotations

from typing import Any

from scripts.bench.common import MiB
from scripts.bench.endpoints import Endpoint, FaultEndpoint
from scripts.bench.scenarios.download import RATE, DownloadScenario
from scripts.bench.workspace import Workspace

STRAGGLER_EVERY = 3
STRAGGLER_FACTOR = 8


class StragglerConnection(DownloadScenario):
    """The FaultServer; the straggler phase is aligned before every run, so every tool meets
    the slow connections at the same positions."""

    name = "straggler-connection"
    number = "3"
    summary = "32 MiB [8 MiB] at 4 MiB/s per connection, every 3rd connection 8x slower"
    filename = "straggler.bin"
    rate = RATE
    slow_factor = STRAGGLER_FACTOR

    def size(self) -> int:
        return 8 * MiB if self.options.quick else 32 * MiB

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        return ws.start(
            lambda: FaultEndpoint(
                [self.data],
                rate=RATE,
                straggler_every=STRAGGLER_EVERY,
                straggler_factor=STRAGGLER_FACTOR,
            )
        )

    def params(self) -> dict[str, Any]:
        return {**super().params(), "straggler_every": STRAGGLER_EVERY}

    def title(self) -> str:
        return (
            f"Straggler: {self.size() / MiB:.0f} MiB at {RATE // MiB} MiB/s per connection, "
            f"every {STRAGGLER_EVERY}rd connection {STRAGGLER_FACTOR}x slower, "
            f"{self.options.connections} connections"
        )
