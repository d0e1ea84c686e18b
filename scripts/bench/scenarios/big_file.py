"""big-file (1): 1 GiB [64 MiB] from nginx, unthrottled: wall, CPU, peak RSS of the child."""

from __future__ import annotations

from scripts.bench.common import GiB, MiB
from scripts.bench.endpoints import Endpoint
from scripts.bench.scenarios.download import DownloadScenario, plain_endpoint
from scripts.bench.workspace import Workspace


class BigFile(DownloadScenario):
    """One big file as fast as loopback allows (``--size-gib`` sets its size)."""

    name = "big-file"
    number = "1"
    summary = "1 GiB [64 MiB] from nginx, unthrottled: wall, CPU and peak RSS"
    filename = "unthrottled.bin"

    def size(self) -> int:
        if self.options.size_gib is not None:
            return int(self.options.size_gib * GiB)
        return 64 * MiB if self.options.quick else GiB

    def make_endpoint(self, ws: Workspace) -> Endpoint:
        return plain_endpoint(ws, self.data)

    def title(self) -> str:
        return f"Unthrottled, {self.size() / MiB:.0f} MiB, {self.options.connections} connections"
