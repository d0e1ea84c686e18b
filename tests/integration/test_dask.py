"""accel.contrib.dask on a real distributed.LocalCluster of 2 worker processes (loopback only)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import KiB, sha256
from tests.servers import FaultServer, make_data

distributed = pytest.importorskip("distributed")

from accel.contrib.dask import download_all  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A 2-worker local cluster on 127.0.0.1 (processes: options must survive pickling)."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.slow
def test_download_all_spreads_over_workers(
    client: object, server: FaultServer, tmp_path: Path
) -> None:
    datas = {f"/d{i}.bin": make_data(40 * KiB + i, 70 + i) for i in range(12)}
    for path, data in datas.items():
        server.add_file(path, data)
    urls = [server.url(p) for p in datas] + [server.url("/missing.bin"), "ftp://bad.example/x"]
    results = download_all(client, urls, tmp_path, jobs=3, connections=2, limit_rate="50M")
    assert [r.url for r in results] == urls  # one result per URL, in order
    good, missing, bad = results[:-2], results[-2], results[-1]
    for r, data in zip(good, datas.values()):
        assert r.ok and r.path is not None
        assert sha256(Path(r.path)) == sha256(data)
    assert len({r.worker for r in good}) == 2  # both workers took a share
    assert all(r.worker.startswith("tcp://127.0.0.1:") for r in results)
    assert not missing.ok and missing.error_type == "HTTPError" and "404" in str(missing.error)
    assert not bad.ok and bad.error_type == "UsageError"


def test_download_all_of_nothing(client: object, tmp_path: Path) -> None:
    assert download_all(client, [], tmp_path) == []
