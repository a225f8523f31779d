"""The spill store layers (SpillDisk, SpillBuffer) with plain dicts and real files."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from memkube import serialize
from memkube.errors import SpillCorruptError
from memkube.memory.buffer import SpillBuffer
from memkube.memory.disk import SpillDisk
from memkube.memory.files import File


def weight(value: Any) -> int:
    return len(value) if isinstance(value, (bytes, bytearray)) else 100


def make(
    target: int | None = 2500, max_bytes: int | None = None, blobs: Any = None
) -> tuple[SpillBuffer, dict[str, Any]]:
    blobs = {} if blobs is None else blobs
    disk = SpillDisk(blobs, max_bytes=max_bytes, compression="none")
    return SpillBuffer(disk, target=target, weight=weight), blobs


def test_spill_disk_is_a_mapping_over_dict_blobs() -> None:
    blobs: dict[str, Any] = {}
    disk = SpillDisk(blobs)
    disk["x"] = np.arange(10)
    disk["y"] = {"a": 1}
    assert sorted(disk) == ["x", "y"] and len(blobs) == 2
    np.testing.assert_array_equal(disk["x"], np.arange(10))
    disk["y"] = "replaced"
    assert disk["y"] == "replaced" and len(blobs) == 2
    assert disk.nbytes == sum(sum(memoryview(c).nbytes for c in b) for b in blobs.values())
    del disk["x"]
    assert "x" not in disk and len(blobs) == 1
    disk.clear()
    assert blobs == {} and disk.nbytes == 0


def test_mapping_contract_without_a_target() -> None:
    buf, blobs = make(target=None)
    for i in range(10):
        buf[f"k{i}"] = b"x" * 1000
    assert len(buf) == 10 and blobs == {} and buf.managed == 10_000
    assert buf["k3"] == b"x" * 1000
    del buf["k3"]
    assert "k3" not in buf and len(buf) == 9
    with pytest.raises(KeyError):
        buf["k3"]
    with pytest.raises(KeyError):
        del buf["k3"]


def test_least_recently_used_values_spill_first() -> None:
    buf, _ = make(target=2500)
    buf["a"] = b"a" * 1000
    buf["b"] = b"b" * 1000
    buf["c"] = b"c" * 1000  # over target: a, the oldest, goes to disk
    assert not buf.in_memory("a") and buf.in_memory("b")
    buf["b"]  # b is now more recent than c
    buf["d"] = b"d" * 1000
    assert not buf.in_memory("c") and buf.in_memory("b") and buf.in_memory("d")
    assert buf.managed == 2000 and buf.stats.spill_count == 2
    # reading a spilled value brings it back and pushes out the oldest
    assert buf["a"] == b"a" * 1000
    assert buf.in_memory("a") and not buf.in_memory("b")
    assert buf.stats.unspill_count == 1
    assert sorted(buf) == ["a", "b", "c", "d"]


def test_values_read_back_keep_a_clean_copy_on_disk() -> None:
    buf, blobs = make(target=1000)
    buf["a"] = bytearray(b"a" * 800)
    buf["b"] = bytearray(b"b" * 800)  # a spilled
    assert buf["a"] == b"a" * 800  # back in memory, b spilled; a's file stays
    assert buf.in_memory("a") and len(blobs) == 2 and buf.stats.spill_count == 2
    assert buf.evict("a") == 800  # unchanged: dropped from memory without a write
    assert buf.stats.spill_count == 2 and len(blobs) == 2
    value = buf["a"]
    value[0:1] = b"X"  # changed in place after it was read back
    assert buf.evict("a") == 800
    assert buf.stats.spill_count == 3 and len(blobs) == 2  # rewritten, old copy deleted
    assert buf["a"] == b"X" + b"a" * 799


def test_a_full_store_drops_clean_copies_first() -> None:
    buf, blobs = make(target=1000, max_bytes=2000)
    buf["a"] = b"a" * 800
    buf["b"] = b"b" * 800  # a spilled
    buf["a"]  # a back in memory with a clean copy; b spilled: the store holds two files
    assert len(blobs) == 2
    buf["c"] = b"c" * 800  # needs room: a's clean copy goes, then a itself is evicted anew
    assert not buf.spill_full
    assert buf["c"] == b"c" * 800 and buf["b"] == b"b" * 800


def test_a_value_bigger_than_target_goes_straight_to_disk() -> None:
    buf, blobs = make(target=2500)
    buf["small"] = b"s" * 100
    buf["huge"] = b"h" * 5000
    assert not buf.in_memory("huge") and buf.in_memory("small") and len(blobs) == 1
    assert buf["huge"] == b"h" * 5000
    assert not buf.in_memory("huge")  # read, but not kept: it would not fit
    assert buf.spilled > 5000


def test_replacing_and_deleting_remove_spilled_blobs() -> None:
    buf, blobs = make(target=1000)
    buf["a"] = b"1" * 800
    buf["b"] = b"2" * 800
    assert len(blobs) == 1
    buf["a"] = b"3" * 10
    assert len(blobs) == 0 and buf["a"] == b"3" * 10
    buf["c"] = b"4" * 800
    buf["d"] = b"5" * 800
    del buf["a"], buf["b"], buf["c"], buf["d"]
    assert blobs == {} and buf.spilled == 0
    buf.clear()
    assert len(buf) == 0 and buf.managed == 0


def test_max_spill_keeps_values_in_memory_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    buf, _ = make(target=1000, max_bytes=2500)
    with caplog.at_level(logging.WARNING):
        for i in range(6):
            buf[f"k{i}"] = bytes([i]) * 900
    assert buf.spill_full
    full_lines = [r for r in caplog.records if "spill store full" in r.getMessage()]
    assert len(full_lines) == 1 and "max-spill" in full_lines[0].getMessage()
    assert buf.evict() == 0  # still full: not retried at once
    spilled = [k for k in buf if not buf.in_memory(k)]
    assert len(spilled) == 2 and buf.managed == 4 * 900
    del buf[spilled[0]]  # frees disk: the next eviction tries again
    assert buf.evict() == 900
    assert not buf.spill_full
    for key in buf:  # nothing lost
        assert buf[key] == bytes([int(key[1])]) * 900


def test_unpicklable_values_stay_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    buf, _ = make(target=150)
    with caplog.at_level(logging.WARNING):
        buf["lock"] = threading.Lock()  # weight 100, cannot be pickled
        buf["x"] = b"x" * 100
    assert buf.in_memory("lock") and not buf.in_memory("x")
    assert any("cannot spill 'lock'" in r.getMessage() for r in caplog.records)
    assert buf.spillable == 0 and buf.evict() == 0
    assert not buf.spill_full


def test_get_frames_serves_spilled_values_without_unpickling() -> None:
    buf, _ = make(target=10)
    array = np.arange(1000)
    buf["arr"] = array
    assert not buf.in_memory("arr")
    loads_before = Recorder.loads
    frames = buf.get_frames("arr")
    assert serialize.nbytes(frames) == serialize.nbytes(serialize.dumps(array))
    np.testing.assert_array_equal(serialize.loads(frames), array)
    buf["rec"] = Recorder()
    frames = buf.get_frames("rec")
    assert Recorder.loads == loads_before  # not unpickled to serve it
    serialize.loads(frames)
    assert Recorder.loads == loads_before + 1
    buf2, _ = make(target=None)
    buf2["mem"] = array
    np.testing.assert_array_equal(serialize.loads(buf2.get_frames("mem")), array)


class Recorder:
    loads = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_recorder, ())


def _rebuild_recorder() -> Recorder:
    Recorder.loads += 1
    return Recorder()


def test_corrupt_spill_file_raises_and_drops_the_key(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="none")  # a file per value
    buf = SpillBuffer(disk, target=0)
    buf["victim"] = np.arange(10_000)
    buf["other"] = np.arange(5)
    (path,) = [p for p in tmp_path.iterdir() if disk.blob("victim").name == p.name]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    with pytest.raises(SpillCorruptError, match="victim"):
        buf["victim"]
    assert "victim" not in buf and not path.exists()
    np.testing.assert_array_equal(buf["other"], np.arange(5))


def test_a_missing_spill_file_is_corrupt_too(tmp_path: Path) -> None:
    disk = SpillDisk(File(tmp_path, small=0), compression="none")
    buf = SpillBuffer(disk, target=0)
    buf["k"] = b"x" * 100
    (tmp_path / disk.blob("k").name).unlink()
    with pytest.raises(SpillCorruptError, match="missing"):
        buf.get_frames("k")
    assert "k" not in buf


class BlockingBlobs(dict[str, Any]):
    """Blobs whose writes wait for a signal, to race other operations against a spill."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def __setitem__(self, name: str, value: Any) -> None:
        self.writing.set()
        assert self.release.wait(10)
        super().__setitem__(name, value)


@pytest.mark.parametrize("race", ["delete", "replace", "read"])
def test_operations_during_a_spill_write(race: str) -> None:
    blobs = BlockingBlobs()
    buf, _ = make(target=None, blobs=blobs)
    buf["k"] = b"old" * 100
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(buf.evict()))
    writer.start()
    assert blobs.writing.wait(10)
    assert buf.in_memory("k")  # in flight, still readable
    if race == "delete":
        del buf["k"]
    elif race == "replace":
        buf["k"] = b"new"
    else:
        assert buf["k"] == b"old" * 100
    blobs.release.set()
    writer.join()
    if race == "read":
        assert result == [300] and not buf.in_memory("k") and len(blobs) == 1
        assert buf["k"] == b"old" * 100
    else:
        assert result == [0] and len(blobs) == 0 and buf.spilled == 0
        assert ("k" in buf) == (race == "replace")
        if race == "replace":
            assert buf["k"] == b"new" and buf.managed == 3


@pytest.mark.parametrize("writers", [1, 3])
@pytest.mark.parametrize("small", [0, 2048], ids=["file-per-value", "packed"])
def test_many_threads_keep_the_store_consistent(tmp_path: Path, small: int,
                                                writers: int) -> None:
    files = File(tmp_path, small=small, pack_bytes=16 << 10)
    disk = SpillDisk(files, compression="auto")
    buf = SpillBuffer(disk, target=20_000, weight=weight, writers=writers)
    errors: list[BaseException] = []
    expected: dict[str, bytes | None] = {}

    def work(tid: int) -> None:
        rng = random.Random(tid)
        mine: dict[str, bytes | None] = {}
        try:
            for step in range(300):
                key = f"t{tid}-{rng.randrange(20)}"
                op = rng.random()
                if op < 0.5:
                    value = bytes([step % 256]) * rng.randrange(100, 3000)
                    buf[key] = value
                    mine[key] = value
                elif op < 0.8:
                    if mine.get(key) is not None:
                        assert buf[key] == mine[key]
                elif op < 0.9 and mine.get(key) is not None:
                    del buf[key]
                    mine[key] = None
                else:
                    buf.evict()
            expected.update(mine)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    live = {k: v for k, v in expected.items() if v is not None}
    assert sorted(buf) == sorted(live)
    for key, value in live.items():
        assert buf[key] == value
    in_memory = [k for k in live if buf.in_memory(k)]
    assert buf.managed == sum(len(live[k]) for k in in_memory)  # type: ignore[arg-type]
    on_disk = set(disk)
    assert len(files) == len(on_disk)
    if not small:
        assert len(list(tmp_path.iterdir())) == len(on_disk)
    assert set(live) - set(in_memory) <= on_disk <= set(live)  # plus clean copies
    buf.clear()
    buf.close()
    assert list(tmp_path.iterdir()) == []
    assert files.disk_bytes == 0 and files.dead_bytes == 0


def test_full_disk_keeps_values_and_pauses_spilling(tmpfs: Path) -> None:
    disk = SpillDisk(File(tmpfs), compression="none")
    buf = SpillBuffer(disk, target=4 << 20)
    rng = np.random.default_rng(2)
    arrays = {f"a{i}": rng.random(1 << 18) for i in range(12)}  # 12 x 2 MiB, disk is 16 MiB
    for key, array in arrays.items():
        buf[key] = array
    assert buf.spill_full
    assert disk.nbytes < 16 << 20
    for key, array in arrays.items():
        np.testing.assert_array_equal(buf[key], array)
