"""The test servers and fakes shared by the test suite and the benchmark (``scripts/``):

* :class:`FaultServer` (:mod:`tests.servers.server`), a real fault-injecting HTTP/1.1 server
  on loopback, with its switches (:class:`Faults`), its request log (:class:`RequestLog`)
  and its handler (:class:`FaultHandler`); :func:`make_data` for deterministic bodies;
* :class:`Nginx` (:mod:`tests.servers.nginx`) and :class:`Lighttpd`
  (:mod:`tests.servers.lighttpd`), real servers run from private temporary directories;
* :class:`TLSFaultServer` (:mod:`tests.servers.tls`), the same over TLS;
* :class:`FakeClock` (:mod:`tests.servers.clock`), the one injected clock of the unit tests;
* :class:`MockTransport` (:mod:`tests.servers.mock`), a fake HTTP transport with no sockets
  (a handler answers each request; :class:`RangedFile` serves a file with ranges) for unit
  tests of the engine.

Import from here: ``from tests.servers import FaultServer, make_data``.
"""

from tests.servers.clock import FakeClock
from tests.servers.data import KiB, MiB, make_data
from tests.servers.faults import CIDict, Faults, RequestLog
from tests.servers.handler import FaultHandler
from tests.servers.lighttpd import Lighttpd, lighttpd_binary
from tests.servers.mock import MockRequest, MockResponse, MockSession, MockTransport, RangedFile
from tests.servers.nginx import Nginx, NginxError, nginx_binary, require_nginx
from tests.servers.ports import free_port
from tests.servers.server import FaultServer
from tests.servers.tls import TLSFaultServer

__all__ = [
    "CIDict",
    "FakeClock",
    "FaultHandler",
    "FaultServer",
    "Faults",
    "KiB",
    "Lighttpd",
    "MiB",
    "MockRequest",
    "MockResponse",
    "MockSession",
    "MockTransport",
    "Nginx",
    "NginxError",
    "RangedFile",
    "RequestLog",
    "TLSFaultServer",
    "free_port",
    "lighttpd_binary",
    "make_data",
    "nginx_binary",
    "require_nginx",
]
