"""Run a real lighttpd on 127.0.0.1 for integration tests: everything it writes (config,
logs) lives in a given work directory; its access log records each request's Range and
If-Range."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from tests.servers.ports import free_port

__all__ = ["Lighttpd", "lighttpd_binary"]


def lighttpd_binary() -> str:
    """The lighttpd binary; skip when missing (CI installs the apt package ``lighttpd``)."""
    found = shutil.which("lighttpd") or (
        "/usr/sbin/lighttpd" if os.access("/usr/sbin/lighttpd", os.X_OK) else None
    )
    if found is None:
        reason = "lighttpd is not installed (apt-get install lighttpd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    return found


class Lighttpd:
    """lighttpd on 127.0.0.1 serving ``root``, everything it writes in ``work``."""

    def __init__(self, root: Path, work: Path, *, etags: bool, kbytes_per_second: int) -> None:
        self.root = root
        self.port = free_port()
        self.log = work / "access.log"
        conf = work / "lighttpd.conf"
        conf.write_text(
            f'server.document-root = "{root}"\n'
            f"server.port = {self.port}\n"
            'server.bind = "127.0.0.1"\n'
            f'server.errorlog = "{work / "error.log"}"\n'
            'server.modules = ("mod_accesslog")\n'
            f'accesslog.filename = "{self.log}"\n'
            'accesslog.format = "%s %{Range}i|%{If-Range}i"\n'
            f'static-file.etags = "{"enable" if etags else "disable"}"\n'
            f"connection.kbytes-per-second = {kbytes_per_second}\n"
            'mimetype.assign = ("" => "application/octet-stream")\n'
        )
        self.proc = subprocess.Popen(
            [lighttpd_binary(), "-D", "-f", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def answers() -> bool:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        deadline = time.monotonic() + 10
        while not answers():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for lighttpd to listen")
            time.sleep(0.01)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def if_ranges(self) -> List[str]:
        """The If-Range values of the ranged requests (``-`` when absent)."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [ln.split("|", 1)[1].replace('\\"', '"') for ln in lines if "|" in ln]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
