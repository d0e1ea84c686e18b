"""Exit codes of the command line: one map from error class to code."""

from __future__ import annotations

from typing import Dict, Type

from accel.cli._startup import EXIT_SIGINT as EXIT_SIGINT  # one definition, before any import
from accel.cli._startup import EXIT_SIGTERM as EXIT_SIGTERM
from accel.exceptions import (
    AccelError,
    CancelledError,
    FileTooLargeError,
    HTTPError,
    LocalFileError,
    NetworkError,
    UsageError,
    VerificationError,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NETWORK = 3
EXIT_HTTP = 4
EXIT_VERIFY = 5
EXIT_LOCAL = 6
#: The remote file is larger than --max-filesize: refused before anything is written.
EXIT_TOO_LARGE = 7

#: The one map from error class to exit code (the most specific class in the MRO wins).
EXIT_CODES: Dict[Type[BaseException], int] = {
    UsageError: EXIT_USAGE,
    NetworkError: EXIT_NETWORK,
    HTTPError: EXIT_HTTP,
    VerificationError: EXIT_VERIFY,
    LocalFileError: EXIT_LOCAL,
    FileTooLargeError: EXIT_TOO_LARGE,
    CancelledError: EXIT_SIGINT,
    AccelError: EXIT_FAILURE,
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code for ``exc`` (see :data:`EXIT_CODES`)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_FAILURE
