"""Poison batches for the tests: record batches whose header and CRC are valid but whose body
consumers cannot decode (the CRC is recomputed over the damage, as a buggy producer would)."""

from __future__ import annotations

from broker.protocol import compression
from broker.protocol.records import (
    HEADER_SIZE,
    build_batch,
    encode_record,
    parse_header,
    with_body,
)
from broker.protocol.varint import encode_varint


def section_of(batch: bytes) -> bytes:
    """The (decompressed) record section of a batch."""
    header = parse_header(batch)
    body = batch[HEADER_SIZE : header.size]
    return compression.decompress(header.compression, body)


def rebuild(
    batch: bytes,
    section: bytes | None = None,
    *,
    count: int | None = None,
    raw_body: bytes | None = None,
) -> bytes:
    """``batch`` with another record section (compressed with its codec), record count, or
    raw (already compressed) body; lastOffsetDelta follows the count and the CRC is
    recomputed, so only a look inside the body can tell."""
    header = parse_header(batch)
    if raw_body is None:
        raw_body = section_of(batch) if section is None else section
        if header.compression != compression.NONE:
            raw_body = compression.compress(header.compression, raw_body)
    count = header.record_count if count is None else count
    return with_body(header, raw_body, header.attributes, max(count - 1, 0), count)


def records_section(deltas, value: bytes = b"v" * 20) -> bytes:
    """A record section whose records carry these offset deltas."""
    return b"".join(encode_record(d, 0, None, value) for d in deltas)


def poison(kind: str, codec: int = compression.NONE, count: int = 5) -> bytes:
    """A batch of ``count`` records damaged one way (see KINDS), CRC valid."""
    good = build_batch(
        [(b"k%d" % i, b'{"n": %d}' % i) for i in range(count)], compression_type=codec
    )
    section = section_of(good)
    if kind == "bad-compression":
        body = good[HEADER_SIZE:]
        return (
            rebuild(good, raw_body=body[: len(body) // 2] + b"\xff" * 7)
            if codec
            else rebuild(good, count=count + 1)
        )
    if kind == "count-high":
        return rebuild(good, count=count + 1)
    if kind == "count-low":
        return rebuild(good, count=count - 1)
    if kind == "bad-varint":  # the first record's length varint never ends
        return rebuild(good, b"\xff" * 11 + section)
    if kind == "truncated-record":
        return rebuild(good, section[:-3])
    if kind == "trailing-garbage":
        return rebuild(good, section + b"\x00\x01\x02")
    if kind == "bad-offset-deltas":
        deltas = list(range(count))
        deltas[-1], deltas[0] = deltas[0], deltas[-1]
        return rebuild(good, records_section(deltas))
    if kind == "negative-header-count":
        body = b"\x00" + encode_varint(0) + encode_varint(0) + b"\x01\x01" + encode_varint(-3)
        return rebuild(good, encode_varint(len(body)) + body, count=1)
    raise ValueError(kind)


KINDS = [
    "bad-compression",
    "count-high",
    "count-low",
    "bad-varint",
    "truncated-record",
    "trailing-garbage",
    "bad-offset-deltas",
    "negative-header-count",
]
