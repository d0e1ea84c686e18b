"""throttled (2): 128 MiB [16 MiB] at 4 MiB/s per connection: wall against the ideal."""

from __future__ import annotations

from scripts.bench.common import MiB
from scripts.bench.endpoints import Endpoint
from scripts.bench.scenarios.download import RATE, DownloadScenario, throttled_endpoint
from scripts.bench.workspace import Workspace


class Throttled(DownloadScenario):
    """nginx ``limit_rate 4m`` (or the FaultServer): ideal = size / (N x 4 MiB/s)."""

    name = "throttled"
    number = "2"
    summary = "128 MiB [16 MiB] at 4 MiB/s per connection: wall against size / (N x rate)"
    filename = "throttled.bin"
    rate = RATE

    def size(self) -> int:
        return 16 * MiB if self.options.quick else 128 * MiB

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        return throttled_endpoint(ws, self.data)

    def title(self) -> str:
        return (
            f"Throttled to {RATE // MiB} MiB/s per connection, {self.size() / MiB:.0f} MiB, "
            f"{self.options.connections} connections"
        )
