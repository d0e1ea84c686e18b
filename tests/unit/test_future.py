"""A download's life cycle as a future (accel.future.DownloadFuture): start, wait, result,
exception, done callbacks, cancel, the context manager and a Manager's listener; with a
minimal subclass whose ``run`` is steered by events, on real threads."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest

from accel import events as ev
from accel.exceptions import CancelledError, NetworkError, UsageError
from accel.future import DownloadFuture

RESULT = Path("/tmp/accel-test/out.bin")


class Job(DownloadFuture):
    """Runs until ``go`` is set (or cancelled); returns RESULT or raises ``error``."""

    __slots__ = ("emitted", "error", "go", "ran_on", "settled", "started")

    def __init__(self, listener: Any = None, error: Optional[BaseException] = None) -> None:
        super().__init__(listener)
        self.go = threading.Event()
        self.started = threading.Event()
        self.error = error
        self.emitted: List[ev.Event] = []
        self.ran_on: Optional[threading.Thread] = None
        self.settled = 0

    def run(self) -> Path:
        self.ran_on = threading.current_thread()
        self.started.set()
        cancel = self._cancel_event()
        while not self.go.wait(0.01):
            if cancel.is_set():
                raise CancelledError("cancelled")
        if self.error is not None:
            raise self.error
        return RESULT

    def _emit(self, event: ev.Event) -> None:
        self.emitted.append(event)

    def _settle(self) -> None:
        self.settled += 1


class Listener:
    """A Manager's side: records what it hears."""

    def __init__(self) -> None:
        self.admitted: List[Tuple[Any, Callable[[], None], Callable[[], None]]] = []
        self.withdrawn: List[Any] = []
        self.ended: List[Tuple[Any, bool]] = []

    def admit(self, download: Any, run: Callable[[], None], abandon: Callable[[], None]) -> None:
        self.admitted.append((download, run, abandon))

    def on_event(self, download: Any, event: ev.Event) -> None:
        pass

    def on_bytes(self, delta: int) -> None:
        pass

    def on_end(self, download: Any, failed: bool) -> None:
        self.ended.append((download, failed))

    def withdraw(self, download: Any) -> None:
        self.withdrawn.append(download)


def test_start_runs_on_a_background_thread_and_result_waits() -> None:
    job = Job()
    assert job.start() is job
    assert job.started.wait(5)
    assert job.ran_on is not None and job.ran_on is not threading.current_thread()
    assert job.ran_on.name == "accel-download"
    assert not job.done and job.wait(0.05) is False
    with pytest.raises(TimeoutError, match="still running"):
        job.exception(timeout=0.05)
    job.go.set()
    assert job.result(timeout=5) == RESULT
    assert job.done and job.wait(0) is True and job.exception() is None
    assert job.settled == 1 and not job.cancelled


def test_an_error_is_kept_and_raised_by_result() -> None:
    error = NetworkError("connection refused")
    job = Job(error=error).start()
    job.go.set()
    assert job.wait(5)
    assert job.exception() is error
    with pytest.raises(NetworkError) as info:
        job.result()
    assert info.value is error
    assert job.settled == 1  # settled also after a failure


def test_a_download_runs_once() -> None:
    job = Job()
    with pytest.raises(RuntimeError, match="call start"):
        job.wait(0)
    job.start()
    with pytest.raises(UsageError, match="already started"):
        job.start()
    job.cancel()
    assert job.wait(5)
    with pytest.raises(UsageError, match=r"a new Downloader .* resumes it"):
        job.start()  # not after a cancel either


def test_cancel_before_start_is_seen_by_the_run() -> None:
    job = Job()
    job.cancel()
    assert job.cancelled
    job.start()
    assert job.wait(5)
    assert isinstance(job.exception(), CancelledError)


def test_cancel_from_another_thread_stops_the_run() -> None:
    job = Job().start()
    assert job.started.wait(5)
    threading.Thread(target=job.cancel).start()
    assert job.wait(5)
    assert job.cancelled and isinstance(job.exception(), CancelledError)


def test_done_callbacks_run_once_on_the_ending_thread() -> None:
    job = Job()
    heard: List[Tuple[DownloadFuture, threading.Thread]] = []

    def record(d: DownloadFuture) -> None:
        assert d.done  # the download is marked ended before its callbacks run
        heard.append((d, threading.current_thread()))

    job.add_done_callback(record)
    job.start()
    assert job.started.wait(5)
    job.add_done_callback(record)
    assert heard == []
    job.go.set()
    assert job.wait(5)
    assert job.ran_on is not None
    job.ran_on.join(5)  # the callbacks run after the end is marked: let them finish
    assert [d for d, _ in heard] == [job, job]
    assert all(t is job.ran_on for _, t in heard)
    # Once ended, a new callback runs at once, on the caller's thread.
    job.add_done_callback(record)
    assert heard[-1] == (job, threading.current_thread())
    assert len(heard) == 3


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = Job()
    heard: List[str] = []

    def boom(_: DownloadFuture) -> None:
        raise ValueError("boom")

    job.add_done_callback(boom)
    job.add_done_callback(lambda _: heard.append("second"))
    with caplog.at_level(logging.ERROR, logger="accel.future"):
        job.start()
        job.go.set()
        assert job.wait(5)
        assert job.ran_on is not None
        job.ran_on.join(5)
    assert job.result() == RESULT
    assert heard == ["second"]
    assert any("done callback" in r.getMessage() for r in caplog.records)


def test_context_manager_waits_for_the_end() -> None:
    job = Job()
    with job.start():
        job.go.set()
    assert job.done and job.result() == RESULT


def test_context_manager_cancels_on_an_exception() -> None:
    job = Job()
    with pytest.raises(KeyError), job.start():
        assert job.started.wait(5)
        raise KeyError("in the caller")
    assert job.done and job.cancelled  # waited for the cancelled run to end
    assert isinstance(job.exception(), CancelledError)


def test_a_managed_download_cannot_be_started_alone() -> None:
    job = Job(Listener())
    with pytest.raises(UsageError, match="run by a Manager"):
        job.start()


def test_a_queued_download_may_be_waited_for_and_withdrawn() -> None:
    listener = Listener()
    job = Job(listener)
    assert job.wait(0) is False  # queued: waiting is allowed
    job.cancel()
    assert listener.withdrawn == [job]
    job._abandon()  # what the Manager does with a withdrawn download
    assert job.done and isinstance(job.exception(), CancelledError)
    assert "before it started" in str(job.exception())
    assert [type(e) for e in job.emitted] == [ev.Cancelled]
    assert listener.ended == [(job, True)]
    assert job.settled == 0  # it never ran


def test_a_managed_download_reports_its_end_to_the_listener() -> None:
    listener = Listener()
    ok, failed = Job(listener), Job(listener, error=NetworkError("reset"))
    for job in (ok, failed):
        job._launch()
        job.go.set()
        assert job.wait(5)
        assert job.ran_on is not None
        job.ran_on.join(5)  # the listener hears of the end after it is marked
    assert listener.ended == [(ok, False), (failed, True)]
    job = Job(listener)
    job._launch()
    assert job.started.wait(5)
    job.cancel()  # a running download is not withdrawn: it stops itself
    assert job.wait(5) and listener.withdrawn == []
