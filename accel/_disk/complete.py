"""The ends of a download: is the file already there, and is the finished one right?

An existing output counts as complete only when it provably is the remote file: the
expected checksum, or the same size and Last-Modified time with no holes (a power loss
right after a download leaves holes). Anything else in the way is an
:class:`~accel.exceptions.OutputExistsError` unless ``force``.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from accel._disk import state
from accel._disk.storage import has_holes
from accel._util.checksum import can_hash, file_digest, matches
from accel._util.digests import ServerDigest, strongest
from accel._util.remote import RemoteFile, http_date_to_timestamp
from accel._util.urls import redact
from accel.exceptions import LocalFileError, OutputExistsError, VerificationError

log = logging.getLogger(__name__)

Checksum = Optional[Tuple[str, str]]


class Completion:
    """Decides whether outputs are complete for one download (checksums hashed once)."""

    def __init__(self, checksum: Checksum, *, force: bool) -> None:
        self.checksum = checksum
        self.force = force
        self._hashed: Dict[Path, bool] = {}

    def has_checksum(self, dest: Path) -> bool:
        """Whether ``dest`` is a regular file with the expected checksum."""
        if self.checksum is None or not dest.is_file() or dest.is_symlink():
            return False
        if dest not in self._hashed:
            self._hashed[dest] = matches(dest, self.checksum)
        return self._hashed[dest]

    def existing(self, dest: Path, remote: RemoteFile) -> bool:
        """Whether an existing ``dest`` already is the remote file (False: no file there).

        Raises :class:`OutputExistsError` for another file in the way (without ``force``).
        """
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LocalFileError(f"cannot inspect {dest}: {exc.strerror}") from exc
        if self.force:
            return False  # replace it, even if it looks complete
        if self.checksum:
            if self.has_checksum(dest):
                return True
            raise OutputExistsError(
                f"{dest} already exists and does not match the checksum; use --force to replace it"
            )
        mtime = http_date_to_timestamp(remote.validators.last_modified)
        if (
            remote.size is not None
            and st.st_size == remote.size
            and mtime is not None
            and int(st.st_mtime) == int(mtime)
            and not os.path.islink(dest)
            and not has_holes(dest)  # a power loss right after a download leaves holes
        ):
            return True
        raise OutputExistsError(f"{dest} already exists; use --force to replace it")

    def verify(self, part_path: Path, side: Path, url: str, kept: state.Record) -> Optional[str]:
        """Check the complete ``.part`` against the expected checksum; name what was checked.

        On a mismatch the data is kept with ``kept`` (a sidecar marking it complete) saved
        at ``side``, so a run with the right checksum finishes without fetching it again.
        """
        if self.checksum is None:
            return None
        algo, expected = self.checksum
        actual = file_digest(part_path, algo)
        if actual != expected:
            state.save(side, kept)
            raise VerificationError(
                f"{algo} checksum mismatch for {redact(url)}: expected {expected}, got {actual}; "
                f"the data is kept in {part_path}: run again with the right checksum to finish "
                "without downloading it again"
            )
        log.info("%s checksum verified", algo)
        return f"{algo} (--checksum)"

    def verify_server(
        self, part_path: Path, side: Path, url: str, digests: Sequence[ServerDigest]
    ) -> Optional[str]:
        """Check the complete ``.part`` against the strongest digest the server stated that
        this machine can compute; return its label (None: nothing to check).

        On a mismatch the ``.part`` stays for inspection and the sidecar goes, so a new run
        fetches the file again rather than trust these bytes.
        """
        digest = strongest(digests, (d.algo for d in digests if can_hash(d.algo)))
        if digest is None:
            if digests:
                log.info("no digest the server sent can be computed here: not checked")
            return None
        actual = file_digest(part_path, digest.algo)
        if not hmac.compare_digest(actual, digest.hex):
            state.remove(side)
            raise VerificationError(
                f"{digest.label} mismatch for {redact(url)}: the server stated {digest.hex}, "
                f"the data has {actual}; it is kept in {part_path} for inspection, and a new "
                "run downloads it again (--no-server-digest skips this check)"
            )
        log.info("%s verified", digest.label)
        return digest.label
