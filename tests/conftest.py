"""Shared fixtures: a real fault-injecting HTTP server on loopback (and a second one on
another port, another origin), deterministic data, nginx. Plain helpers are in helpers.py."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from tests.nginx import nginx, nginx_bin, nginx_factory  # noqa: F401 (fixtures)
from tests.server import FaultServer, make_data


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A started :class:`FaultServer` on 127.0.0.1, stopped after the test."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def other_server() -> Iterator[FaultServer]:
    """A second started server: another port, hence another origin."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def data() -> bytes:
    """3 MiB + 123 bytes of deterministic random data (not a multiple of any chunk)."""
    return make_data(3 * 1024 * 1024 + 123, seed=1)


@pytest.fixture(autouse=True)
def _restore_accel_logger() -> Iterator[None]:
    """Every test leaves the ``accel`` logger as it found it (``cli.main`` configures it)."""
    logger = logging.getLogger("accel")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
