"""The Produce request and response (v0-v9) without dicts, for the broker's hottest path.

``decode_request`` reads a Produce body straight into tuples: (acks, timeout_ms,
transactional_id, [(topic, [(partition, records memoryview or None)])]); ``encode_response``
writes the response body from (topic, [(partition, error_code, base_offset,
log_append_time_ms, log_start_offset, record_errors, error_message)]) tuples.  They agree
with the generic codec of ``apis.PRODUCE_REQUEST`` / ``PRODUCE_RESPONSE`` for every version
served, byte for byte and error for error (``tests/test_wire_produce_fast_path.py``,
hypothesis).  v9 is flexible (KIP-482): compact strings, arrays and records, and a tagged-field
section closing each struct (read and skipped: Produce v9 has no tagged fields).

    >>> request = decode_request(payload, header_end, version)
    >>> request.acks, request.topics[0][1][0][0]
    (1, 0)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .schema import ProtocolError, decode_uvarint, run_decoder, skip_tagged_fields
from .varint import encode_uvarint

FIRST_FLEXIBLE = 9

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_LENGTH = struct.Struct(">ii")
_COUNT = _I32
# Each version's fixed fields of a partition's answer, and how many of the tuple they take.
_PARTITION_V0 = struct.Struct(">ihq"), 3  # index, error_code, base_offset
_PARTITION_V2 = struct.Struct(">ihqq"), 4  # ... log_append_time_ms
_PARTITION_V5 = struct.Struct(">ihqqq"), 5  # ... log_start_offset
_NULL_STRING = b"\xff\xff"
_NO_RECORD_ERRORS = b"\x00\x00\x00\x00"
_NO_THROTTLE = b"\x00\x00\x00\x00"
_NO_TAGS = b"\x00"
_COMPACT_NULL = b"\x00"
_NO_COMPACT_RECORD_ERRORS = b"\x01"  # an empty compact array


class ProduceRequest(NamedTuple):
    acks: int
    timeout_ms: int
    transactional_id: str | None
    topics: list  # [(topic, [(partition, records memoryview or None)])]


def _count(buf, pos: int, size: int) -> tuple[int, int]:
    """An array's count at ``pos`` and the position after it; negative counts and counts
    the bytes left cannot hold are refused."""
    n = _I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        raise ProtocolError(f"array length {n}")
    if n > size - pos:
        raise ProtocolError(f"array of {n} elements in {size - pos} bytes")
    return n, pos


def _topic_name(buf, pos: int, size: int, n: int) -> str:
    """The topic name of length ``n`` at ``pos`` (never null)."""
    if n < 0:
        raise ProtocolError(f"string length {n}")
    if pos + n > size:
        raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
    return str(buf[pos : pos + n], "utf-8")


def _records(buf, pos: int, size: int, n: int) -> tuple[memoryview | None, int]:
    """The records of length ``n`` (-1: null) at ``pos``, and the position after them."""
    if n < 0:
        if n != -1:
            raise ProtocolError(f"bytes length {n}")
        return None, pos
    if pos + n > size:
        raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
    return buf[pos : pos + n], pos + n


def _read_body(buf, pos: int, size: int, version: int) -> tuple[ProduceRequest, int]:
    transactional_id = None
    if version >= 3:
        n = _I16.unpack_from(buf, pos)[0]
        pos += 2
        if n != -1:
            if n < 0:
                raise ProtocolError(f"string length {n}")
            if pos + n > size:
                raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
            transactional_id = str(buf[pos : pos + n], "utf-8")
            pos += n
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    topic_count, pos = _count(buf, pos + 6, size)
    topics = []
    for _ in range(topic_count):
        n = _I16.unpack_from(buf, pos)[0]
        name = _topic_name(buf, pos + 2, size, n)
        partition_count, pos = _count(buf, pos + 2 + n, size)
        partitions = []
        for _ in range(partition_count):
            index, n = _INDEX_LENGTH.unpack_from(buf, pos)
            records, pos = _records(buf, pos + 8, size, n)
            partitions.append((index, records))
        topics.append((name, partitions))
    return ProduceRequest(acks, timeout_ms, transactional_id, topics), pos


def _compact_length(buf, pos: int, size: int) -> tuple[int, int]:
    """A compact length (uvarint of length + 1; -1 is null) at ``pos``, and the position
    after it."""
    n = buf[pos] if pos < size else 128
    if n < 128:
        return n - 1, pos + 1
    n, pos = decode_uvarint(buf, pos)
    return n - 1, pos


def _compact_string(buf, pos: int, size: int) -> tuple[str | None, int]:
    n, pos = _compact_length(buf, pos, size)
    if n < -1:
        raise ProtocolError(f"string length {n}")
    data, pos = _records(buf, pos, size, n)  # the same framing as bytes
    return (None if data is None else str(data, "utf-8")), pos


def _compact_count(buf, pos: int, size: int) -> tuple[int, int]:
    n, pos = _compact_length(buf, pos, size)
    if n < 0:
        raise ProtocolError(f"array length {n}")
    if n > size - pos:
        raise ProtocolError(f"array of {n} elements in {size - pos} bytes")
    return n, pos


def _read_flexible_body(buf, pos: int, size: int, version: int) -> tuple[ProduceRequest, int]:
    # Compact lengths and counts of one byte (< 128: nearly always) and empty tagged sections
    # are read inline: a function call each would cost this path a third of its time.
    n = buf[pos] if pos < size else 128
    n, pos = (n - 1, pos + 1) if n < 128 else _compact_length(buf, pos, size)
    if n < -1:
        raise ProtocolError(f"string length {n}")
    raw_id, pos = _records(buf, pos, size, n)
    transactional_id = None if raw_id is None else str(raw_id, "utf-8")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    topic_count, pos = _compact_count(buf, pos + 6, size)
    topics = []
    for _ in range(topic_count):
        n = buf[pos] if pos < size else 128
        n, pos = (n - 1, pos + 1) if n < 128 else _compact_length(buf, pos, size)
        name = _topic_name(buf, pos, size, n)
        partition_count, pos = _compact_count(buf, pos + n, size)
        partitions = []
        for _ in range(partition_count):
            index = _I32.unpack_from(buf, pos)[0]
            n = buf[pos + 4] if pos + 4 < size else 128
            n, pos = (n - 1, pos + 5) if n < 128 else _compact_length(buf, pos + 4, size)
            if n >= 0 and pos + n <= size:
                records, pos = buf[pos : pos + n], pos + n
            else:
                records, pos = _records(buf, pos, size, n)
            partitions.append((index, records))
            pos = pos + 1 if pos < size and buf[pos] == 0 else skip_tagged_fields(buf, pos)
        topics.append((name, partitions))
        pos = pos + 1 if pos < size and buf[pos] == 0 else skip_tagged_fields(buf, pos)
    pos = skip_tagged_fields(buf, pos)
    return ProduceRequest(acks, timeout_ms, transactional_id, topics), pos


def decode_request(payload, pos: int, version: int) -> ProduceRequest:
    """The Produce request body of ``version`` starting at ``pos`` of a request frame's
    payload (after the header).  ProtocolError for anything the generic codec refuses,
    trailing bytes included."""
    read = _read_flexible_body if version >= FIRST_FLEXIBLE else _read_body
    return run_decoder(read, payload, pos, version)


def _write_string(out: list, value: str | None) -> None:
    if value is None:
        out.append(_NULL_STRING)
        return
    data = value.encode("utf-8")
    out.append(_I16.pack(len(data)))
    out.append(data)


def _write_compact_string(out: list, value: str | None) -> None:
    if value is None:
        out.append(_COMPACT_NULL)
        return
    data = value.encode("utf-8")
    out.append(encode_uvarint(len(data) + 1))
    out.append(data)


def _encode_flexible_response(responses: list) -> bytes:
    pack = _PARTITION_V5[0].pack
    out = [encode_uvarint(len(responses) + 1)]
    for topic, partitions in responses:
        name = topic.encode("utf-8")
        out += (encode_uvarint(len(name) + 1), name, encode_uvarint(len(partitions) + 1))
        for p in partitions:
            out.append(pack(*p[:5]))
            record_errors = p[5]
            if record_errors:
                out.append(encode_uvarint(len(record_errors) + 1))
                for batch_index, batch_message in record_errors:
                    out.append(_I32.pack(batch_index))
                    _write_compact_string(out, batch_message)
                    out.append(_NO_TAGS)
            else:
                out.append(_NO_COMPACT_RECORD_ERRORS)
            _write_compact_string(out, p[6])
            out.append(_NO_TAGS)  # the partition's
        out.append(_NO_TAGS)  # the topic's
    out += (_NO_THROTTLE, _NO_TAGS)
    return b"".join(out)


def encode_response(version: int, responses: list) -> bytes:
    """The Produce response body of ``version`` (no frame header) from
    ``[(topic, [(partition, error_code, base_offset, log_append_time_ms, log_start_offset,
    record_errors, error_message)])]``; ``record_errors`` is a list of (batch_index,
    message) or None for none; the fields a version lacks are left out."""
    if version >= FIRST_FLEXIBLE:
        return _encode_flexible_response(responses)
    fixed, width = (
        _PARTITION_V5 if version >= 5 else _PARTITION_V2 if version >= 2 else _PARTITION_V0
    )
    pack = fixed.pack
    out = [_COUNT.pack(len(responses))]
    for topic, partitions in responses:
        name = topic.encode("utf-8")
        out += (_I16.pack(len(name)), name, _COUNT.pack(len(partitions)))
        for p in partitions:
            out.append(pack(*p[:width]))
            if version >= 8:
                record_errors = p[5]
                if record_errors:
                    out.append(_COUNT.pack(len(record_errors)))
                    for batch_index, batch_message in record_errors:
                        out.append(_I32.pack(batch_index))
                        _write_string(out, batch_message)
                else:
                    out.append(_NO_RECORD_ERRORS)
                _write_string(out, p[6])
    if version >= 1:
        out.append(_NO_THROTTLE)
    return b"".join(out)
