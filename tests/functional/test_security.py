"""Security guarantees, each checked against a real local server (plain HTTP or TLS):

safe file names, no overwrite without force, no symlink following, a private sidecar,
credentials never sent to another origin, no https->http downgrade, TLS verification,
strict size headers, free-space and max-size checks, no decompression, one download per file.
"""

from __future__ import annotations

import gzip
import os
import ssl
import stat
import unicodedata
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import certifi
import pytest
import trustme

import accel
from accel import Options
from accel._util.names import FALLBACK_NAME
from tests.helpers import (
    KiB,
    MiB,
    fast_options,
    fast_retry,
    gets,
    interrupt,
    listing,
    one_line,
    popen_accel,
    range_bounds,
    run_accel,
    sha256,
    sidecar_written,
    wait_until,
    written,
)
from tests.servers import FaultHandler, FaultServer, RequestLog, TLSFaultServer, make_data

FAST = fast_retry(1, backoff_max=0.02)
SUFFIX_ROOM = len(".part.json.tmp")


# -- helpers ---------------------------------------------------------------------------------


def opts(headers: Optional[Mapping[str, str]] = None, **kw: Any) -> Options:
    """Fast options: small segments, quick retries."""
    return fast_options(FAST, headers, **kw)


def tree(root: Path, skip: Optional[Path] = None) -> Dict[str, Tuple[int, int, int]]:
    """Every entry under ``root`` (except ``skip``): (mode, size, mtime_ns) for files/links."""
    out: Dict[str, Tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if skip is None or here / d != skip]
        for name in dirnames:
            out[str(here / name)] = (stat.S_IFDIR, 0, 0)
        for name in filenames:
            st = os.lstat(here / name)
            out[str(here / name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def assert_safe_basename(name: str) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name
    assert not any(unicodedata.category(c) == "Cc" for c in name), repr(name)
    assert len(name.encode("utf-8", "surrogateescape")) + SUFFIX_ROOM <= 255


# -- TLS: a FaultServer behind trustme certificates ------------------------------------------


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_path(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(tls_ca: trustme.CA) -> Iterator[TLSFaultServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with TLSFaultServer(ctx) as srv:
        yield srv


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CA bundle from the environment (requests reads these two variables)."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=["clean-env", "env-ca-bundle"])
def ca_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run with and without REQUESTS_CA_BUNDLE set (to a bundle without the test CA):
    an explicit ``verify``/``--ca-bundle``/``--insecure`` must win over the environment."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    if request.param == "env-ca-bundle":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())


# -- 1. names --------------------------------------------------------------------------------

LONG = "a" * 300 + ".bin"

CD_CASES = [
    ('attachment; filename="../../x.bin"', "x.bin"),
    ('attachment; filename="/etc/passwd"', "passwd"),
    ('attachment; filename="..\\\\..\\\\x.bin"', "x.bin"),
    ("attachment; filename=..\\..\\x.bin", "x.bin"),
    ("attachment; filename*=UTF-8''..%2F..%2Fx.bin", "x.bin"),
    ("attachment; filename*=UTF-8''..%5C..%5Cx.bin", "x.bin"),
    ("attachment; filename*=UTF-8''%2Fetc%2Fpasswd", "passwd"),
    ("attachment; filename*=UTF-8''x%00y.bin", None),
    ('attachment; filename="x\x00y.bin"', None),
    ('attachment; filename="x\x01\x1by.bin"', None),
    ('attachment; filename="x\ty.bin"', None),
    ('attachment; filename=".."', "url-name.bin"),
    ('attachment; filename="."', "url-name.bin"),
    ('attachment; filename="../"', "url-name.bin"),
    (f'attachment; filename="{LONG}"', None),
]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    """A download directory deep inside tmp_path; nothing outside it may change."""
    dl = tmp_path / "a" / "b" / "dl"
    dl.mkdir(parents=True)
    (tmp_path / "a" / "x.bin").write_bytes(b"decoy")  # where ../x.bin would land
    before = tree(tmp_path.parent, skip=dl)
    passwd = sha256(Path("/etc/passwd")) if Path("/etc/passwd").exists() else None
    yield dl
    after = tree(tmp_path.parent, skip=dl)
    assert after == before, (
        f"files outside the download directory changed: {after.keys() ^ before.keys()}"
    )
    if passwd is not None:
        assert sha256(Path("/etc/passwd")) == passwd


@pytest.mark.parametrize(("disposition", "expected"), CD_CASES)
def test_content_disposition_name_is_one_safe_basename(
    server: FaultServer, sandbox: Path, disposition: str, expected: Optional[str]
) -> None:
    data = make_data(200 * KiB + 5, seed=1)
    server.add_file("/dl/url-name.bin", data, content_disposition=disposition)
    path = accel.Downloader(server.url("/dl/url-name.bin"), directory=sandbox, options=opts()).run()
    assert listing(sandbox) == [path.name]
    assert path.parent == sandbox
    assert_safe_basename(path.name)
    if expected is not None:
        assert path.name == expected
    if disposition.endswith(f'"{LONG}"'):
        assert path.name.startswith("aaaa")
    assert (sandbox / path.name).read_bytes() == data


URL_CASES = [
    ("/..%2F..%2Fu.bin", "u.bin"),
    ("/..%5C..%5Cu.bin", "u.bin"),
    ("/%2Fetc%2Fpasswd", "passwd"),
    ("/a%00b.bin", None),
    ("/a%0Ab.bin", None),
    ("/%2E%2E", FALLBACK_NAME),
    ("/dir/", FALLBACK_NAME),
    ("/" + "b" * 300 + ".bin", None),
]


@pytest.mark.parametrize(("path", "expected"), URL_CASES)
def test_url_name_is_one_safe_basename(
    server: FaultServer, sandbox: Path, path: str, expected: Optional[str]
) -> None:
    data = make_data(100 * KiB + 1, seed=2)
    # requests/urllib3 may normalize the path on the wire: serve every spelling.
    for served in {path, "/", "/..", "/dir/"}:
        server.add_file(served, data)
    saved = accel.Downloader(server.base_url + path, directory=sandbox, options=opts()).run()
    assert listing(sandbox) == [saved.name]
    assert_safe_basename(saved.name)
    if expected is not None:
        assert saved.name == expected
    assert saved.read_bytes() == data


def test_fallback_name_when_nothing_usable_remains(server: FaultServer, sandbox: Path) -> None:
    data = make_data(50 * KiB, seed=3)
    server.add_file("/dir/", data, content_disposition='attachment; filename="../\x00"')
    saved = accel.Downloader(server.url("/dir/"), directory=sandbox, options=opts()).run()
    assert saved.name == FALLBACK_NAME
    assert listing(sandbox) == [FALLBACK_NAME]
    assert saved.read_bytes() == data


def test_cli_traversal_name_stays_in_directory(server: FaultServer, sandbox: Path) -> None:
    data = make_data(300 * KiB, seed=4)
    server.add_file("/f", data, content_disposition='attachment; filename="../../x.bin"')
    proc = run_accel(server.url("/f"), "-n", "4", "-d", str(sandbox), "-q", cwd=sandbox.parent)
    assert proc.returncode == 0, proc.stderr
    assert listing(sandbox) == ["x.bin"]
    assert sha256(sandbox / "x.bin") == sha256(data)


# -- 2. never overwrite an unrelated file ------------------------------------------------------


@pytest.mark.parametrize("same_size", [False, True])
def test_existing_unrelated_file_is_not_overwritten(
    server: FaultServer, tmp_path: Path, same_size: bool
) -> None:
    data = make_data(200 * KiB, seed=5)
    server.add_file("/f.bin", data)
    mine = make_data(len(data), seed=99) if same_size else b"my own precious file"
    (tmp_path / "f.bin").write_bytes(mine)
    with pytest.raises(accel.OutputExistsError, match="force"):
        accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert (tmp_path / "f.bin").read_bytes() == mine
    assert listing(tmp_path) == ["f.bin"]


def test_cli_existing_file_exit_6_and_force_replaces(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(200 * KiB, seed=6)
    server.add_file("/f.bin", data)
    (tmp_path / "f.bin").write_bytes(b"mine")
    proc = run_accel(server.url("/f.bin"), cwd=tmp_path)
    assert proc.returncode == 6, proc.stderr
    assert "--force" in proc.stderr
    assert (tmp_path / "f.bin").read_bytes() == b"mine"
    proc = run_accel(server.url("/f.bin"), "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "f.bin") == sha256(data)


def test_file_appearing_during_download_is_not_overwritten(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(768 * KiB, seed=7)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    d = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).start()
    try:
        wait_until(lambda: written(d) > 0, 10, "progress")
        (tmp_path / "f.bin").write_bytes(b"created meanwhile")
        server.faults.rate = None
        assert d.wait(15)
    finally:
        d.cancel()
    with pytest.raises(accel.OutputExistsError):
        d.result()
    assert (tmp_path / "f.bin").read_bytes() == b"created meanwhile"


# -- 3. symlinks are never followed ----------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-file", "dangling"])
@pytest.mark.parametrize("suffix", ["", ".part", ".part.json", ".part.json.tmp", ".part.lock"])
def test_planted_symlink_is_never_followed(
    server: FaultServer, tmp_path: Path, suffix: str, dangling: bool
) -> None:
    data = make_data(400 * KiB + 3, seed=8)
    server.add_file("/f.bin", data)
    dl, outside = tmp_path / "dl", tmp_path / "outside"
    dl.mkdir()
    outside.mkdir()
    victim = outside / "victim"
    precious = b"do not touch " * 1000
    if not dangling:
        victim.write_bytes(precious)
    link = dl / ("f.bin" + suffix)
    link.symlink_to(victim)

    error: Optional[BaseException] = None
    try:
        path = accel.Downloader(server.url("/f.bin"), directory=dl, options=opts()).run()
    except accel.LocalFileError as exc:
        error = exc
        assert "\n" not in str(exc)
    if dangling:
        assert not victim.exists(), "accel created the symlink's target"
    else:
        assert victim.read_bytes() == precious, "the symlink's target was modified"
    assert os.listdir(outside) == ([] if dangling else ["victim"])
    if suffix == "":
        # The destination itself is in the way: never replaced without force.
        assert isinstance(error, accel.OutputExistsError)
        assert link.is_symlink()
    elif error is None:
        assert not path.is_symlink()
        assert path.read_bytes() == data


@pytest.mark.parametrize("suffix", [".part", ".part.lock"])
def test_cli_planted_symlink(server: FaultServer, tmp_path: Path, suffix: str) -> None:
    data = make_data(300 * KiB, seed=9)
    server.add_file("/f.bin", data)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / ("f.bin" + suffix)).symlink_to(victim)
    proc = run_accel(server.url("/f.bin"), "-q", cwd=dl)
    assert proc.returncode in (0, 6), proc.stderr
    if proc.returncode == 6:
        one_line(proc.stderr)
    else:
        assert sha256(dl / "f.bin") == sha256(data)
    assert victim.read_bytes() == b"precious"


def test_resume_with_part_replaced_by_symlink(server: FaultServer, tmp_path: Path) -> None:
    """A valid sidecar whose .part became a symlink (same size) is not resumed through it."""
    size = 1 * MiB
    data = make_data(size, seed=10)
    server.add_file("/f.bin", data)
    server.faults.rate = 64 * KiB  # slow enough to outlive the first commit (1 s)
    d = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).start()
    wait_until(lambda: (tmp_path / "f.bin.part.json").exists(), 10, "sidecar")
    wait_until(lambda: written(d) > 0, 10, "progress")
    d.cancel()
    with pytest.raises(accel.CancelledError):
        d.result(10)
    part = tmp_path / "f.bin.part"
    assert part.exists() and (tmp_path / "f.bin.part.json").exists()
    victim = tmp_path / "victim"
    precious = make_data(size, seed=11)
    victim.write_bytes(precious)
    part.unlink()
    part.symlink_to(victim)
    server.faults.rate = None
    try:
        path = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    except accel.LocalFileError:
        pass
    else:
        assert path.read_bytes() == data
    assert victim.read_bytes() == precious


# -- 4. sidecar privacy ----------------------------------------------------------------------

SECRET_HEADERS = {
    "Authorization": "Bearer secret-token",
    "X-Api-Key": "secret-key",
    "Cookie": "session=secret-cookie",
}


def test_sidecar_is_private_and_holds_no_credentials(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(1 * MiB, seed=12)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    url = f"http://user:secret-pass@127.0.0.1:{server.port}/f.bin"
    side = tmp_path / "f.bin.part.json"
    d = accel.Downloader(
        url, directory=tmp_path, options=opts(SECRET_HEADERS, commit_interval=0.05)
    ).start()
    try:
        wait_until(lambda: sidecar_written(side) > 0 or d.done, 10, "a sidecar with progress")
    finally:
        d.cancel()
    with pytest.raises(accel.CancelledError):
        d.result(10)
    assert gets(server)[0].headers.get("X-Api-Key") == "secret-key"  # it was really sent
    raw = side.read_bytes()
    assert b"secret" not in raw.lower()
    assert b"user" not in raw
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    for p in tmp_path.iterdir():
        if p.name != "f.bin.part":
            assert b"secret" not in p.read_bytes(), p.name


def test_cli_sidecar_holds_no_credentials(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(2 * MiB, seed=13)
    server.add_file("/f.bin", data)
    server.faults.rate = 256 * KiB
    url = f"http://user:secret-pass@127.0.0.1:{server.port}/f.bin"
    side = tmp_path / "f.bin.part.json"
    headers = ["-H", "X-Api-Key: secret-key", "-H", "Authorization: Bearer secret-token"]
    proc = popen_accel(url, "-n", "2", *headers, cwd=tmp_path)
    _, _, err = interrupt(proc, lambda: sidecar_written(side) > 0, 20, "sidecar")
    assert proc.returncode == 130, err
    raw = side.read_bytes()
    assert b"secret" not in raw.lower()
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    assert "secret" not in err


# -- 5. redirects ----------------------------------------------------------------------------

CREDENTIAL_HEADERS = {
    "Authorization": "Bearer secret-token",
    "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==",
    "Cookie": "sid=secret-cookie",
}


def _assert_no_credentials(requests_: List[RequestLog]) -> None:
    assert requests_
    for r in requests_:
        for name in CREDENTIAL_HEADERS:
            assert name not in r.headers, f"{name} leaked in {r.method} {r.range_header}"


def test_credentials_not_sent_to_another_origin_after_redirect(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(1 * MiB + 77, seed=14)
    other_server.add_file("/f.bin", data)
    server.faults.redirects = {"/f.bin": other_server.url("/f.bin")}
    path = accel.Downloader(
        server.url("/f.bin"), directory=tmp_path, options=opts(CREDENTIAL_HEADERS)
    ).run()
    assert sha256(path) == sha256(data)
    first = gets(server)
    assert first and first[0].headers.get("Authorization") == "Bearer secret-token"
    second = gets(other_server)
    assert len(second) >= 2, "expected several workers' requests at the second origin"
    _assert_no_credentials(second)


def test_url_credentials_not_sent_to_another_origin(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(512 * KiB, seed=15)
    other_server.add_file("/f.bin", data)
    server.faults.redirects = {"/f.bin": other_server.url("/f.bin")}
    url = f"http://user:secret@127.0.0.1:{server.port}/f.bin"
    path = accel.Downloader(url, directory=tmp_path, options=opts()).run()
    assert sha256(path) == sha256(data)
    assert gets(server)[0].headers.get("Authorization", "").startswith("Basic ")
    _assert_no_credentials(gets(other_server))


def test_credentials_kept_on_same_origin_redirect(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(512 * KiB, seed=16)
    server.add_file("/real.bin", data)
    server.faults.redirects = {"/f.bin": "/real.bin"}
    path = accel.Downloader(
        server.url("/f.bin"), tmp_path / "out.bin", options=opts(CREDENTIAL_HEADERS)
    ).run()
    assert sha256(path) == sha256(data)
    for r in gets(server, "/real.bin"):
        assert r.headers.get("Authorization") == "Bearer secret-token"


def test_cli_headers_not_sent_to_another_origin(
    server: FaultServer, other_server: FaultServer, tmp_path: Path
) -> None:
    data = make_data(4 * MiB, seed=17)  # 4 segments of the default 1 MiB minimum
    other_server.add_file("/f.bin", data)
    server.faults.redirects = {"/f.bin": other_server.url("/f.bin")}
    args = [a for k, v in CREDENTIAL_HEADERS.items() for a in ("-H", f"{k}: {v}")]
    proc = run_accel(server.url("/f.bin"), "-n", "4", "-q", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "f.bin") == sha256(data)
    assert gets(server)[0].headers.get("Cookie") == "sid=secret-cookie"
    assert len(gets(other_server)) >= 2, "expected several workers' requests"
    _assert_no_credentials(gets(other_server))


def test_https_to_http_redirect_is_refused(
    tls_server: TLSFaultServer,
    other_server: FaultServer,
    ca_path: str,
    tmp_path: Path,
    clean_env: None,
) -> None:
    other_server.add_file("/f.bin", make_data(100 * KiB, seed=18))
    tls_server.faults.redirects = {"/f.bin": other_server.url("/f.bin")}
    with pytest.raises(accel.InsecureRedirectError) as info:
        accel.Downloader(
            tls_server.url("/f.bin"), directory=tmp_path, options=opts(verify=ca_path)
        ).run()
    assert "https" in str(info.value) and "http" in str(info.value)
    assert gets(other_server) == []
    assert listing(tmp_path) == ["ca.pem"]


def test_cli_https_to_http_redirect_exit_4(
    tls_server: TLSFaultServer,
    other_server: FaultServer,
    ca_path: str,
    tmp_path: Path,
    clean_env: None,
) -> None:
    other_server.add_file("/f.bin", make_data(100 * KiB, seed=18))
    tls_server.faults.redirects = {"/f.bin": other_server.url("/f.bin")}
    dl = tmp_path / "dl"
    dl.mkdir()
    proc = run_accel(tls_server.url("/f.bin"), "--ca-bundle", ca_path, "-q", cwd=dl)
    assert proc.returncode == 4, proc.stderr
    line = one_line(proc.stderr)
    assert "https" in line and "redirect" in line.lower()
    assert gets(other_server) == []
    assert listing(dl) == []


# -- 6. TLS ----------------------------------------------------------------------------------


def test_tls_verification_is_on_by_default(
    tls_server: TLSFaultServer, tmp_path: Path, ca_env: None
) -> None:
    tls_server.add_file("/f.bin", make_data(100 * KiB, seed=19))
    with pytest.raises(accel.NetworkError) as info:
        accel.Downloader(tls_server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert "\n" not in str(info.value)
    assert "certificate" in str(info.value).lower()
    assert listing(tmp_path) == []
    assert gets(tls_server) == []


def test_tls_with_ca_bundle_succeeds(
    tls_server: TLSFaultServer, ca_path: str, tmp_path: Path, ca_env: None
) -> None:
    data = make_data(1 * MiB + 3, seed=20)
    tls_server.add_file("/f.bin", data)
    path = accel.Downloader(
        tls_server.url("/f.bin"), tmp_path / "f.bin", options=opts(verify=ca_path)
    ).run()
    assert sha256(path) == sha256(data)
    assert len(gets(tls_server, "/f.bin")) >= 2


def test_tls_insecure_api_succeeds(
    tls_server: TLSFaultServer, tmp_path: Path, ca_env: None
) -> None:
    data = make_data(300 * KiB, seed=21)
    tls_server.add_file("/f.bin", data)
    path = accel.Downloader(
        tls_server.url("/f.bin"), tmp_path / "f.bin", options=opts(verify=False)
    ).run()
    assert sha256(path) == sha256(data)


def test_cli_tls_default_fails_with_exit_3(
    tls_server: TLSFaultServer, tmp_path: Path, ca_env: None
) -> None:
    tls_server.add_file("/f.bin", make_data(100 * KiB, seed=22))
    proc = run_accel(tls_server.url("/f.bin"), "-q", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    line = one_line(proc.stderr)
    assert "certificate" in line.lower()
    assert listing(tmp_path) == []


def test_cli_tls_ca_bundle(
    tls_server: TLSFaultServer, ca_path: str, tmp_path: Path, ca_env: None
) -> None:
    data = make_data(1 * MiB, seed=23)
    tls_server.add_file("/f.bin", data)
    dl = tmp_path / "dl"
    dl.mkdir()
    proc = run_accel(tls_server.url("/f.bin"), "--ca-bundle", ca_path, "-n", "4", cwd=dl)
    assert proc.returncode == 0, proc.stderr
    assert sha256(dl / "f.bin") == sha256(data)


def test_cli_insecure_warns_exactly_once(
    tls_server: TLSFaultServer, tmp_path: Path, ca_env: None
) -> None:
    data = make_data(3 * MiB, seed=24)  # more than the first (1 MiB) request covers
    tls_server.add_file("/f.bin", data)
    proc = run_accel(tls_server.url("/f.bin"), "-k", "-n", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sha256(tmp_path / "f.bin") == sha256(data)
    assert len(gets(tls_server, "/f.bin")) >= 2  # several connections, still one warning
    assert proc.stderr.lower().count("warning") == 1, proc.stderr
    assert "Unverified HTTPS request" not in proc.stderr


# -- 7. sizes --------------------------------------------------------------------------------


def range_of(handler: FaultHandler) -> Optional[Tuple[int, int]]:
    value = handler.headers.get("Range")
    if not value or not value.startswith("bytes="):
        return None
    first, last = range_bounds(value)
    return first, last if last is not None else -1


def crafted(
    data: bytes,
    *,
    total: Optional[str] = None,
    length: Optional[str] = None,
    ranged: bool = True,
    virtual_size: Optional[int] = None,
) -> Callable[[FaultHandler, RequestLog], bool]:
    """An on_request hook answering every GET itself with crafted size headers.

    ``ranged``: a 206 for the requested range with ``Content-Range: bytes a-b/<total>``;
    else a 200 with the whole body and ``Content-Length: <length>``, then the connection
    closes. ``virtual_size``: the size the range is clipped to (zeros beyond ``data``).
    """
    size = len(data) if virtual_size is None else virtual_size

    def hook(h: FaultHandler, log: RequestLog) -> bool:
        if h.command != "GET":
            return False
        rng = range_of(h)
        if ranged and rng is not None:
            start, end = rng
            end = size - 1 if end < 0 else min(end, size - 1)
            body = data[start : end + 1]
            body += bytes(end + 1 - start - len(body))
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{end}/{total or size}")
            h.send_header("Content-Length", length or str(len(body)))
            h.send_header("ETag", '"crafted"')
            h.send_header("Accept-Ranges", "bytes")
        else:
            body = data
            h.send_response(200)
            h.send_header("Content-Length", length or str(len(body)))
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)
        return True

    return hook


BAD_NUMBERS = [
    "+{n}",
    "{n}.0",
    "{n}_0",
    "0x{n:x}",
    "{n}e0",
    "-{n}",
    str(2**63),
    str(2**64),
    "9" * 30,
]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_content_range_total_is_rejected(server: FaultServer, tmp_path: Path, bad: str) -> None:
    data = make_data(256 * KiB, seed=25)
    server.faults.on_request = crafted(data, total=bad.format(n=len(data)))
    with pytest.raises(accel.RemoteProtocolError):
        accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert listing(tmp_path) == []


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_content_length_of_200_is_rejected(
    server: FaultServer, tmp_path: Path, bad: str
) -> None:
    data = make_data(256 * KiB, seed=26)
    server.faults.on_request = crafted(data, length=bad.format(n=len(data)), ranged=False)
    with pytest.raises(accel.RemoteProtocolError):
        accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert not (tmp_path / "f.bin").exists()


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_content_length_of_206_is_rejected(
    server: FaultServer, tmp_path: Path, bad: str
) -> None:
    data = make_data(256 * KiB, seed=27)
    # Content-Length of the probe's range (the whole 256 KiB file), badly spelled.
    server.faults.on_request = crafted(data, length=bad.format(n=len(data)))
    with pytest.raises(accel.RemoteProtocolError):
        accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert not (tmp_path / "f.bin").exists()


@pytest.mark.parametrize("ranged", [True, False])
def test_crafted_plain_numbers_are_accepted(
    server: FaultServer, tmp_path: Path, ranged: bool
) -> None:
    """Control for the rejection tests: the same hook with well-formed numbers works."""
    data = make_data(256 * KiB, seed=28)
    server.faults.on_request = crafted(data, ranged=ranged)
    path = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert path.read_bytes() == data


def test_free_space_checked_before_preallocation(server: FaultServer, tmp_path: Path) -> None:
    server.faults.on_request = crafted(make_data(64 * KiB, seed=29), virtual_size=2**62)
    with pytest.raises(accel.InsufficientSpaceError) as info:
        accel.Downloader(server.url("/huge.bin"), directory=tmp_path, options=opts()).run()
    message = str(info.value)
    assert "needed" in message and "free" in message, message
    assert listing(tmp_path) == [], "a .part was created before the free-space check"


def test_cli_free_space_exit_6(server: FaultServer, tmp_path: Path) -> None:
    server.faults.on_request = crafted(make_data(64 * KiB, seed=29), virtual_size=2**62)
    proc = run_accel(server.url("/huge.bin"), "-q", cwd=tmp_path)
    assert proc.returncode == 6, proc.stderr
    line = one_line(proc.stderr)
    assert "needed" in line and "free" in line
    assert listing(tmp_path) == []


def test_max_filesize_refuses_larger_file(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(300 * KiB, seed=30)
    server.add_file("/f.bin", data)
    with pytest.raises(accel.FileTooLargeError):
        accel.Downloader(
            server.url("/f.bin"), directory=tmp_path, options=opts(max_filesize=100 * KiB)
        ).run()
    assert listing(tmp_path) == []


def test_max_filesize_equal_size_is_allowed(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(300 * KiB, seed=31)
    server.add_file("/f.bin", data)
    path = accel.Downloader(
        server.url("/f.bin"), directory=tmp_path, options=opts(max_filesize=len(data))
    ).run()
    assert path.read_bytes() == data


def test_max_filesize_unknown_length_stream(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(600 * KiB, seed=32)
    server.add_file("/f.bin", data)
    server.faults.ignore_range = True
    server.faults.chunked = True
    with pytest.raises(accel.FileTooLargeError):
        accel.Downloader(
            server.url("/f.bin"), directory=tmp_path, options=opts(max_filesize=100 * KiB)
        ).run()
    assert not (tmp_path / "f.bin").exists()


def test_cli_max_filesize_exit_7(server: FaultServer, tmp_path: Path) -> None:
    """A file over --max-filesize is a refusal of the remote file (exit 7), not a local
    file problem (exit 6)."""
    server.add_file("/f.bin", make_data(300 * KiB, seed=33))
    proc = run_accel(server.url("/f.bin"), "--max-filesize", "100K", "-q", cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    one_line(proc.stderr)
    assert not (tmp_path / "f.bin").exists()


# -- 8. no decompression ---------------------------------------------------------------------


@pytest.mark.parametrize("ranges", [True, False])
def test_gzip_content_is_stored_as_served(
    server: FaultServer, tmp_path: Path, ranges: bool
) -> None:
    data = make_data(700 * KiB, seed=34)
    server.add_file("/f.bin", data)
    server.faults.gzip = True
    server.faults.ignore_range = not ranges
    served = gzip.compress(data, mtime=0)
    path = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).run()
    assert path.read_bytes() == served
    for r in gets(server):
        assert r.headers.get("Accept-Encoding") == "identity"


def test_cli_gzip_content_is_stored_as_served(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(300 * KiB, seed=35)
    server.add_file("/f.bin", data)
    server.faults.gzip = True
    proc = run_accel(server.url("/f.bin"), "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f.bin").read_bytes() == gzip.compress(data, mtime=0)


# -- 9. one download per file ----------------------------------------------------------------


def test_second_downloader_on_same_name_is_locked_out(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(1 * MiB + 9, seed=36)
    server.add_file("/f.bin", data)
    server.faults.rate = 128 * KiB
    first = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts()).start()
    try:
        wait_until(lambda: (tmp_path / "f.bin.part.lock").exists(), 10, "the lock file")
        wait_until(lambda: (tmp_path / "f.bin.part").exists(), 10, "the part file")
        second = accel.Downloader(server.url("/f.bin"), directory=tmp_path, options=opts())
        with pytest.raises(accel.LockedError):
            second.run()
        assert not first.done
        server.faults.rate = None
        path = first.result(20)
    finally:
        first.cancel()
    assert sha256(path) == sha256(data)
    assert listing(tmp_path) == ["f.bin"]


def test_second_process_on_same_name_exits_6(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(2 * MiB, seed=37)
    server.add_file("/f.bin", data)
    server.faults.rate = 128 * KiB
    proc = popen_accel(server.url("/f.bin"), "-n", "4", "-q", cwd=tmp_path)
    try:
        wait_until(
            lambda: (tmp_path / "f.bin.part").exists() or proc.poll() is not None,
            15,
            "the first process to start",
        )
        assert proc.poll() is None
        second = run_accel(server.url("/f.bin"), "-n", "4", "-q", cwd=tmp_path)
        assert second.returncode == 6, second.stderr
        assert "lock" in one_line(second.stderr).lower()
        assert proc.poll() is None, "the first process was disturbed"
        server.faults.rate = None
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert sha256(tmp_path / "f.bin") == sha256(data)
    assert listing(tmp_path) == ["f.bin"]
