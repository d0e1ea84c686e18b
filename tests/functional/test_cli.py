"""Tests of the ``accel`` command line: every option and exit code through ``accel.cli.main.main``
in-process, and a representative subset through the installed console script (pipes, the
config file from the environment), against the real FaultServer. On a pseudo-terminal and
under SIGINT: tests/integration/test_cli_terminal.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import List, Optional, Sequence

import platformdirs
import pytest

import accel
from accel.cli import args as cli_args
from accel.cli import main as cli
from accel.cli.config import config_path
from tests import helpers
from tests.helpers import KiB, MiB, listing, run_script, sha256, wait_until
from tests.servers import FaultServer, RequestLog, make_data

FIXED_LM = "Wed, 21 Oct 2015 07:28:00 GMT"
FIXED_TS = 1445412480


pytestmark = pytest.mark.usefixtures("isolated_cli")


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_main(capsys: pytest.CaptureFixture, *argv: str) -> Result:
    """``accel.cli.main.main(argv)`` in-process, with its output."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def gets(srv: FaultServer, path: Optional[str] = None) -> List[RequestLog]:
    """The GET requests (for ``path``), once the server has finished handling them."""
    return helpers.gets(srv, path, settle=5)


def max_overlap(reqs: Sequence[RequestLog]) -> int:
    """The largest number of requests the server was handling at one time."""
    points = []
    for r in reqs:
        points.append((r.started, 1))
        points.append((r.ended if r.ended is not None else float("inf"), -1))
    live = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        live += delta
        peak = max(peak, live)
    return peak


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- a plain download ------------------------------------------------------------------------


def test_download_saves_identical_file_with_one_summary_line(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/file.bin", data)
    r = run_main(capsys, server.url("/file.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "file.bin") == sha256(data)
    assert r.out == ""
    assert len(r.err.splitlines()) == 1
    assert r.err.startswith(f"accel: saved {tmp_path / 'file.bin'} (3.0 MiB in ")
    assert listing(tmp_path) == ["file.bin"]  # no .part, sidecar or lock left behind


# -- -n / --connections ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "65", "-1", "two", "1.5"])
@pytest.mark.parametrize("flag", ["-n", "--connections"])
def test_connections_out_of_range_is_usage_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str
) -> None:
    server.add_file("/f", b"x" * 100)
    r = run_main(capsys, flag, value, server.url("/f"))
    assert r.code == 2
    assert "connection count" in r.err
    assert gets(server) == []
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    ("argv", "connections", "cap"),
    [
        ([], 8, 16),  # the default stays 8
        (["-n", "auto"], "auto", 16),
        (["--connections", "AUTO", "--max-connections", "5"], "auto", 5),
        (["-n", "3", "--max-connections", "64"], 3, 64),
    ],
)
def test_connections_auto_and_max_connections_parse(
    argv: List[str], connections: object, cap: int
) -> None:
    args = cli_args.build_parser().parse_args([*argv, "http://x/"])
    assert (args.connections, args.max_connections) == (connections, cap)


@pytest.mark.parametrize("value", ["0", "65", "many", "1.5", ""])
def test_max_connections_out_of_range_is_usage_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, value: str
) -> None:
    server.add_file("/f", b"x" * 100)
    r = run_main(capsys, "-n", "auto", "--max-connections", value, server.url("/f"))
    assert r.code == 2
    assert r.err.startswith("accel: error: argument --max-connections: invalid connection cap")
    assert len(r.err.splitlines()) == 1, r.err
    assert gets(server) == []


def test_connections_auto_downloads_with_more_connections_on_a_throttled_server(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(8 * MiB + 5, seed=13)
    server.add_file("/auto.bin", data)
    server.faults.rate = 1 * MiB  # per connection
    r = run_main(capsys, "-n", "auto", "--max-connections", "12", "-v", server.url("/auto.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "auto.bin") == sha256(data)
    assert max_overlap(gets(server, "/auto.bin")) > 4  # it started with 4 and added more
    assert re.search(r"^accel: \S+/auto\.bin: auto: 8 connections$", r.err, re.M), r.err  # -v


def test_config_may_say_connections_auto(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    cfg = write_config(tmp_path / "a.conf", "connections = auto\nmax-connections = 2\n")
    monkeypatch.setenv("ACCEL_CONFIG", str(cfg))
    data = make_data(3 * MiB, seed=14)
    server.add_file("/ca.bin", data)
    server.faults.rate = 2 * MiB
    r = run_main(capsys, server.url("/ca.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "ca.bin") == sha256(data)
    assert max_overlap(gets(server, "/ca.bin")) <= 3  # at most 2 (and a steal's tail)
    bad = write_config(tmp_path / "b.conf", "connections = lots\n")
    monkeypatch.setenv("ACCEL_CONFIG", str(bad))
    r = run_main(capsys, server.url("/ca.bin"))
    assert r.code == 2 and "connection count" in r.err, r.err


def test_one_connection_uses_one_connection(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(2 * MiB + 7, seed=11)
    server.add_file("/one.bin", data)
    server.faults.rate = 4 * MiB
    r = run_main(capsys, "-n", "1", server.url("/one.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "one.bin") == sha256(data)
    reqs = gets(server, "/one.bin")
    assert len(reqs) >= 1
    assert max_overlap(reqs) == 1  # never two requests at once


def test_connections_cap_parallel_requests(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(3 * MiB, seed=12)
    server.add_file("/three.bin", data)
    server.faults.rate = 2 * MiB  # per connection: ~0.5 s per 1 MiB segment
    r = run_main(capsys, "--connections", "3", server.url("/three.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "three.bin") == sha256(data)
    overlap = max_overlap(gets(server, "/three.bin"))
    assert 2 <= overlap <= 3


def test_sixty_four_connections_accepted(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/f64", data)
    r = run_main(capsys, "-n", "64", server.url("/f64"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "f64") == sha256(data)


# -- -o / -d ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_output_names_the_file(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str
) -> None:
    server.add_file("/remote.bin", data)
    r = run_main(capsys, flag, "local.dat", server.url("/remote.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "local.dat") == sha256(data)
    assert not (tmp_path / "remote.bin").exists()


@pytest.mark.parametrize("flag", ["-d", "--dir"])
def test_dir_is_created_if_missing(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str
) -> None:
    server.add_file("/in-dir.bin", data)
    target = tmp_path / "new" / "deeper"
    r = run_main(capsys, flag, str(target), server.url("/in-dir.bin"))
    assert r.code == 0, r.err
    assert sha256(target / "in-dir.bin") == sha256(data)
    assert listing(target) == ["in-dir.bin"]  # no .part, sidecar or lock left behind


def test_output_with_several_urls_is_usage_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/a", b"a" * 10)
    server.add_file("/b", b"b" * 10)
    r = run_main(capsys, "-o", "x", server.url("/a"), server.url("/b"))
    assert r.code == 2
    assert "-o" in r.err
    assert gets(server) == []


# -- -q / -v ---------------------------------------------------------------------------------


def test_quiet_prints_nothing_on_success(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/q.bin", data)
    r = run_main(capsys, "-q", server.url("/q.bin"))
    assert r.code == 0
    assert (r.out, r.err) == ("", "")
    assert sha256(tmp_path / "q.bin") == sha256(data)


def test_quiet_still_reports_errors(server: FaultServer, capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys, "--quiet", server.url("/missing.bin"))
    assert r.code == 4
    assert "404" in r.err


def test_verbose_shows_info_logs(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/v.bin", data)
    r = run_main(capsys, server.url("/v.bin"))
    assert r.code == 0
    assert len(r.err.splitlines()) == 1
    os.unlink(tmp_path / "v.bin")
    r = run_main(capsys, "-v", server.url("/v.bin"))
    assert r.code == 0
    assert r.err.count("saved") == 1  # said once, not by the log as well
    os.unlink(tmp_path / "v.bin")
    r = run_main(capsys, "-vv", server.url("/v.bin"))
    assert r.code == 0
    assert f"({len(data)} bytes)" in r.err  # the DEBUG record


# -- -H / --user-agent -----------------------------------------------------------------------


def test_headers_are_sent_on_every_request(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/h.bin", data)
    r = run_main(
        capsys,
        "-H",
        "X-One: 1",
        "--header",
        "X-Two:  two words ",
        "-n",
        "3",
        server.url("/h.bin"),
    )
    assert r.code == 0, r.err
    reqs = gets(server, "/h.bin")
    assert len(reqs) >= 2
    for q in reqs:
        assert q.headers.get("X-One") == "1"
        assert q.headers.get("X-Two") == "two words"
    assert sha256(tmp_path / "h.bin") == sha256(data)


def test_required_header_gets_through(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/auth.bin", data)
    server.faults.require_header = ("Authorization", "Bearer t0k3n")
    r = run_main(capsys, server.url("/auth.bin"))
    assert r.code == 4  # 401 without the header
    assert "401" in r.err
    r = run_main(capsys, "-H", "Authorization: Bearer t0k3n", server.url("/auth.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "auth.bin") == sha256(data)


@pytest.mark.parametrize("header", ["NoColon", "Bad Name: v", ": value", "   : v"])
def test_malformed_header_is_usage_error(
    server: FaultServer, capsys: pytest.CaptureFixture, header: str
) -> None:
    server.add_file("/f", b"x")
    r = run_main(capsys, "-H", header, server.url("/f"))
    assert r.code == 2
    assert "header" in r.err
    assert gets(server) == []


def test_header_managed_by_accel_is_usage_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/f", b"x" * 1000)
    r = run_main(capsys, "-H", "Range: bytes=0-10", server.url("/f"))
    assert r.code == 2
    assert "Range" in r.err
    assert gets(server) == []
    assert not (tmp_path / "f").exists()


def test_user_agent(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/ua.bin", data)
    r = run_main(capsys, "--user-agent", "TestAgent/9.9", server.url("/ua.bin"))
    assert r.code == 0, r.err
    reqs = gets(server, "/ua.bin")
    assert reqs and all(q.headers.get("User-Agent") == "TestAgent/9.9" for q in reqs)


def test_default_user_agent_names_accel(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/ua2", b"u" * 1000)
    assert run_main(capsys, server.url("/ua2")).code == 0
    assert gets(server, "/ua2")[0].headers.get("User-Agent") == f"accel/{accel.__version__}"


# -- -i / --input-file -----------------------------------------------------------------------


def test_input_file_with_comments_and_blank_lines(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b = make_data(300 * KiB, 1), make_data(200 * KiB, 2)
    server.add_file("/a.bin", a)
    server.add_file("/b.bin", b)
    listfile = tmp_path / "urls.txt"
    listfile.write_text(
        f"# my downloads\n\n{server.url('/a.bin')}\n   \n  # {server.url('/c.bin')}\n"
        f"  {server.url('/b.bin')}  \n"
    )
    r = run_main(capsys, "-i", str(listfile))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "a.bin") == sha256(a)
    assert sha256(tmp_path / "b.bin") == sha256(b)
    assert {q.path for q in server.requests} == {"/a.bin", "/b.bin"}  # the comment is skipped
    lines = r.err.splitlines()
    assert len(lines) == 3, lines  # a line per file, then the summary
    assert lines[2].startswith("accel: 2 files: 2 ok, 0 failed; 500.0 KiB in ")


def test_input_file_from_stdin(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    a = make_data(100 * KiB, 3)
    server.add_file("/s.bin", a)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"# from stdin\n{server.url('/s.bin')}\n"))
    r = run_main(capsys, "--input-file", "-")
    assert r.code == 0, r.err
    assert sha256(tmp_path / "s.bin") == sha256(a)


def test_input_file_from_stdin_console_script(server: FaultServer, tmp_path: Path) -> None:
    a = make_data(100 * KiB, 4)
    server.add_file("/p.bin", a)
    proc = run_script("-i", "-", cwd=tmp_path, input=f"\n{server.url('/p.bin')}\n")
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "p.bin") == sha256(a)


def test_input_file_tab_separated_mirrors(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(3 * MiB, 5)
    server.add_file("/m.bin", data)
    server.faults.rate = 2 * MiB
    with FaultServer() as mirror:
        mirror.add_file("/m.bin", data)
        mirror.faults.rate = 2 * MiB
        listfile = tmp_path / "urls.txt"
        listfile.write_text(f"{server.url('/m.bin')}\t{mirror.url('/m.bin')}\n")
        r = run_main(capsys, "-n", "4", "-i", str(listfile))
        assert r.code == 0, r.err
        assert gets(mirror, "/m.bin"), "the second URL on the line was not used as a mirror"
        assert mirror.bytes_sent_for("/m.bin") > 1  # it served some of the file
    assert sha256(tmp_path / "m.bin") == sha256(data)
    assert len(r.err.splitlines()) == 1  # one file, not two


def test_input_file_bad_line_is_reported_and_the_rest_continue(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A list is read as it goes: a bad line fails alone (exit 2), a 404 alone (exit 4 is
    not the first failure), every other file arrives, and the summary counts them."""
    files = {f"/l{i}.bin": make_data(20 * KiB + i, 40 + i) for i in range(6)}
    for path, data in files.items():
        server.add_file(path, data)
    urls = [server.url(p) for p in files]
    listfile = tmp_path / "urls.txt"
    lines = [*urls[:3], "ftp://nope.example/x", server.url("/missing.bin"), *urls[3:]]
    listfile.write_text("\n".join(lines) + "\n")
    r = run_main(capsys, "-j", "3", "-i", str(listfile))
    assert r.code == 2, r.err  # the first failure: the bad line
    for path, data in files.items():
        assert sha256(tmp_path / path.lstrip("/")) == sha256(data)
    err = r.err.splitlines()
    assert any(f"{listfile}:4:" in line and "invalid URL" in line for line in err), err
    assert any("404" in line for line in err), err
    assert err[-1].startswith("accel: 8 files: 6 ok, 2 failed; "), err


def test_input_file_is_streamed(server: FaultServer, tmp_path: Path) -> None:
    """Downloads start before the list ends: the first file is saved while the writer of
    the list is still waiting to send the rest."""
    for name in ("a", "b"):
        server.add_file(f"/{name}.bin", make_data(10 * KiB, ord(name)))
    proc = subprocess.Popen(
        ["accel", "-i", "-"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(server.url("/a.bin") + "\n")
        proc.stdin.flush()
        wait_until(lambda: (tmp_path / "a.bin").exists(), 20, "the first file of an open list")
        proc.stdin.write(server.url("/b.bin") + "\n")
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert (tmp_path / "b.bin").read_bytes() == make_data(10 * KiB, ord("b"))


def test_missing_input_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys, "-i", str(tmp_path / "nope.txt"))
    assert r.code == 2
    assert "nope.txt" in r.err


def test_no_url_is_usage_error(capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys)
    assert r.code == 2
    assert "URL" in r.err


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "not a url", "http://"])
def test_bad_url_is_usage_error(capsys: pytest.CaptureFixture, url: str) -> None:
    r = run_main(capsys, url)
    assert r.code == 2
    assert r.err.startswith("accel: error:")


# -- -j / --jobs -----------------------------------------------------------------------------


@pytest.mark.parametrize(("jobs", "overlap"), [("2", True), ("1", False)])
def test_jobs_run_files_at_once(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, jobs: str, overlap: bool
) -> None:
    a, b = make_data(512 * KiB, 6), make_data(512 * KiB, 7)
    server.add_file("/ja.bin", a)
    server.add_file("/jb.bin", b)
    server.faults.rate = 768 * KiB  # each file takes ~0.7 s
    r = run_main(capsys, "-j", jobs, "-n", "1", server.url("/ja.bin"), server.url("/jb.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "ja.bin") == sha256(a)
    assert sha256(tmp_path / "jb.bin") == sha256(b)
    ra, rb = gets(server, "/ja.bin"), gets(server, "/jb.bin")
    a_end = max(q.ended or 0.0 for q in ra)
    b_start = min(q.started for q in rb)
    # Each file takes ~0.7 s; the server may pace up to 50 ms past the client's last byte.
    if overlap:
        assert b_start < a_end - 0.3, "with -j 2 the second file did not start while the first ran"
    else:
        assert b_start > a_end - 0.1, "with -j 1 the files overlapped"


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_bad_jobs_is_usage_error(capsys: pytest.CaptureFixture, value: str) -> None:
    assert run_main(capsys, "-j", value, "http://127.0.0.1:1/x").code == 2


# -- --checksum ------------------------------------------------------------------------------


def test_checksum_match(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/c.bin", data)
    r = run_main(capsys, "--checksum", f"sha256={sha256(data)}", server.url("/c.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "c.bin") == sha256(data)


def test_checksum_uppercase_hex_and_algo_accepted(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/cu.bin", data)
    r = run_main(capsys, "--checksum", f"SHA256={sha256(data).upper()}", server.url("/cu.bin"))
    assert r.code == 0, r.err
    assert (tmp_path / "cu.bin").exists()


def test_checksum_mismatch_exit_5_and_no_file(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/bad.bin", data)
    r = run_main(capsys, "--checksum", "sha256=" + "0" * 64, server.url("/bad.bin"))
    assert r.code == 5
    assert "checksum" in r.err
    assert not (tmp_path / "bad.bin").exists()
    assert (tmp_path / "bad.bin.part").exists()  # kept: the right checksum finishes it


def test_checksum_existing_file_matches_downloads_nothing(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/have.bin", data)
    (tmp_path / "have.bin").write_bytes(data)
    r = run_main(capsys, "--checksum", f"sha256={sha256(data)}", server.url("/have.bin"))
    assert r.code == 0, r.err
    assert "already complete" in r.err
    assert server.bytes_sent == 0
    assert sum(q.body_bytes_sent for q in gets(server)) == 0


def test_checksum_existing_file_mismatch_is_in_the_way(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/other.bin", data)
    (tmp_path / "other.bin").write_bytes(b"unrelated")
    r = run_main(capsys, "--checksum", f"sha256={sha256(data)}", server.url("/other.bin"))
    assert r.code == 6
    assert "--force" in r.err
    assert (tmp_path / "other.bin").read_bytes() == b"unrelated"


def test_checksum_md5(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Any fixed-size hashlib algorithm is accepted (README), md5 included."""
    server.add_file("/md5.bin", data)
    r = run_main(
        capsys, "--checksum", f"md5={hashlib.md5(data).hexdigest()}", server.url("/md5.bin")
    )
    assert r.code == 0, r.err
    assert sha256(tmp_path / "md5.bin") == sha256(data)


@pytest.mark.parametrize(
    "spec",
    ["sha256=xyz", "nope=00", "sha256", "sha256=", "=abcd", "md5=" + "0" * 31, "shake_128=00"],
)
def test_bad_checksum_spec_is_usage_error(
    server: FaultServer, capsys: pytest.CaptureFixture, spec: str
) -> None:
    server.add_file("/f", b"x")
    r = run_main(capsys, "--checksum", spec, server.url("/f"))
    assert r.code == 2
    assert "checksum" in r.err
    assert gets(server) == []


# -- --limit-rate ----------------------------------------------------------------------------


def test_limit_rate_slows_the_download(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(600 * KiB, 8)
    server.add_file("/slow.bin", data)
    t0 = time.monotonic()
    r = run_main(capsys, "--limit-rate", "200K", "-n", "4", server.url("/slow.bin"))
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.err
    assert sha256(tmp_path / "slow.bin") == sha256(data)
    assert elapsed >= 2.0, f"600 KiB at 200 KiB/s took only {elapsed:.2f}s"


@pytest.mark.parametrize("rate", ["0", "-5K", "fast", "10X", "K", ""])
def test_bad_limit_rate_is_usage_error(capsys: pytest.CaptureFixture, rate: str) -> None:
    r = run_main(capsys, "--limit-rate", rate, "http://127.0.0.1:1/x")
    assert r.code == 2
    assert "rate" in r.err


# -- --timeout / --retries -------------------------------------------------------------------


def test_timeout_turns_a_stall_into_a_network_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/stall.bin", make_data(256 * KiB, 9))
    server.faults.stall_seconds = 6.0
    server.faults.stall_after_bytes = 64 * KiB
    server.faults.stall_times = 100
    t0 = time.monotonic()
    r = run_main(capsys, "--timeout", "0.5", "--retries", "0", "-n", "1", server.url("/stall.bin"))
    assert r.code == 3, r.err
    assert time.monotonic() - t0 < 5.0  # the 0.5 s timeout fired, not the 6 s stall's end
    assert not (tmp_path / "stall.bin").exists()


def test_timeout_then_retry_recovers(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(256 * KiB, 10)
    server.add_file("/stall1.bin", data)
    server.faults.stall_seconds = 6.0
    server.faults.stall_after_bytes = 64 * KiB
    server.faults.stall_times = 1
    t0 = time.monotonic()
    r = run_main(capsys, "--timeout", "0.5", "--retries", "2", server.url("/stall1.bin"))
    assert r.code == 0, r.err
    assert time.monotonic() - t0 < 5.0
    assert sha256(tmp_path / "stall1.bin") == sha256(data)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout_is_usage_error(capsys: pytest.CaptureFixture, value: str) -> None:
    r = run_main(capsys, "--timeout", value, "http://127.0.0.1:1/x")
    assert r.code == 2
    assert "timeout" in r.err


def test_retries_ride_out_temporary_errors(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/r.bin", data)
    server.faults.status_times = 2
    server.faults.status_code = 503
    r = run_main(capsys, "--retries", "3", server.url("/r.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "r.bin") == sha256(data)
    assert [q.status for q in server.requests[:2]] == [503, 503]


@pytest.mark.parametrize("retries", ["0", "1"])
def test_status_503_after_retries_is_http_error_exit_4(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture, retries: str
) -> None:
    """A final 503 is an HTTP error status (exit 4, like a 404), not a network error (3)."""
    server.add_file("/r2.bin", data)
    server.faults.status_times = 100
    server.faults.status_code = 503
    r = run_main(capsys, "--retries", retries, server.url("/r2.bin"))
    assert r.code == 4, r.err
    assert "503" in r.err
    assert not (tmp_path / "r2.bin").exists()


def test_status_503_on_segments_after_retries_is_http_error_exit_4(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The first range succeeds, every other range gets 503: exit 4 and the state is kept."""
    server.add_file("/seg503.bin", data)

    def busy_after_first(handler, log: RequestLog) -> bool:
        if log.range_header and not log.range_header.startswith("bytes=0-"):
            handler.send_simple(503, b"busy")
            return True
        return False

    server.faults.on_request = busy_after_first
    r = run_main(capsys, "--retries", "1", server.url("/seg503.bin"))
    assert r.code == 4, r.err
    assert "503" in r.err
    assert not (tmp_path / "seg503.bin").exists()
    assert (tmp_path / "seg503.bin.part.json").exists()


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_retries_n_means_n_plus_one_tries(
    server: FaultServer, data: bytes, capsys: pytest.CaptureFixture, retries: int
) -> None:
    server.add_file("/rn.bin", data)
    server.faults.status_times = 100
    server.faults.status_code = 500
    r = run_main(capsys, "--retries", str(retries), server.url("/rn.bin"))
    assert r.code != 0
    assert len(server.requests) == retries + 1, [q.status for q in server.requests]


@pytest.mark.parametrize("value", ["-1", "many"])
def test_bad_retries_is_usage_error(capsys: pytest.CaptureFixture, value: str) -> None:
    assert run_main(capsys, "--retries", value, "http://127.0.0.1:1/x").code == 2


# -- -k / --force / --max-filesize -----------------------------------------------------------


@pytest.mark.parametrize("flag", ["-k", "--insecure"])
def test_insecure_prints_a_warning(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str
) -> None:
    server.add_file("/k.bin", b"k" * 5000)
    r = run_main(capsys, flag, server.url("/k.bin"))
    assert r.code == 0, r.err
    assert re.search(r"warning.*(certificate|TLS)", r.err)
    assert "--insecure" in r.err
    assert (tmp_path / "k.bin").read_bytes() == b"k" * 5000


def test_existing_unrelated_file_needs_force(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/exists.bin", data)
    (tmp_path / "exists.bin").write_bytes(b"precious")
    r = run_main(capsys, server.url("/exists.bin"))
    assert r.code == 6
    assert "--force" in r.err
    assert (tmp_path / "exists.bin").read_bytes() == b"precious"
    r = run_main(capsys, "--force", server.url("/exists.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "exists.bin") == sha256(data)


def test_force_redownloads_a_complete_file(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/again.bin", data)
    assert run_main(capsys, server.url("/again.bin")).code == 0
    server.reset_counters()
    r = run_main(capsys, "--force", server.url("/again.bin"))
    assert r.code == 0, r.err
    assert "already complete" not in r.err
    assert server.bytes_sent_for("/again.bin") >= len(data)
    assert sha256(tmp_path / "again.bin") == sha256(data)


def test_max_filesize_refuses_larger_file(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/big.bin", data)
    r = run_main(capsys, "--max-filesize", "1M", server.url("/big.bin"))
    assert r.code == 7  # a refusal of the remote file: its own exit code
    assert not (tmp_path / "big.bin").exists()
    assert not (tmp_path / "big.bin.part").exists()


def test_max_filesize_allows_smaller_file(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/ok.bin", data)
    r = run_main(capsys, "--max-filesize", "4M", server.url("/ok.bin"))
    assert r.code == 0, r.err
    assert sha256(tmp_path / "ok.bin") == sha256(data)


def test_bad_max_filesize_is_usage_error(capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys, "--max-filesize", "huge", "http://127.0.0.1:1/x")
    assert r.code == 2


# -- --mirror --------------------------------------------------------------------------------


def test_mirror_always_failing_is_dropped(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/mir.bin", data)
    with FaultServer() as bad:
        bad.add_file("/mir.bin", data)
        bad.faults.status_times = 10**6
        bad.faults.status_code = 500
        r = run_main(
            capsys, "--retries", "1", "--mirror", bad.url("/mir.bin"), server.url("/mir.bin")
        )
        assert bad.requests, "the mirror was never tried"
    assert r.code == 0, r.err
    assert sha256(tmp_path / "mir.bin") == sha256(data)


def test_two_mirrors_share_the_work(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = make_data(4 * MiB, 13)
    server.add_file("/share.bin", data)
    server.faults.rate = 2 * MiB
    with FaultServer() as m1, FaultServer() as m2:
        for m in (m1, m2):
            m.add_file("/share.bin", data)
            m.faults.rate = 2 * MiB
        r = run_main(
            capsys,
            "-n",
            "6",
            "--mirror",
            m1.url("/share.bin"),
            "--mirror",
            m2.url("/share.bin"),
            server.url("/share.bin"),
        )
        assert r.code == 0, r.err
        assert gets(m1, "/share.bin") and gets(m2, "/share.bin")
    assert sha256(tmp_path / "share.bin") == sha256(data)


def test_mirrors_disagreeing_on_size_exit_5(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/dis.bin", data)
    with FaultServer() as other:
        other.add_file("/dis.bin", data + b"extra")
        r = run_main(capsys, "--mirror", other.url("/dis.bin"), server.url("/dis.bin"))
    assert r.code == 5
    assert "mirror" in r.err
    assert not (tmp_path / "dis.bin").exists()


def test_mirror_with_several_urls_is_usage_error(capsys: pytest.CaptureFixture) -> None:
    r = run_main(
        capsys, "--mirror", "http://127.0.0.1:1/m", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"
    )
    assert r.code == 2
    assert "--mirror" in r.err


# -- several URLs and exit codes ---------------------------------------------------------------


def test_several_urls_one_404(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b = make_data(200 * KiB, 20), make_data(300 * KiB, 21)
    server.add_file("/good1.bin", a)
    server.add_file("/good2.bin", b)
    r = run_main(
        capsys,
        server.url("/good1.bin"),
        server.url("/missing1.bin"),
        server.url("/good2.bin"),
        server.url("/missing2.bin"),
    )
    assert r.code == 4
    assert "missing1.bin" in r.err and "missing2.bin" in r.err
    assert r.err.count("404") >= 2
    assert sha256(tmp_path / "good1.bin") == sha256(a)
    assert sha256(tmp_path / "good2.bin") == sha256(b)
    assert not (tmp_path / "missing1.bin").exists()


@pytest.mark.parametrize("refused_first", [False, True])
def test_exit_code_is_the_first_failures(
    server: FaultServer, capsys: pytest.CaptureFixture, refused_first: bool
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/x.bin"
    missing = server.url("/nothing.bin")
    urls = [refused, missing] if refused_first else [missing, refused]
    r = run_main(capsys, "--retries", "0", *urls)
    assert r.code == (3 if refused_first else 4)
    assert len([line for line in r.err.splitlines() if line.startswith("accel: error:")]) == 2


def test_connection_refused_exit_3(capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys, "--retries", "0", f"http://127.0.0.1:{closed_port()}/f.bin")
    assert r.code == 3
    assert r.err.startswith("accel: error:")
    assert not Path("f.bin").exists()


def test_404_exit_4(server: FaultServer, capsys: pytest.CaptureFixture) -> None:
    r = run_main(capsys, server.url("/no-such-file"))
    assert r.code == 4
    assert "404" in r.err
    assert not Path("no-such-file").exists()


def test_exit_codes_through_console_script(server: FaultServer, tmp_path: Path) -> None:
    proc = run_script(server.url("/absent.bin"), cwd=tmp_path)
    assert proc.returncode == 4
    assert "404" in proc.stderr
    proc = run_script("--retries", "0", f"http://127.0.0.1:{closed_port()}/f", cwd=tmp_path)
    assert proc.returncode == 3
    proc = run_script("-n", "0", server.url("/x"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("accel: error:")


def test_help_lists_every_exit_code(tmp_path: Path) -> None:
    proc = run_script("--help", cwd=tmp_path)
    assert proc.returncode == 0
    epilog = proc.stdout.split("exit codes:", 1)[1]
    codes = {int(m) for m in re.findall(r"^\s+(\d+)\s+\S", epilog, re.MULTILINE)}
    assert {0, 1, 2, 3, 4, 5, 6, 130} <= codes
    assert "143" in epilog
    for option in ("--connections", "--checksum", "--limit-rate", "--mirror", "--jobs"):
        assert option in proc.stdout


def test_help_epilog_in_parser() -> None:
    epilog = cli_args.build_parser().epilog or ""
    for code in (0, 1, 2, 3, 4, 5, 6, 130):
        assert re.search(rf"^\s+{code}\s+\w", epilog, re.MULTILINE), code


def test_version_console_script(tmp_path: Path) -> None:
    proc = run_script("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"accel {accel.__version__}"


def test_version_in_process_returns_zero(capsys: pytest.CaptureFixture) -> None:
    """``main(argv) -> int`` returns the exit code, also for --version (no SystemExit)."""
    r = run_main(capsys, "--version")
    assert r.code == 0
    assert r.out.strip() == f"accel {accel.__version__}"


# -- progress output -------------------------------------------------------------------------


def test_pipe_output_one_summary_line_per_file(server: FaultServer, tmp_path: Path) -> None:
    a, b = make_data(1 * MiB, 30), make_data(2 * MiB, 31)
    server.add_file("/p1.bin", a)
    server.add_file("/p2.bin", b)
    server.faults.rate = 2 * MiB
    proc = run_script("-j", "2", server.url("/p1.bin"), server.url("/p2.bin"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    assert "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3, lines
    summary, total = lines[:2], lines[2]
    assert sorted(line.split()[2] for line in summary) == [
        str(tmp_path / "p1.bin"),
        str(tmp_path / "p2.bin"),
    ]
    assert all(line.startswith("accel: saved ") for line in summary)
    assert total.startswith("accel: 2 files: 2 ok, 0 failed; 3.0 MiB in "), total
    assert proc.stdout == ""


def test_pipe_output_quiet_is_empty(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/pq.bin", make_data(MiB, 32))
    proc = run_script("-q", server.url("/pq.bin"), cwd=tmp_path)
    assert proc.returncode == 0
    assert (proc.stdout, proc.stderr) == ("", "")
    assert (tmp_path / "pq.bin").exists()


# -- mtime, already complete, names ----------------------------------------------------------


def test_mtime_is_last_modified_and_rerun_is_already_complete(
    server: FaultServer, data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/lm.bin", data, last_modified=FIXED_LM)
    r = run_main(capsys, server.url("/lm.bin"))
    assert r.code == 0, r.err
    path = tmp_path / "lm.bin"
    assert path.stat().st_mtime == FIXED_TS
    r = run_main(capsys, server.url("/lm.bin"))
    assert r.code == 0, r.err
    assert "already complete" in r.err
    assert "saved" not in r.err
    assert path.stat().st_mtime == FIXED_TS
    assert sha256(path) == sha256(data)


def test_mtime_auto_last_modified(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/auto.bin", make_data(500 * KiB, 38), last_modified="auto")
    proc = run_script(server.url("/auto.bin"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = parsedate_to_datetime(server.last_modified("/auto.bin") or "").timestamp()
    assert (tmp_path / "auto.bin").stat().st_mtime == expected
    proc = run_script(server.url("/auto.bin"), cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr.strip() == f"accel: {Path('auto.bin')} is already complete"


def test_name_from_content_disposition_is_a_safe_basename(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    data = make_data(300 * KiB, 39)
    server.add_file("/download", data, content_disposition='attachment; filename="../../evil.bin"')
    r = run_main(capsys, "-d", str(work), server.url("/download?id=1"))
    assert r.code == 0, r.err
    assert listing(work) == ["evil.bin"]
    assert sha256(work / "evil.bin") == sha256(data)
    assert not (tmp_path / "evil.bin").exists()
    assert not (tmp_path.parent / "evil.bin").exists()


def test_name_from_content_disposition_utf8(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    disposition = "attachment; filename=\"plain.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    server.add_file("/get", b"z" * 1000, content_disposition=disposition)
    r = run_main(capsys, server.url("/get"))
    assert r.code == 0, r.err
    assert (tmp_path / "résumé.txt").read_bytes() == b"z" * 1000
    assert not (tmp_path / "get").exists()


def test_name_from_url_when_no_content_disposition(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.add_file("/files/my report.pdf", b"pdf" * 100)
    r = run_main(capsys, server.url("/files/my%20report.pdf?token=abc"))
    assert r.code == 0, r.err
    assert (tmp_path / "my report.pdf").read_bytes() == b"pdf" * 100


# -- config file -----------------------------------------------------------------------------


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_sets_defaults(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    cfg = write_config(
        tmp_path / "conf" / "my.conf",
        "# defaults\nconnections = 1\nheader = X-From-Config: 1\n\nquiet = true\n",
    )
    monkeypatch.setenv("ACCEL_CONFIG", str(cfg))
    data = make_data(2 * MiB + 1, 40)
    server.add_file("/cfg.bin", data)
    r = run_main(capsys, server.url("/cfg.bin"))
    assert r.code == 0, r.err
    assert r.err == ""  # quiet = true
    reqs = gets(server, "/cfg.bin")
    assert all(q.headers.get("X-From-Config") == "1" for q in reqs)
    assert max_overlap(reqs) == 1  # connections = 1
    assert sha256(tmp_path / "cfg.bin") == sha256(data)


def test_flags_win_over_config(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    cfg = write_config(
        tmp_path / "accel.conf",
        "connections = 1\nuser-agent = FromConfig\ntimeout = 0.001\nquiet = false\n",
    )
    monkeypatch.setenv("ACCEL_CONFIG", str(cfg))
    data = make_data(3 * MiB, 41)
    server.add_file("/win.bin", data)
    server.faults.rate = 3 * MiB
    r = run_main(
        capsys, "-n", "3", "--timeout", "30", "--user-agent", "FromFlag", server.url("/win.bin")
    )
    assert r.code == 0, r.err
    reqs = gets(server, "/win.bin")
    assert all(q.headers.get("User-Agent") == "FromFlag" for q in reqs)
    assert max_overlap(reqs) >= 2  # -n 3 beat connections = 1
    assert "accel: saved" in r.err  # quiet = false
    assert sha256(tmp_path / "win.bin") == sha256(data)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("connections = 4\n\nbogus = 1\n", 3, "bogus"),
        ("# c\nconnections = 99\n", 2, "connection"),
        ("quiet = maybe\n", 1, "quiet"),
        ("limit-rate = fast\n", 1, "rate"),
        ("connections = 2\njust words\n", 2, ""),
        ("output = x.bin\n", 1, "output"),
        ("header = NoColon\n", 1, "header"),
    ],
)
def test_bad_config_names_file_and_line(
    server: FaultServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch,
    text: str,
    line: int,
    needle: str,
) -> None:
    cfg = write_config(tmp_path / "bad.conf", text)
    monkeypatch.setenv("ACCEL_CONFIG", str(cfg))
    server.add_file("/f", b"x")
    r = run_main(capsys, server.url("/f"))
    assert r.code == 2
    assert f"{cfg}:{line}" in r.err
    assert needle in r.err
    assert gets(server) == []


def test_missing_config_named_by_env_is_usage_error(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    missing = tmp_path / "does-not-exist.conf"
    monkeypatch.setenv("ACCEL_CONFIG", str(missing))
    server.add_file("/f", b"x")
    r = run_main(capsys, server.url("/f"))
    assert r.code == 2
    assert str(missing) in r.err
    assert gets(server) == []


def test_default_config_location_from_platformdirs(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    expected = Path(platformdirs.user_config_dir("accel")) / "accel.conf"
    assert expected == xdg / "accel" / "accel.conf"
    assert config_path() == expected
    write_config(expected, "header = X-Default: yes\n")
    server.add_file("/d.bin", b"d" * 1000)
    r = run_main(capsys, server.url("/d.bin"))
    assert r.code == 0, r.err
    assert gets(server, "/d.bin")[0].headers.get("X-Default") == "yes"


def test_no_config_file_is_fine(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert not config_path().exists()
    server.add_file("/n.bin", b"n" * 100)
    assert run_main(capsys, server.url("/n.bin")).code == 0


def test_config_through_console_script(server: FaultServer, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.conf", "header = X-Script: ok\nquiet = yes\n")
    env = dict(os.environ, ACCEL_CONFIG=str(cfg))
    server.add_file("/cs.bin", b"c" * 5000)
    proc = run_script(server.url("/cs.bin"), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert gets(server, "/cs.bin")[0].headers.get("X-Script") == "ok"
    bad = write_config(tmp_path / "b.conf", "connections = 1\nfrobnicate = yes\n")
    proc = run_script(server.url("/cs.bin"), cwd=tmp_path, env=dict(env, ACCEL_CONFIG=str(bad)))
    assert proc.returncode == 2
    assert f"{bad}:2" in proc.stderr


def test_help_names_the_default_config_path(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg-help"
    env = dict(os.environ, XDG_CONFIG_HOME=str(xdg))
    env.pop("ACCEL_CONFIG", None)
    proc = run_script("--help", cwd=tmp_path, env=env)
    assert proc.returncode == 0
    assert str(xdg / "accel" / "accel.conf") in proc.stdout
