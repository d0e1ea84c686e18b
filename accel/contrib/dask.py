"""Past one machine: spread a list of URLs over a ``dask.distributed`` cluster.

    pip install 'accel[dask]'

    from distributed import Client
    from accel.contrib.dask import download_all

    results = download_all(Client("tcp://scheduler:8786"), urls, "/data/shards", jobs=8)
    failed = [r for r in results if not r.ok]

Each worker runs one :class:`accel.Manager` over its share of the list and sends back, per
URL, where the file is (or why it failed): file contents never pass through the scheduler.
No shared file system is assumed: ``directory`` is a path on each worker's own machine, and
:attr:`Result.worker` says which worker holds a file. Use this when a list is bigger than
one machine's network or disk; for anything less, one :class:`accel.Manager` is simpler.
Limits (``limit_rate``, ``max_per_host``) apply per worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from accel.exceptions import AccelError
from accel.manager import Manager

__all__ = ["Result", "download_all"]

#: One URL's outcome on a worker: (url, path, error type, error message, worker address).
_Row = Tuple[str, Optional[str], Optional[str], Optional[str], str]


@dataclass(frozen=True)
class Result:
    """What became of one URL: ``path`` on ``worker``, or ``error`` (its class in
    ``error_type``, e.g. ``"HTTPError"``)."""

    url: str
    path: Optional[str]
    error: Optional[str]
    error_type: Optional[str]
    worker: str

    @property
    def ok(self) -> bool:
        """Whether the file was downloaded (or already complete)."""
        return self.error is None


def download_all(
    client: Any,
    urls: Iterable[str],
    directory: Union[str, os.PathLike[str]],
    *,
    shards: Optional[int] = None,
    jobs: int = 4,
    **options: Any,
) -> List[Result]:
    """Download every URL on the workers of ``client`` (a ``distributed.Client``).

    The list is cut into ``shards`` parts (default: one per worker), each downloaded by one
    task running ``accel.Manager(jobs=jobs, directory=directory, **options)``. Returns one
    :class:`Result` per URL, in the order given; a failure is a result, not an exception.
    """
    todo = list(urls)
    if not todo:
        return []
    if shards is None:
        shards = max(1, len(client.scheduler_info().get("workers", {})))
    parts = [todo[i::shards] for i in range(min(shards, len(todo)))]
    futures = client.map(
        _download_shard,
        parts,
        directory=os.fspath(directory),
        jobs=jobs,
        options=options,
        pure=False,
    )
    by_url: Dict[str, List[Result]] = {}
    for rows in client.gather(futures):
        for url, path, error_type, error, worker in rows:
            by_url.setdefault(url, []).append(Result(url, path, error, error_type, worker))
    return [by_url[url].pop(0) for url in todo]


def _download_shard(
    urls: Sequence[str], directory: str, jobs: int, options: Dict[str, Any]
) -> List[_Row]:
    """Run on a worker: download ``urls`` with one Manager; report each outcome."""
    worker = _worker_address()
    rows: List[_Row] = []
    with Manager(jobs=jobs, directory=directory, **options) as manager:
        started = []
        for url in urls:
            try:
                started.append(manager.add(url))
            except AccelError as exc:
                rows.append((url, None, type(exc).__name__, str(exc), worker))
        for download in manager.as_completed():
            error = download.exception()
            if error is None:
                rows.append((download.url, os.fspath(download.result()), None, None, worker))
            else:
                rows.append((download.url, None, type(error).__name__, str(error), worker))
    return rows


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not on a dask worker (called directly)
        return "local"
