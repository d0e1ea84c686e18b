"""A freshly published file from a real lighttpd (issue 12, #4): weak validators never go
into ``If-Range`` and the download completes without a restart, whether lighttpd sends an
ETag or only a Last-Modified that may be ahead of its clock."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List

import pytest

import accel
from tests.helpers import MiB, fast_options, fast_retry, sha256, wait_until
from tests.servers import Lighttpd, lighttpd_binary, make_data


def downloader(url: str, out: Path, events: List[accel.Event]) -> accel.Downloader:
    options = fast_options(fast_retry(4), connect_timeout=5.0)
    return accel.Downloader(url, out, options=options, on_event=events.append)


def restarted(events: List[accel.Event]) -> List[accel.Restarted]:
    return [e for e in events if isinstance(e, accel.Restarted)]


@pytest.mark.parametrize("etags", [True, False], ids=["etag", "last_modified_only"])
@pytest.mark.parametrize("mtime", ["now", "ahead"])
def test_lighttpd_freshly_published_file(tmp_path: Path, etags: bool, mtime: str) -> None:
    lighttpd_binary()
    root, work = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    data = make_data(2 * MiB + 3, seed=124)
    published = root / "fresh.bin"
    published.write_bytes(data)
    if mtime == "ahead":  # an mtime ahead of the server's clock
        ahead = time.time() + 3600
        os.utime(published, (ahead, ahead))
    server = Lighttpd(root, work, etags=etags, kbytes_per_second=1024)
    try:
        events: List[accel.Event] = []
        path = downloader(server.url("fresh.bin"), tmp_path / "out.bin", events).run()
        assert sha256(path) == sha256(data)
        assert not restarted(events)
        wait_until(lambda: len(server.if_ranges()) >= 2, 5, "the access log")
        for value in server.if_ranges():
            # A strong ETag, or nothing: this Last-Modified is not a strong validator.
            assert value == "-" or value.startswith('"'), value
    finally:
        server.stop()
