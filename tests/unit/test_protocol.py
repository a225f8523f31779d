"""Control-message decoding: everything malformed is a ProtocolError, nothing else escapes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memkube import serialize
from memkube.errors import ProtocolError
from memkube.protocol import SCHEMAS, decode, encode

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
ops = st.fixed_dictionaries({"op": st.sampled_from(sorted(SCHEMAS))},
                            optional={k: values for k in ("key", "keys", "tasks", "id")})


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_garbage_bytes_raise_protocol_error_only(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@given(st.lists(values, max_size=5))
@settings(max_examples=300, deadline=None)
def test_wrong_shapes_raise_protocol_error_only(payload: list) -> None:
    try:
        decode(msgpack.packb(payload))
    except ProtocolError:
        pass


@given(st.lists(ops, max_size=4))
@settings(max_examples=300, deadline=None)
def test_known_ops_with_wrong_fields_are_rejected_or_valid(payload: list) -> None:
    try:
        result = decode(msgpack.packb(payload, use_bin_type=True))
    except ProtocolError:
        return
    for msg in result:  # anything accepted carries every required field
        assert set(SCHEMAS[msg["op"]]) <= set(msg)


def test_valid_batch_round_trips() -> None:
    batch = [{"op": "release-keys", "keys": ["a", "b"]}, {"op": "info", "id": 3}]
    assert decode(encode(batch)) == batch


def test_unknown_and_forbidden_ops() -> None:
    with pytest.raises(ProtocolError, match="unknown"):
        decode(encode([{"op": "rm-rf"}]))
    with pytest.raises(ProtocolError, match="forbidden"):
        decode(encode([{"op": "info", "id": 1}]), frozenset({"release-keys"}))
    with pytest.raises(ProtocolError, match="text frames"):
        decode("[]")


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=5))
def test_bundle_round_trip(frames: list[bytes]) -> None:
    payload = b"".join(bytes(b) for b in serialize.pack_bundle({"k": frames}, missing=["m"]))
    items, missing, errors = serialize.unpack_bundle(payload)
    assert [bytes(f) for f in items["k"]] == frames and missing == ["m"] and errors == {}


@given(st.binary(max_size=100))
@settings(max_examples=300)
def test_garbage_bundles_raise_protocol_error_only(data: bytes) -> None:
    try:
        serialize.unpack_bundle(data)
    except ProtocolError:
        pass


def test_pickle5_buffers_travel_out_of_band() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(1_000_000, dtype="f8")
    frames = serialize.dumps(array)
    assert len(frames) == 2 and memoryview(frames[1]).nbytes == array.nbytes
    assert len(frames[0]) < 1000  # the pickle stream does not copy the data
    assert (serialize.loads(frames) == array).all()


def test_large_bytes_travel_out_of_band_without_a_copy() -> None:
    """A spill or a peer's answer of a bytes value writes the value itself, not a copy."""
    value = bytes(range(256)) * 4096  # 1 MiB
    frames = serialize.dumps(value)
    assert len(frames) == 2 and len(frames[0]) < 100
    assert memoryview(frames[1]).obj is value  # the very object: no copy was made
    back = serialize.loads([frames[0], bytearray(frames[1])])  # as read from disk or wire
    assert type(back) is bytes and back == value


def test_small_bytes_stay_in_the_stream() -> None:
    frames = serialize.dumps(b"x" * 100)
    assert len(frames) == 1 and serialize.loads(frames) == b"x" * 100
