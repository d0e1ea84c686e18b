"""Open files: how many downloads and connections fit under the process's open-file limit.

A running download holds its ``.part`` file, its lock and, while committing, its sidecar;
each of its connections a socket and, on Linux, the two ends of its splice pipe. With a
small limit (``ulimit -n 64``) and ``-j 32 -n 8`` that is far more than the process may
open, and downloads would fail with "Too many open files". :func:`fit` answers the jobs and
connections that fit instead; :func:`open_file_limit` first raises the soft limit towards
the hard one, as far as the system allows.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

log = logging.getLogger(__name__)

#: Descriptors kept free for everything else (standard streams, the interpreter's, logs,
#: the session pool's idle connections, DNS).
RESERVE = 24
#: Descriptors one running download holds besides its connections.
PER_DOWNLOAD = 4
#: Descriptors one connection holds (a socket and a pipe's two ends).
PER_CONNECTION = 3
#: The soft limit is raised to at most this (when the hard limit allows).
WANTED = 8192


def open_file_limit() -> Optional[int]:
    """The soft open-file limit after raising it towards the hard one (None: no such limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        infinite = resource.RLIM_INFINITY
        want = WANTED if hard == infinite else min(WANTED, hard)
        if soft != infinite and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    except (OSError, ValueError):
        pass
    return None if soft == resource.RLIM_INFINITY else int(soft)


def fit(jobs: int, connections: int, limit: Optional[int]) -> Tuple[int, int]:
    """The (jobs, connections per download) at most asked for that fit under ``limit``
    open files: connections give way first, then jobs; at least one of each."""
    if limit is None:
        return jobs, connections
    budget = max(0, limit - RESERVE)

    def need(j: int, c: int) -> int:
        return j * (PER_DOWNLOAD + PER_CONNECTION * c)

    while connections > 1 and need(jobs, connections) > budget:
        connections -= 1
    while jobs > 1 and need(jobs, connections) > budget:
        jobs -= 1
    return jobs, connections
