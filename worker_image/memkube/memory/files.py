"""A directory as a MutableMapping of names to bytes: the bottom layer of the spill store.

``files[name] = chunks`` writes the chunks (bytes-likes, any iterable of them, consumed
once and in order, never concatenated) *through* to the disk (``writeback.py``: no dirty or
cached pages are left behind to count against the cgroup); ``files[name]`` reads the bytes
back into fresh writable memory (a memoryview); ``del files[name]`` frees them.

Values smaller than ``small`` bytes are appended to a shared *pack* file instead of one file
each (one ``open``/``close`` and one cache drop per few MiB instead of per value); a pack is
unlinked when it is sealed and its last value is deleted. :attr:`disk_bytes` counts what the
files take on disk, dead bytes of packs included.

Names are chosen by the caller (``disk.py`` numbers them); anything unsafe is refused. A
full disk (ENOSPC, EDQUOT) leaves no partial file and raises :class:`SpillFullError`; other
I/O errors raise :class:`SpillError`. Safe to use from several threads on different names.
Not covered: checksums and compression (``codec.py``), the max-spill cap (``disk.py``).
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpillError, SpillFullError
from ..serialize import Frame
from .writeback import (
    MODES,
    Pwrite,
    RangeSink,
    Staging,
    drop_cache,
    open_sink,
    read_file,
    sync_range,
)

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_FULL = (errno.ENOSPC, errno.EDQUOT)
SMALL = 256 << 10  # values below this go to packs
PACK_BYTES = 8 << 20  # a pack is sealed (pushed to disk, cache dropped) at this size

Chunks = bytes | bytearray | memoryview | Iterable[Frame]


@dataclass
class _Pack:
    path: Path
    fd: int
    sink: RangeSink
    live: int = 0
    sealed: bool = False
    size: int = 0


@dataclass(frozen=True)
class _Entry:
    path: Path
    offset: int
    size: int
    pack: _Pack | None = field(default=None, compare=False)


def _views(value: Chunks) -> Iterable[memoryview]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [memoryview(value).cast("B")]
    return (memoryview(c).cast("B") for c in value)


class File(MutableMapping[str, Any]):
    """Spill files in ``directory`` (created if missing); ``mode`` is range|direct|cached."""

    streams = True  # takes an iterator of chunks and consumes it while writing

    def __init__(self, directory: str | os.PathLike[str], *, mode: str = "range",
                 small: int = SMALL, pack_bytes: int = PACK_BYTES,
                 pwrite: Pwrite = os.pwrite) -> None:
        if mode not in (*MODES, "cached"):
            raise ValueError(f"write mode {mode!r} is not one of range, direct, cached")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mode, self.small, self.pack_bytes = mode, small, pack_bytes
        self._pwrite = pwrite
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._pack: _Pack | None = None
        self._packs = itertools.count()
        self._disk_bytes = 0
        self._live_bytes = 0
        self._staging = Staging() if mode == "direct" else None
        self.aligned = mode == "direct"  # the encoder pads large frames for copy-free writes

    @property
    def dead_bytes(self) -> int:
        """Bytes on disk that no value uses any more (deleted values in packs)."""
        return max(0, self._disk_bytes - self._live_bytes)

    @property
    def disk_bytes(self) -> int:
        """Bytes the files take on disk (dead bytes of unsealed or live packs included)."""
        return self._disk_bytes

    def _path(self, name: str) -> Path:
        if not _NAME.match(name) or name in (".", "..") or name.startswith("pack-"):
            raise KeyError(name)
        return self.directory / name

    # writing

    def __setitem__(self, name: str, value: Chunks) -> None:
        size = None
        if isinstance(value, (bytes, bytearray, memoryview)):
            size = memoryview(value).nbytes
        elif isinstance(value, (list, tuple)):
            size = sum(memoryview(c).nbytes for c in value)
        self.write(name, value, size)

    def write(self, name: str, value: Chunks, size_hint: int | None = None) -> int:
        """Write ``value`` under ``name`` (replacing it); bytes written. ``size_hint``
        (an upper bound is fine) lets a small value go to a pack."""
        path = self._path(name)
        try:
            if size_hint is not None and size_hint < self.small:
                entry = self._append(value)
            else:
                entry = self._write_file(path, value)
        except OSError as exc:
            if exc.errno in _FULL:
                raise SpillFullError(f"no space left in {self.directory}: {exc}") from exc
            raise SpillError(f"cannot write spill file {path}: {exc}") from exc
        with self._lock:
            old = self._entries.get(name)
            self._entries[name] = entry
            self._live_bytes += entry.size
            if entry.pack is None:
                self._disk_bytes += entry.size
        if old is not None:
            self._release(old, replaced_by=entry)
        return entry.size

    def _write_file(self, path: Path, value: Chunks) -> _Entry:
        tmp = path.with_name(path.name + ".part")
        tmp.unlink(missing_ok=True)
        if self.mode == "cached":
            try:
                with open(tmp, "wb") as f:
                    size = sum(f.write(v) for v in _views(value))
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return _Entry(path, 0, size)
        fd, sink = open_sink(str(tmp), self.mode, pwrite=self._pwrite, staging=self._staging)
        try:
            try:
                for view in _views(value):
                    sink.write(view)
                size = sink.close()
            except BaseException:
                sink.abort()
                raise
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _Entry(path, 0, size)

    def _append(self, value: Chunks) -> _Entry:
        with self._pack_lock:
            pack = self._pack
            if pack is None:
                path = self.directory / f"pack-{next(self._packs):08d}"
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                pack = _Pack(path, fd, RangeSink(fd, pwrite=self._pwrite, piece=1 << 20))
                self._pack = pack
            start = pack.sink.offset
            try:
                for view in _views(value):
                    pack.sink.write(view)
            except BaseException:
                pack.sink.offset = start  # the next value overwrites the partial bytes
                if pack.live == 0 and start == 0:
                    self._pack = None
                    self._unlink_pack(pack)
                raise
            size = pack.sink.offset - start
            # start the write-back now; it is waited for before the value is read back
            sync_range(pack.fd, start, size, wait=False)
            with self._lock:
                pack.live += 1
                self._disk_bytes += pack.sink.offset - pack.size
                pack.size = pack.sink.offset
            if pack.size >= self.pack_bytes:
                self._seal(pack)
            return _Entry(pack.path, start, size, pack)

    def _seal(self, pack: _Pack) -> None:
        """Push a full pack to disk and drop its cache (called with the pack lock)."""
        self._pack = None
        pack.sink.close()
        drop_cache(pack.fd)
        os.close(pack.fd)
        with self._lock:
            pack.sealed = True
            dead = pack.live == 0
        if dead:
            self._unlink_pack(pack)

    def _unlink_pack(self, pack: _Pack) -> None:
        if not pack.sealed:
            os.close(pack.fd)
            pack.sealed = True
        pack.path.unlink(missing_ok=True)
        with self._lock:
            self._disk_bytes -= pack.size

    # reading

    def __getitem__(self, name: str) -> memoryview:
        self._path(name)
        entry = self._entries.get(name)
        if entry is None:
            raise KeyError(name)
        pack = entry.pack
        try:
            if pack is not None and not pack.sealed:
                with self._pack_lock:  # its bytes may still be on their way to the disk
                    if not pack.sealed:
                        sync_range(pack.fd, entry.offset, entry.size, wait=True)
            return read_file(str(entry.path), entry.offset, entry.size,
                             direct=self.mode != "cached")
        except FileNotFoundError as exc:
            raise KeyError(name) from exc  # deleted by another thread meanwhile
        except OSError as exc:
            raise SpillError(f"cannot read spill file {entry.path}: {exc}") from exc

    # deleting

    def __delitem__(self, name: str) -> None:
        self._path(name)
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is None:
            raise KeyError(name)
        self._release(entry)

    def _release(self, entry: _Entry, *, replaced_by: _Entry | None = None) -> None:
        with self._lock:
            self._live_bytes -= entry.size
        pack = entry.pack
        if pack is None:
            if replaced_by is None or replaced_by.path != entry.path:
                entry.path.unlink(missing_ok=True)  # (a file replaced in place is gone)
            with self._lock:
                self._disk_bytes -= entry.size
            return
        with self._pack_lock:
            with self._lock:
                pack.live -= 1
                dead = pack.live == 0
            if dead and (pack.sealed or pack is self._pack):
                if pack is self._pack:
                    self._pack = None
                self._unlink_pack(pack)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def size(self, name: str) -> int:
        """Bytes of one value as written."""
        return self._entries[name].size

    def close(self) -> None:
        """Seal the open pack (its fd is closed); the entries stay readable."""
        with self._pack_lock:
            if self._pack is not None:
                self._seal(self._pack)
        if self._staging is not None:
            self._staging.close()
            self._staging = Staging()  # still usable after close
