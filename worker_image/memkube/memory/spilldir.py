"""The worker's private spill directory, locked while in use, and cleanup of dead ones.

A worker killed by a signal or restarted for memory cannot remove its spill files, and in a
pod the ``emptyDir`` outlives the container: restarts would fill the volume. So each spill
directory holds a ``.lock`` file that its worker keeps ``flock``-ed; a new worker removes
every sibling directory whose lock nobody holds any more. The directory is prepared under a
hidden name and renamed into place only once locked, so a directory being born is never
mistaken for a dead one.

Not covered: the files inside (``files.py``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "memkube-spill-"
LOCK = ".lock"


def remove_stale(parent: Path) -> int:
    """Remove spill directories under ``parent`` whose worker is gone; how many were."""
    removed = 0
    for directory in parent.glob(PREFIX + "*"):
        try:
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # not ours, or already being removed
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live worker holds it
        finally:
            os.close(fd)  # releases the lock we may have taken
        shutil.rmtree(directory, ignore_errors=True)  # another worker may race us to it
        removed += 1
    return removed


def _gone_is_fine(function: object, path: str, exc: BaseException) -> None:
    """rmtree's error handler: a file another thread deleted first is what we wanted."""
    if not isinstance(exc, FileNotFoundError):
        raise exc


class SpillDirectory:
    """A fresh, locked spill directory under ``parent``; :meth:`remove` deletes it."""

    def __init__(self, parent: str | os.PathLike[str]) -> None:
        parent_path = Path(parent)
        parent_path.mkdir(parents=True, exist_ok=True)
        stale = remove_stale(parent_path)
        if stale:
            logger.warning(
                "removed %d spill directories left by dead workers in %s", stale, parent_path
            )
        nascent = Path(tempfile.mkdtemp(prefix=".memkube-new-", dir=parent_path))
        self._fd: int | None = os.open(nascent / LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = parent_path / (PREFIX + nascent.name.removeprefix(".memkube-new-"))
        os.rename(nascent, self.path)

    def remove(self) -> None:
        """Delete the directory and everything in it, then release the lock."""
        if self._fd is None:
            return
        shutil.rmtree(self.path, onexc=_gone_is_fine)
        os.close(self._fd)
        self._fd = None
