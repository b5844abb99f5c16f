"""The Produce request and response (v0-v8) without dicts, for the broker's hottest path.

``decode_request`` reads a Produce body straight into tuples: (acks, timeout_ms,
transactional_id, [(topic, [(partition, records memoryview or None)])]); ``encode_response``
writes the response body from (topic, [(partition, error_code, base_offset,
log_append_time_ms, log_start_offset, record_errors, error_message)]) tuples.  They agree
with the generic codec of ``apis.PRODUCE_REQUEST`` / ``PRODUCE_RESPONSE`` for every version
served, byte for byte and error for error (``tests/test_produce_codec.py``, hypothesis).

    >>> request = decode_request(payload, header_end, version)
    >>> request.acks, request.topics[0][1][0][0]
    (1, 0)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .schema import ProtocolError

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_LENGTH = struct.Struct(">ii")
_COUNT = _I32
_PARTITION_V0 = struct.Struct(">ihq")  # index, error_code, base_offset
_PARTITION_V2 = struct.Struct(">ihqq")  # ... log_append_time_ms
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... log_start_offset
_NULL_STRING = b"\xff\xff"
_NO_RECORD_ERRORS = b"\x00\x00\x00\x00"
_NO_THROTTLE = b"\x00\x00\x00\x00"


class ProduceRequest(NamedTuple):
    acks: int
    timeout_ms: int
    transactional_id: str | None
    topics: list  # [(topic, [(partition, records memoryview or None)])]


def _string(buf, pos: int, size: int, nullable: bool) -> tuple[str | None, int]:
    n = _I16.unpack_from(buf, pos)[0]
    pos += 2
    if n < 0:
        if n != -1 or not nullable:
            raise ProtocolError(f"string length {n}")
        return None, pos
    if pos + n > size:
        raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
    try:
        return str(buf[pos : pos + n], "utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"string is not UTF-8: {exc}") from None


def _count(buf, pos: int, size: int) -> tuple[int, int]:
    n = _COUNT.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        raise ProtocolError(f"array length {n}")
    if n > size - pos:
        raise ProtocolError(f"array of {n} elements in {size - pos} bytes")
    return n, pos


def decode_request(payload, pos: int, version: int) -> ProduceRequest:
    """The Produce request body of ``version`` starting at ``pos`` of a request frame's
    payload (after the header).  ProtocolError for anything the generic codec refuses,
    trailing bytes included."""
    buf = memoryview(payload)
    size = len(buf)
    try:
        transactional_id = None
        if version >= 3:
            transactional_id, pos = _string(buf, pos, size, True)
        acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
        pos += 6
        topics = []
        count, pos = _count(buf, pos, size)
        for _ in range(count):
            name, pos = _string(buf, pos, size, False)
            partitions = []
            partition_count, pos = _count(buf, pos, size)
            for _ in range(partition_count):
                index, n = _INDEX_LENGTH.unpack_from(buf, pos)
                pos += 8
                if n < 0:
                    if n != -1:
                        raise ProtocolError(f"bytes length {n}")
                    records = None
                else:
                    if pos + n > size:
                        raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
                    records = buf[pos : pos + n]
                    pos += n
                partitions.append((index, records))
            topics.append((name, partitions))
    except struct.error as exc:
        raise ProtocolError(f"message ends inside a field: {exc}") from None
    if pos != size:
        raise ProtocolError(f"{size - pos} bytes left over after the message")
    return ProduceRequest(acks, timeout_ms, transactional_id, topics)


def _write_string(out: list, value: str | None) -> None:
    if value is None:
        out.append(_NULL_STRING)
        return
    data = value.encode("utf-8")
    out.append(_I16.pack(len(data)))
    out.append(data)


def encode_response(version: int, responses: list) -> bytes:
    """The Produce response body of ``version`` (no frame header) from
    ``[(topic, [(partition, error_code, base_offset, log_append_time_ms, log_start_offset,
    record_errors, error_message)])]``; ``record_errors`` is a list of (batch_index,
    message) or None for none; the fields a version lacks are left out."""
    if version >= 5:
        fixed = _PARTITION_V5.pack
    elif version >= 2:
        fixed = _PARTITION_V2.pack
    else:
        fixed = _PARTITION_V0.pack
    out = [_COUNT.pack(len(responses))]
    for topic, partitions in responses:
        _write_string(out, topic)
        out.append(_COUNT.pack(len(partitions)))
        for index, code, base, append_time, start, record_errors, message in partitions:
            if version >= 5:
                out.append(fixed(index, code, base, append_time, start))
            elif version >= 2:
                out.append(fixed(index, code, base, append_time))
            else:
                out.append(fixed(index, code, base))
            if version >= 8:
                if record_errors:
                    out.append(_COUNT.pack(len(record_errors)))
                    for batch_index, batch_message in record_errors:
                        out.append(_I32.pack(batch_index))
                        _write_string(out, batch_message)
                else:
                    out.append(_NO_RECORD_ERRORS)
                _write_string(out, message)
    if version >= 1:
        out.append(_NO_THROTTLE)
    return b"".join(out)
