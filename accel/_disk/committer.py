"""The committer: what the sidecar may claim, and when it is saved.

The sidecar records, per segment, bytes ``written`` (in the page cache: they survive a killed
process) and bytes ``synced`` (after an fdatasync: they survive a power loss). A background
thread syncs the ``.part`` file every ``sync_interval``; the record is saved atomically
every ``commit_interval``. A sidecar never claims a byte that is not on disk.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional

from accel._disk import state
from accel._disk.storage import PartFile
from accel._util.remote import RemoteFile
from accel.exceptions import AccelError

log = logging.getLogger(__name__)


class Committer:
    """Saves one download's sidecar at ``side`` (None: the download is not resumable)."""

    def __init__(
        self,
        side: Optional[Path],
        part: PartFile,
        url: str,
        remote: RemoteFile,
        rows: Callable[[], List[state.Row]],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.side = side
        self.part = part
        self.url = url
        self.remote = remote
        self._rows = rows
        self._on_error = on_error
        self.boot = state.boot_id()
        self.synced: Dict[int, int] = {}
        self._lock = threading.Lock()
        self.syncer: Optional[threading.Thread] = None
        #: Whether a sidecar was saved (else there is none to remove at the end).
        self.saved = False
        # Without a boot id, a record cannot tell a process crash from a power loss:
        # then every commit syncs the data first, so "written" is always "synced".
        self.sync_each_commit = side is not None and self.boot is None

    def resume(self) -> None:
        """Resuming: make the earlier run's bytes durable so they count as synced."""
        rows = self._rows()
        if self.side is not None and any(w for _, _, w in rows):
            self.part.sync()
            with self._lock:
                self.synced = {s: w for s, _, w in rows}

    def commit(self) -> None:
        """Save the sidecar with what is written now (and what is known synced)."""
        if self.side is None:
            return
        rows = self._rows()
        if self.sync_each_commit:
            self.part.sync()
            self._mark_synced(rows)
        with self._lock:
            full = state.with_synced(rows, self.synced)
        validators = self.remote.validators
        record = state.Record(
            self.url,
            self.remote.size or 0,
            validators.etag,
            validators.last_modified,
            full,
            self.boot,
        )
        state.save(self.side, record)
        self.saved = True

    def _mark_synced(self, rows: List[state.Row]) -> None:
        with self._lock:
            for s, _, w in rows:
                self.synced[s] = max(self.synced.get(s, 0), w)

    def start_sync(self) -> None:
        """Start a background fdatasync unless one is running; a failure is fatal."""
        if self.side is None or (self.syncer is not None and self.syncer.is_alive()):
            return

        def sync() -> None:
            rows = self._rows()
            try:
                self.part.sync()
            except AccelError as exc:  # the kernel may have dropped data: stop, claim nothing new
                self._on_error(exc)
                return
            self._mark_synced(rows)

        self.syncer = threading.Thread(target=sync, name="accel-sync", daemon=True)
        self.syncer.start()
