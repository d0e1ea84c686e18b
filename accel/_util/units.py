"""Sizes and rates as people write and read them: ``500K`` in, ``1.5 MiB`` out.

K, M and G are powers of 1024, as in curl and wget; output uses IEC units (KiB, MiB, GiB).
A leaf module: the library and the command line parse and show sizes the same way.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from accel.exceptions import UsageError

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(?:i?[bB](?:/s)?)?\s*")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str, what: str = "size") -> int:
    """``"500K"`` -> 512000 (K/M/G are powers of 1024); ``what`` names it in errors."""
    m = _SIZE.fullmatch(text or "")
    if not m:
        raise UsageError(f"invalid {what} {text!r} (use e.g. 500K, 2M, 1G)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise UsageError(f"{what} must be positive: {text!r}")
    return value


def to_bytes(value: Union[int, float, str, None], what: str) -> Optional[int]:
    """A size given as a number of bytes or as text (``"2G"``); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_size(value, what)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what} must be a number of bytes or a text like '2M', not {value!r}")
    return int(value)


def human_size(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if unit == "B" and abs(n) < 1024:
            return f"{n:.0f} B"
        if unit != "B" and (abs(round(n, 1)) < 1024 or unit == "TiB"):  # no "1024.0 KiB"
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def human_rate(bytes_per_second: float) -> str:
    """``1572864.0`` -> ``1.5 MiB/s``."""
    return human_size(bytes_per_second) + "/s"


def human_amount(done: float, total: Optional[float]) -> str:
    """``done`` of ``total`` in the total's unit: ``84.0/200.0 MiB`` (``1.5 MiB`` alone
    when the total is not known)."""
    if total is None:
        return human_size(done)
    unit, scale = "B", 1.0
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if abs(total) < 1024 * scale:
            break
        unit, scale = name, scale * 1024
    if unit == "B":
        return f"{done:.0f}/{total:.0f} B"
    return f"{done / scale:.1f}/{total / scale:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """``9`` -> ``0:09``; ``3723`` -> ``1:02:03``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
