"""The README's examples run as written: its first two commands are the ones CI runs, and
its Python examples (Embedding, Manager) are extracted and run against the fault server on
loopback, with only the example URLs (and the Manager's checksum placeholder) replaced.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import List

from tests.helpers import REPO, MiB, accel_env, sha256
from tests.servers import FaultServer, make_data

README = (REPO / "README.md").read_text(encoding="utf-8")


def python_blocks(after: str) -> List[str]:
    """The ```python blocks of the section that starts with the heading ``after``."""
    start = README.index(after)
    following = re.search(r"\n#{2,3} ", README[start + len(after) :])
    section = README[start : start + len(after) + following.start() if following else None]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=accel_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_first_two_lines_are_the_demo_and_the_test_command() -> None:
    first, second = README.splitlines()[:2]
    assert first.strip() == "pip install . && accel --demo"
    assert second.strip() == "pip install -e '.[test]' && python3 -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text()
    test_command = second.strip().split("&& ", 1)[1]
    assert re.search(rf"^{re.escape(test_command)} \|\| rc=\$\?$", ci, re.M), "CI runs another"


def test_the_benchmark_tables_live_in_benchmarks_md() -> None:
    assert "[BENCHMARKS.md](BENCHMARKS.md)" in README
    assert "| tool | ok runs |" not in README
    assert "| tool | ok runs |" in (REPO / "BENCHMARKS.md").read_text()


def test_the_embedding_example_runs(server: FaultServer, tmp_path: Path) -> None:
    code = python_blocks("## Embedding")[0]
    data = make_data(2 * MiB, 90)
    server.add_file("/big.iso", data)
    url = server.url("/big.iso")
    assert code.count("https://example.org/big.iso") == 1
    proc = run_python(code.replace("https://example.org/big.iso", url), tmp_path)
    assert proc.returncode == 0, proc.stderr
    for path in ("big.iso", "downloads/big.iso", "copy.iso"):
        assert sha256(tmp_path / path) == sha256(data), path
    assert "Completed(" in proc.stdout
    assert (
        f"{tmp_path / 'downloads' / 'big.iso'} {len(data)} {len(data)}"
        in proc.stdout.replace("downloads/big.iso", str(tmp_path / "downloads" / "big.iso"))
        or f"downloads/big.iso {len(data)} {len(data)}" in proc.stdout
    )


def test_the_manager_example_runs(server: FaultServer, tmp_path: Path) -> None:
    (code,) = python_blocks("### Many downloads")  # the block under this heading
    a, b = make_data(MiB, 91), make_data(MiB + 5, 92)
    server.add_file("/a.iso", a)
    server.add_file("/b.iso", b)
    code = code.replace("https://example.org/", server.url("/"))
    code = code.replace("sha256=9f86d08...", f"sha256={hashlib.sha256(b).hexdigest()}")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "downloads" / "a.iso") == sha256(a)
    assert sha256(tmp_path / "downloads" / "x.iso") == sha256(b)
    results = sorted(line.split()[1] for line in proc.stdout.splitlines())  # no exception
    assert results == ["downloads/a.iso", "downloads/x.iso"], proc.stdout


def test_the_asyncio_example_runs(server: FaultServer, tmp_path: Path) -> None:
    (code,) = python_blocks("### asyncio")
    a, b = make_data(MiB, 93), make_data(MiB + 5, 94)
    server.add_file("/a.iso", a)
    server.add_file("/b.iso", b)
    proc = run_python(code.replace("https://example.org/", server.url("/")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "a.iso") == sha256(a)
    assert sha256(tmp_path / "downloads" / "a.iso") == sha256(a)
    assert sha256(tmp_path / "downloads" / "x.iso") == sha256(b)
    lines = proc.stdout.split()
    assert lines.count("downloads/a.iso") == 2 and "downloads/x.iso" in lines, proc.stdout


def _layout_block() -> str:
    start = README.index("### Layout")
    return re.search(r"```\n(.*?)```", README[start:], re.S).group(1)  # type: ignore[union-attr]


def test_the_layout_names_every_module_in_the_order_of_the_layers_contract() -> None:
    """The README's layout draws the same layers as setup.cfg's import-linter contract, and
    names every module of the package (a new module must say where it lives)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    layers = config["importlinter:contract:layers"]["layers"].split()
    block = _layout_block()
    drawn = [line.split("  ")[0].strip() for line in block.splitlines() if line[:1] != " "]
    declared = [
        re.sub(r"\baccel\.", "", layer) for layer in " ".join(layers).split() if layer != "|"
    ]
    heads = re.findall(r"accel(?:\.[\w.]+)?|\.\w+", " ".join(drawn))
    assert [h.lstrip(".").removeprefix("accel.") for h in heads] == declared
    words = set(re.findall(r"\w+", block))
    modules = {
        path.stem
        for path in (REPO / "accel").rglob("*.py")
        if path.stem not in ("__init__", "__main__")
    }
    assert modules - words == set()
