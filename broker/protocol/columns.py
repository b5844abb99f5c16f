"""A vectorised decoder of record sections, for readers that want columns (the loaders).

The pure-Python decoder in ``records.py`` spends about a microsecond per record walking
varints.  Here record starts are guessed from the section's zero bytes and the guess checked
with numpy (a Python loop of one varint per record only when the guess fails); every field
inside the records is then read with numpy over all records at once.  Anything
unusual (records with headers, an inconsistent layout, a truncated section) is left to the
Python decoder, which has the precise error messages.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import CorruptMessageError
from .varint import decode_varint

_ZERO = np.int64(0)


def varints(
    a: np.ndarray, pos: np.ndarray, max_bytes: int = 10
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


def guess_spans(a: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each of ``count`` records of the section ``a`` (uint8) starts its fields, and its
    length, found without a Python step per record.  A record made as producers make them
    has a zero attributes byte right after its length varint and ends with a zero header
    count: every zero byte of the section proposes the record whose length varint (one or
    two bytes: records up to 8 KiB) ends just before it, and the proposals that link into one
    chain from the first byte to the last are kept.  The chain is checked link by link, so an
    answer is always exact; None when the guess does not hold (long records, non-zero
    attributes, headers, a broken section): then ``record_heads`` walks it."""
    end = len(a)
    if count <= 0 or end < count * 7:
        return None
    zeros = np.flatnonzero(a == 0)
    one = zeros[zeros >= 1] - 1  # heads of one-byte length varints (even: not negative)
    b = a[one]
    one = one[(b < 0x80) & (b >= 2 * 6) & ((b & 1) == 0)]
    two = zeros[zeros >= 2] - 2  # and of two-byte ones
    b = a[two]
    two = two[(b >= 0x80) & ((b & 1) == 0) & (a[two + 1] < 0x80)]
    heads = np.concatenate((one, two))
    starts = heads + np.repeat(np.array([1, 2], np.int64), (len(one), len(two)))
    lengths = np.concatenate(
        (a[one] >> 1, ((a[two] & 0x7F) >> 1) | (a[two + 1].astype(np.int64) << 6)), dtype=np.int64
    )
    nexts = starts + lengths
    ok = nexts <= end
    ok[ok] = a[nexts[ok] - 1] == 0  # the header count
    mark = np.zeros(end + 1, bool)
    for _ in range(3):  # drop proposals no other one leads to, or that lead nowhere
        heads, starts, lengths, nexts = heads[ok], starts[ok], lengths[ok], nexts[ok]
        mark[nexts] = True
        mark[0] = True
        ok = mark[heads]
        mark[:] = False
        mark[heads] = True
        mark[end] = True
        ok &= mark[nexts]
        mark[:] = False
        if ok.all():
            break
    else:
        return None
    if len(heads) != count:
        return None
    order = np.argsort(heads)
    heads, starts, lengths, nexts = heads[order], starts[order], lengths[order], nexts[order]
    if heads[0] != 0 or nexts[-1] != end or not np.array_equal(nexts[:-1], heads[1:]):
        return None
    return starts, lengths


class RecordFields(NamedTuple):
    """Where the fields of every record of a section lie, as int64 arrays (one entry per
    record): deltas, and key and value starts and lengths (-1: null)."""

    offset_delta: np.ndarray
    timestamp_delta: np.ndarray
    key_start: np.ndarray
    key_len: np.ndarray
    value_start: np.ndarray
    value_len: np.ndarray


def record_fields(data, count: int) -> RecordFields | None:
    """The fields of the ``count`` records of a (decompressed) record section, read with
    numpy for all records at once; None if the section needs the Python decoder (records
    with headers, an inconsistent layout, a truncated section)."""
    a = np.frombuffer(data, np.uint8)
    found = guess_spans(a, count)
    if found is not None:
        s, lengths = found
    else:
        heads, after = record_heads(data, count)
        if len(heads) < count or after != len(data):
            return None
        try:
            lengths, s = _varints(a, np.array(heads, np.int64))
        except ValueError:
            return None
        if lengths.min(initial=1) < 1:
            return None
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
        return None
    # every record must end with a zero header count exactly at its end
    if not (np.array_equal(p + 1, e) and not a.take(p, mode="clip").any()):
        return None
    return RecordFields(offset_delta, ts_delta, key_start, key_len, value_start, value_len)


def decode_columns(
    data: bytes, count: int, base_offset: int, base_ts: int, log_append_ts: int | None, out
) -> bool:
    """Append ``count`` records of a (decompressed) record section to ``out`` (a
    RecordColumns); False, with ``out`` untouched, if the section needs the Python decoder."""
    fields = record_fields(data, count)
    if fields is None:
        return False
    offset_delta, ts_delta, key_start, key_len, value_start, value_len = fields
    out.offsets += (offset_delta + base_offset).tolist()
    if log_append_ts is None:
        out.timestamps += (ts_delta + base_ts).tolist()
    else:
        out.timestamps += [log_append_ts] * count
    if (key_len < 0).all():
        out.keys += [None] * count
    else:
        out.keys += [
            data[x : x + n] if n >= 0 else None
            for x, n in zip(key_start.tolist(), key_len.tolist())
        ]
    v_start = value_start.tolist()
    if (value_len >= 0).all():
        v_end = (value_start + value_len).tolist()
        out.values += [data[x:y] for x, y in zip(v_start, v_end)]
    else:
        out.values += [
            data[x : x + n] if n >= 0 else None for x, n in zip(v_start, value_len.tolist())
        ]
    return True
