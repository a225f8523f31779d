"""The spill file format: round trips, compression choice, corruption detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memkube import serialize
from memkube.errors import ConfigError, SpillCorruptError
from memkube.memory import codec


def blob_of(value: object, mode: str = "auto") -> bytearray:
    return bytearray(b"".join(bytes(c) for c in codec.encode(serialize.dumps(value), mode)[0]))


def codecs_used(value: object, mode: str = "auto") -> list[str]:
    return [str(entry[0]) for entry in codec.header(blob_of(value, mode))]


def test_random_floats_are_stored_uncompressed_and_uncopied() -> None:
    array = np.random.default_rng(0).random(1 << 16)
    chunks, crcs = codec.encode(serialize.dumps(array))
    assert crcs == tuple(codec.checksum(f) for f in serialize.dumps(array))
    assert codecs_used(array) == ["none", "none"]
    # the array's buffer itself is written, not a copy of it
    assert np.shares_memory(np.frombuffer(chunks[-2], dtype=array.dtype), array)


def test_compressible_data_is_compressed() -> None:
    zeros = np.zeros(1 << 18)
    assert codecs_used(zeros)[-1] in ("lz4", "zstd")
    assert len(blob_of(zeros)) < zeros.nbytes // 10
    ramp = np.arange(1 << 18)
    assert codecs_used(ramp)[-1] in ("lz4", "zstd")


@pytest.mark.parametrize("mode", ["auto", "none", "lz4", "zstd"])
@pytest.mark.parametrize(
    "value",
    [
        np.arange(100_000, dtype=np.int64),
        np.random.default_rng(1).random(50_000),
        {"a": [1, 2, 3], "b": b"x" * 10_000},
        "small",
        None,
    ],
    ids=["ramp", "random", "dict", "str", "none"],
)
def test_round_trip_in_every_mode(mode: str, value: object) -> None:
    frames = codec.decode(blob_of(value, mode))
    back = serialize.loads(frames)
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
        assert back.flags.writeable  # like the original: users may write into it
    else:
        assert back == value


def test_forced_codecs_are_used() -> None:
    array = np.arange(100_000)
    assert codecs_used(array, "lz4")[-1] == "lz4"
    assert codecs_used(array, "zstd")[-1] == "zstd"
    assert codecs_used(array, "none")[-1] == "none"


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gzip"):
        codec.check_mode("gzip")


@pytest.mark.parametrize("mode", ["none", "lz4", "zstd"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_is_detected(mode: str, data: st.DataObject) -> None:
    blob = blob_of(np.arange(5_000), mode)
    position = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    blob[position] ^= 1 << bit
    with pytest.raises(SpillCorruptError):
        codec.decode(blob)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 200))
def test_truncation_and_trailing_bytes_are_detected(cut: int) -> None:
    blob = blob_of(np.arange(1_000))
    with pytest.raises(SpillCorruptError):
        codec.decode(blob[: len(blob) - 1 - cut])
    with pytest.raises(SpillCorruptError):
        codec.decode(blob + b"\0" * (cut + 1))


@given(st.binary(max_size=200))
def test_garbage_is_corrupt_not_a_crash(garbage: bytes) -> None:
    with pytest.raises(SpillCorruptError):
        codec.decode(garbage)
