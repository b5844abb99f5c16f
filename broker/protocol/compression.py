"""The four Kafka compression codecs, both ways, as pure functions over bytes.

Codec ids are the low three bits of a record batch's attributes: 0 none, 1 gzip, 2 snappy,
3 lz4 (the LZ4 frame format), 4 zstd.  Snappy comes in two shapes on the wire: raw blocks
(librdkafka, kafka-python without xerial) and the xerial-framed stream that Java clients
write (magic header, then length-prefixed raw blocks); both are read, either can be written.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from .errors import (
    CorruptMessageError,
    KafkaError,
    MessageTooLargeError,
    UnsupportedCompressionTypeError,
)

Buffer = bytes | bytearray | memoryview  # what a codec reads: a batch's bytes or a view of them

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
CODECS_BY_NAME = {name: codec for codec, name in CODEC_NAMES.items()}

# xerial snappy-java stream: 8 magic bytes, int32 version, int32 minimum compatible version.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_BLOCK_LEN = struct.Struct(">i")
XERIAL_BLOCK_SIZE = 32 * 1024


def codec_by_name(name: str) -> int:
    """The codec id for a name as Kafka spells it in ``compression.type`` (none, gzip, ...)."""
    try:
        return CODECS_BY_NAME[name.lower()]
    except KeyError:
        raise UnsupportedCompressionTypeError(f"unknown compression type {name!r}") from None


def compress(codec: int, data: bytes, *, xerial: bool = False) -> bytes:
    """Compress ``data`` with the codec; ``xerial`` picks the framed snappy form."""
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        return compressor.compress(data) + compressor.flush()
    if codec == SNAPPY:
        return _snappy_xerial_encode(data) if xerial else bytes(cramjam.snappy.compress_raw(data))
    if codec == LZ4:
        return lz4.frame.compress(data)
    if codec == ZSTD:
        return zstandard.ZstdCompressor().compress(data)
    raise UnsupportedCompressionTypeError(f"compression codec {codec} does not exist")


def decompress(codec: int, data: Buffer, max_size: int | None = None) -> bytes:
    """Decompress ``data``; a damaged stream raises CorruptMessageError.  With ``max_size``,
    output beyond it is never produced: MessageTooLargeError instead (a few compressed bytes
    can stand for gigabytes)."""
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            return _gunzip(data, max_size)
        if codec == SNAPPY:
            if bytes(data[:8]) == XERIAL_MAGIC:
                return _snappy_xerial_decode(data, max_size)
            _check_snappy_size(data, max_size)
            return bytes(cramjam.snappy.decompress_raw(bytes(data)))
        if codec == LZ4:
            return _unlz4(data, max_size)
        if codec == ZSTD:
            return _unzstd(data, max_size)
    except (CorruptMessageError, MessageTooLargeError):
        raise
    except Exception as exc:  # each library raises its own types
        name = CODEC_NAMES[codec]
        raise CorruptMessageError(f"cannot decompress {name} data: {exc}") from exc
    raise UnsupportedCompressionTypeError(f"compression codec {codec} does not exist")


def _too_large(codec: str, max_size: int | None) -> KafkaError:
    return MessageTooLargeError(f"{codec} data decompresses to more than {max_size} bytes")


def _gunzip(data: Buffer, max_size: int | None = None) -> bytes:
    """Decode one or more concatenated gzip members."""
    return _frames(
        data,
        max_size,
        "gzip",
        lambda: zlib.decompressobj(47),  # gzip or zlib header
        lambda d, rest, limit: d.decompress(rest, limit or 0),
    )  # 0: no limit


def _unlz4(data: Buffer, max_size: int | None = None) -> bytes:
    """Decode one or more LZ4 frames."""
    if max_size is None:
        return lz4.frame.decompress(data)
    return _frames(
        data,
        max_size,
        "lz4",
        lz4.frame.LZ4FrameDecompressor,
        lambda d, rest, limit: d.decompress(rest, max_length=limit),
    )


def _frames(data, max_size: int | None, name: str, new_decoder, decompress) -> bytes:
    """Decode concatenated frames (gzip members, LZ4 frames), each with a fresh decoder that
    reports ``eof`` and ``unused_data``; with ``max_size``, no more output than that plus
    one byte is ever asked of a decoder."""
    out = []
    rest = bytes(data)
    room = max_size
    while rest:
        decoder = new_decoder()
        out.append(decompress(decoder, rest, None if room is None else room + 1))
        if room is not None:
            room -= len(out[-1])
            if room < 0:
                raise _too_large(name, max_size)
        if not decoder.eof:
            raise CorruptMessageError(f"{name} stream ends before its frame does")
        rest = decoder.unused_data
    return b"".join(out)


# A zstd block of 128 KiB may be written in a handful of bytes (RLE): fed this many bytes at
# a time, the decoder cannot overshoot a limit by more than about this factor.
_ZSTD_MAX_RATIO = 1 << 15


def _unzstd(data: Buffer, max_size: int | None = None) -> bytes:
    """Decode one or more zstd frames with a streaming decoder: Java and librdkafka frames
    may omit the content size, which the one-shot decoder needs.  With ``max_size`` the input
    is fed in pieces small enough that the output cannot run far past it."""
    out = []
    rest = memoryview(bytes(data))
    total = 0
    while len(rest):
        decoder = zstandard.ZstdDecompressor().decompressobj()
        if max_size is None:
            out.append(decoder.decompress(rest))
            rest = memoryview(decoder.unused_data) if decoder.eof else rest[:0]
        else:
            pos = 0
            while not decoder.eof and pos < len(rest):
                step = max(4096, (max_size - total) // _ZSTD_MAX_RATIO)
                out.append(decoder.decompress(rest[pos : pos + step]))
                pos += step
                total += len(out[-1])
                if total > max_size:
                    raise _too_large("zstd", max_size)
            if decoder.eof:
                rest = memoryview(decoder.unused_data + bytes(rest[pos:]))
        if not decoder.eof:
            raise CorruptMessageError("zstd stream ends before its frame does")
    return b"".join(out)


def _check_snappy_size(block, max_size: int | None) -> None:
    """A raw snappy block starts with its uncompressed length (an unsigned varint)."""
    if max_size is None:
        return
    length = shift = 0
    for byte in bytes(block[:5]):
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if length > max_size:
        raise _too_large("snappy", max_size)


def _snappy_xerial_encode(data: bytes) -> bytes:
    parts = [_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)]
    view = memoryview(data)
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + XERIAL_BLOCK_SIZE]))
        parts.append(_BLOCK_LEN.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_xerial_decode(data: Buffer, max_size: int | None = None) -> bytes:
    view = memoryview(data)
    if len(view) < _XERIAL_HEADER.size:
        raise CorruptMessageError("xerial snappy header is truncated")
    pos = _XERIAL_HEADER.size
    out = []
    room = max_size
    while pos < len(view):
        if pos + 4 > len(view):
            raise CorruptMessageError("xerial snappy block length is truncated")
        (length,) = _BLOCK_LEN.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise CorruptMessageError("xerial snappy block runs past the end of the data")
        if room is not None:
            _check_snappy_size(view[pos : pos + length], room)
        out.append(bytes(cramjam.snappy.decompress_raw(bytes(view[pos : pos + length]))))
        if room is not None:
            room -= len(out[-1])
        pos += length
    return b"".join(out)
