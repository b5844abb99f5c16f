"""Record batches v2: golden bytes, round trips, every codec, and real client encodings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol import compression, records
from broker.protocol.errors import (
    CorruptMessageError,
    InvalidRecordError,
    KafkaError,
    MessageTooLargeError,
    UnsupportedCompressionTypeError,
    UnsupportedForMessageFormatError,
)
from broker.protocol.records import (
    Record,
    build_batch,
    check_batch,
    compute_crc,
    decode_batch,
    iter_records,
    split_batches,
    with_log_append_time,
)
from broker.protocol.varint import decode_varint, encode_varint

CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]

# One record, key b"k", value b"v", CreateTime 1700000000000, no producer id, no compression.
GOLDEN_ONE_RECORD = bytes.fromhex(
    "0000000000000000"  # baseOffset 0
    "0000003a"  # batchLength 58: the 70-byte batch less the 12 bytes above and this
    "ffffffff"  # partitionLeaderEpoch -1
    "02"  # magic 2
    "e99b8dd8"  # CRC-32C of everything from attributes on
    "0000"  # attributes: no compression, CreateTime, not transactional, not control
    "00000000"  # lastOffsetDelta 0
    "0000018bcfe56800"  # baseTimestamp 1700000000000
    "0000018bcfe56800"  # maxTimestamp 1700000000000
    "ffffffffffffffff"  # producerId -1
    "ffff"  # producerEpoch -1
    "ffffffff"  # baseSequence -1
    "00000001"  # record count 1
    "10"  # record length 8 (zig-zag varint)
    "00"  # record attributes
    "00"  # timestampDelta 0
    "00"  # offsetDelta 0
    "02"  # key length 1
    "6b"  # key "k"
    "02"  # value length 1
    "76"  # value "v"
    "00"  # header count 0
)

# Two records: (null key, "hello", header h=1, ts +5) and (empty key, null value, ts +7).
GOLDEN_TWO_RECORDS = bytes.fromhex(
    "0000000000000000"  # baseOffset 0
    "00000048"  # batchLength 72
    "00000000"  # partitionLeaderEpoch 0
    "02"  # magic
    "fb5d2b51"  # CRC-32C
    "0000"  # attributes
    "00000001"  # lastOffsetDelta 1
    "0000018bcfe56805"  # baseTimestamp: the first record's, 1700000000005
    "0000018bcfe56807"  # maxTimestamp 1700000000007
    "ffffffffffffffff"
    "ffff"
    "ffffffff"  # no producer id, epoch, sequence
    "00000002"  # record count 2
    "1e"  # record length 15
    "00"
    "00"
    "00"  # attributes, timestampDelta 0, offsetDelta 0
    "01"  # key length -1: null
    "0a"
    "68656c6c6f"  # value length 5, "hello"
    "02"  # one header
    "02"
    "68"  # header key length 1, "h"
    "02"
    "31"  # header value length 1, "1"
    "0c"  # record length 6
    "00"
    "04"
    "02"  # attributes, timestampDelta 2, offsetDelta 1
    "00"  # key length 0: empty, not null
    "01"  # value length -1: null
    "00"  # no headers
)


def test_golden_single_record_batch():
    built = build_batch([(b"k", b"v")], timestamp=1700000000000)
    assert built == GOLDEN_ONE_RECORD
    header = check_batch(GOLDEN_ONE_RECORD)
    assert header.size == 70 and header.record_count == 1 and header.crc == 0xE99B8DD8
    batch = decode_batch(GOLDEN_ONE_RECORD)
    assert batch.records == [Record(0, 1700000000000, b"k", b"v", ())]


def test_golden_two_records_with_header_and_nulls():
    built = build_batch(
        [(None, b"hello", [("h", b"1")], 1700000000005), (b"", None, [], 1700000000007)],
        partition_leader_epoch=0,
    )
    assert built == GOLDEN_TWO_RECORDS
    records = decode_batch(GOLDEN_TWO_RECORDS).records
    assert records == [
        Record(0, 1700000000005, None, b"hello", (("h", b"1"),)),
        Record(1, 1700000000007, b"", None, ()),
    ]


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (63, "7e"),
        (-64, "7f"),
        (64, "8001"),
        (300, "d804"),
        (2**31 - 1, "feffffff0f"),
        (-(2**63), "ffffffffffffffffff01"),
    ],
)
def test_zigzag_varints(value, encoded):
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


def test_varint_longer_than_ten_bytes_is_corrupt():
    with pytest.raises(CorruptMessageError):
        decode_varint(b"\xff" * 11, 0)


record_strategy = st.tuples(
    st.one_of(st.none(), st.binary(max_size=64)),
    st.one_of(st.none(), st.binary(max_size=300)),
    st.lists(
        st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=16))), max_size=3
    ),
    st.integers(min_value=0, max_value=2**41),
)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(record_strategy, min_size=1, max_size=20),
    codec=st.sampled_from(CODECS),
    base_offset=st.integers(min_value=0, max_value=2**40),
)
def test_build_then_decode_round_trips(records, codec, base_offset):
    batch = build_batch(records, base_offset=base_offset, compression_type=codec)
    header = check_batch(batch)
    assert header.compression == codec
    assert header.record_count == len(records)
    decoded = decode_batch(batch).records
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(records)))
    assert [(r.key, r.value, list(r.headers), r.timestamp) for r in decoded] == [
        (k, v, [tuple(h) for h in hs], ts) for k, v, hs, ts in records
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_pass_as_a_batch_silently(data):
    """Random input either fails with a typed error or is a structurally valid batch."""
    try:
        check_batch(data)
    except KafkaError:
        pass
    try:
        list(iter_records(data))
    except KafkaError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupting_any_crc_covered_byte_is_detected(data):
    batch = bytearray(build_batch([(b"key", b"value" * 10)], timestamp=123))
    pos = data.draw(st.integers(min_value=21, max_value=len(batch) - 1))
    batch[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(CorruptMessageError):
        check_batch(bytes(batch))


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_round_trips_large_payloads(codec):
    payload = b"".join(b"line %06d of a log file\n" % i for i in range(20000))
    packed = compression.compress(codec, payload)
    if codec != compression.NONE:
        assert len(packed) < len(payload) // 3
    assert compression.decompress(codec, packed) == payload


def test_snappy_raw_and_xerial_forms_both_decode():
    payload = b"abcdefgh" * 20000  # several 32 KiB xerial blocks
    xerial = compression.compress(compression.SNAPPY, payload, xerial=True)
    raw = compression.compress(compression.SNAPPY, payload)
    assert xerial.startswith(compression.XERIAL_MAGIC)
    assert not raw.startswith(compression.XERIAL_MAGIC)
    assert compression.decompress(compression.SNAPPY, xerial) == payload
    assert compression.decompress(compression.SNAPPY, raw) == payload


def test_gzip_with_several_members_decodes():
    one = compression.compress(compression.GZIP, b"first ")
    two = compression.compress(compression.GZIP, b"second")
    assert compression.decompress(compression.GZIP, one + two) == b"first second"


@pytest.mark.parametrize("codec", CODECS[1:])
def test_damaged_compressed_data_is_a_corrupt_message(codec):
    packed = bytearray(compression.compress(codec, b"some log line " * 100))
    del packed[len(packed) // 2 :]
    with pytest.raises(CorruptMessageError):
        compression.decompress(codec, bytes(packed))


def _restamp(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, compute_crc(batch))
    return bytes(batch)


def test_check_batch_errors_are_typed():
    good = build_batch([(b"k", b"v" * 100)])
    with pytest.raises(MessageTooLargeError):
        check_batch(good, max_size=len(good) - 1)
    assert check_batch(good, max_size=len(good)).size == len(good)
    with pytest.raises(CorruptMessageError):
        check_batch(good[:-1])  # truncated
    with pytest.raises(CorruptMessageError):
        check_batch(good[:30])  # not even a header
    old_format = bytearray(good)
    old_format[16] = 1  # a v1 message set
    with pytest.raises(UnsupportedForMessageFormatError):
        check_batch(bytes(old_format))
    bad_codec = bytearray(good)
    bad_codec[22] = 5
    with pytest.raises(UnsupportedCompressionTypeError):
        check_batch(_restamp(bad_codec))
    bad_count = bytearray(good)
    struct.pack_into(">i", bad_count, 57, 2)
    with pytest.raises(InvalidRecordError):
        check_batch(_restamp(bad_count))
    control = build_batch([(b"k", b"v")], control=True)
    with pytest.raises(InvalidRecordError):
        check_batch(control)
    bad_length = bytearray(good)
    struct.pack_into(">i", bad_length, 8, 10)
    with pytest.raises(CorruptMessageError):
        check_batch(bytes(bad_length))


def test_log_append_time_restamps_and_keeps_the_crc_valid():
    batch = build_batch([(b"a", b"1", [], 5), (b"b", b"2", [], 9)])
    stamped = with_log_append_time(batch, 1234)
    header = check_batch(stamped)
    assert header.timestamp_type == 1 and header.max_timestamp == 1234
    assert [r.timestamp for r in decode_batch(stamped).records] == [1234, 1234]


def test_split_batches_ignores_a_trailing_partial_batch():
    a = build_batch([(b"a", b"1")], base_offset=0)
    b = build_batch([(b"b", b"2"), (b"c", b"3")], base_offset=1)
    walked = list(split_batches(a + b + b[:40]))
    assert [h.base_offset for _, h in walked] == [0, 1]
    assert [r.value for r in iter_records(a + b + b[:40])] == [b"1", b"2", b"3"]


# --- batches written by real Kafka client libraries ------------------------------------------

_KAFKA_PYTHON_CODECS = {
    compression.NONE: 0,
    compression.GZIP: 1,
    compression.SNAPPY: 2,
    compression.LZ4: 3,
    compression.ZSTD: 4,
}


def _client_records():
    return [
        (b"user-%d" % i, b"GET /index.html 200 %d" % i, [("trace", b"%d" % i)], 1700000000000 + i)
        for i in range(50)
    ] + [(None, b"no key", [], 1700000000100), (b"no value", None, [], 1700000000101)]


@pytest.mark.parametrize("codec", CODECS)
def test_reads_batches_encoded_by_kafka_python(codec):
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=_KAFKA_PYTHON_CODECS[codec],
        is_transactional=False,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
        batch_size=1 << 20,
    )
    expected = _client_records()
    for i, (key, value, headers, ts) in enumerate(expected):
        builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
    data = bytes(builder.build())
    header = check_batch(data)  # what the broker does on produce
    assert header.compression == codec and header.producer_id == 7
    if codec == compression.SNAPPY:
        assert data[61:69] == compression.XERIAL_MAGIC  # kafka-python writes the Java form
    decoded = decode_batch(data).records
    assert [(r.key, r.value, list(r.headers), r.timestamp) for r in decoded] == [
        (k, v, h, ts) for k, v, h, ts in expected
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_reads_batches_encoded_by_aiokafka(codec):
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=_KAFKA_PYTHON_CODECS[codec],
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    expected = _client_records()
    for i, (key, value, headers, ts) in enumerate(expected):
        builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
    data = bytes(builder.build())
    assert check_batch(data).compression == codec
    decoded = decode_batch(data).records
    assert [(r.key, r.value, list(r.headers), r.timestamp) for r in decoded] == [
        (k, v, h, ts) for k, v, h, ts in expected
    ]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("xerial", [False, True])
def test_kafka_python_reads_our_batches(codec, xerial):
    from kafka.record.default_records import DefaultRecordBatch

    expected = _client_records()
    data = build_batch(expected, base_offset=1000, compression_type=codec, xerial_snappy=xerial)
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    got = [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in batch]
    assert got == [(1000 + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(expected)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.binary(max_size=40)),
            st.one_of(st.none(), st.binary(max_size=400)),
            st.integers(min_value=0, max_value=2**40),
        ),
        min_size=32,
        max_size=120,
    ),
    st.integers(min_value=0, max_value=2**50),
)
def test_columnar_decoding_matches_the_record_decoder(rows, base_offset):
    """The vectorised column decoder and the record-by-record one agree on every field."""
    from broker.protocol.records import RecordColumns, decode_batch, decode_batch_columns

    batch = build_batch([(k, v, (), ts) for k, v, ts in rows], base_offset=base_offset)
    columns = RecordColumns()
    decode_batch_columns(batch, 0, columns)
    records = decode_batch(batch).records
    assert columns.offsets == [r.offset for r in records]
    assert columns.timestamps == [r.timestamp for r in records]
    assert columns.keys == [r.key for r in records]
    assert columns.values == [r.value for r in records]


def test_columnar_decoding_of_a_corrupt_section_is_a_corrupt_message_error():
    """A record whose length disagrees with its fields (under a valid CRC): the vectorised
    decoder declines, and the record decoder raises its typed error."""
    from broker.protocol.columns import decode_columns
    from broker.protocol.records import (
        HEADER_SIZE,
        RecordColumns,
        compute_crc,
        decode_batch_columns,
        records_section,
    )

    batch = bytearray(build_batch([(None, b"x" * 10)] * 40))
    batch[HEADER_SIZE] += 2  # the first record claims one byte more than it has
    struct.pack_into(">I", batch, 17, compute_crc(batch))
    _header, data = records_section(bytes(batch), 0, True)
    out = RecordColumns()
    assert decode_columns(data, 40, 0, 0, None, out) is False and len(out) == 0
    with pytest.raises(CorruptMessageError):
        decode_batch_columns(bytes(batch), 0, RecordColumns())


def test_header_field_positions_name_the_fields_of_batch_header():
    raw = records.HEADER.unpack(build_batch([(b"k", b"v")], base_offset=7)[: records.HEADER_SIZE])
    header = records.BatchHeader._make(raw)
    for name in records.BatchHeader._fields:
        position = records.MAGIC_BYTE if name == "magic" else getattr(records, name.upper())
        assert raw[position] == getattr(header, name), name
    assert header.magic == records.MAGIC and header.base_offset == 7
