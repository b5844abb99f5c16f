"""Zig-zag varints, as Kafka's record format writes every integer inside a record, and the
unsigned varints of flexible message versions (KIP-482: compact lengths, counts and tags).

Shared by the record codec (``records.py``) and the vectorised record walkers
(``columns.py``, ``validate.py``).
"""

from __future__ import annotations

from .errors import CorruptMessageError


def _encode_zigzag(zz: int) -> bytes:
    out = bytearray()
    while zz >= 0x80:
        out.append((zz & 0x7F) | 0x80)
        zz >>= 7
    out.append(zz)
    return bytes(out)


_SMALL_VARINTS = [_encode_zigzag(zz) for zz in range(1 << 14)]  # every 1- and 2-byte varint


def encode_varint(value: int) -> bytes:
    """Zig-zag varint (Kafka's ByteUtils.writeVarlong), for any value in int64."""
    zz = (value << 1) ^ (value >> 63)
    return _SMALL_VARINTS[zz] if zz < 16384 else _encode_zigzag(zz)


def decode_varint(buf, pos: int) -> tuple[int, int]:
    """Read a zig-zag varint at ``pos``; returns (value, next position)."""
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise CorruptMessageError("varint runs past the end of the record data")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptMessageError("varint is longer than 10 bytes")
    return (result >> 1) ^ -(result & 1), pos


# --- unsigned varints (KIP-482's compact lengths, counts and tags) ------------------------------

_SMALL_UVARINTS = [_encode_zigzag(n) for n in range(1 << 14)]  # every 1- and 2-byte uvarint


def encode_uvarint(value: int) -> bytes:
    """Unsigned varint (Kafka's ByteUtils.writeUnsignedVarint), for 0 <= value < 2**32."""
    if 0 <= value < 16384:
        return _SMALL_UVARINTS[value]
    if value >> 32 or value < 0:
        raise ValueError(f"unsigned varint {value} is outside 0..2**32-1")
    return _encode_zigzag(value)
