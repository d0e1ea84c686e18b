"""The tools under test: whether each is here, how it is invoked, its version.

accel runs as ``python3 -m accel`` with the repository first on PYTHONPATH; the peers run
only when installed.  curl uses one connection, aria2c at most 16.
"""

from __future__ import annotations

import compileall
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from scripts.bench.common import REPO_ROOT

ALL_TOOLS = ("accel", "accel-auto", "curl", "aria2c", "axel")
LIST_TOOLS = ("accel", "curl", "aria2c")  # tools with a list input (many-files)
ACCEL_TOOLS = ("accel", "accel-auto")


def child_env() -> dict[str, str]:
    """Environment for the tools: the repository first on PYTHONPATH, no proxies."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        env.pop(var, None)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def accel_available() -> tuple[bool, str]:
    """Whether ``python3 -m accel`` can run from this repository."""
    try:
        spec = importlib.util.find_spec("accel.__main__")
    except Exception as exc:  # a half-written package may raise anything on import
        return False, f"accel does not import: {type(exc).__name__}: {exc}"
    if spec is None:
        return False, "accel/__main__.py does not exist yet"
    return True, ""


def tool_available(tool: str) -> tuple[bool, str]:
    """Whether ``tool`` can run here, and why not."""
    if tool in ACCEL_TOOLS:
        return accel_available()
    if shutil.which(tool) is None:
        return False, f"{tool} is not installed"
    return True, ""


def compile_accel() -> None:
    """Byte-compile accel first, as an installed package is: with PYTHONDONTWRITEBYTECODE
    set, every run would otherwise compile accel's modules again."""
    compileall.compile_dir(str(REPO_ROOT / "accel"), quiet=1)


def tool_connections(tool: str, conns: int) -> int:
    """Connections the tool actually uses (curl: one; aria2c: at most 16)."""
    if tool == "curl":
        return 1
    if tool == "aria2c":
        return max(1, min(conns, 16))
    return conns


def tool_command(tool: str, url: str, out: Path, conns: int, *, resume: bool = False) -> list[str]:
    """Command line of one download; ``resume`` = the second run of the resume scenario."""
    n = str(tool_connections(tool, conns))
    if tool == "accel":
        return [sys.executable, "-m", "accel", url, "-n", n, "-o", str(out), "-q"]
    if tool == "accel-auto":  # -v: each change of the count is logged (see auto_count)
        return [sys.executable, "-m", "accel", url, "-n", "auto", "-o", str(out), "-v"]
    if tool == "curl":
        return ["curl", "-s", *(["-C", "-"] if resume else []), "-o", str(out), url]
    if tool == "aria2c":
        return [
            *("aria2c", "--no-conf", "-q", *(["-c"] if resume else [])),
            *("-x", n, "-s", n, "-k", "1M", "--file-allocation=none", "--allow-overwrite=true"),
            *("-d", str(out.parent), "-o", out.name, url),
        ]
    if tool == "axel":  # resumes by itself from OUT.st
        return ["axel", "-q", "-n", n, "-o", str(out), url]
    raise ValueError(f"unknown tool {tool!r}")


def autoscale_start() -> int:
    """The count ``-n auto`` starts at: the benchmark's one read of accel's internals."""
    from accel.options import AUTO_START  # accel ran, so it imports (see accel_available)

    return AUTO_START


def auto_cap() -> int:
    """The most connections ``-n auto`` uses by default (accel's own figure)."""
    from accel.options import AUTO_CAP

    return AUTO_CAP


def auto_count(stderr: str) -> int:
    """The connection count ``accel -n auto`` ended with, from its ``-v`` log."""
    found = re.findall(r"auto: (\d+) connections", stderr)
    return int(found[-1]) if found else autoscale_start()


@functools.cache
def curl_features() -> dict[str, bool]:
    """Which of curl's list options this curl has (``--parallel-max``: 7.66, ``--output-dir``:
    7.73, ``--no-progress-meter``: 7.67), from ``curl --help all``."""
    try:
        text = subprocess.run(
            ["curl", "--help", "all"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    return {o: f"--{o} " in text for o in ("parallel-max", "output-dir", "no-progress-meter")}


def list_tool_available(tool: str) -> tuple[bool, str]:
    """Whether ``tool`` can download a list of URLs in parallel (many-files)."""
    if tool not in LIST_TOOLS:
        return False, f"{tool} has no list input"
    if tool == "curl" and not curl_features()["parallel-max"]:
        return False, "this curl has no -Z/--parallel-max (curl >= 7.66 needed)"
    return True, ""


def list_command(
    tool: str, listfile: Path, curl_config: Path, outdir: Path, conns: int, jobs: int
) -> list[str]:
    """Command line downloading every URL of ``listfile`` into ``outdir``, ``jobs`` at once.

    curl reads the same URLs from ``curl_config`` (see :func:`write_curl_config`).
    """
    if tool == "accel":
        return [
            *(sys.executable, "-m", "accel", "-i", str(listfile)),
            *("-j", str(jobs), "-n", str(conns), "-d", str(outdir), "-q"),
        ]
    if tool == "curl":
        features = curl_features()
        quiet = ["--no-progress-meter"] if features["no-progress-meter"] else ["-s", "-S"]
        where = ["--remote-name-all", "--output-dir", str(outdir)]
        return [
            *("curl", *quiet, "-f", "-Z", "--parallel-max", str(jobs)),
            *(where if features["output-dir"] else []),
            *("-K", str(curl_config)),
        ]
    if tool == "aria2c":
        return [
            *("aria2c", "--no-conf", "-q", "-i", str(listfile), "-j", str(jobs)),
            *("-d", str(outdir), "--allow-overwrite=true", "--auto-file-renaming=false"),
            "--file-allocation=none",
        ]
    raise ValueError(f"{tool!r} has no list mode here")


def huge_list_command(listfile: Path, outdir: Path, jobs: int) -> list[str]:
    """accel over the huge list (connections left at accel's default)."""
    return [
        *(sys.executable, "-m", "accel", "-i", str(listfile)),
        *("-j", str(jobs), "-q", "-d", str(outdir)),
    ]


def _curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_curl_config(path: Path, urls: Sequence[str], outdir: Path) -> None:
    """A ``curl -K`` config: one ``url`` line per URL (plus ``output`` lines if needed)."""
    per_url_output = not curl_features()["output-dir"]
    with open(path, "w", encoding="utf-8") as fh:
        for url in urls:
            fh.write(f"url = {_curl_quote(url)}\n")
            if per_url_output:
                name = url.rsplit("/", 1)[-1]
                fh.write(f"output = {_curl_quote(str(outdir / name))}\n")


def tool_version(tool: str) -> str:
    """First line of the tool's version output (best effort); ``nginx`` works too."""
    if tool in ACCEL_TOOLS:
        cmd = [sys.executable, "-c", "import accel; print(getattr(accel, '__version__', '?'))"]
    elif tool == "nginx":
        cmd = [shutil.which("nginx") or "/usr/sbin/nginx", "-v"]
    else:
        cmd = [tool, "--version"]
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            env=child_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "not available"
    text = (proc.stdout or proc.stderr).strip()
    if tool in ACCEL_TOOLS and proc.returncode != 0:
        return "not importable"
    first = text.splitlines()[0] if text else "?"
    return first.replace("nginx version: ", "").split(" (")[0]
