"""The slow layer of the spill store: values as checksummed, compressed frames in blobs.

``SpillDisk`` is a ``MutableMapping[str, Any]`` of keys to values over any mapping of blob
names to bytes: a :class:`~memkube.memory.files.File` directory in production, a plain dict
in tests. A value is stored as :func:`memkube.serialize.dumps` frames encoded by
``codec.py``; :meth:`get_frames` returns the frames without unpickling them.

Writes are two-phase so the buffer above can write outside its lock: :meth:`prepare`
serializes, encodes and writes a blob under a fresh name (raising :class:`SpillFullError`
when the ``max_bytes`` cap or the disk is full), :meth:`commit` binds it to a key, and
:meth:`discard` drops a prepared blob nobody wants any more. Thread-safe.

Not covered: what to spill and when (``buffer.py``, ``policy.py``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpillCorruptError, SpillFullError
from ..serialize import Frame, dumps, loads
from . import codec


@dataclass(frozen=True)
class Blob:
    """A written blob: its name in the blob mapping, its size there, and the CRC-32 of
    each serialized frame it holds (to recognise an unchanged value without reading)."""

    name: str
    nbytes: int
    checksums: tuple[int, ...] = ()

    def holds(self, frames: list[Frame]) -> bool:
        """Whether ``frames`` are exactly the frames stored in this blob."""
        return len(frames) == len(self.checksums) and all(
            codec.checksum(f) == c for f, c in zip(frames, self.checksums, strict=True)
        )


class SpillDisk(MutableMapping[str, Any]):
    """Keys to values, stored as encoded frames in ``blobs``."""

    def __init__(
        self,
        blobs: MutableMapping[str, Any],
        *,
        max_bytes: int | None = None,
        compression: str = "auto",
    ) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.compression = codec.check_mode(compression)
        self._index: dict[str, Blob] = {}
        self._nbytes = 0  # committed and prepared blobs
        self._names = itertools.count()
        self._lock = threading.Lock()
        self.write_count = 0
        self.write_bytes = 0
        self.write_seconds = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of all blobs written and not yet deleted."""
        return self._nbytes

    # two-phase writes

    def prepare(self, value: Any) -> Blob:
        """Serialize ``value`` and :meth:`prepare_frames` it."""
        return self.prepare_frames(dumps(value))

    def prepare_frames(self, frames: Sequence[Frame]) -> Blob:
        """Encode and write serialized frames under a fresh name; not yet bound to a key.

        The file is written as it is encoded (``codec.Encoder``): checksums are computed
        while the disk writes. Raises SpillFullError (cap or disk full) or SpillError (the
        disk failed).
        """
        start = time.perf_counter()
        encoder = codec.Encoder(frames, self.compression,
                                align=bool(getattr(self.blobs, "aligned", False)))
        planned = encoder.planned
        with self._lock:
            dead = int(getattr(self.blobs, "dead_bytes", 0))
            if self.max_bytes is not None and self._nbytes + dead + planned > self.max_bytes:
                raise SpillFullError(
                    f"max-spill of {self.max_bytes} bytes reached "
                    f"({self._nbytes + dead} spilled, {planned} more needed)"
                )
            self._nbytes += planned  # reserve before writing, so concurrent writers see it
            name = f"{next(self._names):012d}.spill"
        size = 0  # stays 0 when the write fails: the reservation is given back whole
        try:
            write = getattr(self.blobs, "write", None)
            if getattr(self.blobs, "streams", False) and write is not None:
                write(name, encoder.pieces(), planned)
            else:
                self.blobs[name] = list(encoder.pieces())
            size = encoder.nbytes
        finally:
            with self._lock:
                self._nbytes += size - planned
        with self._lock:
            self.write_count += 1
            self.write_bytes += size
            self.write_seconds += time.perf_counter() - start
        return Blob(name, size, encoder.raw_checksums)

    def commit(self, key: str, blob: Blob) -> None:
        """Bind a prepared blob to ``key``, replacing (and deleting) what it held."""
        with self._lock:
            old = self._index.get(key)
            self._index[key] = blob
        if old is not None:
            self.discard(old)

    def discard(self, blob: Blob) -> None:
        """Delete a blob that is not (or no longer) bound to a key."""
        try:
            del self.blobs[blob.name]
        except KeyError:
            return
        with self._lock:
            self._nbytes -= blob.nbytes

    def blob(self, key: str) -> Blob:
        """The blob bound to ``key`` (KeyError if none)."""
        return self._index[key]

    def unbind(self, key: str, blob: Blob | None = None) -> Blob | None:
        """Forget ``key`` (only if it is still bound to ``blob``, when given); no I/O."""
        with self._lock:
            current = self._index.get(key)
            if current is None or (blob is not None and current != blob):
                return None
            del self._index[key]
            return current

    # reading

    def read_frames(self, key: str, blob: Blob) -> list[Frame]:
        """The frames of ``blob``; SpillCorruptError if it fails its checksums."""
        try:
            data = self.blobs[blob.name]
        except KeyError:
            if self._index.get(key) == blob:
                raise SpillCorruptError(f"spill file for {key!r} is missing") from None
            raise  # deleted by another thread: the caller re-reads the index
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = bytearray().join(data)  # a plain dict keeps the chunk list as written
        return codec.decode(data, where=f"spill file for {key!r}")

    def get_frames(self, key: str) -> list[Frame]:
        """The serialized frames of ``key``, without unpickling them."""
        while True:
            blob = self._index[key]
            try:
                return self.read_frames(key, blob)
            except KeyError:
                continue  # replaced while reading: read the new blob

    # MutableMapping

    def __setitem__(self, key: str, value: Any) -> None:
        self.commit(key, self.prepare(value))

    def __getitem__(self, key: str) -> Any:
        return loads(self.get_frames(key))

    def __delitem__(self, key: str) -> None:
        blob = self.unbind(key)
        if blob is None:
            raise KeyError(key)
        self.discard(blob)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def clear(self) -> None:
        with self._lock:
            blobs = list(self._index.values())
            self._index.clear()
        for blob in blobs:
            self.discard(blob)
