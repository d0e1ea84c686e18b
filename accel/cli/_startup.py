"""Ctrl-C while the ``accel`` command starts: exit 130 at once, print nothing.

The package imports this before anything else. Importing requests and the rest takes about a
third of a second, and a Ctrl-C in that time would print a traceback and kill the process
by the signal. When this process is the ``accel`` command (``python -m accel`` or the
console script), SIGINT and SIGTERM exit at once with 130 and 143 instead: nothing has been
written yet, so there is nothing to save. The command keeps these handlers until it runs
downloads, whose own handlers save the state first, and again once they are over; its
very last steps ignore the signals (:func:`leave`). A library user's process is left alone.

Standard library only, and small: it must run before the slow imports.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, List, NoReturn

#: The exit codes for SIGINT and SIGTERM (defined here, before anything else is imported;
#: :mod:`accel.cli.exitcodes` lists them with the others).
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def is_command() -> bool:
    """Whether this process is the ``accel`` command, judged while the package is imported."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # ``python -m NAME`` while NAME's package is being imported
        orig: List[str] = list(getattr(sys, "orig_argv", ()))  # Python 3.10+
        for i, arg in enumerate(orig):
            if arg == "-m" and i + 1 < len(orig):
                return orig[i + 1].split(".")[0] == "accel"
            if arg.startswith("-m") and not arg.startswith("--"):
                return arg[2:].split(".")[0] == "accel"
        return True  # Python 3.9: only the module given to -m is being looked up
    return os.path.basename(argv0) in ("accel", "accel.exe", "accel-script.py")


def _exit(signum: int, frame: Any) -> None:
    os._exit(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)


def exit_quietly_on_signals() -> None:
    """Make SIGINT and SIGTERM exit at once with 130 and 143, printing nothing.

    Only the main thread may set signal handlers; elsewhere this does nothing.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _exit)
        except (ValueError, OSError):  # not the main thread
            return


def leave(code: int) -> NoReturn:
    """Exit with ``code``: flush the output and let nothing interrupt the way out.

    Every thread of accel is a daemon, so the interpreter's shutdown waits for none of them
    and is short; a signal during it would kill the process by the signal instead of
    exiting with ``code`` (Python resets its handlers to the default first). Ignored.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            break
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    sys.exit(code)


if is_command():
    exit_quietly_on_signals()
