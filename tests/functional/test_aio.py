"""asyncio over the same engine (accel.aio): adownload and AsyncManager against the fault
server on loopback; cancelling the awaiting task cancels the download and keeps its data."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import accel
from accel import Options
from tests.helpers import KiB, MiB, fast_options, fast_retry, sha256
from tests.servers import FaultServer, make_data


def opts(**kw: Any) -> Options:
    return fast_options(fast_retry(2), **kw)


def test_adownload_returns_the_path_without_blocking_the_loop(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(2 * MiB + 7, seed=1)
    server.add_file("/a.bin", data)
    server.faults.rate = 4 * MiB
    ticks: List[float] = []

    async def main() -> Path:
        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        try:
            return await accel.adownload(server.url("/a.bin"), tmp_path / "a.bin", options=opts())
        finally:
            ticker.cancel()

    path = asyncio.run(main())
    assert path == tmp_path / "a.bin" and sha256(path) == sha256(data)
    assert len(ticks) >= 10  # the loop kept running while the download did
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5


def test_adownload_raises_accels_errors(server: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(accel.HTTPError, match="404"):
        asyncio.run(accel.adownload(server.url("/missing.bin"), tmp_path / "m", options=opts()))


def test_cancelling_the_task_cancels_the_download_and_a_new_one_resumes(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(4 * MiB, seed=2)
    server.add_file("/c.bin", data)
    server.faults.rate = 512 * KiB
    out = tmp_path / "c.bin"

    async def main() -> None:
        task = asyncio.ensure_future(accel.adownload(server.url("/c.bin"), out, options=opts()))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not out.exists()
    assert Path(f"{out}.part.json").exists()  # the state was saved before the task ended
    assert not [t for t in threading.enumerate() if t.name == "accel-download"]
    first = server.bytes_sent_for("/c.bin")
    assert 0 < first < len(data)
    server.faults.rate = None
    server.reset_counters()
    path = asyncio.run(accel.adownload(server.url("/c.bin"), out, options=opts()))
    assert sha256(path) == sha256(data)
    assert server.bytes_sent_for("/c.bin") < len(data) - first // 2  # resumed, not refetched


def test_async_manager_yields_each_download_once_as_it_ends(
    server: FaultServer, tmp_path: Path
) -> None:
    datas = [make_data(300 * KiB + i, seed=10 + i) for i in range(5)]
    for i, d in enumerate(datas):
        server.add_file(f"/m{i}.bin", d)
    server.add_file("/late.bin", datas[0])

    async def main() -> List[accel.AsyncDownload]:
        seen: List[accel.AsyncDownload] = []
        async with accel.AsyncManager(jobs=2, directory=tmp_path, options=opts()) as m:
            first = m.add(server.url("/m0.bin"))
            for i in range(1, 5):
                m.add(server.url(f"/m{i}.bin"))
            m.add(server.url("/missing.bin"))
            assert await first == tmp_path / "m0.bin"
            async for done in m.as_completed():
                if not seen:
                    m.add(server.url("/late.bin"))  # added while iterating: yielded too
                seen.append(done)
        return seen

    seen = asyncio.run(main())
    assert sorted(d.url.rsplit("/", 1)[1] for d in seen) == sorted(
        ["late.bin", "missing.bin", *(f"m{i}.bin" for i in range(5))]
    )
    assert len({id(d) for d in seen}) == len(seen) == 7
    failed = [d for d in seen if d.download.exception() is not None]
    assert [d.url.rsplit("/", 1)[1] for d in failed] == ["missing.bin"]
    for i, data in enumerate(datas):
        assert sha256(tmp_path / f"m{i}.bin") == sha256(data)


def test_an_exception_in_the_block_cancels_every_download_and_keeps_state(
    server: FaultServer, tmp_path: Path
) -> None:
    datas = [make_data(2 * MiB, seed=30 + i) for i in range(3)]
    for i, d in enumerate(datas):
        server.add_file(f"/x{i}.bin", d)
    server.faults.rate = 256 * KiB

    class Boom(Exception):
        pass

    async def main() -> List[accel.AsyncDownload]:
        handles: List[accel.AsyncDownload] = []
        with pytest.raises(Boom):
            async with accel.AsyncManager(jobs=2, directory=tmp_path, options=opts()) as m:
                handles = [m.add(server.url(f"/x{i}.bin")) for i in range(3)]
                await asyncio.sleep(0.8)
                raise Boom
        return handles

    handles = asyncio.run(main())
    assert all(h.done for h in handles)
    assert all(isinstance(h.download.exception(), accel.CancelledError) for h in handles)
    assert (tmp_path / "x0.bin.part.json").exists()  # started ones saved what they had
    assert not any((tmp_path / f"x{i}.bin").exists() for i in range(3))
