"""-u/--user, ~/.netrc (as today, through requests), --netrc-file and --no-netrc.

Checked on the server side: two FaultServers on 127.0.0.1 and 127.0.0.2 are two origins
(and two netrc hosts); each logs the Authorization it received.
"""

from __future__ import annotations

import base64
import fcntl
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

import accel
from accel.exceptions import HTTPError, UsageError
from tests.helpers import KiB, accel_cmd, accel_env, fast_options, fast_retry, gets
from tests.servers import FaultServer, make_data

FAST = fast_retry(1, backoff_max=0.02)
DATA = make_data(400 * KiB, seed=22)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def second() -> Iterator[FaultServer]:
    """Another origin and another host for netrc: 127.0.0.2."""
    with FaultServer("127.0.0.2") as srv:
        yield srv


@pytest.fixture
def netrc_file(tmp_path: Path) -> Path:
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login alice password a-secret\n"
        "machine 127.0.0.2\n  login bob\n  password b-secret\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def _isolated_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real ~/.netrc is read: HOME is an empty directory, NETRC unset."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)


def auths(srv: FaultServer) -> list:
    return [r.headers.get("Authorization") for r in srv.requests]


def cli(*args: str, cwd: Path, env: Optional[Dict[str, str]] = None, **kw):
    return subprocess.run(
        accel_cmd("-q", "--retries", "0", *args),
        cwd=cwd,
        env={**accel_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


# -- -u / auth=: the URL's origin only -------------------------------------------------------


def test_auth_goes_to_every_request_of_the_origin(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/f.bin", DATA)
    server.faults.require_header = ("Authorization", basic("me", "pw:with:colons"))
    out = accel.download(
        server.url("/f.bin"),
        tmp_path / "f.bin",
        options=fast_options(FAST),
        auth=("me", "pw:with:colons"),
    )
    assert out.read_bytes() == DATA
    assert len(gets(server)) >= 2 and all(r.status in (200, 206) for r in gets(server))


def test_auth_is_not_sent_across_a_redirect_to_another_origin(
    server: FaultServer, second: FaultServer, tmp_path: Path
) -> None:
    second.add_file("/f.bin", DATA)
    server.faults.redirects = {"/go": second.url("/f.bin")}
    out = accel.download(
        server.url("/go"), tmp_path / "f.bin", options=fast_options(FAST), auth=("me", "pw")
    )
    assert out.read_bytes() == DATA
    assert auths(server) == [basic("me", "pw")] * len(server.requests)
    assert set(auths(second)) == {None}


def test_auth_survives_a_same_origin_redirect(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/real.bin", DATA)
    server.faults.redirects = {"/go": "/real.bin"}
    server.faults.require_header = ("Authorization", basic("me", "pw"))
    out = accel.download(
        server.url("/go"), tmp_path / "f.bin", options=fast_options(FAST), auth=("me", "pw")
    )
    assert out.read_bytes() == DATA


def test_auth_is_checked() -> None:
    for bad in (("a:b", "c"), ("a",), ("a", 1), "a:b", ("a", "b\r\nX: y")):
        with pytest.raises(UsageError):
            accel.Options(auth=bad)  # type: ignore[arg-type]
    assert "secret" not in repr(accel.Options(auth=("u", "secret"), proxy="http://u:secret@p"))


# -- netrc: per host, as curl has it ---------------------------------------------------------


def test_netrc_from_the_environment_is_used_as_today(
    server: FaultServer, netrc_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_file("/f.bin", DATA)
    server.faults.require_header = ("Authorization", basic("alice", "a-secret"))
    with pytest.raises(HTTPError):  # no netrc: 401
        accel.download(server.url("/f.bin"), tmp_path / "a.bin", options=fast_options(FAST))
    monkeypatch.setenv("NETRC", str(netrc_file))
    out = accel.download(server.url("/f.bin"), tmp_path / "b.bin", options=fast_options(FAST))
    assert out.read_bytes() == DATA


def test_home_netrc_is_read_by_default(
    server: FaultServer, netrc_file: Path, tmp_path: Path
) -> None:
    server.add_file("/f.bin", DATA)
    server.faults.require_header = ("Authorization", basic("alice", "a-secret"))
    (tmp_path / "home" / ".netrc").write_bytes(netrc_file.read_bytes())
    (tmp_path / "home" / ".netrc").chmod(0o600)
    res = cli(server.url("/f.bin"), cwd=tmp_path, env={"HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_netrc_is_per_host_across_a_redirect(
    server: FaultServer,
    second: FaultServer,
    other_server: FaultServer,
    netrc_file: Path,
    tmp_path: Path,
) -> None:
    """As curl: the redirect target gets its own netrc entry, never the first host's; a host
    without an entry gets nothing."""
    second.add_file("/f.bin", DATA)
    server.faults.redirects = {"/go": second.url("/f.bin")}
    out = accel.download(
        server.url("/go"), tmp_path / "f.bin", options=fast_options(FAST), netrc=netrc_file
    )
    assert out.read_bytes() == DATA
    assert set(auths(server)) == {basic("alice", "a-secret")}
    assert set(auths(second)) == {basic("bob", "b-secret")}
    third = FaultServer("127.0.0.3").start()
    try:
        third.add_file("/f.bin", DATA)
        second.faults.redirects = {"/go": third.url("/f.bin")}
        accel.download(
            second.url("/go"), tmp_path / "g.bin", options=fast_options(FAST), netrc=netrc_file
        )
        assert set(auths(third)) == {None}
    finally:
        third.stop()


def test_user_wins_over_netrc_at_the_origin(
    server: FaultServer, second: FaultServer, netrc_file: Path, tmp_path: Path
) -> None:
    second.add_file("/f.bin", DATA)
    server.faults.redirects = {"/go": second.url("/f.bin")}
    accel.download(
        server.url("/go"),
        tmp_path / "f.bin",
        options=fast_options(FAST),
        netrc=netrc_file,
        auth=("carol", "c-secret"),
    )
    assert set(auths(server)) == {basic("carol", "c-secret")}
    assert set(auths(second)) == {basic("bob", "b-secret")}  # netrc: bob's own host


def test_cli_netrc_file_and_no_netrc(server: FaultServer, netrc_file: Path, tmp_path: Path) -> None:
    server.add_file("/f.bin", DATA)
    other = tmp_path / "other-netrc"
    other.write_text("machine 127.0.0.1 login mallory password m-secret\n")
    env = {"NETRC": str(other)}
    res = cli(server.url("/f.bin"), "--netrc-file", str(netrc_file), cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert set(auths(server)) == {basic("alice", "a-secret")}
    server.reset_counters()
    res = cli(server.url("/f.bin"), "--force", "--no-netrc", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert set(auths(server)) == {None}
    res = cli(server.url("/f.bin"), "--no-netrc", "--netrc-file", str(netrc_file), cwd=tmp_path)
    assert res.returncode == 2 and "contradict" in res.stderr


def test_cli_bad_netrc_file_is_a_usage_error_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad-netrc"
    bad.write_text("machine h login u password p\nbogus token\n")
    res = cli("http://127.0.0.1:9/f", "--netrc-file", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "invalid netrc file" in res.stderr and "line 2" in res.stderr
    res = cli("http://127.0.0.1:9/f", "--netrc-file", str(tmp_path / "none"), cwd=tmp_path)
    assert res.returncode == 2 and "netrc file" in res.stderr


def test_cli_config_file_takes_netrc_file_but_not_user(
    server: FaultServer, netrc_file: Path, tmp_path: Path
) -> None:
    server.add_file("/f.bin", DATA)
    conf = tmp_path / "accel.conf"
    conf.write_text(f"netrc-file = {netrc_file}\n")
    res = cli(server.url("/f.bin"), cwd=tmp_path, env={"ACCEL_CONFIG": str(conf)})
    assert res.returncode == 0, res.stderr
    assert set(auths(server)) == {basic("alice", "a-secret")}
    conf.write_text("user = me:secret\n")
    res = cli(server.url("/f.bin"), cwd=tmp_path, env={"ACCEL_CONFIG": str(conf)})
    assert res.returncode == 2
    assert "accel.conf:1" in res.stderr and "netrc" in res.stderr and "secret" not in res.stderr


# -- -u on the command line ------------------------------------------------------------------


def test_cli_user_with_password(server: FaultServer, second: FaultServer, tmp_path: Path) -> None:
    second.add_file("/f.bin", DATA)
    server.faults.redirects = {"/go": second.url("/f.bin")}
    res = cli(server.url("/go"), "-u", "me:p:w", "-o", "f.bin", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert set(auths(server)) == {basic("me", "p:w")}
    assert set(auths(second)) == {None}


def test_cli_user_without_password_and_no_terminal_is_a_usage_error(tmp_path: Path) -> None:
    res = cli("http://127.0.0.1:9/f", "-u", "me", cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no password" in lines[0] and "terminal" in lines[0]


def test_cli_user_without_password_asks_on_the_terminal(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("/f.bin", DATA)
    server.faults.require_header = ("Authorization", basic("me", "typed secret"))
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        accel_cmd("-q", "--retries", "0", "-u", "me", server.url("/f.bin")),
        cwd=tmp_path,
        env=accel_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=controlling_tty,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"password" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 1024)
        assert b"Enter host password for user 'me':" in seen, seen
        os.write(master, b"typed secret\n")
        assert proc.wait(30) == 0
        try:
            while select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 1024)
        except OSError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"typed secret" not in seen  # not echoed
    assert (tmp_path / "f.bin").read_bytes() == DATA
