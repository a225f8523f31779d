"""The spill file format: serialized frames, each compressed or not, each checksummed.

Layout of one spilled value::

    b"MKS2" | u32 header length | u32 crc32(header) | msgpack header | stored frames...
    header = {"frames": [[codec, raw length, stored length, xxh3_64(stored bytes)], ...]}

The frames are :func:`memkube.serialize.dumps` frames, so a spilled value can be handed to a
peer without unpickling it. Compression is chosen per frame by compressing a sample: zstd
where it beats lz4 clearly, lz4 where it pays, none for incompressible data (most numeric
arrays), which then costs no copy at all. Every stored byte is covered by a checksum
(xxHash's XXH3-64: as strong as CRC-32 against corruption and twice as fast here, which
matters since it runs over every spilled and unspilled byte), checked on every read; any
mismatch raises :class:`SpillCorruptError`, never wrong data.

Not covered: files, paths and sizes on disk (``files.py``, ``disk.py``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Literal

import lz4.frame
import msgpack
import xxhash
import zstandard

from ..errors import ConfigError, SpillCorruptError
from ..serialize import Frame

Codec = Literal["none", "lz4", "zstd"]
COMPRESSION_MODES = ("auto", "none", "lz4", "zstd")

MAGIC = b"MKS2"
_PREFIX = struct.Struct(">4sII")
MAX_HEADER = 1 << 20
# Frames smaller than this are stored as they are: compressing them saves nothing measurable.
MIN_COMPRESS = 4096
# "auto" compresses when the sample shrinks to this fraction or less.
PAYS = 0.9
_SAMPLE = 16 << 10  # bytes per sampled slice; three slices: start, middle, end
_ZSTD_LEVEL = 1


def check_mode(mode: str) -> str:
    if mode not in COMPRESSION_MODES:
        raise ConfigError(
            f"spill compression {mode!r} is not one of {', '.join(COMPRESSION_MODES)}"
        )
    return mode


def _compress(codec: Codec, data: memoryview) -> bytes:
    if codec == "lz4":
        return lz4.frame.compress(data)  # type: ignore[no-any-return]
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)


def choose_codec(frame: memoryview, mode: str) -> Codec:
    """The codec for one frame: fixed by ``mode``, or by compressing a sample for "auto"."""
    if mode == "none" or frame.nbytes < MIN_COMPRESS:
        return "none"
    if mode in ("lz4", "zstd"):
        return mode  # type: ignore[return-value]
    if frame.nbytes <= 3 * _SAMPLE:
        sample = bytes(frame)
    else:
        middle = frame.nbytes // 2
        sample = b"".join((frame[:_SAMPLE], frame[middle : middle + _SAMPLE], frame[-_SAMPLE:]))
    lz4_ratio = len(_compress("lz4", memoryview(sample))) / len(sample)
    zstd_ratio = len(_compress("zstd", memoryview(sample))) / len(sample)
    if min(lz4_ratio, zstd_ratio) > PAYS:
        return "none"
    return "zstd" if zstd_ratio < 0.8 * lz4_ratio else "lz4"


def checksum(frame: Frame) -> int:
    return xxhash.xxh3_64_intdigest(frame)


def encode(frames: Sequence[Frame], mode: str = "auto") -> tuple[list[Frame], tuple[int, ...]]:
    """The chunks to write for ``frames`` and the checksum of each raw frame.

    Uncompressed frames are passed through uncopied. The raw checksums let the store tell,
    without reading the file back, whether a value still matches what it wrote.
    """
    entries = []
    stored: list[Frame] = []
    raw_crcs = []
    for frame in frames:
        view = memoryview(frame).cast("B")
        codec = choose_codec(view, mode)
        raw_crc = checksum(view)
        if codec == "none":
            data: Frame = view
            crc = raw_crc
        else:
            data = _compress(codec, view)
            crc = checksum(data)
        entries.append([codec, view.nbytes, memoryview(data).nbytes, crc])
        stored.append(data)
        raw_crcs.append(raw_crc)
    header = msgpack.packb({"frames": entries})
    prefix = _PREFIX.pack(MAGIC, len(header), zlib.crc32(header))
    return [prefix, header, *stored], tuple(raw_crcs)


def stored_size(chunks: Sequence[Frame]) -> int:
    return sum(memoryview(c).nbytes for c in chunks)


def decode(blob: bytes | bytearray | memoryview, *, where: str = "spill file") -> list[Frame]:
    """The frames stored in ``blob``; raises SpillCorruptError on any inconsistency.

    Uncompressed frames are views into ``blob`` (writable when ``blob`` is a bytearray), so
    arrays rebuilt from them are writable like the originals.
    """
    view = memoryview(blob)
    if view.nbytes < _PREFIX.size:
        raise SpillCorruptError(f"{where}: truncated ({view.nbytes} bytes)")
    magic, hlen, hcrc = _PREFIX.unpack_from(view)
    if magic != MAGIC or hlen > MAX_HEADER or _PREFIX.size + hlen > view.nbytes:
        raise SpillCorruptError(f"{where}: not a memkube spill file or truncated header")
    header = view[_PREFIX.size : _PREFIX.size + hlen]
    if zlib.crc32(header) != hcrc:
        raise SpillCorruptError(f"{where}: header checksum mismatch")
    try:
        entries = msgpack.unpackb(header)["frames"]
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise SpillCorruptError(f"{where}: unreadable header: {exc}") from exc
    offset = _PREFIX.size + hlen
    frames: list[Frame] = []
    for codec, raw_len, stored_len, crc in entries:
        data = view[offset : offset + stored_len]
        offset += stored_len
        if data.nbytes != stored_len:
            raise SpillCorruptError(f"{where}: truncated frame")
        if checksum(data) != crc:
            raise SpillCorruptError(f"{where}: frame checksum mismatch")
        frames.append(_decompress(codec, data, raw_len, where))
    if offset != view.nbytes:
        raise SpillCorruptError(f"{where}: {view.nbytes - offset} trailing bytes")
    return frames


def _decompress(codec: str, data: memoryview, raw_len: int, where: str) -> Frame:
    if codec == "none":
        return data
    out = bytearray(raw_len)  # writable, as the frame was before it was spilled
    try:
        if codec == "lz4":
            raw = lz4.frame.decompress(data, return_bytearray=True)
            if len(raw) != raw_len:
                raise SpillCorruptError(f"{where}: frame decompressed to the wrong length")
            return raw  # type: ignore[no-any-return]
        if codec == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(data)
            filled = 0
            target = memoryview(out)
            while filled < raw_len:
                n = reader.readinto(target[filled:])
                if n == 0:
                    raise SpillCorruptError(f"{where}: frame decompressed to the wrong length")
                filled += n
            return out
    except (RuntimeError, zstandard.ZstdError) as exc:
        raise SpillCorruptError(f"{where}: cannot decompress frame: {exc}") from exc
    raise SpillCorruptError(f"{where}: unknown codec {codec!r}")
