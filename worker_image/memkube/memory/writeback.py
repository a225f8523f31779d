"""Writing and reading spill files at the speed of the disk, without using the page cache.

Dirty and cached pages of spill files count against the worker's cgroup (v1 and v2): the
very memory spilling is meant to free. So every byte is *written through*: it is on the
device, and out of the page cache, before a write returns. Two ways, same interface:

- :class:`RangeSink` (``"range"``): buffered ``pwrite`` of each piece, then
  ``sync_file_range(WRITE)`` starts its write-back at once and returns; the previous piece
  is waited for and dropped with ``posix_fadvise(DONTNEED)``. The device works on piece *n*
  while the caller hashes piece *n* and copies piece *n+1* into the kernel, and at most two
  pieces are ever dirty or cached.
- :class:`DirectSink` (``"direct"``): ``O_DIRECT`` from page-aligned staging buffers (Python
  buffers are not aligned, so each piece is copied once into one); an I/O thread writes one
  staging buffer while the caller fills the other. The tail is padded to a block and the
  file truncated to its length. Not every file system takes ``O_DIRECT`` (a ``tmpfs``
  before Linux 6.6): :func:`open_sink` then falls back to ``"range"``.

Which is faster depends on the machine; ``bench/disk_bench.py`` measures both (the figures
and the default chosen from them are in ``bench/README.md``). Crash durability is not a
goal (spill files die with the worker): "written" means on the device and out of the cache.

:func:`read_file` reads a byte range into fresh anonymous memory (page-aligned, writable, no
zero-filling pass in user space, advised for huge pages: :mod:`memkube.buffers`), with
``O_DIRECT`` when the range is aligned, else a buffered read whose cache is dropped
afterwards; large ranges in pieces read in parallel.

All calls block: they run in the spill store's threads, never on an event loop. Errors are
``OSError`` as raised (ENOSPC included); the file layer above translates them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from ..buffers import anonymous

BLOCK = 4096
PIECE = 8 << 20  # bytes handed to the kernel at a time
MODES = ("range", "direct")

_SYNC_WAIT_BEFORE, _SYNC_WRITE, _SYNC_WAIT_AFTER = 1, 2, 4

Pwrite = Callable[[int, memoryview, int], int]


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).sync_file_range  # releases the GIL
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def sync_range(fd: int, offset: int, nbytes: int, *, wait: bool) -> None:
    """Start (and with ``wait``, finish) the write-back of a byte range; else fdatasync."""
    if _sync_file_range is None:
        if wait:
            os.fdatasync(fd)
        return
    flags = _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER if wait else _SYNC_WRITE
    if _sync_file_range(fd, offset, nbytes, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def drop_cache(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    os.posix_fadvise(fd, offset, nbytes, os.POSIX_FADV_DONTNEED)


def write_all(pwrite: Pwrite, fd: int, data: memoryview, offset: int) -> int:
    """``pwrite`` until every byte is written (short writes are retried); bytes written."""
    done = 0
    while done < data.nbytes:
        n = pwrite(fd, data[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"write returned {n} at offset {offset + done}")
        done += n
    return done


class Sink(Protocol):
    """Bytes written in order to one file; ``close`` returns only once they are through."""

    def write(self, data: memoryview) -> None: ...
    def close(self) -> int: ...
    def abort(self) -> None: ...


class RangeSink:
    """Buffered writes pushed to the device piece by piece (``sync_file_range``)."""

    def __init__(self, fd: int, offset: int = 0, *, pwrite: Pwrite = os.pwrite,
                 piece: int = PIECE) -> None:
        self.fd, self.start, self.offset = fd, offset, offset
        self._pwrite, self._piece = pwrite, piece
        self._kicked = offset  # write-back started up to here
        self._waited = offset  # on the device and dropped up to here

    def write(self, data: memoryview) -> None:
        self.offset += write_all(self._pwrite, self.fd, data, self.offset)
        if self.offset - self._kicked >= self._piece:
            self._push()

    def _push(self) -> None:
        # wait for the previous piece while the device starts on this one
        previous = self._kicked
        sync_range(self.fd, self._kicked, self.offset - self._kicked, wait=False)
        self._kicked = self.offset
        if previous > self._waited:
            self._settle(previous)

    def _settle(self, upto: int) -> None:
        sync_range(self.fd, self._waited, upto - self._waited, wait=True)
        drop_cache(self.fd, self._waited, upto - self._waited)
        self._waited = upto

    def close(self) -> int:
        """Wait for everything written; the bytes written. The fd stays open (caller's)."""
        if self.offset > self._waited:
            self._settle(self.offset)
        return self.offset - self.start

    def abort(self) -> None:
        pass


class Staging:
    """Page-aligned buffers for direct I/O, reused (fresh memory costs page faults) and an
    I/O thread pool, shared by the sinks of one file layer. Thread-safe.

    Large frames are written from the caller's memory, so staging carries only heads,
    tails and small frames: 1 MiB buffers, at most ``keep`` of them kept idle (this is
    worker memory outside the managed bytes)."""

    def __init__(self, piece: int = 1 << 20, threads: int = 4, keep: int = 4) -> None:
        self._keep = keep
        self.piece = piece - piece % BLOCK or BLOCK
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self.io = ThreadPoolExecutor(threads, thread_name_prefix="memkube-direct")

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return anonymous(self.piece)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        try:
            buf.close()
        except BufferError:
            pass

    def close(self) -> None:
        self.io.shutdown(wait=True)
        with self._lock:
            free, self._free = self._free, []
        for buf in free:
            try:
                buf.close()
            except BufferError:  # a view kept alive by a failed write's traceback: GC frees it
                pass


def address_of(view: memoryview) -> int | None:
    """The address of a writable contiguous buffer (None when it cannot be known)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):  # read-only (bytes) or not contiguous
        return None


class DirectSink:
    """``O_DIRECT`` writes: block-aligned runs straight from the caller's memory, the rest
    (heads, tails, small buffers) through reused aligned staging buffers; up to
    ``depth`` writes in flight on the staging's I/O threads while the caller goes on.

    A buffer is written without a copy when its address and the file position agree
    modulo the block size (``codec.Encoder(align=True)`` pads the stream so they do).
    The caller's buffers must stay unchanged until :meth:`close` returns.
    """

    def __init__(self, fd: int, *, pwrite: Pwrite = os.pwrite,
                 staging: Staging | None = None, depth: int = 3) -> None:
        self.fd, self._pwrite, self._depth = fd, pwrite, depth
        self._own = staging is None
        self._staging = staging or Staging(threads=2)
        self._piece = self._staging.piece
        self._buf: mmap.mmap | None = self._staging.take()
        self._fill, self._offset = 0, 0
        self._pending: list[tuple[Future[int], mmap.mmap | None]] = []
        self.copied = 0  # bytes that went through staging (for tests and figures)

    def write(self, data: memoryview) -> None:
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        if data.nbytes >= 16 * BLOCK:
            addr = address_of(data)
            if addr is not None and (self._offset + self._fill - addr) % BLOCK == 0:
                head = (-addr) % BLOCK
                self._copy(data[:head])
                data = data[head:]
                body = data.nbytes - data.nbytes % BLOCK
                self._flush()  # the staged bytes end on a block boundary now
                self._submit(data[:body], None)
                data = data[body:]
        self._copy(data)

    def _copy(self, data: memoryview) -> None:
        while data.nbytes:
            if self._buf is None:
                self._buf = self._staging.take()
            n = min(data.nbytes, self._piece - self._fill)
            self._buf[self._fill : self._fill + n] = data[:n]
            self._fill += n
            self.copied += n
            data = data[n:]
            if self._fill == self._piece:
                self._flush()

    def _flush(self) -> None:
        if not self._fill:
            return
        buf, self._buf = self._buf, None
        assert buf is not None
        self._submit(memoryview(buf)[: self._fill], buf)
        self._fill = 0

    def _submit(self, view: memoryview, buf: mmap.mmap | None) -> None:
        fut = self._staging.io.submit(write_all, self._pwrite, self.fd, view, self._offset)
        self._offset += view.nbytes
        self._pending.append((fut, buf))
        while len(self._pending) > self._depth:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        fut, buf = self._pending.pop(0)
        try:
            fut.result()
        finally:
            if buf is not None:
                self._staging.give(buf)

    def close(self) -> int:
        try:
            length = self._offset + self._fill
            if self._fill:
                padded = -(-self._fill // BLOCK) * BLOCK
                assert self._buf is not None
                self._buf[self._fill : padded] = bytes(padded - self._fill)
                self._fill = padded
                self._flush()
            while self._pending:
                self._wait_oldest()
            os.ftruncate(self.fd, length)
            return length
        finally:
            self.abort()

    def abort(self) -> None:
        while self._pending:
            try:
                self._wait_oldest()
            except OSError:
                pass  # the file is being removed
        if self._buf is not None:
            self._staging.give(self._buf)
            self._buf = None
        if self._own:
            self._staging.close()
            self._own = False


def open_sink(path: str, mode: str, *, pwrite: Pwrite = os.pwrite,
              staging: Staging | None = None) -> tuple[int, Sink]:
    """Create ``path`` and a sink writing it in ``mode``; falls back from "direct"."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    if mode == "direct":
        try:
            fd = os.open(path, flags | os.O_DIRECT, 0o600)
            return fd, DirectSink(fd, pwrite=pwrite, staging=staging)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    fd = os.open(path, flags, 0o600)
    return fd, RangeSink(fd, pwrite=pwrite)


#: Reads larger than this are split into pieces of this size read in parallel: the device
#: gets several requests at once, and the destination's page faults (fresh memory, first
#: touched by the read) are taken in several threads (``bench/disk_bench.py``).
READ_PIECE = 4 << 20
READ_THREADS = 4
_readers: ThreadPoolExecutor | None = None
_readers_lock = threading.Lock()


def _reader_pool() -> ThreadPoolExecutor:
    global _readers
    with _readers_lock:
        if _readers is None:
            _readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="memkube-read")
        return _readers


def _read_range(fd: int, view: memoryview, offset: int, need: int) -> int:
    """Read into ``view`` from ``offset`` until at least ``need`` bytes are in (whole blocks
    are asked for; a read at the end of the file returns fewer): the count read, short only
    when the file is."""
    got = 0
    while got < need:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def read_file(path: str, offset: int, nbytes: int, *, direct: bool = True) -> memoryview:
    """``nbytes`` at ``offset`` of ``path`` in fresh writable memory, bypassing the cache.

    Large ranges are read in :data:`READ_PIECE` pieces in parallel, into memory advised
    for transparent huge pages (fewer faults where the kernel offers them on request).
    Short reads are retried; a file shorter than asked raises EIO (the caller checksums).
    """
    if nbytes == 0:
        return memoryview(bytearray())
    aligned = direct and offset % BLOCK == 0
    size = -(-nbytes // BLOCK) * BLOCK if aligned else nbytes
    buf = anonymous(size)
    fd = -1
    if aligned:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            aligned = False
    if fd < 0:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        view = memoryview(buf)
        starts = range(0, size, READ_PIECE)
        if len(starts) > 1:
            # each piece asks for whole blocks (O_DIRECT); only the last may come up short
            pieces = [(s, min(READ_PIECE, size - s), min(READ_PIECE, nbytes - s))
                      for s in starts]
            counts = list(_reader_pool().map(
                lambda p: _read_range(fd, view[p[0]:p[0] + p[1]], offset + p[0], p[2]),
                pieces))
            got = 0
            for (_, _, need), n in zip(pieces, counts, strict=True):
                got += min(n, need)
                if n < need:
                    break
        else:
            got = _read_range(fd, view[:size], offset, nbytes)
        if not aligned:  # whole pages, including those shared with neighbours in a pack
            first = offset - offset % BLOCK
            drop_cache(fd, first, -(-(offset + nbytes - first) // BLOCK) * BLOCK)
    finally:
        os.close(fd)
    if got < nbytes:
        raise OSError(errno.EIO, f"{path}: {got} of {nbytes} bytes at offset {offset}")
    return view[:nbytes]
