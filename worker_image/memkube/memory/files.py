"""A directory as a MutableMapping of names to bytes: the bottom layer of the spill store.

``files[name] = chunks`` writes the chunks (bytes-likes, no concatenation) to one file;
``files[name]`` reads it back into one bytearray (writable, so arrays rebuilt from it are
too); ``del files[name]`` unlinks it. Names are file names chosen by the caller
(``disk.py`` numbers them); anything else is refused. A full disk (ENOSPC, EDQUOT) leaves no
partial file and raises :class:`SpillFullError`. Safe to use from several threads on
different names. Not covered: checksums and compression (``codec.py``), the max-spill cap.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path

from ..errors import SpillError, SpillFullError
from ..serialize import Frame

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_FULL = (errno.ENOSPC, errno.EDQUOT)

# After writing a file bigger than this, flush it and drop it from the page cache: dirty and
# cached spill pages count against the cgroup limit, the very thing spilling tries to relieve.
DROP_CACHE_ABOVE = 1 << 20


class File(MutableMapping[str, bytes | bytearray | memoryview | Sequence[Frame]]):
    """Files in ``directory`` (created if missing), one per name."""

    def __init__(self, directory: str | os.PathLike[str], *, drop_cache: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.drop_cache = drop_cache
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        if not _NAME.match(name) or name in (".", ".."):
            raise KeyError(name)
        return self.directory / name

    def __setitem__(
        self, name: str, value: bytes | bytearray | memoryview | Sequence[Frame]
    ) -> None:
        path = self._path(name)
        chunks = [value] if isinstance(value, (bytes, bytearray, memoryview)) else value
        written = 0
        try:
            with open(path, "wb") as f:
                for chunk in chunks:
                    written += f.write(chunk)
                f.flush()
                if self.drop_cache and written > DROP_CACHE_ABOVE:
                    os.fdatasync(f.fileno())
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno in _FULL:
                raise SpillFullError(f"no space left in {self.directory}: {exc}") from exc
            raise SpillError(f"cannot write spill file {path}: {exc}") from exc
        with self._lock:
            self._sizes[name] = written

    def __getitem__(self, name: str) -> bytearray:
        path = self._path(name)
        if name not in self._sizes:
            raise KeyError(name)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                buf = bytearray(size)
                got = f.readinto(buf)
                if self.drop_cache and size > DROP_CACHE_ABOVE:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except FileNotFoundError as exc:
            raise KeyError(name) from exc  # deleted by another thread meanwhile
        except OSError as exc:
            raise SpillError(f"cannot read spill file {path}: {exc}") from exc
        if got != size:
            del buf[got:]
        return buf

    def __delitem__(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            if self._sizes.pop(name, None) is None:
                raise KeyError(name)
        path.unlink(missing_ok=True)

    def __contains__(self, name: object) -> bool:
        return name in self._sizes

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._sizes))

    def __len__(self) -> int:
        return len(self._sizes)

    def size(self, name: str) -> int:
        """Bytes of one file as written."""
        return self._sizes[name]
