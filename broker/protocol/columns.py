"""A vectorised decoder of record sections, for readers that want columns (the loaders).

The pure-Python decoder in ``records.py`` spends about a microsecond per record walking
varints.  Here a Python loop only finds where each record starts (one varint per record);
every field inside the records is then read with numpy over all records at once.  Anything
unusual (records with headers, an inconsistent layout, a truncated section) is left to the
Python decoder, which has the precise error messages.
"""

from __future__ import annotations

import numpy as np

from .errors import CorruptMessageError
from .records import decode_varint

_ZERO = np.int64(0)


def varints(a: np.ndarray, pos: np.ndarray, max_bytes: int = 10
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zig-zag varints starting at each of ``pos``: (values, positions after them, sizes in
    bytes).  A varint still continuing after ``max_bytes`` stops there with size
    ``max_bytes + 1``, for the caller to refuse.  Positions past the end read the last byte."""
    b = a.take(pos, mode="clip").astype(np.int64)
    value = b & 0x7F
    more = b >= 0x80
    start = pos
    pos = pos + 1
    shift = 7
    while more.any():
        if shift >= 7 * max_bytes:
            pos = pos + more
            break
        b = a.take(pos, mode="clip").astype(np.int64)
        value = np.where(more, value | ((b & 0x7F) << shift), value)
        pos = pos + more
        more = more & (b >= 0x80)
        shift += 7
    if shift > 63:  # a tenth byte was read: the top bit may be set, so shift logically
        return ((value >> 1) & 0x7FFF_FFFF_FFFF_FFFF) ^ -(value & 1), pos, pos - start
    return (value >> 1) ^ -(value & 1), pos, pos - start


def _varints(a: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like ``varints``, for decoding: ValueError if one is longer than 10 bytes."""
    value, pos, size = varints(a, pos)
    if size.max(initial=0) > 10:
        raise ValueError("varint too long")
    return value, pos


def record_heads(data, count: int) -> tuple[list[int], int]:
    """Where each of ``count`` records starts (its length varint), walking the lengths one
    record at a time, and the position after the last.  Fewer than ``count`` if the data ends
    (or a length varint breaks) first; lengths are not judged here."""
    heads = [0] * count
    pos = i = 0
    try:
        for i in range(count):
            heads[i] = pos
            b = data[pos]
            if b < 0x80:
                length, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                zz = (b & 0x7F) | (data[pos + 1] << 7)
                length, pos = (zz >> 1) ^ -(zz & 1), pos + 2
            else:
                length, pos = decode_varint(data, pos)
            pos += length
            if pos < 0:
                raise IndexError
    except (IndexError, CorruptMessageError):
        return heads[:i], pos
    return heads, pos


def decode_columns(data: bytes, count: int, base_offset: int, base_ts: int,
                   log_append_ts: int | None, out) -> bool:
    """Append ``count`` records of a (decompressed) record section to ``out`` (a
    RecordColumns); False, with ``out`` untouched, if the section needs the Python decoder."""
    heads, after = record_heads(data, count)
    if len(heads) < count or after != len(data):
        return False
    a = np.frombuffer(data, np.uint8)
    try:
        lengths, s = _varints(a, np.array(heads, np.int64))
    except ValueError:
        return False
    if lengths.min(initial=1) < 1:
        return False
    e = s + lengths
    try:
        ts_delta, p = _varints(a, s + 1)  # after the attributes byte
        offset_delta, p = _varints(a, p)
        key_len, p = _varints(a, p)
        key_start = p
        p = p + np.maximum(key_len, _ZERO)
        value_len, p = _varints(a, p)
        value_start = p
        p = p + np.maximum(value_len, _ZERO)
    except ValueError:
        return False
    # every record must end with a zero header count exactly at its end
    if not (np.array_equal(p + 1, e) and not a.take(p, mode="clip").any()):
        return False
    out.offsets += (offset_delta + base_offset).tolist()
    if log_append_ts is None:
        out.timestamps += (ts_delta + base_ts).tolist()
    else:
        out.timestamps += [log_append_ts] * count
    if (key_len < 0).all():
        out.keys += [None] * count
    else:
        out.keys += [data[x:x + n] if n >= 0 else None
                     for x, n in zip(key_start.tolist(), key_len.tolist())]
    v_start = value_start.tolist()
    if (value_len >= 0).all():
        v_end = (value_start + value_len).tolist()
        out.values += [data[x:y] for x, y in zip(v_start, v_end)]
    else:
        out.values += [data[x:x + n] if n >= 0 else None for x, n in zip(v_start, value_len.tolist())]
    return True
