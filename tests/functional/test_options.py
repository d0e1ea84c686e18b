"""Text sizes and limits given as :class:`accel.Options` settings, end to end against the
fault server (the configuration path itself is in tests/unit/test_options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import accel
from tests.helpers import KiB, MiB, listing, one_line_message, sha256
from tests.servers import FaultServer, make_data

# -- end to end ------------------------------------------------------------------------------


def test_text_sizes_end_to_end(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(1 * MiB + 17, seed=41)
    server.add_file("/f.bin", data)
    d = accel.Downloader(
        server.url("/f.bin"), tmp_path / "o.bin", limit_rate="2M", max_filesize="10M"
    )
    assert d.options.limit_rate.rate == 2 * MiB  # type: ignore[union-attr]
    assert d.options.max_filesize == 10 * MiB
    path = d.run()
    assert path == tmp_path / "o.bin"
    assert sha256(path) == sha256(data)
    assert listing(tmp_path) == ["o.bin"]


def test_max_filesize_text_refuses_a_larger_file(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(64 * KiB, seed=42)
    server.add_file("/f.bin", data)
    with pytest.raises(accel.FileTooLargeError) as info:
        accel.Downloader(server.url("/f.bin"), tmp_path / "o.bin", max_filesize="1K").run()
    one_line_message(info.value)
    assert not (tmp_path / "o.bin").exists()
    assert not (tmp_path / "o.bin.part").exists()
    assert not (tmp_path / "o.bin.part.json").exists()
    # The limit is inclusive: exactly the file's size is allowed.
    path = accel.Downloader(server.url("/f.bin"), tmp_path / "o.bin", max_filesize="64K").run()
    assert sha256(path) == sha256(data)
