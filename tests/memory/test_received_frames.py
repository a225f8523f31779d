"""Values received from a peer as serialized frames, stored straight in the spill store
(never unpickled), and keys detached at once with their files deleted later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from memkube import serialize
from memkube.errors import SpillCorruptError, SpillFullError
from memkube.memory import codec
from memkube.memory.buffer import SpillBuffer
from memkube.memory.disk import SpillDisk
from memkube.memory.files import File


def received(value: object) -> list[memoryview]:
    """Frames as a peer's bundle delivers them: views into one received payload."""
    payload = b"".join(serialize.pack_bundle({"k": serialize.dumps(value)}))
    items, _, _ = serialize.unpack_bundle(payload)
    return items["k"]


def test_received_frames_are_stored_as_a_spilled_value(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="auto")
    buf = SpillBuffer(disk, target=10 << 20)
    value = np.random.default_rng(0).random(200_000)
    written = buf.put_frames("k", received(value))
    assert "k" in buf and not buf.in_memory("k") and buf.managed == 0  # not unpickled
    assert written == disk.blob("k").nbytes == buf.spilled > value.nbytes
    (path,) = list(tmp_path.iterdir())
    blob = path.read_bytes()
    assert blob.endswith(codec.MAGIC)  # the spill format: frames, header, trailer
    assert len(codec.header(blob)) == len(serialize.dumps(value))
    np.testing.assert_array_equal(buf["k"], value)  # read back as any spilled value
    assert buf.stats.spill_count == 1 and buf.stats.unspill_count == 1
    np.testing.assert_array_equal(serialize.loads(buf.get_frames("k")), value)


def test_received_frames_replace_an_older_value(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="none")
    buf = SpillBuffer(disk, target=10 << 20)
    buf["k"] = b"old" * 1000
    buf.put_frames("k", received(b"new" * 1000))
    assert not buf.in_memory("k") and buf["k"] == b"new" * 1000
    assert len(list(tmp_path.iterdir())) == 1


def test_a_corrupted_received_value_is_caught_on_read(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="none")
    buf = SpillBuffer(disk, target=10 << 20)
    buf.put_frames("k", received(np.arange(100_000)))
    (path,) = list(tmp_path.iterdir())
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(data)
    with pytest.raises(SpillCorruptError):
        buf["k"]
    assert "k" not in buf


def test_a_full_store_refuses_received_frames_and_keeps_nothing() -> None:
    disk = SpillDisk({}, max_bytes=1000, compression="none")
    buf = SpillBuffer(disk, target=10 << 20)
    with pytest.raises(SpillFullError):
        buf.put_frames("k", received(b"x" * 10_000))
    assert "k" not in buf and disk.nbytes == 0


def test_detach_forgets_at_once_and_the_file_goes_on_discard(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="none")
    buf = SpillBuffer(disk, target=0)  # everything spills
    buf["k"] = b"x" * 10_000
    buf["m"] = b"y" * 10
    (path,) = [p for p in tmp_path.iterdir() if p.name == disk.blob("k").name]
    value, blob = buf.detach("k")
    assert "k" not in buf and path.exists()  # gone for readers; the file is still there
    assert value is None and blob is not None  # it was spilled: no value in memory
    buf.discard(blob)
    assert not path.exists()
    with pytest.raises(KeyError):
        buf.detach("k")
    buf2 = SpillBuffer(SpillDisk({}, compression="none"), target=None)
    buf2["v"] = b"z"
    assert buf2.detach("v") == (b"z", None) and "v" not in buf2  # in memory only: no file
