"""The optional config file: defaults for the command line's long options.

Location: ``$ACCEL_CONFIG`` if set, else ``accel.conf`` in
``platformdirs.user_config_dir("accel")`` (``~/.config/accel/accel.conf`` on Linux).
Format: one ``option = value`` per line, named like the long option without ``--``
(``connections = 16``, ``limit-rate = 2M``, ``header = X-Token: abc``); ``#`` starts a
comment; flags take ``true``/``false``; options that may repeat may repeat. Flags given on
the command line win.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import platformdirs

from accel.exceptions import UsageError

ENV_VAR = "ACCEL_CONFIG"
FILE_NAME = "accel.conf"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(UsageError):
    """The config file is broken; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    """One ``name = value`` line of the config file."""

    name: str
    value: str
    path: Path
    line: int

    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.path}:{self.line}"


def config_path() -> Path:
    """Where the config file is looked for."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("accel")) / FILE_NAME


def read_config(path: Optional[Path] = None) -> List[Entry]:
    """The entries of the config file (none if it does not exist, unless named explicitly)."""
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().lower().lstrip("-")
        if not sep or not name:
            raise ConfigError(f"{path}:{number}: expected 'option = value', got {raw.strip()!r}")
        entries.append(Entry(name, value.strip(), path, number))
    return entries


def as_argv(entry: Entry, flags: Tuple[str, ...], counts: Tuple[str, ...] = ()) -> List[str]:
    """The command-line arguments an entry stands for.

    ``flags`` take true/false; ``counts`` take a number of repetitions (``verbose = 2``).
    """
    option = f"--{entry.name}"
    if entry.name in counts:
        if not entry.value.isascii() or not entry.value.isdigit() or int(entry.value) > 9:
            raise ConfigError(f"{entry.where()}: {entry.name} takes a number from 0 to 9")
        return [option] * int(entry.value)
    if entry.name in flags:
        value = entry.value.lower()
        if value in _TRUE:
            return [option]
        if value in _FALSE:
            return []
        raise ConfigError(f"{entry.where()}: {entry.name} takes true or false, not {entry.value!r}")
    return [option, entry.value]
