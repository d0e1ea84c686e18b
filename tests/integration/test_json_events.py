"""``accel --json``: the real command against the fault server, every line of its stdout
parsed, and the schema pinned: the keys and types of each event, their order per file,
progress at most about twice a second and at least once per file, ``done`` with the final
path and size, ``error`` with the exit code of its failure; human messages on stderr, and
the exit code the same as without ``--json``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.helpers import KiB, MiB, popen_accel, run_accel, sha256
from tests.servers import FaultServer, make_data

#: Every event has these keys, with these types (NoneType: the value may be null).
COMMON: Dict[str, tuple] = {
    "event": (str,),
    "id": (int,),
    "url": (str,),
    "path": (str, type(None)),
    "bytes": (int,),
    "total": (int, type(None)),
    "rate": (float, int),
    "connections": (int,),
    "time": (float,),
}
#: The keys each kind of event adds.
EXTRA: Dict[str, Dict[str, tuple]] = {
    "start": {"resumed": (int,), "ranged": (bool,), "resumable": (bool,)},
    "progress": {"eta": (float, int, type(None))},
    "retry": {"attempt": (int,), "delay": (float, int), "reason": (str,)},
    "done": {"elapsed": (float, int), "already_complete": (bool,), "digest": (str, type(None))},
    "error": {"code": (int,), "message": (str,), "resumable": (bool,)},
}


def parse(stdout: str) -> List[Dict[str, Any]]:
    """Every line of stdout is one JSON object of the schema (nothing else is written)."""
    assert stdout.endswith("\n"), stdout
    events = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        kind = obj.get("event")
        assert kind in EXTRA, obj
        schema = {**COMMON, **EXTRA[kind]}
        assert set(obj) == set(schema), (sorted(obj), sorted(schema))
        for key, types in schema.items():
            assert isinstance(obj[key], types), (key, obj)
            assert not (isinstance(obj[key], bool) and bool not in types), (key, obj)
        assert abs(obj["time"] - time.time()) < 120, obj
        events.append(obj)
    return events


def per_file(events: List[Dict[str, Any]]) -> Dict[int, List[Dict[str, Any]]]:
    files: Dict[int, List[Dict[str, Any]]] = {}
    for obj in events:
        files.setdefault(obj["id"], []).append(obj)
    return files


def check_done(seq: List[Dict[str, Any]], size: int, resumed: Optional[int] = None) -> None:
    """start, progress..., done; progress at most ~2/s and at least once; done final."""
    kinds = [o["event"] for o in seq]
    assert kinds[0] == "start" and kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) <= {"progress", "retry"}, kinds
    progress = [o for o in seq if o["event"] == "progress"]
    assert progress, kinds  # at least once per file
    times = [o["time"] for o in progress]
    for a, b in zip(times, times[1:-1]):  # the last one comes with the done
        assert b - a >= 0.45, times
    counts = [o["bytes"] for o in progress]
    assert counts == sorted(counts) and counts[-1] == size, counts
    start, done = seq[0], seq[-1]
    assert start["total"] == size and start["bytes"] == start["resumed"]
    if resumed is not None:
        assert start["resumed"] == resumed
    assert done["bytes"] == size == done["total"] == os.path.getsize(done["path"])
    assert os.path.isabs(done["path"]) and done["already_complete"] is False
    assert {o["url"] for o in seq} == {start["url"]} and {o["path"] for o in seq} == {done["path"]}


def test_the_stream_of_a_list(server: FaultServer, tmp_path: Path) -> None:
    """Two files (one slow enough for several progress objects, one cut once: a retry), a
    404, a bad line of the input file and a file already complete."""
    big, small = make_data(2 * MiB, 301), make_data(300 * KiB, 302)
    server.add_file("/big.bin", big)
    server.add_file("/small.bin", small)
    server.add_file("/done.bin", small)
    assert run_accel(server.url("/done.bin"), cwd=tmp_path).returncode == 0  # complete already
    server.faults.rate = 384 * KiB
    server.faults.cut_after, server.faults.cut_times = 64 * KiB, 1
    listing = tmp_path / "urls.txt"
    urls = [server.url(p) for p in ("/big.bin", "/small.bin", "/missing.bin")]
    listing.write_text("\n".join([*urls, "ftp://nope/x", server.url("/done.bin")]) + "\n")
    proc = run_accel("--json", "-j", "2", "-n", "4", "-i", str(listing), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr  # the first failure: the bad line, as without --json
    files = per_file(parse(proc.stdout))
    assert sorted(files) == [1, 2, 3, 4, 5]
    check_done(files[1], len(big))
    check_done(files[2], len(small))
    assert len([o for o in files[1] if o["event"] == "progress"]) >= 3  # a ~2 s download
    assert sha256(tmp_path / "big.bin") == sha256(big)
    retries = [o for seq in (files[1], files[2]) for o in seq if o["event"] == "retry"]
    assert retries and retries[0]["attempt"] >= 1 and retries[0]["reason"], retries
    ((missing,),) = [files[3]]
    assert missing["event"] == "error" and missing["code"] == 4
    assert "404" in missing["message"] and missing["url"] == urls[2]
    assert missing["resumable"] is False and missing["path"] is None
    ((bad,),) = [files[4]]
    assert bad["event"] == "error" and bad["code"] == 2 and "urls.txt:4" in bad["message"]
    kinds = [o["event"] for o in files[5]]
    assert kinds == ["progress", "done"], files[5]
    assert files[5][-1]["already_complete"] is True and files[5][-1]["bytes"] == len(small)
    # Human messages stay on stderr, as without --json; no progress lines.
    err = proc.stderr
    assert "accel: saved " in err and "accel: error: HTTP 404" in err
    assert "\r" not in err and "%" not in err
    assert err.rstrip().splitlines()[-1].startswith("accel: 5 files: 3 ok, 2 failed;")
    plain = run_accel("-j", "2", "-i", str(listing), "--force", cwd=tmp_path)
    assert plain.returncode == proc.returncode and plain.stdout == ""


def test_a_resumed_file_starts_with_what_is_on_disk(server: FaultServer, tmp_path: Path) -> None:
    data = make_data(3 * MiB, 303)
    server.add_file("/r.bin", data)
    server.faults.rate = 512 * KiB
    proc = popen_accel("--json", "-n", "2", server.url("/r.bin"), cwd=tmp_path)
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]  # start
    while True:
        lines.append(proc.stdout.readline())
        if json.loads(lines[-1])["bytes"] >= MiB:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    events = parse("".join(lines) + out)
    last = events[-1]
    assert last["event"] == "error" and last["code"] == 130 and last["resumable"] is True
    assert "run the same command again to resume" in last["message"]
    assert last["bytes"] >= MiB
    server.faults.rate = 2 * MiB
    again = run_accel("--json", "-q", "-n", "2", server.url("/r.bin"), cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == "", again.stderr  # -q: JSON only
    (seq,) = per_file(parse(again.stdout)).values()
    assert seq[0]["resumed"] >= MiB and seq[0]["bytes"] == seq[0]["resumed"]
    check_done(seq, len(data))
    assert sha256(tmp_path / "r.bin") == sha256(data)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143)])
def test_a_signal_ends_every_file_with_an_error_event(
    server: FaultServer, tmp_path: Path, sig: int, code: int
) -> None:
    for i in range(4):
        server.add_file(f"/s{i}.bin", make_data(2 * MiB, 310 + i))
    server.faults.rate = 256 * KiB
    urls = [server.url(f"/s{i}.bin") for i in range(4)]
    proc = popen_accel("--json", "-j", "2", "-n", "2", *urls, cwd=tmp_path)
    assert proc.stdout is not None
    started = 0
    seen = []
    while started < 2:
        seen.append(proc.stdout.readline())
        started += json.loads(seen[-1])["event"] == "start"
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    files = per_file(parse("".join(seen) + out))
    assert sorted(files) == [1, 2, 3, 4]  # every file handed to the Manager ends with one
    for index, seq in files.items():
        assert seq[-1]["event"] == "error" and seq[-1]["code"] == code, seq
        assert seq[-1]["resumable"] is (index <= 2), seq  # the others never started
