"""Shared fixtures: a real fault-injecting HTTP server on loopback (and a second one on
another port, another origin), each started once per session and reset after every test;
deterministic data; nginx; a command line isolated from the user's configuration. Plain
helpers are in helpers.py, the servers in the package tests/servers/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import FaultServer, make_data
from tests.servers.nginx import nginx, nginx_bin, nginx_factory  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def _server_once() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def _other_server_once() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def _fresh(srv: FaultServer) -> Iterator[FaultServer]:
    """``srv`` as good as new for one test (restarted if the test stopped it), reset after."""
    if srv._httpd is None:
        srv.start()
    srv.reset()
    try:
        yield srv
    finally:
        srv.reset()


@pytest.fixture
def server(_server_once: FaultServer) -> Iterator[FaultServer]:
    """A started :class:`FaultServer` on 127.0.0.1 serving nothing, all faults off."""
    yield from _fresh(_server_once)


@pytest.fixture
def other_server(_other_server_once: FaultServer) -> Iterator[FaultServer]:
    """A second started server: another port, hence another origin."""
    yield from _fresh(_other_server_once)


@pytest.fixture
def data() -> bytes:
    """3 MiB + 123 bytes of deterministic random data (not a multiple of any chunk)."""
    return make_data(3 * 1024 * 1024 + 123, seed=1)


@pytest.fixture
def srv(server: FaultServer, data: bytes) -> Iterator[FaultServer]:
    """The server with ``data`` at /f; fails the test on unexpected server-side errors."""
    server.add_file("/f", data)
    yield server
    assert server.errors == []


@pytest.fixture
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path with no user config file (for the command line's tests)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCEL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-empty"))
    return tmp_path


@pytest.fixture(autouse=True)
def _restore_accel_logger() -> Iterator[None]:
    """Every test leaves the ``accel`` logger as it found it (``cli.main`` configures it)."""
    logger = logging.getLogger("accel")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
