"""The shared test servers, imported here and nowhere else in the benchmark.

When they move (to ``tests.servers``), this is the one import to change.
"""

from __future__ import annotations

from tests.nginx import Nginx, nginx_binary
from tests.server import FaultServer

__all__ = ["FaultServer", "Nginx", "nginx_available"]


def nginx_available() -> tuple[bool, str]:
    """Whether an nginx binary is installed (the FaultServer needs nothing)."""
    if nginx_binary() is None:
        return False, "nginx is not installed"
    return True, ""
