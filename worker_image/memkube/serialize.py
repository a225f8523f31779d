"""Serialization of values into frames: pickle protocol 5 with out-of-band buffers.

A value becomes a list of frames: ``frames[0]`` is the pickle stream, the rest are the raw
buffers it refers to (numpy arrays, bytes-like objects), so large arrays are neither copied
into the pickle nor re-copied on the wire. The same frames are what the spill store writes
to disk (compressed per frame) and what ``GET /data/{key}`` streams to peers, which is why a
spilled value can be served without unpickling it.

Wire layout of a frame list (used by peer transfers)::

    u32 big-endian length of header | msgpack header {"lengths": [n0, n1, ...]} | frame0 | frame1 ...

Not covered here: compression and checksums (the spill store's concern).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
import msgpack

from .errors import ProtocolError

Frame = bytes | bytearray | memoryview

_HEADER_LEN = struct.Struct(">I")
MAX_HEADER = 1 << 20


#: A ``bytes`` value from this size on travels out of band too. Pickle keeps ``bytes``
#: in the stream (only ``PickleBuffer`` goes out of band), so without this every spill and
#: every answer to a peer of a large bytes value first copied it whole: memory a worker
#: near its limit does not have (a spill must not need room to free room).
OUT_OF_BAND_BYTES = 64 * 1024


class _Bytes:
    """Pickles a large bytes value as ``bytes(<its buffer, out of band>)``."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return bytes, (pickle.PickleBuffer(self.value),)


def dumps(value: Any) -> list[Frame]:
    """Serialize ``value`` into frames, keeping large buffers out of band."""
    buffers: list[pickle.PickleBuffer] = []
    if type(value) is bytes and len(value) >= OUT_OF_BAND_BYTES:
        stream = pickle.dumps(_Bytes(value), protocol=5, buffer_callback=buffers.append)
    else:
        stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    frames: list[Frame] = [stream]
    for buf in buffers:
        raw = buf.raw()
        frames.append(raw)
    return frames


def loads(frames: Sequence[Frame]) -> Any:
    """Rebuild the value from frames made by :func:`dumps`."""
    if not frames:
        raise ProtocolError("no frames to deserialize")
    return pickle.loads(frames[0], buffers=frames[1:])


def nbytes(frames: Sequence[Frame]) -> int:
    """Total size of the frames in bytes."""
    return sum(memoryview(f).nbytes for f in frames)


def pack_header(frames: Sequence[Frame]) -> bytes:
    """The prefix that precedes ``frames`` on the wire."""
    header: bytes = msgpack.packb({"lengths": [memoryview(f).nbytes for f in frames]})
    return _HEADER_LEN.pack(len(header)) + header


def pack_frames(frames: Sequence[Frame]) -> bytes:
    """Frames and their prefix joined into one bytes object (for small values only)."""
    return b"".join([pack_header(frames), *frames])


def unpack(payload: bytes | bytearray | memoryview) -> list[memoryview]:
    """Split a whole wire payload back into frames (zero-copy views)."""
    view = memoryview(payload)
    if view.nbytes < _HEADER_LEN.size:
        raise ProtocolError("payload shorter than its header length")
    (hlen,) = _HEADER_LEN.unpack_from(view)
    if hlen > MAX_HEADER or _HEADER_LEN.size + hlen > view.nbytes:
        raise ProtocolError("invalid frame header length")
    try:
        header = msgpack.unpackb(view[_HEADER_LEN.size : _HEADER_LEN.size + hlen])
        lengths = [int(n) for n in header["lengths"]]
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"invalid frame header: {exc}") from exc
    offset = _HEADER_LEN.size + hlen
    frames = []
    for n in lengths:
        if n < 0 or offset + n > view.nbytes:
            raise ProtocolError("frame lengths exceed the payload")
        frames.append(view[offset : offset + n])
        offset += n
    if offset != view.nbytes:
        raise ProtocolError("trailing bytes after the last frame")
    return frames


def pack_bundle(
    items: Mapping[str, Sequence[Frame]], *, missing: Sequence[str] = (),
    errors: dict[str, str] | None = None,
) -> list[Frame]:
    """Several keys' frames in one body: a header naming keys and frame lengths, then frames.

    ``missing`` lists keys the sender does not hold; ``errors`` maps keys to why they could
    not be serialized. The result is a list of buffers to write in order.
    """
    keys = list(items)
    header = msgpack.packb({
        "keys": keys,
        "lengths": [[memoryview(f).nbytes for f in items[k]] for k in keys],
        "missing": list(missing),
        "errors": dict(errors or {}),
    })
    out: list[Frame] = [_HEADER_LEN.pack(len(header)) + header]
    for k in keys:
        out.extend(items[k])
    return out


def unpack_bundle(
    payload: bytes | bytearray | memoryview,
) -> tuple[dict[str, list[memoryview]], list[str], dict[str, str]]:
    """Split a bundle made by :func:`pack_bundle`: (frames by key, missing keys, errors)."""
    view = memoryview(payload)
    if view.nbytes < _HEADER_LEN.size:
        raise ProtocolError("bundle shorter than its header length")
    (hlen,) = _HEADER_LEN.unpack_from(view)
    if hlen > 64 * MAX_HEADER or _HEADER_LEN.size + hlen > view.nbytes:
        raise ProtocolError("invalid bundle header length")
    try:
        header = msgpack.unpackb(view[_HEADER_LEN.size : _HEADER_LEN.size + hlen])
        keys = [str(k) for k in header["keys"]]
        lengths = [[int(n) for n in ls] for ls in header["lengths"]]
        missing = [str(k) for k in header.get("missing", [])]
        errors = {str(k): str(v) for k, v in header.get("errors", {}).items()}
    except Exception as exc:  # msgpack and malformed-structure errors alike
        raise ProtocolError(f"invalid bundle header: {exc}") from exc
    if len(keys) != len(lengths):
        raise ProtocolError("bundle header: keys and lengths differ in count")
    offset = _HEADER_LEN.size + hlen
    items: dict[str, list[memoryview]] = {}
    for key, ls in zip(keys, lengths, strict=True):
        frames = []
        for n in ls:
            if n < 0 or offset + n > view.nbytes:
                raise ProtocolError("bundle frame lengths exceed the payload")
            frames.append(view[offset : offset + n])
            offset += n
        items[key] = frames
    if offset != view.nbytes:
        raise ProtocolError("trailing bytes after the last bundle frame")
    return items, missing, errors
