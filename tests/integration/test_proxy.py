"""--proxy and --noproxy (curl's names and rules), the environment's proxies, SOCKS5.

Real proxies on loopback: :class:`tests.proxy.ForwardProxy` (absolute-form GETs and CONNECT,
Basic credentials required) and Debian's microsocks; the origins are FaultServers, which
log the headers they received, so "the proxy's credentials never reached the origin" is
checked where it matters.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import trustme

import accel
from accel._util.proxies import bypasses, noproxy_hosts, proxy_url
from accel.exceptions import HTTPError, UsageError
from tests.helpers import KiB, accel_cmd, accel_env, fast_options, fast_retry, gets
from tests.servers import FaultServer, TLSFaultServer, make_data
from tests.servers.proxy import ForwardProxy, Microsocks

FAST = fast_retry(1, backoff_max=0.02)
DATA = make_data(600 * KiB, seed=21)
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(auth=("puser", "p@ss:w0rd")) as p:
        yield p


def _no_proxy_credentials(srv: FaultServer) -> None:
    assert srv.requests, "the origin saw no request"
    for r in srv.requests:
        assert "Proxy-Authorization" not in r.headers
        assert "p@ss" not in str(dict(r.headers))


# -- the rules, as curl has them -------------------------------------------------------------


def test_proxy_url_is_normalised_as_curl_does() -> None:
    assert proxy_url("127.0.0.1") == "http://127.0.0.1:1080"
    assert proxy_url("HTTP://u:p@proxy.example:3128/") == "http://u:p@proxy.example:3128"
    assert proxy_url("https://proxy.example") == "https://proxy.example:443"
    assert proxy_url("socks5h://proxy.example") == "socks5h://proxy.example:1080"
    assert proxy_url("") == ""  # no proxy at all, whatever the environment says
    for bad in ("ftp://p:21", "http://", "http://p:99999", "http://p/path", "ht tp://p"):
        with pytest.raises(UsageError):
            proxy_url(bad)


def test_noproxy_matches_hosts_and_the_names_under_them() -> None:
    hosts = noproxy_hosts(" local.com, .dot.org,10.0.0.0/8,[::1], example.net:8080")
    assert hosts == ("local.com", "dot.org", "10.0.0.0/8", "::1", "example.net")
    assert bypasses("local.com", hosts) and bypasses("www.local.com", hosts)
    assert not bypasses("notlocal.com", hosts) and not bypasses("local.com.evil", hosts)
    assert bypasses("a.b.dot.org", hosts) and bypasses("dot.org", hosts)
    assert bypasses("10.1.2.3", hosts) and not bypasses("11.1.2.3", hosts)
    assert not bypasses("127.0.0.1", noproxy_hosts("0.0.1")) and not bypasses("1.10.0.0.1", ())
    assert bypasses("[::1]", hosts) and bypasses("0:0::1", hosts)
    assert bypasses("anything", noproxy_hosts("*"))
    assert noproxy_hosts("") == () and not bypasses("local.com", ())
    with pytest.raises(UsageError):
        noproxy_hosts("10.0.0.0/99")


# -- an HTTP proxy ---------------------------------------------------------------------------


def test_download_through_an_http_proxy(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/f.bin", DATA)
    out = accel.download(
        server.url("/f.bin"), tmp_path / "f.bin", options=fast_options(FAST), proxy=proxy.url()
    )
    assert out.read_bytes() == DATA
    gets_seen = [e for e in proxy.log if e.method == "GET"]
    assert len(gets_seen) >= len(gets(server)) >= 2  # ranged requests, all through the proxy
    assert all(e.target.startswith(server.base_url) for e in gets_seen)
    assert all(e.headers.get("proxy-authorization", "").startswith("Basic ") for e in proxy.log)
    _no_proxy_credentials(server)


def test_https_goes_through_a_tunnel_whose_credentials_stay_with_the_proxy(
    proxy: ForwardProxy, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with TLSFaultServer(ctx) as tls:
        tls.add_file("/t.bin", DATA)
        out = accel.download(
            tls.url("/t.bin"),
            tmp_path / "t.bin",
            options=fast_options(FAST, verify=str(bundle)),
            proxy=proxy.url(),
        )
        assert out.read_bytes() == DATA
        assert proxy.log and all(e.method == "CONNECT" for e in proxy.log)
        assert {e.target for e in proxy.log} == {f"127.0.0.1:{tls.port}"}
        _no_proxy_credentials(tls)


def test_a_redirect_to_another_origin_keeps_the_proxy_and_not_its_credentials(
    server: FaultServer, other_server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    other_server.add_file("/f.bin", DATA)
    server.faults.redirects = {"/go": other_server.url("/f.bin")}
    out = accel.download(
        server.url("/go"), tmp_path / "f.bin", options=fast_options(FAST), proxy=proxy.url()
    )
    assert out.read_bytes() == DATA
    assert all(e.status != 407 for e in proxy.log)  # the proxy had its credentials each time
    assert any(e.target == other_server.url("/f.bin") for e in proxy.log)
    _no_proxy_credentials(server)
    _no_proxy_credentials(other_server)


def test_wrong_proxy_credentials_are_http_407(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/f.bin", DATA)
    with ForwardProxy(auth=("u", "right")) as p, pytest.raises(HTTPError) as info:
        accel.download(
            server.url("/f.bin"),
            tmp_path / "f.bin",
            options=fast_options(FAST),
            proxy=f"http://u:wrong@127.0.0.1:{p.port}",
        )
    assert info.value.status == 407
    assert not server.requests


def test_noproxy_hosts_are_reached_directly(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/f.bin", DATA)
    for i, noproxy in enumerate(("127.0.0.1", "*", "127.0.0.0/8")):
        out = accel.download(
            server.url("/f.bin"),
            tmp_path / f"{i}.bin",
            options=fast_options(FAST),
            proxy=proxy.url(),
            noproxy=noproxy,
        )
        assert out.read_bytes() == DATA
    assert not proxy.log
    accel.download(  # another host's name does not match
        server.url("/f.bin"),
        tmp_path / "p.bin",
        options=fast_options(FAST),
        proxy=proxy.url(),
        noproxy="localhost,0.0.1",
    )
    assert proxy.log


# -- the command line and the environment ----------------------------------------------------


def _env(**extra: str) -> dict:
    env = accel_env()
    for name in PROXY_ENV:
        env.pop(name, None)
        env.pop(name.lower(), None)
    env.update(extra)
    return env


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        accel_cmd("-q", "--retries", "0", *args),
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_environment_proxy_is_used_as_today(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/env.bin", DATA)
    res = _cli(server.url("/env.bin"), cwd=tmp_path, HTTP_PROXY=proxy.url())
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "env.bin").read_bytes() == DATA
    assert proxy.log and all(e.target == server.url("/env.bin") for e in proxy.log)
    _no_proxy_credentials(server)


def test_cli_explicit_proxy_wins_over_the_environment(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/x.bin", DATA)
    with ForwardProxy() as env_proxy:
        res = _cli(
            server.url("/x.bin"), "--proxy", proxy.url(), cwd=tmp_path, HTTP_PROXY=env_proxy.url()
        )
        assert res.returncode == 0, res.stderr
        assert proxy.log and not env_proxy.log
        res = _cli(
            server.url("/x.bin"), "--force", "--proxy", "", cwd=tmp_path, HTTP_PROXY=env_proxy.url()
        )
        assert res.returncode == 0, res.stderr
        assert not env_proxy.log  # --proxy '' is no proxy at all


def test_cli_noproxy_replaces_no_proxy(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/n.bin", DATA)
    env = {"HTTP_PROXY": proxy.url(), "NO_PROXY": "127.0.0.1"}
    res = _cli(server.url("/n.bin"), cwd=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    assert not proxy.log  # NO_PROXY as today
    res = _cli(server.url("/n.bin"), "--force", "--noproxy", "", cwd=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    assert proxy.log  # an empty --noproxy overrides NO_PROXY
    before = len(proxy.log)
    res = _cli(
        server.url("/n.bin"), "--force", "--noproxy", "*", "--proxy", proxy.url(), cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert len(proxy.log) == before


def test_cli_config_file_sets_the_proxy(
    server: FaultServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    server.add_file("/c.bin", DATA)
    conf = tmp_path / "accel.conf"
    conf.write_text(f"proxy = {proxy.url()}\nnoproxy = example.invalid\n")
    res = _cli(server.url("/c.bin"), cwd=tmp_path, ACCEL_CONFIG=str(conf))
    assert res.returncode == 0, res.stderr
    assert proxy.log


@pytest.mark.parametrize(
    "value, words",
    [("ftp://p:21", "unsupported proxy scheme 'ftp'"), ("http://p:0x", "invalid port in proxy")],
)
def test_cli_bad_proxy_is_a_usage_error(tmp_path: Path, value: str, words: str) -> None:
    res = _cli("http://127.0.0.1:9/f", "--proxy", value, cwd=tmp_path)
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_socks_without_pysocks_is_a_usage_error_naming_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['socks'] = None\n"
        "from accel.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for args, env in (
        (["--proxy", "socks5h://u:secret@127.0.0.1:1080"], {}),
        ([], {"ALL_PROXY": "socks5://127.0.0.1:1080"}),
    ):
        res = subprocess.run(
            [sys.executable, "-c", code, "http://127.0.0.1:9/f", *args],
            cwd=tmp_path,
            env=_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'accel[socks]'" in lines[0], lines
        assert "secret" not in res.stderr


# -- SOCKS5 (microsocks) ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["option", "environment"])
@pytest.mark.parametrize("scheme, seen", [("socks5", "127.0.0.1"), ("socks5h", "localhost")])
def test_download_through_socks5(
    server: FaultServer,
    other_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    seen: str,
    source: str,
) -> None:
    other_server.add_file("/s.bin", DATA)
    # A redirect to another origin (plain http): requests would put the SOCKS credentials
    # into that request as Proxy-Authorization, for the origin to read.
    server.faults.redirects = {"/go": f"http://localhost:{other_server.port}/s.bin"}
    with Microsocks(tmp_path / "socks.log", auth=("suser", "p@ss:w0rd")) as socks:
        settings = {"proxy": socks.url(scheme)}
        if source == "environment":
            monkeypatch.setenv("ALL_PROXY", settings.pop("proxy"))
        out = accel.download(
            f"http://localhost:{server.port}/go",
            tmp_path / "s.bin",
            options=fast_options(FAST),
            **settings,
        )
        assert out.read_bytes() == DATA
        targets = socks.connects()
    # socks5h hands the name to the proxy; socks5 resolves it here.
    assert f"{seen}:{other_server.port}" in targets, targets
    assert all(t.startswith(f"{seen}:") for t in targets), targets
    _no_proxy_credentials(server)
    _no_proxy_credentials(other_server)


def test_cli_socks5h_proxy(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("/c.bin", DATA)
    with Microsocks(tmp_path / "socks.log") as socks:
        res = _cli(
            f"http://localhost:{server.port}/c.bin", "-x", socks.url("socks5h"), cwd=tmp_path
        )
        assert res.returncode == 0, res.stderr
        assert socks.connects()
    assert (tmp_path / "c.bin").read_bytes() == DATA
