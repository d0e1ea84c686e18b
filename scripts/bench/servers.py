"""The shared test servers (:mod:`tests.servers`), imported here and nowhere else in the
benchmark."""

from __future__ import annotations

from tests.servers import FaultServer
from tests.servers.nginx import Nginx, nginx_binary

__all__ = ["FaultServer", "Nginx", "nginx_available"]


def nginx_available() -> tuple[bool, str]:
    """Whether an nginx binary is installed (the FaultServer needs nothing)."""
    if nginx_binary() is None:
        return False, "nginx is not installed"
    return True, ""
