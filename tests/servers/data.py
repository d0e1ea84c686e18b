"""Deterministic test data."""

from __future__ import annotations

import random

__all__ = ["KiB", "MiB", "make_data"]

KiB = 1024
MiB = 1024 * 1024


def make_data(size: int, seed: int = 0) -> bytes:
    """Return ``size`` deterministic pseudo-random bytes (fast even for tens of MiB)."""
    if size <= 0:
        return b""
    return random.Random(seed).randbytes(size)
