"""The nginx test helper works: ranges, max_ranges 0, limit_rate and access log parsing."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pytest
import requests

from tests.helpers import MiB
from tests.servers import nginx as nginx_helper
from tests.servers.nginx import Nginx

pytestmark = pytest.mark.nginx

# Fixtures from tests/servers/nginx.py; harmless if conftest.py provides them as well.
nginx_bin = nginx_helper.nginx_bin
nginx_factory = nginx_helper.nginx_factory
nginx = nginx_helper.nginx


def test_range_request_gets_206(nginx: Nginx) -> None:
    data = os.urandom(100_000)
    (nginx.root / "f.bin").write_bytes(data)
    with requests.Session() as session:
        full = session.get(nginx.url("f.bin"), timeout=10)
        part = session.get(nginx.url("f.bin"), headers={"Range": "bytes=100-199"}, timeout=10)
    assert full.status_code == 200
    assert full.content == data
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers.get("ETag")
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert part.headers["ETag"] == full.headers["ETag"]


def test_max_ranges_zero_ignores_range(nginx_factory: Callable[..., Nginx], tmp_path: Path) -> None:
    data = os.urandom(10_000)
    (tmp_path / "f.bin").write_bytes(data)
    server = nginx_factory(tmp_path, max_ranges=0)
    resp = requests.get(server.url("f.bin"), headers={"Range": "bytes=0-9"}, timeout=10)
    assert resp.status_code == 200
    assert resp.content == data
    assert "Content-Range" not in resp.headers


def test_access_log_is_parsed(nginx: Nginx) -> None:
    (nginx.root / "a b.bin").write_bytes(b"x" * 1000)
    with requests.Session() as session:
        assert session.get(nginx.url("a b.bin"), timeout=10).status_code == 200
        resp = session.get(nginx.url("a b.bin"), headers={"Range": "bytes=10-19"}, timeout=10)
        assert resp.status_code == 206
        assert session.get(nginx.url("missing"), timeout=10).status_code == 404
    deadline = time.monotonic() + 5
    while len(nginx.access_log()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = nginx.access_log()
    assert [e["status"] for e in log] == [200, 206, 404]
    assert log[0]["request"] == "GET /a%20b.bin HTTP/1.1"
    assert log[0]["body_bytes_sent"] == 1000
    assert log[0]["range"] is None
    assert log[1]["range"] == "bytes=10-19"
    assert log[1]["body_bytes_sent"] == 10
    assert len({e["connection"] for e in log}) == 1  # one keep-alive connection
    assert nginx.bytes_sent() == 1010 + log[2]["body_bytes_sent"]


@pytest.mark.slow
def test_limit_rate_slows_download(nginx_factory: Callable[..., Nginx], tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(MiB))
    fast = nginx_factory(tmp_path)
    slow = nginx_factory(tmp_path, limit_rate="512k")
    timings = {}
    for name, server in (("fast", fast), ("slow", slow)):
        start = time.monotonic()
        resp = requests.get(server.url("f.bin"), timeout=30)
        timings[name] = time.monotonic() - start
        assert resp.status_code == 200
        assert len(resp.content) == MiB
    # 1 MiB at 512 KiB/s takes about 2 s; nginx may send a burst first, so be generous.
    assert 1.0 < timings["slow"] < 15
    assert timings["fast"] < timings["slow"] / 2


def test_limit_rate_after_and_extra_location(
    nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"y" * 4096)
    server = nginx_factory(
        tmp_path,
        limit_rate="1m",
        limit_rate_after="1m",
        extra_location="            add_header X-Accel-Test yes;",
    )
    resp = requests.get(server.url("f.bin"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["X-Accel-Test"] == "yes"
    conf = (server.prefix / "nginx.conf").read_text()
    assert "limit_rate 1m;" in conf
    assert "limit_rate_after 1m;" in conf


def test_start_failure_reports_error_log(nginx_bin: str, tmp_path: Path) -> None:
    server = Nginx(tmp_path, extra_http="    this_is_not_a_directive on;", binary=nginx_bin)
    with pytest.raises(nginx_helper.NginxError, match="this_is_not_a_directive"):
        server.start()
    assert server.process is None


def test_stop_is_clean(nginx_bin: str, tmp_path: Path) -> None:
    with Nginx(tmp_path, binary=nginx_bin) as server:
        prefix = server.prefix
        proc = server.process
        assert prefix is not None and prefix.is_dir()
        assert requests.get(server.base_url + "/", timeout=10).status_code in (403, 404)
    assert proc is not None and proc.poll() is not None
    assert not prefix.exists()
    assert server.process is None
