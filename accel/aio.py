"""asyncio on the same engine: :func:`adownload` and :class:`AsyncManager`.

Downloads run on accel's own threads exactly as with :class:`~accel.Downloader` and
:class:`~accel.Manager`; asyncio code awaits them, and the event loop is never blocked.
Cancelling the task that awaits a download cancels the download: what it recorded is kept,
and a new download of the same URL and file resumes it.

>>> async def main() -> None:  # doctest: +SKIP
...     path = await accel.adownload("https://example.org/a.iso", connections=8)
...     async with accel.AsyncManager(jobs=4, directory="d") as m:
...         first = m.add("https://example.org/b.iso")
...         m.add("https://example.org/c.iso")
...         async for done in m.as_completed():
...             print(done.url, await done)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, AsyncIterator, Generator, Optional, Set, Union

from accel.downloader import URL, Downloader
from accel.manager import Manager

__all__ = ["AsyncDownload", "AsyncManager", "adownload"]

PathLike = Union[str, "os.PathLike[str]", None]


async def adownload(url: URL, output: PathLike = None, **options: Any) -> Path:
    """Download ``url`` (options as for :class:`~accel.Downloader`); return the file's path.

    Raises what :meth:`accel.Downloader.run` raises. Cancelling the awaiting task cancels
    the download and keeps its data for a resume.
    """
    download = Downloader(url, output, **options)
    download.start()
    return await _result(download)


async def _result(download: Downloader) -> Path:
    """Await ``download``'s end on the running loop; cancel it if the awaiting task is."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def wake(_: Downloader) -> None:  # on the download's thread, or here if it already ended
        try:
            loop.call_soon_threadsafe(_set, ended)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    download.add_done_callback(wake)
    try:
        await asyncio.shield(ended)
    except asyncio.CancelledError:
        download.cancel()
        await asyncio.wait({ended})  # it ends soon, its state saved
        raise
    return download.result(0)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncDownload:
    """A download an :class:`AsyncManager` runs: ``await`` it for the file's path."""

    def __init__(self, download: Downloader) -> None:
        #: The download itself (progress(), events, the same object a Manager returns).
        self.download = download

    @property
    def url(self) -> str:
        """The URL being downloaded."""
        return self.download.url

    @property
    def done(self) -> bool:
        """Whether the download ended."""
        return self.download.done

    def cancel(self) -> None:
        """Cancel the download (any thread); its state is saved for a resume."""
        self.download.cancel()

    def __await__(self) -> Generator[Any, None, Path]:
        return _result(self.download).__await__()

    def __repr__(self) -> str:
        return f"<AsyncDownload {self.download!r}>"


class AsyncManager:
    """Many downloads, ``jobs`` at a time, for asyncio code: a :class:`~accel.Manager`.

    Arguments are the Manager's. :meth:`add` queues a download and returns an
    :class:`AsyncDownload`; :meth:`as_completed` yields them as they end. Leaving an
    ``async with`` block waits for every download without blocking the loop; an exception
    in the block (a cancelled task too) cancels them, keeping their data.
    """

    def __init__(self, jobs: int = 4, **settings: Any) -> None:
        settings.pop("track", None)  # the ended downloads are followed here
        self._manager = Manager(jobs, track=False, **settings)
        self._pending: Set[AsyncDownload] = set()
        self._ended: Optional[asyncio.Queue[AsyncDownload]] = None

    @property
    def manager(self) -> Manager:
        """The Manager underneath (progress(), options)."""
        return self._manager

    def add(self, url: URL, output: PathLike = None, **settings: Any) -> AsyncDownload:
        """Queue a download (arguments as :meth:`accel.Manager.add`); call it from the loop."""
        loop = asyncio.get_running_loop()
        if self._ended is None:
            self._ended = asyncio.Queue()
        ended = self._ended
        handle = AsyncDownload(self._manager.add(url, output, **settings))
        self._pending.add(handle)

        def wake(_: Downloader) -> None:
            try:
                loop.call_soon_threadsafe(ended.put_nowait, handle)
            except RuntimeError:  # the loop is closed
                pass

        handle.download.add_done_callback(wake)
        return handle

    async def as_completed(self) -> AsyncIterator[AsyncDownload]:
        """Yield downloads as they end, until none is left (those added meanwhile too).

        Each ended download is yielded once, by whichever iterator takes it first.
        """
        while self._pending:
            assert self._ended is not None
            handle = await self._ended.get()
            if handle in self._pending:
                self._pending.discard(handle)
                yield handle

    def cancel(self) -> None:
        """Cancel every download, running or queued; their state is saved."""
        self._manager.cancel()

    async def aclose(self) -> None:
        """No more downloads; wait (without blocking the loop) until every one ended."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._manager.close)

    async def __aenter__(self) -> AsyncManager:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.cancel()
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncManager {self._manager!r}>"
