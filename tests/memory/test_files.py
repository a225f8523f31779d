"""The File layer on a real directory: write-through, packs, full disks, failing writes."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from pathlib import Path

import pytest
from memkube.errors import SpillError, SpillFullError
from memkube.memory.files import File

MODES = ["range", "direct", "cached"]


def cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache: mincore(2) on a mapping, which reads nothing."""
    size = path.stat().st_size
    if size == 0:
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        pages = -(-size // mmap.PAGESIZE)
        vec = ctypes.create_string_buffer(pages)
        assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0
        libc.munmap(ctypes.c_void_p(addr), size)
        return sum(b & 1 for b in vec.raw) * mmap.PAGESIZE
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("small", [0, 1 << 20], ids=["file-per-value", "packed"])
def test_mapping_contract(tmp_path: Path, mode: str, small: int) -> None:
    files = File(tmp_path / "spill", mode=mode, small=small)
    files["a"] = b"hello"
    files["b"] = [b"frame0", memoryview(b"frame1"), bytearray(b"!")]
    files["c"] = iter([b"streamed ", b"chunks"])  # an iterator is consumed while writing
    assert files["a"] == b"hello"
    assert files["b"] == b"frame0frame1!"
    assert files["c"] == b"streamed chunks"
    back = files["b"]
    back[0:1] = b"F"  # fresh writable memory: arrays rebuilt from it are writable too
    assert sorted(files) == ["a", "b", "c"] and len(files) == 3 and "a" in files
    assert files.size("b") == 13
    files["a"] = b"replaced"
    assert files["a"] == b"replaced"
    del files["a"]
    assert "a" not in files
    with pytest.raises(KeyError):
        files["a"]
    with pytest.raises(KeyError):
        del files["a"]
    del files["b"], files["c"]
    assert list((tmp_path / "spill").iterdir()) == []  # packs go with their last value
    assert files.disk_bytes == 0


@pytest.mark.parametrize("mode", ["range", "direct"])
@pytest.mark.parametrize("size", [5 << 20, (20 << 20) + 12345])  # below and above a piece
def test_write_through_leaves_nothing_in_the_page_cache(tmp_path: Path, mode: str,
                                                        size: int) -> None:
    files = File(tmp_path, mode=mode)
    payload = os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20))
    files["big"] = [memoryview(payload)[:1000], memoryview(payload)[1000:]]
    # once the write returned, the bytes are on the device and out of the cache, so they
    # do not count against the cgroup; reading them back does not cache them either
    assert cached_bytes(tmp_path / "big") == 0
    assert (tmp_path / "big").stat().st_size == size
    assert files["big"] == payload
    assert cached_bytes(tmp_path / "big") == 0


def test_packs_batch_small_values_and_are_freed_with_their_last_value(tmp_path: Path) -> None:
    files = File(tmp_path, small=64 << 10, pack_bytes=256 << 10)
    values = {f"v{i}": bytes([i]) * (50 << 10) for i in range(12)}  # 12 x 50 KiB
    for name, value in values.items():
        files[name] = value
    packs = sorted(p.name for p in tmp_path.iterdir())
    assert packs == ["pack-00000000", "pack-00000001"]  # sealed after 6 values each
    for name, value in values.items():
        assert files[name] == value
    sealed = tmp_path / "pack-00000000"
    assert cached_bytes(sealed) == 0  # a sealed pack is pushed out of the cache
    for name in list(values)[:6]:
        del files[name]
    assert not sealed.exists()  # all its values deleted: unlinked
    for name in list(values)[6:]:
        assert files[name] == values[name]
        del files[name]
    assert list(tmp_path.iterdir()) == [] and files.disk_bytes == 0


def test_dead_bytes_of_a_live_pack_are_counted(tmp_path: Path) -> None:
    files = File(tmp_path, small=64 << 10)
    files["keep"] = b"k" * 1000
    files["drop"] = b"d" * 3000
    del files["drop"]
    assert files.dead_bytes == 3000 and files.disk_bytes == 4000


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".", "x" * 300, "pack-00000000"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    files = File(tmp_path)
    with pytest.raises(KeyError):
        files[name] = b"x"


@pytest.mark.parametrize("mode", MODES)
def test_full_disk_raises_spill_full_and_leaves_no_partial_file(tmpfs: Path,
                                                                mode: str) -> None:
    files = File(tmpfs, mode=mode)
    files["first"] = b"x" * (10 << 20)
    with pytest.raises(SpillFullError, match="no space left"):
        files["second"] = b"y" * (10 << 20)
    assert "second" not in files
    assert sorted(p.name for p in tmpfs.iterdir()) == ["first"]
    del files["first"]
    files["second"] = b"y" * (10 << 20)  # room again
    assert len(files["second"]) == 10 << 20


def test_full_disk_in_a_pack_keeps_the_values_before_it(tmpfs: Path) -> None:
    files = File(tmpfs, small=4 << 20, pack_bytes=64 << 20)
    files["filler"] = b"f" * (15 << 20)  # own file (above small)
    files["a"] = b"a" * (300 << 10)
    with pytest.raises(SpillFullError):
        for i in range(10):
            files[f"b{i}"] = b"b" * (3 << 20)
    assert files["a"] == b"a" * (300 << 10)
    files.close()  # seals the open pack: its descriptor would keep the mount busy


class ShortWrites:
    """A pwrite that writes at most ``most`` bytes per call (as the kernel may)."""

    def __init__(self, most: int) -> None:
        self.most, self.calls = most, 0

    def __call__(self, fd: int, data: memoryview, offset: int) -> int:
        self.calls += 1
        return os.pwrite(fd, data[: self.most], offset)


@pytest.mark.parametrize("mode", ["range", "direct"])
def test_short_writes_are_completed(tmp_path: Path, mode: str) -> None:
    # direct I/O needs block multiples: short writes of whole blocks
    pwrite = ShortWrites(4096 * 3 if mode == "direct" else 1000)
    files = File(tmp_path, mode=mode, pwrite=pwrite, small=1 << 16)
    payload = os.urandom(3 << 20)
    files["big"] = payload
    files["small"] = b"s" * 5000
    assert pwrite.calls > 100
    assert files["big"] == payload and files["small"] == b"s" * 5000


@pytest.mark.parametrize("mode", ["range", "direct"])
@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_a_failing_write_leaves_no_file_and_keeps_the_old_value(tmp_path: Path, mode: str,
                                                                err: int) -> None:
    calls = 0

    def failing(fd: int, data: memoryview, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 2:  # the first value, and a first piece of the second
            raise OSError(err, os.strerror(err))
        return os.pwrite(fd, data, offset)

    files = File(tmp_path, mode=mode, pwrite=failing, small=0)
    files["k"] = b"old" * 1000
    with pytest.raises(SpillFullError if err == errno.ENOSPC else SpillError):
        files["k"] = [os.urandom(9 << 20), os.urandom(9 << 20)]
    assert files["k"] == b"old" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_writes_to_a_zero_returning_device_fail_instead_of_spinning(tmp_path: Path) -> None:
    files = File(tmp_path, pwrite=lambda fd, data, offset: 0)
    with pytest.raises(SpillError):
        files["k"] = b"x" * (1 << 20)
    assert "k" not in files and list(tmp_path.iterdir()) == []
