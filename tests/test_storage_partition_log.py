"""PartitionLog: appends, reads, timestamps, roll, flush policy and retention."""

from __future__ import annotations

import os
import struct

import pytest
from storage_helpers import batch_for, read_all, values_by_seq
from twisted.internet.task import Clock

from broker.log import LogConfig, PartitionLog
from broker.protocol import compression
from broker.protocol.errors import (
    CorruptMessageError,
    InvalidRecordError,
    InvalidTopicError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from broker.protocol.records import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    build_batch,
    compute_crc,
    decode_batch,
    iter_records,
    split_batches,
)

T0 = 1_700_000_000_000


def open_log(tmp_path, clock=None, **config):
    return PartitionLog.open(tmp_path / "events-0", LogConfig(**config), clock=clock)


def test_append_assigns_consecutive_offsets_and_returns_them(tmp_path):
    plog = open_log(tmp_path)
    first = plog.append(build_batch([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]))
    second = plog.append(build_batch([(None, b"4")]))
    assert (first.base_offset, first.last_offset, first.record_count) == (0, 2, 3)
    assert (second.base_offset, second.last_offset) == (3, 3)
    assert plog.log_end_offset == 4
    assert [r.offset for r in iter_records(plog.read(0, 1 << 20))] == [0, 1, 2, 3]


def test_stored_batches_keep_the_producer_bytes_except_offset_and_epoch(tmp_path):
    plog = open_log(tmp_path)
    plog.append(build_batch([(b"x", b"y")]))
    sent = build_batch(
        [(b"k", b"v" * 50)],
        compression_type=compression.GZIP,
        producer_id=9,
        producer_epoch=1,
        base_sequence=0,
    )
    plog.append(sent)
    stored = plog.read(1, 1 << 20)
    assert stored[16:] == sent[16:]  # from the magic byte on: untouched, CRC still valid
    assert struct.unpack(">qii", stored[:16]) == (1, len(sent) - 12, 0)


def test_multi_batch_append_validates_all_before_writing_any(tmp_path):
    plog = open_log(tmp_path)
    good = build_batch([(b"a", b"1")])
    bad = bytearray(build_batch([(b"b", b"2")]))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptMessageError):
        plog.append(good + bytes(bad))
    assert plog.log_end_offset == 0 and plog.size == 0
    result = plog.append(good + build_batch([(b"b", b"2"), (b"c", b"3")]))
    assert (result.base_offset, result.last_offset) == (0, 2)
    assert [b.header.base_offset for b in read_all(plog)] == [0, 1]


def test_bad_batches_get_typed_errors_and_append_nothing(tmp_path):
    plog = open_log(tmp_path, max_message_bytes=500, segment_bytes=4096)
    plog.append(build_batch([(b"k", b"ok")]))
    end, size = plog.log_end_offset, plog.size
    corrupt = bytearray(build_batch([(b"k", b"v")]))
    corrupt[40] ^= 1
    truncated = build_batch([(b"k", b"v" * 20)])[:-3]
    too_large = build_batch([(b"k", b"v" * 600)])
    count_mismatch = bytearray(build_batch([(b"k", b"v")]))
    struct.pack_into(">i", count_mismatch, 57, 3)
    struct.pack_into(">I", count_mismatch, 17, compute_crc(count_mismatch))
    old_format = bytearray(build_batch([(b"k", b"v")]))
    old_format[16] = 1
    cases = [
        (bytes(corrupt), CorruptMessageError),
        (truncated, CorruptMessageError),
        (b"", CorruptMessageError),
        (b"\x00" * 70, UnsupportedForMessageFormatError),
        (too_large, MessageTooLargeError),
        (bytes(count_mismatch), InvalidRecordError),
        (bytes(old_format), UnsupportedForMessageFormatError),
        (build_batch([(b"k", b"v")], control=True), InvalidRecordError),
    ]
    for data, error in cases:
        with pytest.raises(error):
            plog.append(data)
        assert (plog.log_end_offset, plog.size) == (end, size)
    assert plog.append(build_batch([(b"k", b"after")])).base_offset == end


def test_batch_larger_than_a_segment_is_rejected(tmp_path):
    plog = open_log(tmp_path, segment_bytes=1024, max_message_bytes=1 << 20)
    with pytest.raises(RecordListTooLargeError):
        plog.append(build_batch([(b"k", b"v" * 2000)]))
    assert plog.size == 0


def test_read_starts_at_the_batch_holding_the_offset(tmp_path):
    plog = open_log(tmp_path)
    plog.append(build_batch([(b"a", b"%d" % i) for i in range(10)]))  # offsets 0..9
    plog.append(build_batch([(b"b", b"%d" % i) for i in range(10)]))  # offsets 10..19
    data = plog.read(15, 1 << 20)
    assert [h.base_offset for _, h in split_batches(data)] == [10]
    assert [r.offset for r in iter_records(data)] == list(range(10, 20))


def test_read_returns_whole_batches_and_at_least_one(tmp_path):
    plog = open_log(tmp_path, index_interval_bytes=256)
    sizes = []
    for seq in range(200):
        data, _ = batch_for(seq)
        sizes.append(len(data))
        plog.append(data)
    one = plog.read(0, 1)  # smaller than any batch: still one whole batch
    assert len(one) == sizes[0] and len(list(split_batches(one))) == 1
    for offset in range(0, plog.log_end_offset, 13):
        for max_bytes in (100, 1000, 5000, 20000):
            data = plog.read(offset, max_bytes)
            walked = list(split_batches(data))
            assert sum(h.size for _, h in walked) == len(data), "a partial batch was returned"
            assert walked[0][1].base_offset <= offset <= walked[0][1].last_offset
            assert len(data) <= max_bytes or len(walked) == 1
            if len(walked) >= 1 and walked[-1][1].next_offset < plog.log_end_offset:
                following = plog.read(walked[-1][1].next_offset, 1)
                assert len(data) + len(following) > max_bytes, "stopped early"


def test_reads_across_segments_return_every_batch_once(tmp_path):
    plog = open_log(tmp_path, segment_bytes=3000, index_interval_bytes=300)
    expected = {}
    for seq in range(300):
        data, values = batch_for(seq)
        plog.append(data)
        expected[seq] = values
    assert len(plog.segments) > 10
    assert values_by_seq(plog) == expected


def test_read_at_log_end_is_empty_and_beyond_is_out_of_range(tmp_path):
    plog = open_log(tmp_path)
    assert plog.read(0, 100) == b""
    plog.append(build_batch([(b"k", b"v")]))
    assert plog.read(1, 100) == b""
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 100)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(-1, 100)


def test_offsets_for_timestamps(tmp_path):
    plog = open_log(tmp_path, index_interval_bytes=100, segment_bytes=2000)
    for i in range(100):
        # Ten records per batch, timestamps T0 + 10*i .. T0 + 10*i + 9, out of order inside.
        recs = [(b"k", b"%d" % j, [], T0 + 10 * i + (9 - j if j % 2 else j)) for j in range(10)]
        plog.append(build_batch(recs, compression_type=compression.LZ4 if i % 2 else 0))
    assert len(plog.segments) > 3
    assert plog.offset_for_timestamp(EARLIEST_TIMESTAMP) == (0, -1)
    assert plog.offset_for_timestamp(LATEST_TIMESTAMP) == (1000, -1)
    assert plog.offset_for_timestamp(0) == (0, T0)
    for target in (T0 + 1, T0 + 455, T0 + 998, T0 + 500, T0 + 731):
        offset, ts = plog.offset_for_timestamp(target)
        records = list(iter_records(plog.read(offset, 1 << 20)))
        record = next(r for r in records if r.offset == offset)
        assert record.timestamp == ts and ts >= target
        earlier = [r for b in read_all(plog) for r in b.records if r.offset < offset]
        assert all(r.timestamp < target for r in earlier), "an earlier record already qualified"
    assert plog.offset_for_timestamp(T0 + 999) is None


def test_log_append_time_topics_stamp_batches(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000)
    plog = open_log(tmp_path, clock=clock, timestamp_type="LogAppendTime")
    result = plog.append(build_batch([(b"k", b"v", [], 5), (b"k", b"w", [], 6)]))
    assert result.log_append_time_ms == T0
    batch = decode_batch(plog.read(0, 1000))
    assert batch.header.timestamp_type == 1
    assert [r.timestamp for r in batch.records] == [T0, T0]


def test_roll_by_segment_size(tmp_path):
    plog = open_log(tmp_path, segment_bytes=1000)
    for _seq in range(50):
        plog.append(build_batch([(b"k", b"v" * 100)]))
    assert all(s.size <= 1000 for s in plog.segments)
    assert len(plog.segments) == pytest.approx(50 * 171 / 1000, abs=3)
    names = sorted(p.name for p in plog.directory.glob("*.log"))
    assert names == [f"{s.base_offset:020d}.log" for s in plog.segments]


def test_roll_by_time_uses_record_timestamps_or_segment_age(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000)
    plog = open_log(tmp_path, clock=clock, roll_ms=60_000)
    plog.append(build_batch([(b"k", b"v")], timestamp=T0))
    plog.append(build_batch([(b"k", b"v")], timestamp=T0 + 60_000))
    assert len(plog.segments) == 1
    plog.append(build_batch([(b"k", b"v")], timestamp=T0 + 60_001))  # over roll.ms after the first
    assert len(plog.segments) == 2
    # Without timestamps the segment's age on the broker's clock decides.
    other = PartitionLog.open(tmp_path / "untimed-0", LogConfig(roll_ms=60_000), clock=clock)
    other.append(build_batch([(b"k", b"v")], timestamp=-1))
    clock.advance(59)
    other.append(build_batch([(b"k", b"v")], timestamp=-1))
    assert len(other.segments) == 1
    clock.advance(2)
    other.append(build_batch([(b"k", b"v")], timestamp=-1))
    assert len(other.segments) == 2


def test_flush_policy_by_message_count_advances_the_recovery_point(tmp_path):
    plog = open_log(tmp_path, flush_interval_messages=10)
    for _i in range(9):
        plog.append(build_batch([(b"k", b"v")]))
    assert plog.recovery_point == 0 and plog.unflushed
    plog.append(build_batch([(b"k", b"v")]))
    assert plog.recovery_point == 10 and not plog.unflushed
    plog.append(build_batch([(b"k", b"v")] * 25))
    assert plog.recovery_point == 35


def test_flush_writes_sparse_indexes(tmp_path):
    plog = open_log(tmp_path, index_interval_bytes=1024)
    for _seq in range(400):
        plog.append(build_batch([(b"k", b"v" * 100)]))  # 171 bytes each
    plog.flush()
    segment = plog.active_segment
    entries = os.path.getsize(segment.index.path) // 8
    batch_size = plog.size // 400
    assert plog.size / (1024 + batch_size) - 1 <= entries <= plog.size / 1024
    assert os.path.getsize(segment.time_index.path) % 12 == 0


def test_retention_by_time_deletes_whole_closed_segments(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000)
    plog = open_log(
        tmp_path,
        clock=clock,
        segment_bytes=1000,
        retention_ms=3_600_000,
        file_delete_delay_ms=60_000,
    )
    for i in range(30):  # one minute of data per batch
        plog.append(build_batch([(b"k", b"v" * 100)], timestamp=T0 + i * 60_000))
    clock.advance(30 * 60)
    assert plog.enforce_retention() == 0
    clock.advance(50 * 60)  # now T0 + 80 minutes: records before T0 + 20 minutes expire
    now = T0 + 80 * 60_000
    segments_before = len(plog.segments)
    expired = [s.base_offset for s in plog.segments if now - s.max_timestamp > 3_600_000]
    deleted = plog.enforce_retention()
    assert 0 < deleted == len(expired) < segments_before
    assert all(now - s.max_timestamp <= 3_600_000 for s in plog.segments)
    assert plog.log_start_offset == plog.segments[0].base_offset > 0
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(0, 100)
    assert plog.read(plog.log_start_offset, 100)
    # Files are renamed at once and removed after file.delete.delay.ms.
    assert list(plog.directory.glob("*.deleted"))
    clock.advance(61)
    plog.delete_pending()
    assert not list(plog.directory.glob("*.deleted"))


def test_expired_active_segment_is_rolled_then_deleted(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000)
    plog = open_log(tmp_path, clock=clock, retention_ms=1000, file_delete_delay_ms=0)
    plog.append(build_batch([(b"k", b"v")] * 5, timestamp=T0))
    clock.advance(2)
    assert plog.enforce_retention() == 1
    assert len(plog.segments) == 1 and plog.active_segment.size == 0
    assert plog.log_start_offset == plog.log_end_offset == 5
    assert plog.read(5, 100) == b""
    assert plog.append(build_batch([(b"k", b"v")])).base_offset == 5


def test_retention_by_size_deletes_oldest_segments_while_over_the_limit(tmp_path):
    plog = open_log(
        tmp_path, segment_bytes=1000, retention_bytes=3000, retention_ms=-1, file_delete_delay_ms=0
    )
    for _i in range(60):
        plog.append(build_batch([(b"k", b"v" * 100)]))
    total = plog.size
    deleted = plog.enforce_retention()
    assert deleted > 0
    # As in Kafka: a segment goes only if the log stays at or above retention.bytes without it.
    assert 3000 <= plog.size < 3000 + plog.segments[0].size
    assert total - plog.size >= deleted * 800
    assert read_all(plog)[0].header.base_offset == plog.log_start_offset


def test_invalid_topic_directory_names_are_refused(tmp_path):
    with pytest.raises(InvalidTopicError):
        PartitionLog.open(tmp_path / "bad topic!-0", LogConfig())
    with pytest.raises(ValueError):
        PartitionLog.open(tmp_path / "no-partition-number", LogConfig())


def test_a_failed_multi_batch_append_leaves_nothing(tmp_path, monkeypatch):
    import broker.log.segment as segment_module
    from broker.protocol.errors import KafkaStorageError

    plog = open_log(tmp_path)
    plog.append(build_batch([(b"k", b"before")]))
    end, size = plog.log_end_offset, plog.size
    real_writev = os.writev

    def half_writev(fd, parts):  # the disk fills up halfway through the write
        data = b"".join(bytes(p) for p in parts)
        return real_writev(fd, [data[: len(data) // 2]])

    monkeypatch.setattr(segment_module.os, "writev", half_writev)
    three = b"".join(build_batch([(b"k", b"v%d" % i)]) for i in range(3))
    with pytest.raises(KafkaStorageError):
        plog.append(three)
    monkeypatch.undo()
    assert (plog.log_end_offset, plog.size) == (end, size)
    assert os.path.getsize(plog.active_segment.log_path) == size
    assert plog.append(three).base_offset == end
    assert [r.value for r in iter_records(plog.read(0, 1 << 20))] == [
        b"before",
        b"v0",
        b"v1",
        b"v2",
    ]


def test_offsets_for_timestamps_respect_a_log_start_inside_a_segment(tmp_path):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, LogConfig())
    plog.append(build_batch([(b"k", b"a"), (b"k", b"b")], timestamp=5000))
    plog.append(build_batch([(b"k", b"c"), (b"k", b"d")], timestamp=6000))
    plog.close()
    plog = PartitionLog.open(directory, LogConfig(), log_start_offset=2)
    assert plog.offset_for_timestamp(4000) == (2, 6000)
