"""LogManager: many partitions, several log dirs, checkpoints, the schedule, shutdown states."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from broker.config import BrokerConfig
from broker.log import LogConfig, LogDirInUseError, LogManager
from broker.log.checkpoint import (
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    read_checkpoint,
    write_checkpoint,
)
from broker.log.manager import CLEAN_SHUTDOWN_FILE
from broker.protocol.errors import KafkaStorageError
from broker.protocol.records import build_batch, iter_records

T0 = 1_700_000_000_000


def test_a_thousand_partitions_in_two_log_dirs(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = LogManager(dirs, LogConfig(segment_bytes=1 << 20))
    manager.startup()
    for topic in range(10):
        for partition in range(100):
            plog = manager.get_or_create_log(f"topic{topic}", partition)
            for i in range(3):
                plog.append(
                    build_batch([(b"%d" % partition, b"t%d-p%d-%d" % (topic, partition, i))])
                )
    placed = [len(list(d.iterdir())) for d in dirs]
    assert sum(placed) >= 1000 and abs(placed[0] - placed[1]) <= 3  # spread evenly
    manager.shutdown()
    assert all((d / CLEAN_SHUTDOWN_FILE).exists() for d in dirs)

    manager = LogManager(dirs, LogConfig(segment_bytes=1 << 20))
    manager.startup()
    assert len(manager.logs) == 1000 and not manager.recovered_unclean
    for (topic, partition), plog in manager.logs.items():
        values = [r.value for r in iter_records(plog.read(0, 1 << 20))]
        t = topic.removeprefix("topic")
        assert values == [b"t%s-p%d-%d" % (t.encode(), partition, i) for i in range(3)]
        plog.append(build_batch([(None, b"more")]))
    manager.crash()

    manager = LogManager(dirs, LogConfig(segment_bytes=1 << 20))
    manager.startup()
    assert manager.recovered_unclean
    assert all(plog.log_end_offset == 4 for plog in manager.logs.values())
    manager.shutdown()


def test_a_log_dir_is_locked_by_one_manager(tmp_path):
    first = LogManager([tmp_path])
    first.startup()
    with pytest.raises(LogDirInUseError):
        LogManager([tmp_path]).startup()
    first.shutdown()
    second = LogManager([tmp_path])
    second.startup()
    second.shutdown()


def test_clean_marker_exists_only_after_a_clean_shutdown(tmp_path):
    manager = LogManager([tmp_path])
    manager.startup()
    manager.get_or_create_log("t", 0).append(build_batch([(b"k", b"v")]))
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    manager.shutdown()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    manager = LogManager([tmp_path])
    manager.startup()
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    manager.crash()
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def twenty_flushed_segments(tmp_path, topic, partition):
    """A started manager that retains nothing (``retention.bytes`` 0) and its partition
    ``topic``-``partition``, holding twenty flushed batches in 500-byte segments."""
    manager = LogManager(
        [tmp_path], LogConfig(segment_bytes=500, retention_bytes=0, file_delete_delay_ms=0)
    )
    manager.startup()
    plog = manager.get_or_create_log(topic, partition)
    for _ in range(20):
        plog.append(build_batch([(b"k", b"v" * 100)]))
    plog.flush()
    return manager, plog


def test_checkpoints_hold_recovery_points_and_log_start_offsets(tmp_path):
    manager, _ = twenty_flushed_segments(tmp_path, "clicks", 3)
    manager.checkpoint_recovery_points()
    assert read_checkpoint(tmp_path / RECOVERY_POINT_FILE) == {("clicks", 3): 20}
    manager.enforce_retention()
    manager.checkpoint_log_start_offsets()
    assert read_checkpoint(tmp_path / LOG_START_OFFSET_FILE) == {("clicks", 3): 20}
    text = (tmp_path / LOG_START_OFFSET_FILE).read_text()
    assert text == "0\n1\nclicks 3 20\n"  # Kafka's checkpoint format
    assert not list(tmp_path.glob("*.tmp"))
    manager.shutdown()


def test_a_damaged_checkpoint_means_full_recovery_not_a_failure(tmp_path):
    manager = LogManager([tmp_path])
    manager.startup()
    plog = manager.get_or_create_log("t", 0)
    for i in range(10):
        plog.append(build_batch([(b"k", b"%d" % i)]))
    manager.shutdown()
    (tmp_path / RECOVERY_POINT_FILE).write_text("0\n5\nt 0 garbage\n")
    manager = LogManager([tmp_path])
    manager.startup()
    plog = manager.get_log("t", 0)
    assert plog.log_end_offset == 10 and plog.recovery_checked_bytes > 0
    manager.shutdown()


def test_schedule_flushes_by_time_enforces_retention_and_checkpoints(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000)
    config = LogConfig(
        segment_bytes=1000,
        retention_ms=3_600_000,
        flush_interval_ms=5000,
        file_delete_delay_ms=30_000,
    )
    manager = LogManager(
        [tmp_path],
        config,
        clock=clock,
        retention_check_interval_ms=60_000,
        flush_check_interval_ms=1000,
        recovery_checkpoint_interval_ms=10_000,
        start_offset_checkpoint_interval_ms=10_000,
    )
    manager.startup()
    manager.start(clock)
    plog = manager.get_or_create_log("t", 0)
    plog.append(build_batch([(b"k", b"v" * 100)], timestamp=T0))
    clock.advance(1)
    assert plog.unflushed
    clock.pump([1] * 5)  # flush.ms is 5 s
    assert not plog.unflushed and plog.recovery_point == 1
    for _i in range(20):
        plog.append(build_batch([(b"k", b"v" * 100)], timestamp=T0 + 5000))
    assert len(plog.segments) > 2
    clock.pump([1] * 2)  # rolled segments are flushed on the next tick, not after flush.ms
    assert plog.recovery_point == plog.segments[-1].base_offset
    clock.pump([1] * 10)
    assert read_checkpoint(tmp_path / RECOVERY_POINT_FILE)[("t", 0)] == plog.recovery_point
    clock.advance(3600)  # everything expires; the retention check is overdue and runs now
    assert plog.log_start_offset == plog.log_end_offset == 21
    assert list(tmp_path.glob("t-0/*.deleted"))
    clock.pump([1] * 31)
    assert not list(tmp_path.glob("t-0/*.deleted"))
    assert read_checkpoint(tmp_path / LOG_START_OFFSET_FILE)[("t", 0)] == 21
    manager.shutdown()


def test_delete_log_removes_the_partition(tmp_path):
    manager = LogManager([tmp_path])
    manager.startup()
    manager.get_or_create_log("gone", 0).append(build_batch([(b"k", b"v")]))
    manager.get_or_create_log("kept", 0).append(build_batch([(b"k", b"v")]))
    assert manager.delete_log("gone", 0)
    assert not manager.delete_log("gone", 0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["kept-0"]
    manager.shutdown()
    manager = LogManager([tmp_path])
    manager.startup()
    assert list(manager.logs) == [("kept", 0)]
    manager.shutdown()


def test_a_partition_in_two_log_dirs_is_an_error(tmp_path):
    for d in ("a", "b"):
        m = LogManager([tmp_path / d])
        m.startup()
        m.get_or_create_log("dup", 0)
        m.shutdown()
    with pytest.raises(KafkaStorageError, match="dup-0"):
        LogManager([tmp_path / "a", tmp_path / "b"]).startup()


def test_topic_overrides_apply_to_existing_and_new_logs(tmp_path):
    manager = LogManager(
        [tmp_path], LogConfig(retention_ms=1000), topic_overrides={"audit": {"retention.ms": "-1"}}
    )
    manager.startup()
    assert manager.get_or_create_log("audit", 0).config.retention_ms == -1
    assert manager.get_or_create_log("other", 0).config.retention_ms == 1000
    manager.set_topic_overrides("other", {"segment.bytes": "4096", "retention.bytes": "10000"})
    assert manager.get_log("other", 0).config.segment_bytes == 4096
    assert manager.get_or_create_log("other", 1).config.retention_bytes == 10000
    manager.shutdown()


def test_manager_from_broker_properties(tmp_path):
    config = BrokerConfig(
        {
            "log.dirs": f"{tmp_path}/x,{tmp_path}/y",
            "log.segment.bytes": "2048",
            "log.retention.hours": "1",
            "log.flush.interval.messages": "5",
        }
    )
    manager = LogManager.from_broker_config(config)
    assert manager.log_dirs == [tmp_path / "x", tmp_path / "y"]
    assert manager.default_config.segment_bytes == 2048
    assert manager.default_config.retention_ms == 3_600_000
    assert manager.default_config.flush_interval_messages == 5


def test_checkpoint_files_round_trip(tmp_path):
    offsets = {("a.b-c", 0): 5, ("x", 12): 2**40}
    write_checkpoint(tmp_path / "cp", offsets)
    assert read_checkpoint(tmp_path / "cp") == offsets
    assert read_checkpoint(tmp_path / "missing") == {}


def test_a_recreated_topic_does_not_inherit_old_checkpoints(tmp_path):
    manager, plog = twenty_flushed_segments(tmp_path, "t", 0)
    manager.enforce_retention()
    manager.checkpoint_recovery_points()
    manager.checkpoint_log_start_offsets()
    assert plog.log_start_offset > 0
    manager.delete_log("t", 0)
    plog = manager.get_or_create_log("t", 0)
    for _ in range(5):
        plog.append(build_batch([(b"k", b"new")]))
    manager.crash()
    manager = LogManager([tmp_path], LogConfig())
    manager.startup()
    plog = manager.get_log("t", 0)
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 5)
    assert [r.value for r in iter_records(plog.read(0, 1 << 20))] == [b"new"] * 5
    manager.shutdown()
