"""The record check a broker runs before storing a batch (broker/protocol/validate.py): every
batch our encoder and real clients build passes; a body consumers cannot decode is refused,
CRC or not, and the log stays unchanged."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from poison_batches import KINDS, poison, rebuild, records_section, section_of

from broker.log import LogConfig
from broker.log.partition import PartitionLog
from broker.protocol import compression
from broker.protocol.errors import (
    CorruptMessageError,
    InvalidRecordError,
    KafkaError,
    MessageTooLargeError,
)
from broker.protocol.records import (
    RecordColumns,
    build_batch,
    check_batch,
    decode_batch,
    decode_batch_columns,
    parse_header,
)
from broker.protocol.validate import check_records
from broker.protocol.varint import encode_varint

CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
COMPRESSED = CODECS[1:]

optional_bytes = st.one_of(st.none(), st.binary(max_size=300))
header_items = st.lists(st.tuples(st.text(max_size=8), optional_bytes), max_size=3)
record = st.tuples(
    optional_bytes, optional_bytes, header_items, st.integers(min_value=0, max_value=2**41)
)
# Both paths: up to 24 records are walked in Python, more with numpy.
records = st.lists(record, min_size=1, max_size=60)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(records, st.sampled_from(CODECS), st.booleans())
def test_every_batch_our_encoder_builds_passes(items, codec, xerial):
    batch = build_batch(items, compression_type=codec, xerial_snappy=xerial)
    check_batch(batch)
    check_records(batch)


@FAST
@given(
    st.lists(st.tuples(optional_bytes, optional_bytes, header_items), min_size=1, max_size=40),
    st.sampled_from(["gzip", "snappy", "lz4", "zstd", None]),
    st.sampled_from(["kafka", "aiokafka"]),
)
def test_every_batch_kafka_python_and_aiokafka_build_passes(items, codec_name, library):
    if library == "kafka":
        from kafka.record.default_records import DefaultRecordBatchBuilder
    else:
        from aiokafka.record.default_records import DefaultRecordBatchBuilder

    codec = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec_name]
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 10**7)
    for i, (key, value, headers) in enumerate(items):
        builder.append(
            i,
            1_700_000_000_000 + i,
            key,
            value,
            [(k, v if v is not None else b"") for k, v in headers],
        )
    batch = bytes(builder.build())
    check_batch(batch)
    check_records(batch)


def test_control_and_empty_batches_are_checked_like_any_other():
    control = build_batch([(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")], control=True)
    check_records(control)  # framing is fine; check_batch refuses it from producers
    empty = rebuild(build_batch([(None, b"x")]), b"", count=0)
    check_records(empty)  # count 0 with an empty body, as compaction leaves batches
    with pytest.raises(InvalidRecordError):
        check_records(rebuild(empty, b"\x00\x00", count=0))


@pytest.mark.parametrize("codec", COMPRESSED)
@pytest.mark.parametrize("cut", ["truncated", "garbage"])
def test_a_body_that_does_not_decompress_is_corrupt(codec, cut):
    good = build_batch([(None, b"value %d" % i) for i in range(30)], compression_type=codec)
    body = good[61:]
    damaged = body[: len(body) // 2] if cut == "truncated" else b"\x13\x37" * 40
    batch = rebuild(good, raw_body=damaged)
    check_batch(batch)  # the CRC is valid
    with pytest.raises((CorruptMessageError, InvalidRecordError)):
        check_records(batch)


@pytest.mark.parametrize(
    "kind,codec",
    [(k, c) for k in KINDS for c in CODECS if k != "bad-compression" or c != compression.NONE],
)
@pytest.mark.parametrize("count", [5, 40])  # the Python walk and the numpy path
def test_poison_batches_are_refused(kind, codec, count):
    batch = poison(kind, codec, count)
    check_batch(batch)
    with pytest.raises(KafkaError) as caught:
        check_records(batch)
    expected = CorruptMessageError if kind == "bad-compression" else InvalidRecordError
    assert isinstance(caught.value, (expected, InvalidRecordError)), caught.value


@pytest.mark.parametrize("count", [5, 40])
def test_the_record_at_fault_is_named(count):
    deltas = list(range(count))
    deltas[3] = 7
    with pytest.raises(InvalidRecordError) as caught:
        check_records(rebuild(build_batch([(None, b"v")] * count), records_section(deltas)))
    assert caught.value.record_index == 3
    assert "offsetDelta 7" in str(caught.value)


@pytest.mark.parametrize("count", [5, 40])
@pytest.mark.parametrize("field", ["timestamp", "offset", "key", "header-count", "header-key"])
def test_overlong_and_negative_varints_are_refused(count, field):
    eleven = b"\x80" * 10 + b"\x01"  # continues past 10 bytes
    six = b"\x80" * 5 + b"\x01"  # an int read with more than 5 bytes
    if field == "timestamp":
        body = b"\x00" + eleven + b"\x00\x01\x01\x00"
    elif field == "offset":
        body = b"\x00\x00" + six + b"\x01\x01\x00"
    elif field == "key":
        body = b"\x00\x00\x00" + six + b"\x01\x00"
    elif field == "header-count":
        body = b"\x00\x00\x00\x01\x01" + six
    else:
        body = b"\x00\x00\x00\x01\x01" + encode_varint(1) + encode_varint(-2) + b"\x01"
    bad = encode_varint(len(body)) + body
    section = bytearray(records_section(range(count)))
    good_first = records_section([0])
    section = bad + bytes(section[len(good_first) :])
    with pytest.raises(InvalidRecordError) as caught:
        check_records(rebuild(build_batch([(None, b"v")] * count), section))
    assert caught.value.record_index == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=40), st.data())
def test_whatever_passes_the_check_decodes(items, data):
    """Random damage to the record section: the check refuses it, or consumers decode it into
    exactly the records the header promises (both decoders)."""
    good = build_batch(items)
    section = bytearray(section_of(good))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(section) - 1, 0)))
        if action == "flip" and section:
            section[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del section[at : at + data.draw(st.integers(1, 3))]
        else:
            section[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    count = len(items) + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    assume(count >= 1)
    batch = rebuild(good, bytes(section), count=count)
    try:
        check_records(batch)
    except InvalidRecordError:
        return
    header = parse_header(batch)
    decoded = decode_batch(batch).records
    assert [r.offset for r in decoded] == list(range(header.record_count))
    columns = RecordColumns()
    decode_batch_columns(batch, 0, columns)
    assert columns.offsets == list(range(header.record_count))


@pytest.mark.parametrize("kind", KINDS)
def test_partition_log_stores_nothing_of_a_poison_batch(tmp_path, kind):
    plog = PartitionLog.open(tmp_path / "t-0", LogConfig())
    try:
        plog.append(build_batch([(None, b"before")]))
        size = plog.size
        with pytest.raises(KafkaError):
            plog.append(poison(kind, compression.GZIP))
        assert (plog.log_end_offset, plog.size) == (1, size)
        plog.append(build_batch([(None, b"after")]))
        assert [r.value for r in decode_batch(plog.read(1, 1 << 20)).records] == [b"after"]
    finally:
        plog.close()


@pytest.mark.parametrize(
    "codec,xerial", [(c, False) for c in COMPRESSED] + [(compression.SNAPPY, True)]
)
def test_a_small_body_that_decompresses_to_too_much_is_refused(codec, xerial, monkeypatch):
    """A few compressed bytes standing for far more than MAX_RECORD_SECTION: refused before
    the output is built (MESSAGE_TOO_LARGE), not decompressed whole."""
    from broker.protocol import validate

    monkeypatch.setattr(validate, "MAX_RECORD_SECTION", 1 << 20)
    records = [(None, bytes(4096))] * 600  # about 2.4 MB of zeros: a few KB compressed
    batch = build_batch(records, compression_type=codec, xerial_snappy=xerial)
    assert len(batch) < 200_000
    with pytest.raises(MessageTooLargeError):
        check_records(batch)
    monkeypatch.setattr(validate, "MAX_RECORD_SECTION", 4 << 20)
    check_records(batch)  # the same batch under a higher limit is fine


def _varint_bytes(zz: int, width: int) -> bytes:
    """A zig-zag value ``zz`` as a varint of at least ``width`` bytes (padded, as a careless
    encoder might)."""
    out = bytearray()
    while zz >= 0x80 or len(out) + 1 < width:
        out.append((zz & 0x7F) | 0x80)
        zz >>= 7
    out.append(zz)
    return bytes(out)


zigzag_longs = st.one_of(
    st.integers(0, 2**14), st.integers(0, 2**64 - 1), st.integers(2**64, 2**70 - 1)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(-(2**63), 2**63 - 1), st.data())
def test_whatever_passes_the_check_both_decoders_read_alike(count, base_timestamp, data):
    """Any timestamp delta a long varint can carry (up to ten bytes, padded or not) against any
    base timestamp: the check refuses it, or both decoders give the same records, with
    timestamps a 64-bit long holds."""
    section = bytearray()
    for i in range(count):
        ts = _varint_bytes(data.draw(zigzag_longs), data.draw(st.integers(1, 11)))
        value = data.draw(st.binary(max_size=4))
        body = (
            b"\x00"
            + ts
            + encode_varint(i)
            + encode_varint(-1)
            + encode_varint(len(value))
            + value
            + b"\x00"
        )
        section += encode_varint(len(body)) + body
    good = build_batch([(None, b"v")] * count, timestamp=base_timestamp)
    batch = rebuild(good, bytes(section))
    assume(parse_header(batch).base_timestamp == base_timestamp)
    try:
        check_records(batch)
    except InvalidRecordError:
        return
    decoded = decode_batch(batch).records
    columns = RecordColumns()
    decode_batch_columns(batch, 0, columns)
    assert [r.timestamp for r in decoded] == columns.timestamps
    assert all(-(2**63) <= t < 2**63 for t in columns.timestamps)
    assert [r.value for r in decoded] == columns.values
    assert [r.offset for r in decoded] == columns.offsets


@pytest.mark.parametrize("count", [1, 40])
@pytest.mark.parametrize("delta", [2**62, -(2**63) + 2**40, 2**63 - 1])
def test_ten_byte_timestamp_deltas_decode_alike(count, delta):
    """Deltas whose zig-zag form sets the 64th bit: both decoders read the same long."""
    section = b""
    for i in range(count):
        body = b"\x00" + encode_varint(delta) + encode_varint(i) + encode_varint(-1) + b"\x02v\x00"
        section += encode_varint(len(body)) + body
    base = 2**40 if delta < 0 else 0
    batch = rebuild(build_batch([(None, b"v")] * count, timestamp=base), section)
    check_records(batch)
    columns = RecordColumns()
    decode_batch_columns(batch, 0, columns)
    assert (
        [r.timestamp for r in decode_batch(batch).records]
        == columns.timestamps
        == [base + delta] * count
    )
