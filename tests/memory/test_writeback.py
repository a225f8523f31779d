"""The write-through pipeline: what a sink guarantees, and the copy it avoids.

Real files in ``tmp_path``; failures injected through the ``pwrite`` seam.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from memkube import serialize
from memkube.errors import SpillCorruptError
from memkube.memory import codec
from memkube.memory.disk import SpillDisk
from memkube.memory.files import File
from memkube.memory.writeback import BLOCK, DirectSink, RangeSink, Staging, read_file


def direct_fd(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)


def test_direct_sink_writes_aligned_runs_from_the_callers_memory(tmp_path: Path) -> None:
    array = np.random.default_rng(0).random(3 << 20)  # 24 MiB
    frames = serialize.dumps(array)
    encoder = codec.Encoder(frames, "none", align=True)
    fd = direct_fd(tmp_path / "f")
    sink = DirectSink(fd, staging=Staging(piece=4 << 20))
    for piece in encoder.pieces():
        sink.write(piece)
    size = sink.close()
    os.close(fd)
    assert size == encoder.nbytes == (tmp_path / "f").stat().st_size
    # only heads, tails, padding, the small pickle frame and the trailer were copied
    assert sink.copied < 64 << 10
    back = serialize.loads(codec.decode(read_file(str(tmp_path / "f"), 0, size)))
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_direct_sink_copies_what_it_cannot_align(tmp_path: Path) -> None:
    data = os.urandom((5 << 20) + 123)  # bytes: read-only, address unknown: staged
    fd = direct_fd(tmp_path / "f")
    sink = DirectSink(fd, staging=Staging(piece=1 << 20))
    sink.write(memoryview(data)[:7])
    sink.write(memoryview(data)[7:])
    assert sink.close() == len(data)
    os.close(fd)
    assert sink.copied == len(data)
    assert bytes(read_file(str(tmp_path / "f"), 0, len(data))) == data


class Recording:
    """A pwrite that records (offset, length) and can be held or made to fail."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def __call__(self, fd: int, data: memoryview, offset: int) -> int:
        with self.lock:
            self.calls.append((offset, data.nbytes))
            if self.fail_at is not None and len(self.calls) >= self.fail_at:
                raise OSError(errno.EIO, "injected")
        return os.pwrite(fd, data, offset)


def test_direct_sink_returns_only_after_every_write_and_covers_the_file(tmp_path: Path) -> None:
    rec = Recording()
    fd = direct_fd(tmp_path / "f")
    sink = DirectSink(fd, pwrite=rec, staging=Staging(piece=1 << 20, threads=4), depth=3)
    payload = bytearray(os.urandom(9 << 20))
    sink.write(memoryview(payload)[3:])  # writable: its aligned middle goes uncopied
    size = sink.close()
    os.close(fd)
    # writes ran on several threads, in any order, yet cover the file exactly once
    spans = sorted(rec.calls)
    assert spans[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    assert all(off % BLOCK == 0 and n % BLOCK == 0 for off, n in spans)
    assert size == len(payload) - 3 == (tmp_path / "f").stat().st_size
    assert bytes(read_file(str(tmp_path / "f"), 0, size)) == bytes(payload[3:])


def test_a_failed_direct_write_is_raised_by_close(tmp_path: Path) -> None:
    fd = direct_fd(tmp_path / "f")
    sink = DirectSink(fd, pwrite=Recording(fail_at=3), staging=Staging(piece=1 << 20))
    with pytest.raises(OSError, match="injected"):
        sink.write(memoryview(os.urandom(6 << 20)))
        sink.close()
    sink.abort()
    os.close(fd)


def test_range_sink_pushes_pieces_in_order_and_waits_for_all(tmp_path: Path) -> None:
    rec = Recording()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    sink = RangeSink(fd, pwrite=rec, piece=1 << 20)
    chunks = [os.urandom(300 << 10) for _ in range(10)]
    for chunk in chunks:
        sink.write(memoryview(chunk))
    assert sink.close() == sum(map(len, chunks))
    os.close(fd)
    offsets = [off for off, _ in rec.calls]
    assert offsets == sorted(offsets)  # sequential: one writer, in order
    assert (tmp_path / "f").read_bytes() == b"".join(chunks)


def test_reading_a_truncated_file_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 5000)
    with pytest.raises(OSError):
        read_file(str(tmp_path / "f"), 0, 9000)


@pytest.mark.parametrize("mode", ["direct", "range"])
def test_a_checksum_mismatch_on_disk_is_detected(tmp_path: Path, mode: str) -> None:
    disk = SpillDisk(File(tmp_path, mode=mode), compression="none")
    array = np.random.default_rng(1).random(1 << 20)
    disk["k"] = array
    (path,) = [p for p in tmp_path.iterdir() if p.name == disk.blob("k").name]
    with open(path, "r+b") as f:
        f.seek(4 << 20)
        byte = f.read(1)
        f.seek(4 << 20)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(SpillCorruptError, match="checksum"):
        disk.get_frames("k")


def test_a_checksum_mismatch_in_a_pack_is_detected(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=1 << 20), compression="none")
    disk["a"] = b"a" * 5000
    disk["b"] = b"b" * 5000
    (pack,) = list(tmp_path.iterdir())
    data = bytearray(pack.read_bytes())
    data[data.index(b"b" * 100) + 50] ^= 1
    pack.write_bytes(data)
    os.posix_fadvise(os.open(pack, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)
    assert disk["a"] == b"a" * 5000
    with pytest.raises(SpillCorruptError):
        disk["b"]


def test_the_cap_counts_what_is_written_through_concurrent_writers(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path), compression="none", max_bytes=20 << 20)
    values = [np.random.default_rng(i).random(1 << 19) for i in range(8)]  # 4 MiB each
    errors: list[BaseException] = []

    def put(i: int) -> None:
        try:
            disk[f"k{i}"] = values[i]
        except BaseException as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(disk) == 4 and len(errors) == 4  # four fit under 20 MiB with their padding
    assert disk.nbytes == sum(disk.blob(k).nbytes for k in disk) <= 20 << 20


@pytest.mark.parametrize("offset", [0, BLOCK, 3])
def test_large_reads_in_parallel_pieces_are_exact(tmp_path: Path, offset: int) -> None:
    # several pieces (the last one partial), aligned (O_DIRECT) and not (a pack's neighbour)
    from memkube.memory import writeback

    data = os.urandom(offset + 3 * writeback.READ_PIECE + 12345)
    (tmp_path / "f").write_bytes(data)
    nbytes = len(data) - offset
    got = read_file(str(tmp_path / "f"), offset, nbytes)
    assert got.nbytes == nbytes and bytes(got) == data[offset:]
    with pytest.raises(OSError) as info:  # asked beyond the end: EIO, never a short view
        read_file(str(tmp_path / "f"), offset, nbytes + writeback.READ_PIECE)
    assert info.value.errno == errno.EIO


def test_a_read_stops_once_its_bytes_are_in(tmp_path: Path) -> None:
    # a pack file's length is not a whole number of blocks; once the entry's bytes are in,
    # no further (unaligned, O_DIRECT) read is made for the rest of the last block
    data = os.urandom(6000)
    (tmp_path / "f").write_bytes(data)
    assert bytes(read_file(str(tmp_path / "f"), 0, 5000)) == data[:5000]
    assert bytes(read_file(str(tmp_path / "f"), 0, 6000)) == data
