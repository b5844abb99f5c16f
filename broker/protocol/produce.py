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

from .schema import ProtocolError, run_decoder

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
        pos += 2
        if n < 0:
            raise ProtocolError(f"string length {n}")
        if pos + n > size:
            raise ProtocolError(f"need {n} bytes at {pos}, have {size - pos}")
        name = str(buf[pos : pos + n], "utf-8")
        partition_count, pos = _count(buf, pos + n, size)
        partitions = []
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
    return ProduceRequest(acks, timeout_ms, transactional_id, topics), pos


def decode_request(payload, pos: int, version: int) -> ProduceRequest:
    """The Produce request body of ``version`` starting at ``pos`` of a request frame's
    payload (after the header).  ProtocolError for anything the generic codec refuses,
    trailing bytes included."""
    return run_decoder(_read_body, payload, pos, version)


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
