"""The scenario registry: one scenario per module, by name (the old numbers are aliases)."""

from __future__ import annotations

from typing import Sequence

from scripts.bench.scenarios.base import Scenario
from scripts.bench.scenarios.big_file import BigFile
from scripts.bench.scenarios.huge_list import HugeList
from scripts.bench.scenarios.many_files import ManyFiles
from scripts.bench.scenarios.resume_waste import ResumeWaste
from scripts.bench.scenarios.straggler_connection import StragglerConnection
from scripts.bench.scenarios.straggler_request import StragglerRequest
from scripts.bench.scenarios.stragglers import FAMILY, MEMBERS
from scripts.bench.scenarios.throttled import Throttled

__all__ = ["REGISTRY", "Scenario", "resolve"]

#: Every scenario by name, in the order of the old numbers (the default run order).
REGISTRY: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        BigFile,
        Throttled,
        StragglerConnection,
        ResumeWaste,
        ManyFiles,
        HugeList,
        StragglerRequest,
        *MEMBERS,
    )
}
#: Names that stand for several scenarios.
FAMILIES = {FAMILY: [cls.name for cls in MEMBERS]}
ALIASES = {cls.number: name for name, cls in REGISTRY.items()}


def resolve(keys: Sequence[str]) -> list[str]:
    """Scenario names for ``keys`` (names or old numbers), in the given order, no repeats.

    A family's name (``stragglers``) stands for all its members. Raises ValueError naming
    the first unknown key.
    """
    names: list[str] = []
    for key in keys:
        for name in FAMILIES.get(key, [ALIASES.get(key, key)]):
            if name not in REGISTRY:
                raise ValueError(key)
            if name not in names:
                names.append(name)
    return names
