"""What the broker checks inside a record batch before storing it: that consumers can decode it.

``check_batch`` (records.py) covers the 61-byte header and the CRC.  ``check_records`` goes
further, as Kafka's LogValidator does, without a Python object per record: the body must
decompress, and the records' framing must match the header - as many records as it says,
each record's length varint spanning exactly its fields, well-formed varints (at most 5 bytes
for ints, 10 for longs), timestamps (base timestamp plus delta) that fit a signed 64-bit long,
sane header counts and header key lengths, offset deltas 0..n-1, and the last record ending
exactly at the end of the body.  A Python loop only finds where each
record starts (a few operations per record); every field is then read with numpy over all
records at once.

    >>> check_records(batch_bytes)        # the record section, or raises
    >>> # CorruptMessageError: the body does not decompress
    >>> # InvalidRecordError (with .record_index when one record is at fault): bad framing
"""

from __future__ import annotations

import numpy as np

from . import compression
from .columns import record_heads, varints
from .errors import CorruptMessageError, InvalidRecordError, KafkaError
from .records import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    parse_header,
)
from .varint import decode_varint

MIN_RECORD_BODY = 6  # attributes, timestampDelta, offsetDelta, keyLength, valueLength, headerCount
INT_VARINT_BYTES, LONG_VARINT_BYTES = 5, 10
# Kafka streams records out of a compressed body; we decompress it whole, so a few bytes that
# stand for gigabytes are refused (MESSAGE_TOO_LARGE) instead of taking the broker's memory.
MAX_RECORD_SECTION = 128 * 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# A delta of at most 8 varint bytes is below 2**55: added to a base timestamp this far from the
# limits, it cannot leave a long, so only longer deltas or such bases need the exact check.
_SAFE_DELTA_BYTES, _SAFE_BASE = 8, 2**62
SMALL_BATCH = 24  # up to this many records, a walk in Python costs less than numpy's set-up


def record_error(message: str, index: int | None = None) -> KafkaError:
    """An InvalidRecordError naming the record at fault (its index in the batch), if any."""
    error = InvalidRecordError(message if index is None else f"record {index}: {message}")
    error.record_index = index
    return error


def check_records(buf, pos: int = 0, header: BatchHeader | None = None) -> bytes | memoryview:
    """Check that the records of the batch at ``pos`` decode as its header says; returns
    its record section (decompressed), for further checks not to decompress it again.

    Raises CorruptMessageError if the body does not decompress, MessageTooLargeError if it
    decompresses to more than MAX_RECORD_SECTION bytes, InvalidRecordError (with
    ``record_index`` set when one record is at fault) if the framing is broken.  The header
    and CRC are assumed checked (``check_batch``); control batches are checked like any other,
    and an empty batch (count 0, as compaction leaves) must have an empty body.
    """
    if header is None:
        header = parse_header(buf, pos)
    body: bytes | memoryview = memoryview(buf)[
        pos + HEADER_SIZE : pos + LOG_OVERHEAD + header.batch_length
    ]
    if header.attributes & COMPRESSION_MASK != compression.NONE:
        body = compression.decompress(header.compression, body, MAX_RECORD_SECTION)
    check_record_section(body, header.record_count, header.base_timestamp)
    return body


def check_record_section(data, count: int, base_timestamp: int = 0) -> None:
    """Check a (decompressed) record section holding ``count`` records whose timestamps are
    deltas from ``base_timestamp``; see check_records."""
    end = len(data)
    if count < 0:
        raise record_error(f"negative record count {count}")
    if count == 0:
        if end:
            raise record_error(f"a batch of no records carries {end} bytes of record data")
        return
    if count * (MIN_RECORD_BODY + 1) > end:
        raise record_error(f"{count} records cannot fit in {end} bytes of record data")
    if count <= SMALL_BATCH:
        _check_small(data, count, base_timestamp)
        return
    a = np.frombuffer(data, np.uint8)
    found = _guess_spans(data, a, count)
    if found is None:
        found = _spans(a, *record_heads(data, count), count)
    _check_fields(a, *found, base_timestamp)


def _guess_spans(data, a: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each record's fields start, and its length, found fast: the Python loop reads
    each length varint as if it had one or two bytes (records up to 8 KiB) and no sign, and
    numpy checks that guess in one go.  None if it does not hold (longer records or a broken
    section: then ``record_heads`` walks it exactly)."""
    heads = [0] * count
    pos = 0
    try:
        for i in range(count):
            heads[i] = pos
            b = data[pos]
            if b < 0x80:
                pos += 1 + (b >> 1)
            else:
                pos += 2 + (((b & 0x7F) | (data[pos + 1] << 7)) >> 1)
    except IndexError:
        return None
    if pos != len(data):
        return None
    at = np.array(heads, np.int64)
    lengths, starts, size = varints(a, at, INT_VARINT_BYTES)
    if (
        (size > 2).any()
        or (lengths < MIN_RECORD_BODY).any()
        or not np.array_equal(starts[:-1] + lengths[:-1], at[1:])
    ):
        return None
    return starts, lengths


def _spans(
    a: np.ndarray, heads: list[int], after: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the records at ``heads`` (an exact walk that ended at ``after``),
    or the error of the first record whose length is wrong."""
    h = np.array(heads, np.int64)
    lengths, starts, size = varints(a, h, INT_VARINT_BYTES)
    bad = np.flatnonzero((size > INT_VARINT_BYTES) | (lengths < MIN_RECORD_BODY))
    if len(bad):
        i = int(bad[0])
        if size[i] > INT_VARINT_BYTES:
            raise record_error("length varint is longer than 5 bytes", i)
        raise record_error(f"length {int(lengths[i])} is shorter than any record", i)
    if len(heads) < count:
        raise record_error(
            "the length varint is malformed or runs past the record data", len(heads)
        )
    end = len(a)
    if after > end:
        raise record_error(
            f"length {int(lengths[-1])} runs {after - end} bytes past the end of the record data",
            count - 1,
        )
    if after < end:
        raise record_error(
            f"{end - after} bytes follow the last of the {count} records the header counts"
        )
    return starts, lengths


def _check_small(data, count: int, base_timestamp: int) -> None:
    """The same checks as the vectorised path, record by record (ints only, no objects)."""
    end = len(data)
    pos = 0
    any_delta = not -_SAFE_BASE <= base_timestamp <= _SAFE_BASE
    # One-byte varints (most fields of a small record) are read inline: a call each costs
    # more than the check.
    for i in range(count):
        b = data[pos] if pos < end else 0x80
        if b < 0x80:
            length, pos = (b >> 1) ^ -(b & 1), pos + 1
        elif pos + 1 < end and data[pos + 1] < 0x80:  # records of 64 bytes to 8 KiB
            length = (b & 0x7F) | (data[pos + 1] << 7)
            length, pos = (length >> 1) ^ -(length & 1), pos + 2
        else:
            length, pos = _varint(data, pos, INT_VARINT_BYTES, i, "length")
        if length < MIN_RECORD_BODY:
            raise record_error(f"length {length} is shorter than any record", i)
        record_end = pos + length
        if record_end > end:
            raise record_error(
                f"length {length} runs {record_end - end} bytes past the end of the record data", i
            )
        ts_start = pos + 1
        b = data[ts_start]  # inside the record: its length is at least MIN_RECORD_BODY
        if b < 0x80:
            ts_delta, pos = (b >> 1) ^ -(b & 1), ts_start + 1
            if any_delta and not INT64_MIN <= base_timestamp + ts_delta <= INT64_MAX:
                raise record_error(_TIMESTAMP_RANGE, i)
        else:
            ts_delta, pos = _varint(data, ts_start, LONG_VARINT_BYTES, i, "timestampDelta")
            if (any_delta or pos - ts_start > _SAFE_DELTA_BYTES) and not (
                INT64_MIN <= ts_delta <= INT64_MAX
                and INT64_MIN <= base_timestamp + ts_delta <= INT64_MAX
            ):
                raise record_error(_TIMESTAMP_RANGE, i)
        b = data[pos] if pos < end else 0x80
        if b < 0x80:
            offset_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
        else:
            offset_delta, pos = _varint(data, pos, INT_VARINT_BYTES, i, "offsetDelta")
        b = data[pos] if pos < end else 0x80
        if b < 0x80:
            key_len, pos = (b >> 1) ^ -(b & 1), pos + 1
        else:
            key_len, pos = _varint(data, pos, INT_VARINT_BYTES, i, "key length")
        if key_len > 0:
            pos += key_len
        b = data[pos] if pos < end else 0x80
        if b < 0x80:
            value_len, pos = (b >> 1) ^ -(b & 1), pos + 1
        elif pos + 1 < end and data[pos + 1] < 0x80:
            value_len = (b & 0x7F) | (data[pos + 1] << 7)
            value_len, pos = (value_len >> 1) ^ -(value_len & 1), pos + 2
        else:
            value_len, pos = _varint(data, pos, INT_VARINT_BYTES, i, "value length")
        if value_len > 0:
            pos += value_len
        if pos >= record_end:
            raise record_error(f"key and value run past the record's length {length}", i)
        b = data[pos]
        if b < 0x80:
            header_count, pos = (b >> 1) ^ -(b & 1), pos + 1
        else:
            header_count, pos = _varint(data, pos, INT_VARINT_BYTES, i, "header count")
        if header_count < 0 or header_count * 2 > record_end - pos:
            raise record_error(f"header count {header_count} does not fit the record", i)
        if header_count:
            pos = _walk_headers(data, pos, 0, header_count, record_end, i)
        if pos != record_end:
            raise record_error(
                f"the fields end at byte {pos - record_end + length} of a record "
                f"of length {length}",
                i,
            )
        if offset_delta != i:
            raise record_error(f"offsetDelta {offset_delta} where {i} was expected", i)
    if pos != end:
        raise record_error(
            f"{end - pos} bytes follow the last of the {count} records the header counts"
        )


_TIMESTAMP_RANGE = "the timestamp (base timestamp plus timestampDelta) does not fit a 64-bit long"


def _varint(data, pos: int, max_bytes: int, index: int, what: str) -> tuple[int, int]:
    """One varint of a record for the Python walk; InvalidRecordError if malformed."""
    if pos + 1 < len(data):  # one or two bytes, as the lengths and deltas of small records
        byte = data[pos]
        if byte < 0x80:
            return (byte >> 1) ^ -(byte & 1), pos + 1
        second = data[pos + 1]
        if second < 0x80:
            value = (byte & 0x7F) | (second << 7)
            return (value >> 1) ^ -(value & 1), pos + 2
    try:
        value, after = decode_varint(data, pos)
    except CorruptMessageError:
        raise record_error(f"{what} varint runs past the record data", index) from None
    if after - pos > max_bytes:
        raise record_error(f"{what} varint is longer than {max_bytes} bytes", index)
    return value, after


def _check_fields(
    a: np.ndarray, starts: np.ndarray, lengths: np.ndarray, base_timestamp: int
) -> None:
    """The fields of every record at once, each record ``[starts[i], starts[i] + lengths[i])``."""
    ends = starts + lengths
    count = len(starts)

    def first_bad(mask: np.ndarray, what) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise record_error(what(i) if callable(what) else what, i)

    p = starts + 1  # past the attributes byte, which Kafka ignores
    ts_delta, p, ts_size = varints(a, p)
    ts_end = p
    offset_delta, p, offset_size = varints(a, p)
    key_len, p, key_size = varints(a, p)
    p = p + np.maximum(key_len, 0)  # a negative length is a null key
    value_len, p, value_size = varints(a, p)
    p = p + np.maximum(value_len, 0)
    longest_ts = int(ts_size.max())
    if (
        longest_ts > LONG_VARINT_BYTES
        or (offset_size | key_size | value_size).max() > INT_VARINT_BYTES
    ):
        first_bad(ts_size > LONG_VARINT_BYTES, "timestampDelta varint is longer than 10 bytes")
        first_bad(offset_size > INT_VARINT_BYTES, "offsetDelta varint is longer than 5 bytes")
        first_bad(key_size > INT_VARINT_BYTES, "key length varint is longer than 5 bytes")
        first_bad(value_size > INT_VARINT_BYTES, "value length varint is longer than 5 bytes")
    if longest_ts > _SAFE_DELTA_BYTES or not -_SAFE_BASE <= base_timestamp <= _SAFE_BASE:
        # A tenth byte above 1 takes the delta past 64 bits; the sum must not wrap either.
        base = np.int64(base_timestamp)
        with np.errstate(over="ignore"):
            ts = ts_delta + base
        first_bad(
            ((ts_delta > 0) & (ts < base))
            | ((ts_delta < 0) & (ts > base))
            | ((ts_size == LONG_VARINT_BYTES) & (a.take(ts_end - 1, mode="clip") > 1)),
            _TIMESTAMP_RANGE,
        )
    expected = np.arange(count)
    if (
        np.array_equal(p + 1, ends)
        and not a.take(p, mode="clip").any()
        and np.array_equal(offset_delta, expected)
    ):
        return  # the common case: no record has headers, and all is in order
    first_bad(p >= ends, lambda i: f"key and value run past the record's length {int(lengths[i])}")
    header_count, p, size = varints(a, p)
    first_bad(size > INT_VARINT_BYTES, "header count varint is longer than 5 bytes")
    # Each header takes at least two bytes (two one-byte lengths).
    first_bad(
        (header_count < 0) | (header_count * 2 > ends - p),
        lambda i: f"header count {int(header_count[i])} does not fit the record",
    )
    with_headers = np.flatnonzero(header_count)
    if len(with_headers):
        p = p.copy()
        p[with_headers] = _skip_headers(
            a, p[with_headers], header_count[with_headers], ends[with_headers], with_headers
        )
    first_bad(
        p != ends,
        lambda i: (
            f"the fields end at byte {int(p[i] - starts[i])} of a record "
            f"of length {int(lengths[i])}"
        ),
    )
    first_bad(
        offset_delta != expected,
        lambda i: f"offsetDelta {int(offset_delta[i])} where {i} was expected",
    )


def _skip_headers(a, p, counts, ends, index) -> np.ndarray:
    """Positions after the headers of the records that have some; ``index`` maps back to the
    records' indexes for error messages.  Header j of all records is read at once; the last
    one or two records with many headers are walked in Python (bounded by their bytes)."""
    for j in range(int(counts.max())):
        live = np.flatnonzero(counts > j)
        if len(live) <= 2 and counts[live].max() - j > 8:
            for k in live.tolist():
                p[k] = _walk_headers(
                    a.data, int(p[k]), j, int(counts[k]), int(ends[k]), int(index[k])
                )
            break
        q = p[live]
        key_len, q, size = varints(a, q)
        bad = (size > INT_VARINT_BYTES) | (key_len < 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise record_error(
                f"header {j} has a malformed or negative key length {int(key_len[k])}",
                int(index[live[k]]),
            )
        q = q + key_len
        value_len, q, size = varints(a, q)
        bad = (size > INT_VARINT_BYTES) | (q > ends[live])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise record_error(f"header {j} runs past the record", int(index[live[k]]))
        p[live] = q + np.maximum(value_len, 0)
    return p


def _walk_headers(data, pos: int, first: int, count: int, end: int, index: int) -> int:
    """Headers ``first``..``count - 1`` of one record, from ``pos``; returns the position after."""
    try:
        for j in range(first, count):
            start = pos
            key_len, pos = decode_varint(data, pos)
            if pos - start > INT_VARINT_BYTES or key_len < 0:
                raise record_error(
                    f"header {j} has a malformed or negative key length {key_len}", index
                )
            start = pos = pos + key_len
            value_len, pos = decode_varint(data, pos)
            if pos - start > INT_VARINT_BYTES or pos > end:
                raise record_error(f"header {j} runs past the record", index)
            pos += max(value_len, 0)
            if pos > end:
                raise record_error(f"header {j} runs past the record", index)
    except InvalidRecordError:
        raise
    except CorruptMessageError:  # a varint running off the data
        raise record_error(f"header {j} runs past the record", index) from None
    return pos
