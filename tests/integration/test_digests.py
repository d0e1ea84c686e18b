"""Server-sent digests (accel._util.digests): which headers count for which responses, and the
check before the file gets its name, against a real nginx that adds the headers
(``add_header`` applies to 200 and 206 answers alike, as a CDN's would)."""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path
from typing import Callable, Dict, List

import pytest

import accel
from accel import events as ev
from accel._util.digests import ServerDigest, server_digests, strongest
from tests.helpers import KiB, MiB, fast_options, fast_retry, run_accel, sha256
from tests.servers import make_data
from tests.servers.nginx import Nginx

DATA = make_data(3 * MiB + 123, seed=77)
OTHER = make_data(3 * MiB + 123, seed=78)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def sha(data: bytes, algo: str = "sha256") -> str:
    return b64(hashlib.new(algo, data).digest())


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


# -- parsing: pure ---------------------------------------------------------------------------


def test_repr_digest_counts_on_any_response_and_the_strongest_comes_first() -> None:
    headers = {"Repr-Digest": f"sha-256=:{sha(DATA)}:, sha-512=:{sha(DATA, 'sha512')}:"}
    found = server_digests(headers, whole_body=False)
    assert [d.algo for d in found] == ["sha512", "sha256"]
    assert found[1] == ServerDigest("Repr-Digest", "sha256", hashlib.sha256(DATA).hexdigest())
    assert found[0].label == "Repr-Digest sha-512"


def test_content_digests_count_only_when_the_body_is_the_whole_file() -> None:
    headers = {
        "Content-Digest": f"sha-256=:{sha(DATA)}:",
        "Content-MD5": sha(DATA, "md5"),
        "x-amz-checksum-crc32": crc32(DATA),
    }
    assert server_digests(headers, whole_body=False) == []
    whole = server_digests(headers, whole_body=True)
    assert [(d.header, d.algo) for d in whole] == [
        ("Content-Digest", "sha256"),
        ("Content-MD5", "md5"),
        ("x-amz-checksum-crc32", "crc32"),
    ]


def test_legacy_digest_goog_hash_and_malformed_values() -> None:
    headers = {
        "Digest": f"SHA={sha(DATA, 'sha1')},MD5={sha(DATA, 'md5')}, UNIXsum=30637",
        "x-goog-hash": f"crc32c=AAAAAA==,md5={sha(DATA, 'md5')}",
    }
    found = {(d.header, d.algo) for d in server_digests(headers, whole_body=False)}
    # The first header naming an algorithm wins (Digest's md5, not x-goog-hash's).
    assert found == {("Digest", "sha1"), ("Digest", "md5"), ("x-goog-hash", "crc32c")}
    bad = {
        "Repr-Digest": "sha-256=:bm90IGEgZGlnZXN0:, sha-512=abc, md5=:" + sha(DATA, "md5") + ":",
        "Digest": "SHA-256=!!!",
    }
    assert server_digests(bad, whole_body=True) == []  # wrong sizes, bad base64, md5 in RFC 9530


def test_composite_s3_checksums_describe_parts_and_are_skipped() -> None:
    assert server_digests({"x-amz-checksum-crc32": "AAAAAA==-3"}, whole_body=True) == []
    composite = {"x-amz-checksum-sha256": sha(DATA), "x-amz-checksum-type": "COMPOSITE"}
    assert server_digests(composite, whole_body=True) == []


def test_strongest_skips_what_this_machine_cannot_hash() -> None:
    digests = server_digests(
        {"x-goog-hash": f"crc32c=AAAAAA==,md5={sha(DATA, 'md5')}"}, whole_body=False
    )
    assert strongest(digests, {"crc32c"}) is not None
    assert strongest(digests, {"crc32c"}).algo == "crc32c"  # type: ignore[union-attr]
    assert strongest(digests, {"md5"}).algo == "md5"  # type: ignore[union-attr]
    assert strongest(digests, set()) is None


# -- the check, end to end against nginx -------------------------------------------------------


def serve(
    nginx_factory: Callable[..., Nginx], tmp_path: Path, headers: Dict[str, str], **kw: object
) -> Nginx:
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.bin").write_bytes(DATA)
    adds = "".join(f"add_header {name} '{value}' always;\n" for name, value in headers.items())
    return nginx_factory(root, extra_location=adds, **kw)


def events_of(url: str, out: Path, **kw: object) -> List[ev.Event]:
    heard: List[ev.Event] = []
    opts = fast_options(fast_retry(2), connections=4, min_split=256 * KiB, **kw)
    accel.Downloader(url, out, options=opts, on_event=heard.append).run()
    return heard


@pytest.mark.nginx
def test_a_right_repr_digest_is_checked_and_named(
    nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    ngx = serve(nginx_factory, tmp_path, {"Repr-Digest": f"sha-256=:{sha(DATA)}:"})
    heard = events_of(ngx.url("f.bin"), tmp_path / "f.bin")
    done = [e for e in heard if isinstance(e, ev.Completed)]
    assert done and done[0].digest == "Repr-Digest sha-256"
    assert sha256(tmp_path / "f.bin") == hashlib.sha256(DATA).hexdigest()
    assert len([e for e in ngx.access_log() if e["status"] == 206]) >= 2  # it was segmented


@pytest.mark.nginx
def test_a_wrong_repr_digest_is_exit_5_with_the_data_kept(
    nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    ngx = serve(nginx_factory, tmp_path, {"Repr-Digest": f"sha-512=:{sha(OTHER, 'sha512')}:"})
    out = tmp_path / "out"
    proc = run_accel(ngx.url("f.bin"), "-n", "4", "-d", str(out), "-q")
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Repr-Digest sha-512 mismatch" in lines[0], proc.stderr
    assert "--no-server-digest" in lines[0]
    assert not (out / "f.bin").exists()
    assert (out / "f.bin.part").read_bytes() == DATA  # kept for inspection...
    assert not (out / "f.bin.part.json").exists()  # ...but not trusted by the next run
    again = run_accel(ngx.url("f.bin"), "-n", "4", "-d", str(out), "--no-server-digest")
    assert again.returncode == 0, again.stderr
    assert (out / "f.bin").read_bytes() == DATA
    assert "verified" not in again.stderr


@pytest.mark.nginx
def test_a_checksum_wins_over_the_server_digest(
    nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    ngx = serve(nginx_factory, tmp_path, {"Repr-Digest": f"sha-256=:{sha(OTHER)}:"})
    want = f"sha256={hashlib.sha256(DATA).hexdigest()}"
    proc = run_accel(ngx.url("f.bin"), "-d", str(tmp_path), "--checksum", want)
    assert proc.returncode == 0, proc.stderr
    assert "sha256 (--checksum) verified" in proc.stderr


@pytest.mark.nginx
@pytest.mark.parametrize("good", [True, False])
def test_whole_body_digests_on_a_server_without_ranges(
    nginx_factory: Callable[..., Nginx], tmp_path: Path, good: bool
) -> None:
    """nginx with ``max_ranges 0`` answers 200: Content-MD5 and S3's crc32 then count."""
    data = DATA if good else OTHER
    headers = {"Content-MD5": sha(data, "md5"), "x-amz-checksum-crc32": crc32(data)}
    ngx = serve(nginx_factory, tmp_path, headers, max_ranges=0)
    proc = run_accel(ngx.url("f.bin"), "-d", str(tmp_path / "out"))
    if good:
        assert proc.returncode == 0, proc.stderr
        assert "Content-MD5 md5 verified" in proc.stderr
    else:
        assert proc.returncode == 5, proc.stderr
        assert "Content-MD5 md5 mismatch" in proc.stderr


@pytest.mark.nginx
def test_content_digests_on_ranged_answers_are_not_taken_for_the_file(
    nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    """A Content-Digest on a 206 describes that part only: never checked against the file."""
    ngx = serve(nginx_factory, tmp_path, {"Content-Digest": f"sha-256=:{sha(OTHER)}:"})
    heard = events_of(ngx.url("f.bin"), tmp_path / "f.bin")
    done = [e for e in heard if isinstance(e, ev.Completed)]
    assert done and done[0].digest is None
    assert (tmp_path / "f.bin").read_bytes() == DATA
