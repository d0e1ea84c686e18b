"""One measured run (:class:`Record`) and its JSON form (NaN is stored as null)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Rerun:
    """accel's second run on a directory it has already completed (many-files)."""

    ok: bool
    error: str
    wall: float
    cpu: float
    body_bytes: Optional[int]
    requests: Optional[int]
    wire_bytes: Optional[int]  # responses with headers ($bytes_sent), when logged
    request_bytes: Optional[int]  # requests with headers ($request_length), when logged


@dataclass
class Record:
    """One run of one tool in one scenario."""

    ok: bool
    error: str = ""
    wall: float = math.nan
    cpu: float = math.nan
    rss: float = math.nan
    server_bytes: Optional[int] = None
    requests: Optional[int] = None
    seed: Optional[int] = None  # per-request stragglers: the seed of the slow draws
    slow_requests: Optional[int] = None  # per-request stragglers: responses drawn slow
    stop_fraction: Optional[float] = None  # resume: share of the file sent before SIGINT
    first_wall: Optional[float] = None  # resume: wall seconds until the interrupted run ended
    rerun: Optional[Rerun] = None  # many files: accel run again on the finished directory
    files_done: Optional[int] = None  # huge list: finished outputs at the end of the run
    first_file: Optional[float] = None  # huge list: seconds until the first output existed
    rss_by_progress: dict[int, float] = field(default_factory=dict)  # % of list -> RSS MiB
    auto_connections: Optional[int] = None  # accel -n auto: the count it ended with


_FLOATS = ("wall", "cpu", "rss")


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _none_to_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def record_to_json(record: Record) -> dict[str, Any]:
    """A JSON-ready dict: NaN becomes null, the progress keys become strings."""
    data = dataclasses.asdict(record)
    for key in _FLOATS:
        data[key] = _nan_to_none(data[key])
    if data["rerun"] is not None:
        for key in ("wall", "cpu"):
            data["rerun"][key] = _nan_to_none(data["rerun"][key])
    data["rss_by_progress"] = {str(k): v for k, v in record.rss_by_progress.items()}
    return data


def record_from_json(data: dict[str, Any]) -> Record:
    """The inverse of :func:`record_to_json`; unknown keys (a newer file) are ignored."""
    known = {f.name for f in dataclasses.fields(Record)}
    values = {k: v for k, v in data.items() if k in known}
    for key in _FLOATS:
        values[key] = _none_to_nan(values.get(key))
    rerun = values.get("rerun")
    if rerun is not None:
        rerun_known = {f.name for f in dataclasses.fields(Rerun)}
        fields = {k: v for k, v in rerun.items() if k in rerun_known}
        fields["wall"] = _none_to_nan(fields.get("wall"))
        fields["cpu"] = _none_to_nan(fields.get("cpu"))
        values["rerun"] = Rerun(**fields)
    values["rss_by_progress"] = {
        int(k): float(v) for k, v in (values.get("rss_by_progress") or {}).items()
    }
    return Record(**values)
