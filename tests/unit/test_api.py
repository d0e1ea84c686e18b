"""The embeddable API (issue 7), its surface: the public names, their docstrings, the
``py.typed`` marker, and a lazy ``import accel``. Its behaviour against the fault server is in
tests/functional/test_api.py.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import accel

EXPECTED_PUBLIC = [
    "AccelError",
    "AlreadyComplete",
    "AsyncDownload",
    "AsyncManager",
    "Cancelled",
    "CancelledError",
    "Completed",
    "Downloader",
    "Event",
    "Failed",
    "FileTooLargeError",
    "HTTPError",
    "HostSlots",
    "InsecureRedirectError",
    "InsufficientSpaceError",
    "LocalFileError",
    "LockedError",
    "Manager",
    "ManagerProgress",
    "NetworkError",
    "Options",
    "OutputExistsError",
    "Progress",
    "RateLimiter",
    "RemoteChangedError",
    "RemoteProtocolError",
    "Restarted",
    "RetryPolicy",
    "Retrying",
    "SegmentCompleted",
    "Started",
    "UsageError",
    "VerificationError",
    "__version__",
    "adownload",
    "download",
]


# -- the public surface ----------------------------------------------------------------------


def test_all_is_explicit_and_exact() -> None:
    assert isinstance(accel.__all__, list)
    assert len(accel.__all__) == len(set(accel.__all__)), "duplicates in __all__"
    assert sorted(accel.__all__) == sorted(EXPECTED_PUBLIC), (
        "the public API changed: update EXPECTED_PUBLIC deliberately"
    )
    namespace: dict = {}
    exec("from accel import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_PUBLIC)


def test_public_names_are_accels_own() -> None:
    for name in accel.__all__:
        obj = getattr(accel, name)
        if name == "__version__":
            assert isinstance(obj, str) and obj
            continue
        assert getattr(obj, "__module__", "").startswith("accel"), name


def _own_doc(obj: Any) -> Optional[str]:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return None
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):  # dataclass default
        return None
    return doc


def test_each_public_name_has_a_docstring() -> None:
    missing = [
        name
        for name in accel.__all__
        if name != "__version__" and not _own_doc(getattr(accel, name))
    ]
    assert missing == []
    assert accel.__doc__ and accel.__doc__.strip()


def test_downloader_public_members_have_docstrings() -> None:
    missing = []
    for name, member in inspect.getmembers(accel.Downloader):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            doc = member.fget.__doc__ if member.fget else None
        elif callable(member):
            doc = member.__doc__
        else:
            continue
        if not doc or not doc.strip():
            missing.append(name)
    assert missing == []


def test_py_typed_marker_is_shipped() -> None:
    assert (Path(accel.__file__).parent / "py.typed").is_file()


def test_import_accel_loads_only_the_exceptions_until_a_name_is_used() -> None:
    """``import accel`` is cheap (the command's --version and --help rely on it); each
    lazily loaded name is the same object as in its module, and type checkers see the same
    names as the run-time table."""

    code = (
        "import sys, accel\n"
        "print(sorted(m for m in sys.modules if m.startswith('accel')))\n"
        "print('requests' in sys.modules)\n"
        "import accel.options\n"
        "print(accel.Options is accel.options.Options)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == str(
        ["accel", "accel.cli", "accel.cli._startup", "accel.exceptions", "accel.version"]
    )
    assert out[1:] == ["False", "True"]
    tree = ast.parse(Path(accel.__file__).read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("accel.")
        for alias in stmt.names
    }
    assert typed == set(accel._LAZY)
    for name, home in accel._LAZY.items():
        assert getattr(accel, name).__module__ == f"accel.{home}", name
