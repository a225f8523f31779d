"""The spill file format: serialized frames, each compressed or not, each checksummed.

Layout of one spilled value (the header is a trailer, so that frames can be written, and
hashed, while the checksums are still being computed)::

    stored frames... | msgpack header | u32 header length | u32 crc32(header) | b"MKS3"
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
from collections.abc import Iterator, Sequence
from typing import Literal

import lz4.frame
import msgpack
import xxhash
import zstandard

from ..errors import ConfigError, SpillCorruptError
from ..serialize import Frame
from .writeback import address_of

Codec = Literal["none", "lz4", "zstd"]
COMPRESSION_MODES = ("auto", "none", "lz4", "zstd")

MAGIC = b"MKS3"
_SUFFIX = struct.Struct(">II4s")
MAX_HEADER = 1 << 20
ALIGN = 4096  # the block size direct I/O needs (``writeback.BLOCK``)
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


class Encoder:
    """One value's spill file, produced piece by piece so hashing overlaps the write.

    Compression is done when the encoder is made (so :attr:`planned` is known before any
    byte is written, for the max-spill cap); uncompressed frames are passed through as views
    of the caller's buffers. :meth:`pieces` yields the file's bytes in order and hashes each
    piece *after* the consumer took it, i.e. while the kernel writes it; the trailer comes
    last. Afterwards :attr:`nbytes` and :attr:`raw_checksums` are set.
    """

    def __init__(self, frames: Sequence[Frame], mode: str = "auto", *,
                 piece: int = 8 << 20, align: bool = False) -> None:
        self._piece = piece
        self._align = align
        self._entries: list[tuple[Codec, int, memoryview, int | None, int | None]] = []
        for frame in frames:
            view = memoryview(frame).cast("B")
            codec = choose_codec(view, mode)
            if codec == "none":
                self._entries.append((codec, view.nbytes, view, None, None))
            else:
                data = memoryview(_compress(codec, view))
                self._entries.append((codec, view.nbytes, data, checksum(data), checksum(view)))
        self.planned = (sum(e[2].nbytes for e in self._entries)
                        + (32 + (ALIGN if align else 0)) * len(self._entries) + 64)
        self.nbytes = 0
        self.raw_checksums: tuple[int, ...] = ()

    def pieces(self) -> Iterator[memoryview]:
        header: list[list[object]] = []
        raw: list[int] = []
        total = 0
        for codec, raw_len, data, crc, raw_crc in self._entries:
            pad = self._padding(data, total)
            if pad:
                yield memoryview(bytes(pad))
                total += pad
            if crc is None:
                hasher = xxhash.xxh3_64()
                for start in range(0, data.nbytes, self._piece):
                    piece = data[start : start + self._piece]
                    yield piece
                    hasher.update(piece)  # the device is busy with the piece meanwhile
                crc = raw_crc = hasher.intdigest()
            else:
                yield data
            assert raw_crc is not None  # set with the compressed data
            header.append([codec, raw_len, data.nbytes, crc, *([pad] if pad else [])])
            raw.append(raw_crc)
            total += data.nbytes
        packed = msgpack.packb({"frames": header})
        trailer = packed + _SUFFIX.pack(len(packed), zlib.crc32(packed), MAGIC)
        self.nbytes = total + len(trailer)
        self.raw_checksums = tuple(raw)
        yield memoryview(trailer)

    def _padding(self, data: memoryview, position: int) -> int:
        """Zero bytes to put before a large frame so that its address and its position in
        the file agree modulo ``ALIGN`` (direct I/O then writes it without a copy)."""
        if not self._align or data.nbytes < 16 * ALIGN:
            return 0
        addr = address_of(data)
        return 0 if addr is None else (addr - position) % ALIGN


def encode(frames: Sequence[Frame], mode: str = "auto") -> tuple[list[Frame], tuple[int, ...]]:
    """The chunks of one spill file for ``frames`` and the checksum of each raw frame.

    Uncompressed frames are passed through uncopied. The raw checksums let the store tell,
    without reading the file back, whether a value still matches what it wrote.
    """
    encoder = Encoder(frames, mode, piece=1 << 62)
    chunks: list[Frame] = list(encoder.pieces())
    return chunks, encoder.raw_checksums


def stored_size(chunks: Sequence[Frame]) -> int:
    return sum(memoryview(c).nbytes for c in chunks)


def decode(blob: bytes | bytearray | memoryview, *, where: str = "spill file") -> list[Frame]:
    """The frames stored in ``blob``; raises SpillCorruptError on any inconsistency.

    Uncompressed frames are views into ``blob`` (writable when ``blob`` is), so arrays
    rebuilt from them are writable like the originals.
    """
    view = memoryview(blob).cast("B")
    entries, hstart = _trailer(view, where)
    offset = 0
    frames: list[Frame] = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) not in (4, 5):
            raise SpillCorruptError(f"{where}: unreadable header entry")
        codec, raw_len, stored_len, crc = entry[:4]
        offset += entry[4] if len(entry) == 5 else 0  # padding before the frame
        data = view[offset : offset + stored_len]
        offset += stored_len
        if data.nbytes != stored_len or offset > hstart:
            raise SpillCorruptError(f"{where}: truncated frame")
        if checksum(data) != crc:
            raise SpillCorruptError(f"{where}: frame checksum mismatch")
        frames.append(_decompress(codec, data, raw_len, where))
    if offset != hstart:
        raise SpillCorruptError(f"{where}: {hstart - offset} bytes not covered by the header")
    return frames


def header(blob: bytes | bytearray | memoryview) -> list[list[object]]:
    """The header entries ``[codec, raw length, stored length, checksum]`` of a spill file."""
    return _trailer(memoryview(blob).cast("B"), "spill file")[0]  # type: ignore[return-value]


def _trailer(view: memoryview, where: str) -> tuple[list[tuple[str, int, int, int]], int]:
    if view.nbytes < _SUFFIX.size:
        raise SpillCorruptError(f"{where}: truncated ({view.nbytes} bytes)")
    hlen, hcrc, magic = _SUFFIX.unpack_from(view, view.nbytes - _SUFFIX.size)
    if magic != MAGIC or hlen > MAX_HEADER or _SUFFIX.size + hlen > view.nbytes:
        raise SpillCorruptError(f"{where}: not a memkube spill file or truncated trailer")
    hstart = view.nbytes - _SUFFIX.size - hlen
    packed = view[hstart : view.nbytes - _SUFFIX.size]
    if zlib.crc32(packed) != hcrc:
        raise SpillCorruptError(f"{where}: header checksum mismatch")
    try:
        entries = msgpack.unpackb(packed)["frames"]
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise SpillCorruptError(f"{where}: unreadable header: {exc}") from exc
    if not isinstance(entries, list):
        raise SpillCorruptError(f"{where}: unreadable header")
    return entries, hstart


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
