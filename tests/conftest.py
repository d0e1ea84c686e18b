"""Shared fixtures: a real fault-injecting HTTP server on loopback, data, a CLI runner."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from tests.nginx import nginx, nginx_bin, nginx_factory  # noqa: F401 (fixtures)
from tests.server import FaultServer, make_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A started :class:`FaultServer` on 127.0.0.1, stopped after the test."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def data() -> bytes:
    """3 MiB + 123 bytes of deterministic random data (not a multiple of any chunk)."""
    return make_data(3 * 1024 * 1024 + 123, seed=1)


def sha256(path_or_bytes) -> str:
    """sha256 hex of a file path or bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return hashlib.sha256(path_or_bytes).hexdigest()
    return hashlib.sha256(Path(path_or_bytes).read_bytes()).hexdigest()


def accel_cmd(*args: str) -> List[str]:
    """argv that runs the accel CLI in a fresh interpreter."""
    return [sys.executable, "-m", "accel", *args]


def run_accel(
    *args: str, cwd: Optional[Path] = None, timeout: float = 60, **kw
) -> subprocess.CompletedProcess:
    """Run the CLI as a subprocess and capture its output."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        accel_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw
    )
