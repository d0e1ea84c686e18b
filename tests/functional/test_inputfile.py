"""Input files in aria2's format through the command, against the fault server: options
per URL, a malformed line (exit 2, the others download), option lines through a pipe."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from accel.cli import main as cli
from tests.helpers import KiB, accel_cmd, accel_env, gets, sha256, wait_until
from tests.servers import FaultServer, make_data

# -- the command -------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("isolated_cli")


def test_options_of_an_input_file_apply_per_url(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b, c = (make_data(600 * KiB + i, seed=60 + i) for i in range(3))
    for name, data in (("a", a), ("b", b), ("c", c)):
        server.add_file(f"/{name}.bin", data)
    absolute = tmp_path / "elsewhere"
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{server.url('/a.bin')}\n"
        "  out=renamed.bin\n"
        "  dir=sub\n"
        "  header=X-Token: t-a\n"
        "  connections=1\n"
        f"{server.url('/b.bin')}\n"
        f"  dir={absolute}\n"
        f"  checksum=sha-256={hashlib.sha256(b).hexdigest()}\n"
        f"{server.url('/c.bin')}\n"
        f"  checksum=sha-256={hashlib.sha256(a).hexdigest()}\n"
    )
    code = cli.main(["-i", str(listing), "-d", "base", "-n", "4", "-H", "X-All: yes", "-q"])
    err = capsys.readouterr().err
    assert code == 5, err  # c.bin's checksum is a.bin's
    assert sha256(tmp_path / "base" / "sub" / "renamed.bin") == sha256(a)
    assert sha256(absolute / "b.bin") == sha256(b)
    assert not (tmp_path / "base" / "c.bin").exists()
    assert "checksum mismatch" in err and "c.bin" in err
    a_gets = gets(server, "/a.bin")
    assert {q.headers.get("X-Token") for q in a_gets} == {"t-a"}
    assert {q.headers.get("X-All") for q in a_gets} == {"yes"}  # added to, not instead of
    assert len({q.connection_id for q in a_gets}) == 1  # connections=1
    assert {q.headers.get("X-Token") for q in gets(server, "/b.bin")} == {None}


def test_a_malformed_line_is_exit_2_and_the_others_download(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/ok.bin", make_data(50 * KiB, seed=70))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{server.url('/ok.bin')}\n{server.url('/x.bin')}\n  outt=y\n")
    code = cli.main(["-i", str(listing), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{listing}:3: unknown option line 'outt=y'" in err
    assert (tmp_path / "ok.bin").exists()
    assert not gets(server, "/x.bin")


def test_option_lines_sent_with_their_url_through_a_pipe(
    server: FaultServer, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        server.add_file(f"/{name}.bin", make_data(20 * KiB, ord(name)))
    proc = subprocess.Popen(
        accel_cmd("-i", "-", "-q"),
        cwd=tmp_path,
        env=accel_env(),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"{server.url('/a.bin')}\n  out=first.bin\n")
        proc.stdin.flush()
        wait_until(lambda: (tmp_path / "first.bin").exists(), 20, "the first file of a pipe")
        proc.stdin.write(f"{server.url('/b.bin')}\n  out=second.bin\n")
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    assert (tmp_path / "second.bin").read_bytes() == make_data(20 * KiB, ord("b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.bin", "second.bin"]
