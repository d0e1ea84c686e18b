"""A program on a real pseudo-terminal, its output rendered by pyte (a VT100 emulator): what
a person would see, frame by frame."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pyte

Screen = List[str]  # the rows of one screen, each ``cols`` characters


class Pty:
    """``argv`` with stderr on a pty of ``cols`` x ``rows``, rendered by pyte; ``env`` is
    the program's environment, ``stdout`` where its standard output goes. With
    ``sized=False`` the pty reports no size (0 x 0, as ``pty.openpty()`` makes it) while pyte
    still renders ``cols`` x ``rows``."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        cols: int,
        rows: int = 24,
        *,
        env: Dict[str, str],
        stdout: int = subprocess.PIPE,
        sized: bool = True,
    ) -> None:
        self.cols, self.rows = cols, rows
        self.master, slave = pty.openpty()
        if sized:
            self._winsize(slave)
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.screens: List[Screen] = []  # after each whole frame read
        self.raw = b""
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave, env=env
        )
        os.close(slave)

    def _winsize(self, fd: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))

    def resize(self, cols: int) -> None:
        """Make the terminal ``cols`` wide (the program sees the new size at once)."""
        self.cols = cols
        self.screen.resize(self.rows, cols)
        self._winsize(self.master)

    def now(self) -> Screen:
        return list(self.screen.display)

    def run(
        self, until: Optional[Callable[[Pty], bool]] = None, timeout: float = 30
    ) -> Optional[int]:
        """Read and render until the program ends (or ``until`` holds); its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until(self):
                return None
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the program closed the pty
                    break
                if not data:
                    break
                self.raw += data
                self.stream.feed(data)
                if not select.select([self.master], [], [], 0.01)[0]:  # a whole frame
                    self.screens.append(self.now())
            elif self.proc.poll() is not None:
                break
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            self.close()

    def stdout(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
