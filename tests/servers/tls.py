"""The FaultServer over TLS (certificates from trustme in the tests)."""

from __future__ import annotations

import ssl
from typing import Any, Tuple

from tests.servers.server import FaultServer


class TLSFaultServer(FaultServer):
    """A :class:`FaultServer` whose accepted sockets are wrapped with a server SSL context.

    The handshake runs on the connection's own thread (first read), never in the acceptor.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self.context = context

    def start(self) -> TLSFaultServer:
        if self._httpd is None:
            super().start()
            httpd = self._httpd
            assert httpd is not None
            plain_accept = httpd.get_request

            def get_request() -> Tuple[Any, Any]:
                sock, addr = plain_accept()
                wrapped = self.context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                return wrapped, addr

            httpd.get_request = get_request  # type: ignore[method-assign]
        return self

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"
