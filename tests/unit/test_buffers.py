"""memkube.buffers: the memory received bytes land in."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from memkube import buffers
from memkube.memory.writeback import read_file


def mapping_permissions(buf: mmap.mmap) -> str:
    """The permissions of the mapping that holds ``buf`` (``/proc/self/maps``): ``rw-p``
    for private memory, ``rw-s`` for shared (shmem, which takes no huge pages by default)."""
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        start, end = (int(x, 16) for x in span.split("-"))
        if start <= address < end:
            return perms
    raise AssertionError("no mapping holds the buffer")


def test_fresh_buffers_are_private_mappings_only_when_large() -> None:
    assert isinstance(buffers.fresh(buffers.HUGE_FROM - 1), bytearray)
    big = buffers.fresh(buffers.HUGE_FROM)
    assert isinstance(big, mmap.mmap) and len(big) == buffers.HUGE_FROM
    view = memoryview(big)
    view[:5] = b"hello"
    assert bytes(view[:5]) == b"hello" and not view.readonly
    assert mapping_permissions(big) == "rw-p"
    del view


def test_unspill_reads_land_in_a_private_mapping(tmp_path: Path) -> None:
    data = os.urandom(3 * buffers.HUGE_FROM + 123)
    path = tmp_path / "spill"
    path.write_bytes(data)
    view = read_file(str(path), 0, len(data))
    assert bytes(view) == data
    assert isinstance(view.obj, mmap.mmap)
    assert mapping_permissions(view.obj) == "rw-p"
