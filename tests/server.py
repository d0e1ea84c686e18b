"""Old import path of the FaultServer, kept for scripts/bench.py until it imports
:mod:`tests.servers` (tests import from there)."""

from tests.servers import CIDict, FaultHandler, Faults, FaultServer, RequestLog, make_data

__all__ = ["CIDict", "FaultHandler", "FaultServer", "Faults", "RequestLog", "make_data"]
