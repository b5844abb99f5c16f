"""Kafka record batches, format v2 (magic 2): build, parse and check them over bytes.

The broker touches only the 61-byte batch header (``BatchHeader``, ``check_batch``); clients
and tools decode the records inside (``decode_batch``).  Layout of the header::

    0  baseOffset int64       21 attributes int16        43 producerId int64
    8  batchLength int32      23 lastOffsetDelta int32   51 producerEpoch int16
    12 partitionLeaderEpoch   27 baseTimestamp int64     53 baseSequence int32
    16 magic int8 (= 2)       35 maxTimestamp int64      57 recordCount int32
    17 crc uint32: CRC-32C of bytes 21..end

Records follow at byte 61, compressed as one blob when the attributes name a codec.  Every
integer inside a record is a zig-zag varint.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c

from . import compression
from .columns import decode_columns
from .errors import (
    CorruptMessageError,
    InvalidRecordError,
    MessageTooLargeError,
    UnsupportedCompressionTypeError,
    UnsupportedForMessageFormatError,
)
from .varint import decode_varint, encode_varint

MAGIC = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength
# Byte positions of the fields written or read on their own.
MAGIC_POSITION = 16
CRC_POSITION = 17
ATTRIBUTES_POSITION = CRC_START = 21  # the CRC covers the bytes from here to the end
MAX_TIMESTAMP_POSITION = 35
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49
# Where each field sits in a ``HEADER.unpack`` tuple (the order of ``BatchHeader``): header
# walks over stored segments index the plain tuple rather than build a BatchHeader per batch.
(
    BASE_OFFSET,
    BATCH_LENGTH,
    PARTITION_LEADER_EPOCH,
    MAGIC_BYTE,
    CRC,
    ATTRIBUTES,
    LAST_OFFSET_DELTA,
    BASE_TIMESTAMP,
    MAX_TIMESTAMP,
    PRODUCER_ID,
    PRODUCER_EPOCH,
    BASE_SEQUENCE,
    RECORD_COUNT,
) = range(13)
# The first 16 bytes, the ones a broker rewrites: baseOffset, batchLength, partitionLeaderEpoch.
PREFIX = struct.Struct(">qii")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40

CREATE_TIME = 0
LOG_APPEND_TIME = 1
NO_TIMESTAMP = -1
# ListOffsets' special timestamps: they ask for the log start and the log end offset.
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1

_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")


class BatchHeader(NamedTuple):
    """The fixed 61-byte header of a v2 record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        return LOG_APPEND_TIME if self.attributes & TIMESTAMP_TYPE_MASK else CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)


class Record(NamedTuple):
    """One record as a client sees it: absolute offset and timestamp, key, value, headers."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class RecordBatch:
    """A decoded batch: its header and its records."""

    header: BatchHeader
    records: list[Record] = field(default_factory=list)


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Read the batch header at ``pos``; CorruptMessageError if fewer than 61 bytes remain."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptMessageError(
            f"record batch header needs {HEADER_SIZE} bytes, {len(buf) - pos} remain"
        )
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def compute_crc(batch) -> int:
    """CRC-32C of a whole batch's bytes from ``attributes`` to the end."""
    return crc32c.crc32c(memoryview(batch)[CRC_START:])


def check_batch(
    buf, pos: int = 0, *, max_size: int | None = None, compacted: bool = False
) -> BatchHeader:
    """Validate the batch at ``pos`` as a broker must before it appends it.

    Checks, in order: room for a header, the magic byte (2), that the batch lies wholly inside
    ``buf``, ``max_size`` (MessageTooLargeError), the CRC (CorruptMessageError), the codec
    (UnsupportedCompressionTypeError) and the offset/count rules Kafka applies to producer
    batches (InvalidRecordError).  With ``compacted`` (a replica copying a leader's log), a
    batch may hold fewer records than its offsets span, or none, as the log cleaner leaves
    them.  Records are never decoded.  Returns the header.
    """
    available = len(buf) - pos
    if available < HEADER_SIZE:
        if available > MAGIC_POSITION and buf[pos + MAGIC_POSITION] != MAGIC:
            raise UnsupportedForMessageFormatError(
                f"message format v{buf[pos + MAGIC_POSITION]} is not accepted; "
                "use record batches (magic 2)"
            )
        raise CorruptMessageError(f"record batch is {available} bytes, shorter than its header")
    header = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise UnsupportedForMessageFormatError(
            f"message format v{header.magic} is not accepted; use record batches (magic 2)"
        )
    size = header.batch_length + LOG_OVERHEAD
    if header.batch_length < MIN_BATCH_LENGTH or size > available:
        raise CorruptMessageError(
            f"record batch length {header.batch_length} does not fit the {available} bytes given"
        )
    if max_size is not None and size > max_size:
        raise MessageTooLargeError(
            f"record batch is {size} bytes, more than the maximum of {max_size} "
            "(message.max.bytes / max.message.bytes)"
        )
    actual = crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + size])
    if actual != header.crc:
        raise CorruptMessageError(
            f"record batch CRC mismatch: stored {header.crc:#010x}, computed {actual:#010x}"
        )
    if header.attributes & COMPRESSION_MASK > compression.ZSTD:
        raise UnsupportedCompressionTypeError(
            f"compression codec {header.attributes & COMPRESSION_MASK} does not exist"
        )
    count, span = header.record_count, header.last_offset_delta + 1
    if (count != span or count <= 0) and not (compacted and 0 <= count <= span):
        raise InvalidRecordError(
            f"record batch has {header.record_count} records but lastOffsetDelta "
            f"{header.last_offset_delta}"
        )
    if header.attributes & CONTROL_MASK:
        raise InvalidRecordError("control batches cannot be produced")
    return header


def split_batches(buf) -> Iterator[tuple[int, BatchHeader]]:
    """Walk concatenated batches, yielding (position, header), without checking CRCs.

    A trailing partial batch (as a fetch response may end with) is ignored.
    """
    pos, end = 0, len(buf)
    while end - pos >= HEADER_SIZE:
        header = BatchHeader._make(HEADER.unpack_from(buf, pos))
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptMessageError(
                f"record batch at byte {pos} has length {header.batch_length}"
            )
        if pos + header.size > end:
            return
        yield pos, header
        pos += header.size


def _encode_bytes(value: bytes | None) -> bytes:
    if value is None:
        return encode_varint(-1)
    return encode_varint(len(value)) + bytes(value)


def _decode_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buf, pos)
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise CorruptMessageError("record field runs past the end of the record data")
    return bytes(buf[pos:end]), end


# --- building -------------------------------------------------------------------------------

RecordInput = tuple  # (key, value) or (key, value, headers) or (key, value, headers, timestamp)


def encode_record(
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    """One record's bytes, length prefix included."""
    ev = encode_varint
    body = [
        b"\x00",  # attributes: unused
        ev(timestamp_delta),
        ev(offset_delta),
        b"\x01" if key is None else ev(len(key)),
        b"" if key is None else key,
        b"\x01" if value is None else ev(len(value)),
        b"" if value is None else value,
        ev(len(headers)),
    ]
    for header_key, header_value in headers:
        body.append(_encode_bytes(header_key.encode("utf-8")))
        body.append(_encode_bytes(header_value))
    payload = b"".join(body)
    return ev(len(payload)) + payload


def build_batch(
    records: Iterable[RecordInput],
    *,
    base_offset: int = 0,
    compression_type: int = compression.NONE,
    timestamp: int | None = None,
    timestamp_type: int = CREATE_TIME,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = -1,
    xerial_snappy: bool = False,
) -> bytes:
    """Encode records into one v2 batch, as a producer would.

    Each record is ``(key, value)``, ``(key, value, headers)`` or
    ``(key, value, headers, timestamp_ms)``; records without a timestamp take ``timestamp``
    (default 0).  Offsets are numbered from ``base_offset``.
    """
    items = [tuple(r) for r in records]
    if not items:
        raise InvalidRecordError("a record batch needs at least one record")
    default_ts = 0 if timestamp is None else timestamp
    stamps = [item[3] if len(item) > 3 and item[3] is not None else default_ts for item in items]
    base_ts = stamps[0]
    max_ts = max(stamps)
    encoded = b"".join(
        encode_record(
            i,
            stamps[i] - base_ts,
            item[0],
            item[1],
            item[2] if len(item) > 2 and item[2] is not None else (),
        )
        for i, item in enumerate(items)
    )
    if compression_type != compression.NONE:
        encoded = compression.compress(compression_type, encoded, xerial=xerial_snappy)
    attributes = compression_type & COMPRESSION_MASK
    if timestamp_type == LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_MASK
    if transactional:
        attributes |= TRANSACTIONAL_MASK
    if control:
        attributes |= CONTROL_MASK
    batch = bytearray(HEADER_SIZE + len(encoded))
    HEADER.pack_into(
        batch,
        0,
        base_offset,
        HEADER_SIZE + len(encoded) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        len(items) - 1,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(items),
    )
    batch[HEADER_SIZE:] = encoded
    _U32.pack_into(batch, CRC_POSITION, compute_crc(batch))
    return bytes(batch)


def with_body(
    header: BatchHeader, body: bytes, attributes: int, last_offset_delta: int, count: int
) -> bytes:
    """A batch with ``header``'s offsets, epochs, timestamps and producer fields around a
    record section ``body`` (as stored: compressed if ``attributes`` name a codec), with
    these attributes, lastOffsetDelta and record count, and its CRC computed."""
    out = bytearray(HEADER_SIZE + len(body))
    HEADER.pack_into(
        out,
        0,
        header.base_offset,
        HEADER_SIZE + len(body) - LOG_OVERHEAD,
        header.partition_leader_epoch,
        header.magic,
        0,
        attributes,
        last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        count,
    )
    out[HEADER_SIZE:] = body
    _U32.pack_into(out, CRC_POSITION, compute_crc(out))
    return bytes(out)


def with_log_append_time(batch, now_ms: int) -> bytes:
    """A copy of the batch stamped with LogAppendTime ``now_ms``, CRC recomputed.

    Used when a topic's ``message.timestamp.type`` is LogAppendTime: consumers then read
    ``maxTimestamp`` as every record's timestamp.
    """
    out = bytearray(batch)
    attributes = _I16.unpack_from(out, ATTRIBUTES_POSITION)[0] | TIMESTAMP_TYPE_MASK
    _I16.pack_into(out, ATTRIBUTES_POSITION, attributes)
    _I64.pack_into(out, MAX_TIMESTAMP_POSITION, now_ms)
    _U32.pack_into(out, CRC_POSITION, compute_crc(out))
    return bytes(out)


# --- decoding -------------------------------------------------------------------------------


def decode_batch(
    buf, pos: int = 0, *, verify_crc: bool = True, make=Record, prefix: tuple | None = None
) -> RecordBatch:
    """Decode the batch at ``pos`` into its records (decompressing as needed).  ``make``
    builds each record from (offset, timestamp, key, value, headers); with ``prefix``, ``make``
    is a named-tuple class whose fields are ``prefix`` followed by those five."""
    header, data = records_section(buf, pos, verify_crc)
    records = _decode_records(
        data,
        header.record_count,
        header.base_offset,
        header.base_timestamp,
        header.max_timestamp if header.timestamp_type == LOG_APPEND_TIME else None,
        make,
        prefix,
    )
    return RecordBatch(header, records)


class RecordColumns:
    """Records as four parallel lists (offsets, timestamps, keys, values): what a columnar
    reader such as the warehouse loader wants, without a Python object per record."""

    __slots__ = ("keys", "offsets", "timestamps", "values")

    def __init__(self):
        self.offsets: list[int] = []
        self.timestamps: list[int] = []
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.offsets)


def decode_batch_columns(
    buf, pos: int, out: RecordColumns, *, verify_crc: bool = True
) -> BatchHeader:
    """Append the records of the batch at ``pos`` to ``out`` (headers are checked, not kept)."""
    header, data = records_section(buf, pos, verify_crc)
    log_append_ts = header.max_timestamp if header.timestamp_type == LOG_APPEND_TIME else None
    if header.record_count >= 32 and decode_columns(
        data, header.record_count, header.base_offset, header.base_timestamp, log_append_ts, out
    ):
        return header
    _decode_records(
        data,
        header.record_count,
        header.base_offset,
        header.base_timestamp,
        log_append_ts,
        columns=out,
    )
    return header


def records_section(buf, pos: int, verify_crc: bool) -> tuple[BatchHeader, bytes]:
    """The header and the (decompressed) record section of the batch at ``pos``: the bytes
    every record decoder walks (``decode_batch``, ``decode_batch_columns``, the loader's
    ``loaders.blocks``).  Raises the batch's typed error if it is not magic 2, is truncated,
    fails its CRC (with ``verify_crc``) or does not decompress."""
    header = parse_header(buf, pos)
    if header.magic != MAGIC:
        raise UnsupportedForMessageFormatError(f"record batch magic {header.magic} is not 2")
    end = pos + header.size
    if header.batch_length < MIN_BATCH_LENGTH or end > len(buf):
        raise CorruptMessageError("record batch is truncated")
    view = memoryview(buf)[pos:end]
    if verify_crc and compute_crc(view) != header.crc:
        raise CorruptMessageError(f"record batch at offset {header.base_offset} fails its CRC")
    data: bytes | memoryview = view[HEADER_SIZE:]
    if header.compression != compression.NONE:
        data = compression.decompress(header.compression, data)
    return header, bytes(data)


def _decode_records(
    data: bytes,
    count: int,
    base_offset: int,
    base_ts: int,
    log_append_ts: int | None,
    make=Record,
    prefix: tuple | None = None,
    columns: RecordColumns | None = None,
) -> list:
    """The records of a batch's (decompressed) record section (or, with ``columns``, appended
    to those lists).  One-byte varints, by far the most common, are read inline; longer ones
    go through ``decode_varint``."""
    records: list = []
    append = records.append
    if columns is not None:
        add_offset, add_ts = columns.offsets.append, columns.timestamps.append
        add_key, add_value = columns.keys.append, columns.values.append
    end = len(data)
    rpos = 0
    new = tuple.__new__
    topic, partition = prefix if prefix is not None else (None, None)
    try:
        for _ in range(count):
            b = data[rpos]
            if b < 0x80:
                length, rpos = (b >> 1) ^ -(b & 1), rpos + 1
            elif data[rpos + 1] < 0x80:
                zz = (b & 0x7F) | (data[rpos + 1] << 7)
                length, rpos = (zz >> 1) ^ -(zz & 1), rpos + 2
            else:
                length, rpos = decode_varint(data, rpos)
            record_end = rpos + length
            if length < 1 or record_end > end:
                raise CorruptMessageError("record length runs past the end of the batch")
            rpos += 1  # attributes
            b = data[rpos]
            if b < 0x80:
                ts_delta, rpos = (b >> 1) ^ -(b & 1), rpos + 1
            elif data[rpos + 1] < 0x80:
                zz = (b & 0x7F) | (data[rpos + 1] << 7)
                ts_delta, rpos = (zz >> 1) ^ -(zz & 1), rpos + 2
            else:
                ts_delta, rpos = decode_varint(data, rpos)
            b = data[rpos]
            if b < 0x80:
                offset_delta, rpos = (b >> 1) ^ -(b & 1), rpos + 1
            elif data[rpos + 1] < 0x80:
                zz = (b & 0x7F) | (data[rpos + 1] << 7)
                offset_delta, rpos = (zz >> 1) ^ -(zz & 1), rpos + 2
            else:
                offset_delta, rpos = decode_varint(data, rpos)
            b = data[rpos]
            if b < 0x80:
                n, rpos = (b >> 1) ^ -(b & 1), rpos + 1
            else:
                n, rpos = decode_varint(data, rpos)
            if n < 0:
                key = None
            else:
                key = data[rpos : rpos + n]
                rpos += n
            b = data[rpos]
            if b < 0x80:
                n, rpos = (b >> 1) ^ -(b & 1), rpos + 1
            elif data[rpos + 1] < 0x80:
                zz = (b & 0x7F) | (data[rpos + 1] << 7)
                n, rpos = (zz >> 1) ^ -(zz & 1), rpos + 2
            else:
                n, rpos = decode_varint(data, rpos)
            if n < 0:
                value = None
            else:
                value = data[rpos : rpos + n]
                rpos += n
            b = data[rpos]
            headers: tuple[tuple[str, bytes | None], ...]
            if b == 0:
                headers = ()
                rpos += 1
            else:
                count_h, rpos = decode_varint(data, rpos)
                if count_h < 0:
                    raise CorruptMessageError("negative record header count")
                items = []
                for _ in range(count_h):
                    raw_key, rpos = _decode_bytes(data, rpos)
                    if raw_key is None:
                        raise CorruptMessageError("record header key is null")
                    header_value, rpos = _decode_bytes(data, rpos)
                    items.append((raw_key.decode("utf-8", "replace"), header_value))
                headers = tuple(items)
            if rpos != record_end:
                raise CorruptMessageError("record length does not match its fields")
            ts = base_ts + ts_delta if log_append_ts is None else log_append_ts
            if columns is not None:
                add_offset(base_offset + offset_delta)
                add_ts(ts)
                add_key(key)
                add_value(value)
            elif prefix is None:
                append(make(base_offset + offset_delta, ts, key, value, headers))
            else:  # a tuple subclass whose first fields are (topic, partition)
                append(
                    new(
                        make,
                        (topic, partition, base_offset + offset_delta, ts, key, value, headers),
                    )
                )
    except IndexError:
        raise CorruptMessageError("record data ends inside a record") from None
    return records


def decode_batches(buf, *, verify_crc: bool = True) -> Iterator[RecordBatch]:
    """Decode every whole batch in ``buf`` (a fetch response's records or a segment's bytes)."""
    for pos, _header in split_batches(buf):
        yield decode_batch(buf, pos, verify_crc=verify_crc)


def iter_records(buf, *, verify_crc: bool = True) -> Iterator[Record]:
    """Every record of every whole batch in ``buf``, in order."""
    for batch in decode_batches(buf, verify_crc=verify_crc):
        yield from batch.records
