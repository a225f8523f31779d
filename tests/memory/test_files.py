"""The File layer on a real directory, and on a real full disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from memkube.errors import SpillFullError
from memkube.memory.files import File


def test_mapping_contract(tmp_path: Path) -> None:
    files = File(tmp_path / "spill")
    files["a"] = b"hello"
    files["b"] = [b"frame0", memoryview(b"frame1"), bytearray(b"!")]
    assert files["a"] == b"hello"
    assert files["b"] == b"frame0frame1!"
    assert isinstance(files["b"], bytearray)
    assert sorted(files) == ["a", "b"] and len(files) == 2 and "a" in files
    assert files.size("b") == 13
    files["a"] = b"replaced"
    assert files["a"] == b"replaced"
    del files["a"]
    assert "a" not in files
    assert sorted(p.name for p in (tmp_path / "spill").iterdir()) == ["b"]
    with pytest.raises(KeyError):
        files["a"]
    with pytest.raises(KeyError):
        del files["a"]


def test_large_files_round_trip_with_cache_dropping(tmp_path: Path) -> None:
    files = File(tmp_path)
    payload = bytes(range(256)) * (8 << 10)  # 2 MiB: flushed and dropped from the page cache
    files["big"] = [payload[:1000], payload[1000:]]
    assert files["big"] == payload


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".", "x" * 300])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    files = File(tmp_path)
    with pytest.raises(KeyError):
        files[name] = b"x"


def test_full_disk_raises_spill_full_and_leaves_no_partial_file(tmpfs: Path) -> None:
    files = File(tmpfs)
    files["first"] = b"x" * (10 << 20)
    with pytest.raises(SpillFullError, match="no space left"):
        files["second"] = b"y" * (10 << 20)
    assert "second" not in files
    assert sorted(p.name for p in tmpfs.iterdir()) == ["first"]
    del files["first"]
    files["second"] = b"y" * (10 << 20)  # room again
    assert len(files["second"]) == 10 << 20
