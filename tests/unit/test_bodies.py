"""Buffers for received bodies (serving.fresh_buffer)."""

from __future__ import annotations

import mmap

from memkube.serving import POPULATE_FROM, fresh_buffer


def test_only_a_large_populated_request_gets_mapped_memory() -> None:
    large = fresh_buffer(2 * POPULATE_FROM, populate=True)
    assert len(large) == 2 * POPULATE_FROM
    if hasattr(mmap, "MAP_POPULATE"):
        assert isinstance(large, mmap.mmap)
    view = memoryview(large)
    view[-3:] = b"end"  # writable, its full length
    assert bytes(view[-3:]) == b"end"
    assert isinstance(fresh_buffer(2 * POPULATE_FROM), bytearray)  # a worker's body
    assert isinstance(fresh_buffer(POPULATE_FROM - 1, populate=True), bytearray)  # small
