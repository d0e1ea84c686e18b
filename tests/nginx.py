"""Old import path of the nginx helper, kept for scripts/bench.py until it imports
:mod:`tests.servers` (tests import from there)."""

from tests.servers.nginx import Nginx, NginxError, nginx_binary, require_nginx

__all__ = ["Nginx", "NginxError", "nginx_binary", "require_nginx"]
