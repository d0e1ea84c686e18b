"""What every scenario provides to the runner (see :mod:`scripts.bench.runner`)."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

from scripts.bench.endpoints import Endpoint
from scripts.bench.options import RunOptions
from scripts.bench.records import Record
from scripts.bench.results import ScenarioResult
from scripts.bench.workspace import Workspace


class Scenario:
    """One benchmark scenario: set up once, then run by the runner tool by tool, round by
    round; :meth:`describe` gives what the report needs besides the records."""

    name: ClassVar[str]  # the CLI name, e.g. "big-file"
    number: ClassVar[str]  # the old number, accepted as an alias
    kind: ClassVar[str]  # how it is rendered: "download", "resume", "many" or "memory"
    summary: ClassVar[str]  # one line for ``list``
    prefers_tmpfs: ClassVar[bool] = False  # --outdir-kind auto: tmpfs when it has room

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.endpoint: Optional[Endpoint] = None
        self.ws: Optional[Workspace] = None

    # -- planning (before anything is written) ---------------------------------------------

    def unavailable(self, have_nginx: bool, why_nginx: str) -> Optional[str]:
        """Why this scenario cannot run here (a missing server), or None."""
        return None

    def choose_tools(self, tools: Sequence[str], notes: list[str]) -> list[str]:
        """The tools taking part; a note for each one left out."""
        return list(tools)

    def runs(self) -> int:
        """Rounds per seed."""
        return self.options.runs

    def seeds(self) -> Sequence[Optional[int]]:
        """The seeds to run ``runs()`` rounds with (None: the scenario has no seed)."""
        return (None,)

    def data_bytes(self) -> int:
        """Bytes of source data it writes under --tmpdir."""
        return 0

    def output_space(self) -> tuple[int, int]:
        """(bytes, inodes) one run's outputs need."""
        return 0, 0

    # -- running ---------------------------------------------------------------------------

    def setup(self, ws: Workspace) -> None:
        """Write the data and start the servers (stopped when ``ws.stack`` closes)."""
        self.ws = ws

    def run_once(self, tool: str, seed: Optional[int]) -> Record:
        """One run of ``tool``, its output checked."""
        raise NotImplementedError

    def title(self) -> str:
        """The report's heading for this scenario (without name and number)."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Figures the report needs (sizes, rates, ideal seconds per tool, ...)."""
        return {}

    def describe(self) -> ScenarioResult:
        """This scenario's result entry, without records yet."""
        params = self.params()
        if self.ws is not None:
            params["outputs"] = self.ws.outputs.description
            params["outdir_kind"] = self.ws.outputs.kind
        server = "" if self.endpoint is None else self.endpoint.description
        return ScenarioResult(
            self.name, self.number, self.kind, self.title(), server, params, records={}
        )

    def workspace(self) -> Workspace:
        """The workspace given to :meth:`setup`."""
        if self.ws is None:
            raise RuntimeError(f"scenario {self.name} was not set up")
        return self.ws
