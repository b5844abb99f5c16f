"""Crash recovery: torn and corrupt tails are cut, everything before them survives."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import batch_for, read_all, values_by_seq

from broker.log import LogConfig, LogLoader, PartitionLog, SystemClock
from broker.protocol.records import build_batch

CONFIG = LogConfig(segment_bytes=20_000, index_interval_bytes=512)


def build_log(directory, batches: int, flush_at: int | None = None):
    """A log of ``batches`` deterministic batches, flushed after ``flush_at`` of them, then
    closed as a crash would leave it.  Returns (expected values by seq, byte spans by seq)."""
    plog = PartitionLog.open(directory, CONFIG)
    expected, spans = {}, {}
    for seq in range(batches):
        data, values = batch_for(seq)
        segment_before = len(plog.segments)
        plog.append(data)
        segment = plog.active_segment
        if len(plog.segments) != segment_before or seq == 0:
            pass
        spans[seq] = (segment.base_offset, segment.size - len(data), segment.size)
        expected[seq] = values
        if flush_at is not None and seq + 1 == flush_at:
            plog.flush()
    recovery_point = plog.recovery_point
    plog.close_without_flush()
    return expected, spans, recovery_point


def reopen(directory, recovery_point):
    return PartitionLog.open(directory, CONFIG, recover=True, recovery_point=recovery_point)


def last_segment_path(directory):
    return sorted(directory.glob("*.log"))[-1]


def surviving_seqs(spans, segment_base, damage_position):
    """Batches that lie wholly before the damage: in earlier segments, or ending before it."""
    return {
        seq
        for seq, (base, start, end) in spans.items()
        if base < segment_base or (base == segment_base and end <= damage_position)
    }


def check_appends_work(plog):
    end = plog.log_end_offset
    result = plog.append(build_batch([(b"after", b"recovery")]))
    assert result.base_offset == end
    assert read_all(plog)[-1].records[0].value == b"recovery"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fraction=st.floats(min_value=0.0, max_value=1.0), flush_at=st.sampled_from([None, 10, 150]))
def test_truncation_at_any_byte_of_the_last_segment(tmp_path_factory, fraction, flush_at):
    directory = tmp_path_factory.mktemp("trunc") / "events-0"
    expected, spans, recovery_point = build_log(directory, 200, flush_at)
    path = last_segment_path(directory)
    segment_base = int(path.stem)
    cut_at = int(os.path.getsize(path) * fraction)
    os.truncate(path, cut_at)

    plog = reopen(directory, recovery_point)
    keep = surviving_seqs(spans, segment_base, cut_at)
    got = values_by_seq(plog)
    assert set(got) == keep
    assert all(got[seq] == expected[seq] for seq in keep)
    check_appends_work(plog)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fraction=st.floats(min_value=0.0, max_value=0.9999),
    flip=st.integers(1, 255),
    flush_at=st.sampled_from([None, 30]),
)
def test_corruption_at_any_byte_of_the_last_segment(tmp_path_factory, fraction, flip, flush_at):
    directory = tmp_path_factory.mktemp("corrupt") / "events-0"
    expected, spans, recovery_point = build_log(directory, 200, flush_at)
    path = last_segment_path(directory)
    segment_base = int(path.stem)
    size = os.path.getsize(path)
    position = int(size * fraction)
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ flip]))
    damaged = next(
        s for s, (b, start, end) in spans.items() if b == segment_base and start <= position < end
    )
    _, damaged_start, _ = spans[damaged]
    inside = position - damaged_start

    plog = reopen(directory, recovery_point)
    got = values_by_seq(plog)
    keep = surviving_seqs(spans, segment_base, position)
    assert keep <= set(got), "a batch before the damage was lost"
    assert all(got[seq] == expected[seq] for seq in got), "damaged data was served"
    if 12 <= inside < 16:
        # The partition leader epoch is covered by no checksum; the batch's content is intact.
        assert damaged in got
    elif recovery_point <= min(seq for seq, (b, s, e) in spans.items() if b == segment_base):
        assert set(got) == keep, "data after the damage was kept"
    check_appends_work(plog)


def test_recovery_reads_only_the_unflushed_tail(tmp_path):
    directory = tmp_path / "big-0"
    config = LogConfig(segment_bytes=1 << 30, index_interval_bytes=4096)
    plog = PartitionLog.open(directory, config)
    big = build_batch([(b"k", os.urandom(1_000_000))])
    for _ in range(64):  # 64 MiB flushed
        plog.append(big)
    plog.flush()
    recovery_point = plog.recovery_point
    tail = 0
    for seq in range(500):
        data, _ = batch_for(seq)
        plog.append(data)
        tail += len(data)
    end = plog.log_end_offset
    plog.close_without_flush()

    reopened = PartitionLog.open(directory, config, recover=True, recovery_point=recovery_point)
    assert reopened.log_end_offset == end
    assert reopened.recovery_checked_bytes == tail
    assert reopened.recovery_cut_bytes == 0
    assert len(reopened.read(0, 100)) == len(big)


def test_later_segments_are_dropped_after_a_cut(tmp_path):
    directory = tmp_path / "events-0"
    _expected, spans, _ = build_log(directory, 300, None)
    paths = sorted(directory.glob("*.log"))
    assert len(paths) >= 4
    victim = paths[1]
    with open(victim, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff")
    plog = reopen(directory, 0)
    got = values_by_seq(plog)
    base = int(victim.stem)
    assert set(got) == {
        seq for seq, (b, s, e) in spans.items() if b < base or (b == base and e <= 100)
    }
    assert len(plog.segments) == 2 and not any(p.exists() for p in paths[2:])
    check_appends_work(plog)


def test_recovery_point_beyond_the_data_checks_the_whole_segment(tmp_path):
    directory = tmp_path / "events-0"
    _expected, spans, _ = build_log(directory, 100, 100)
    path = last_segment_path(directory)
    cut_at = os.path.getsize(path) // 2
    os.truncate(path, cut_at)  # the disk lost flushed data; the checkpoint says more existed
    plog = reopen(directory, 10_000)
    assert set(values_by_seq(plog)) == surviving_seqs(spans, int(path.stem), cut_at)
    assert plog.recovery_point == plog.log_end_offset
    check_appends_work(plog)


def test_damaged_index_files_are_ignored_and_rebuilt(tmp_path):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, CONFIG)
    expected = {}
    for seq in range(300):
        data, values = batch_for(seq)
        plog.append(data)
        expected[seq] = values
    plog.close()
    rng = random.Random(7)
    for index in directory.glob("*.index"):
        data = bytearray(index.read_bytes())
        for _ in range(5):
            if data:
                data[rng.randrange(len(data))] ^= 0xFF
        index.write_bytes(bytes(data) + b"\x01\x02\x03")
    # A clean open trusts the indexes only as far as they are sane; reads stay correct.
    plog = PartitionLog.open(directory, CONFIG)
    assert values_by_seq(plog) == expected
    for offset in range(0, plog.log_end_offset, 7):
        first = read_all_from(plog, offset)
        assert first.header.base_offset <= offset <= first.header.last_offset
    plog.close()
    plog = reopen(directory, 0)
    assert values_by_seq(plog) == expected


def read_all_from(plog, offset):
    from broker.protocol.records import decode_batch

    return decode_batch(plog.read(offset, 1))


def test_clean_open_checks_a_segment_that_does_not_end_on_a_batch(tmp_path):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, CONFIG)
    for seq in range(20):
        plog.append(batch_for(seq)[0])
    plog.close()
    path = last_segment_path(directory)
    with open(path, "ab") as f:
        f.write(b"\x00" * 30)  # garbage after a clean close
    plog = PartitionLog.open(directory, CONFIG)
    assert set(values_by_seq(plog)) == set(range(20))
    assert plog.recovery_cut_bytes == 30
    check_appends_work(plog)


def test_leftover_temporary_and_deleted_files_are_removed(tmp_path):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, CONFIG)
    plog.append(batch_for(0)[0])
    plog.close()
    (directory / "00000000000000000000.log.deleted").write_bytes(b"old")
    (directory / "something.tmp").write_bytes(b"half")
    plog = PartitionLog.open(directory, CONFIG)
    assert sorted(p.suffix or p.name for p in directory.iterdir()) == [
        ".index",
        ".log",
        ".snapshot",
        ".timeindex",
        "leader-epoch-checkpoint",
    ]
    assert set(values_by_seq(plog)) == {0}


@pytest.mark.parametrize("cut", [1, 30, 61, 100])
def test_a_torn_last_batch_is_cut_and_reported(tmp_path, cut, caplog):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, CONFIG)
    sizes = []
    for seq in range(5):
        data, _ = batch_for(seq)
        plog.append(data)
        sizes.append(len(data))
    plog.close_without_flush()
    path = last_segment_path(directory)
    os.truncate(path, sum(sizes[:4]) + min(cut, sizes[4] - 1))
    with caplog.at_level("WARNING"):
        plog = reopen(directory, 0)
    assert set(values_by_seq(plog)) == {0, 1, 2, 3}
    assert plog.recovery_cut_bytes == min(cut, sizes[4] - 1)
    assert "recovery cut" in caplog.text


def test_largest_timestamps_survive_recovery_and_reopen(tmp_path):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, LogConfig(segment_bytes=300))
    for _i, ts in enumerate((1000, 2000, 3000, 4000)):
        plog.append(build_batch([(b"k", b"v" * 100)], timestamp=ts))
    assert len(plog.segments) == 4
    plog.close_without_flush()
    plog = PartitionLog.open(
        directory, LogConfig(segment_bytes=300), recover=True, recovery_point=0
    )
    plog.close()
    plog = PartitionLog.open(directory, LogConfig(segment_bytes=300))
    assert [s.max_timestamp for s in plog.segments] == [1000, 2000, 3000, 4000]
    assert plog.offset_for_timestamp(1500) == (1, 2000)


@pytest.mark.parametrize("garbage", [b"\x00" * 30, b"\x00" * 4096, None])
def test_a_torn_tail_at_the_recovery_point_is_all_that_is_checked(tmp_path, garbage):
    directory = tmp_path / "events-0"
    plog = PartitionLog.open(directory, CONFIG)
    for seq in range(60):
        plog.append(batch_for(seq)[0])
    plog.flush()
    recovery_point = plog.recovery_point
    plog.close_without_flush()
    tail = garbage if garbage is not None else batch_for(99)[0][:40]
    with open(last_segment_path(directory), "ab") as f:
        f.write(tail)
    plog = reopen(directory, recovery_point)
    assert plog.recovery_checked_bytes == len(tail)
    assert plog.recovery_cut_bytes == len(tail)
    assert set(values_by_seq(plog)) == set(range(60))


def test_log_loader_cuts_a_torn_tail_and_hands_over_segments_ready_for_appends(tmp_path):
    directory = tmp_path / "events-0"
    expected, _, recovery_point = build_log(directory, 60, flush_at=20)
    with open(last_segment_path(directory), "ab") as f:
        f.write(b"\x00" * 30)  # a torn write after the last whole batch
    loaded = LogLoader(directory, CONFIG, 0, recover=True, recovery_point=recovery_point).load()
    assert (loaded.topic, loaded.partition) == ("events", 0)
    assert loaded.recovery_cut_bytes == 30
    assert 0 < loaded.recovery_checked_bytes < sum(s.size for s in loaded.segments) + 30
    assert loaded.recovery_point == recovery_point
    assert [s.base_offset for s in loaded.segments] == sorted(
        int(p.stem) for p in directory.glob("*.log")
    )
    plog = PartitionLog(directory, CONFIG, SystemClock(), loaded)
    assert values_by_seq(plog) == expected
    check_appends_work(plog)
