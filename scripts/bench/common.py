"""Units, the repository root and progress logging shared by the benchmark's modules."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def log(message: str) -> None:
    """Print a progress message to stderr (stdout carries the report)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
