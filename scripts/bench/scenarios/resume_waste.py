"""resume-waste (4): the throttled file, SIGINT at ~50 %, run again; bytes re-fetched."""

from __future__ import annotations

from scripts.bench.common import MiB
from scripts.bench.scenarios.download import RATE
from scripts.bench.scenarios.throttled import Throttled


class ResumeWaste(Throttled):
    """How many bytes the server sent across both runs beyond the file size (from nginx's
    access log, or the FaultServer's byte counter)."""

    name = "resume-waste"
    number = "4"
    kind = "resume"
    summary = "the throttled file, SIGINT at ~50 %, then again: bytes sent beyond the size"
    resume = True

    def title(self) -> str:
        return (
            f"Resume waste: {self.size() / MiB:.0f} MiB throttled to {RATE // MiB} MiB/s per "
            "connection, SIGINT at ~50 %, then run again"
        )
