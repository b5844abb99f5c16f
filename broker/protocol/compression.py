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

from .errors import CorruptMessageError, UnsupportedCompressionTypeError

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


def decompress(codec: int, data: bytes) -> bytes:
    """Decompress ``data``; a damaged stream raises CorruptMessageError."""
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            return _gunzip(data)
        if codec == SNAPPY:
            if bytes(data[:8]) == XERIAL_MAGIC:
                return _snappy_xerial_decode(data)
            return bytes(cramjam.snappy.decompress_raw(bytes(data)))
        if codec == LZ4:
            return lz4.frame.decompress(data)
        if codec == ZSTD:
            return _unzstd(data)
    except CorruptMessageError:
        raise
    except Exception as exc:  # each library raises its own types
        name = CODEC_NAMES[codec]
        raise CorruptMessageError(f"cannot decompress {name} data: {exc}") from exc
    raise UnsupportedCompressionTypeError(f"compression codec {codec} does not exist")


def _gunzip(data: bytes) -> bytes:
    """Decode one or more concatenated gzip members."""
    out = []
    view = bytes(data)
    while view:
        decoder = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
        out.append(decoder.decompress(view))
        if not decoder.eof:
            raise CorruptMessageError("gzip stream ends before its trailer")
        view = decoder.unused_data
    return b"".join(out)


def _unzstd(data: bytes) -> bytes:
    """Decode one or more zstd frames with a streaming decoder: Java and librdkafka frames
    may omit the content size, which the one-shot decoder needs."""
    out = []
    rest = bytes(data)
    while rest:
        decoder = zstandard.ZstdDecompressor().decompressobj()
        out.append(decoder.decompress(rest))
        if not decoder.eof:
            raise CorruptMessageError("zstd stream ends before its frame does")
        rest = decoder.unused_data
    return b"".join(out)


def _snappy_xerial_encode(data: bytes) -> bytes:
    parts = [_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)]
    view = memoryview(data)
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + XERIAL_BLOCK_SIZE]))
        parts.append(_BLOCK_LEN.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_xerial_decode(data: bytes) -> bytes:
    view = memoryview(data)
    if len(view) < _XERIAL_HEADER.size:
        raise CorruptMessageError("xerial snappy header is truncated")
    pos = _XERIAL_HEADER.size
    out = []
    while pos < len(view):
        if pos + 4 > len(view):
            raise CorruptMessageError("xerial snappy block length is truncated")
        (length,) = _BLOCK_LEN.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise CorruptMessageError("xerial snappy block runs past the end of the data")
        out.append(bytes(cramjam.snappy.decompress_raw(bytes(view[pos : pos + length]))))
        pos += length
    return b"".join(out)
