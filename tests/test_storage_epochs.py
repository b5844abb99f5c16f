"""The leader epoch cache (broker/log/epochs.py): Kafka's LeaderEpochFileCache rules, its
``leader-epoch-checkpoint`` file, and its rebuild from batch headers by the loader."""

from __future__ import annotations

import logging

import pytest
from storage_helpers import batch_for

from broker.log import LogConfig, PartitionLog
from broker.log.epochs import (
    LEADER_EPOCH_FILE,
    EpochCheckpointError,
    EpochEntry,
    LeaderEpochCache,
)


def cache_with(tmp_path, *entries) -> LeaderEpochCache:
    cache = LeaderEpochCache(tmp_path)
    for epoch, start in entries:
        cache.assign(epoch, start)
    return cache


def test_assign_keeps_ascending_entries_and_ignores_epochs_not_newer(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (2, 10), (2, 15), (1, 20), (5, 30))
    assert cache.entries == [(0, 0), (2, 10), (5, 30)]
    assert cache.latest_epoch == 5


def test_assign_below_the_latest_start_removes_the_entries_it_contradicts(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (2, 10), (3, 20))
    assert cache.assign(4, 10)
    assert cache.entries == [(0, 0), (4, 10)]


def test_negative_epochs_or_offsets_are_refused(tmp_path):
    with pytest.raises(ValueError):
        LeaderEpochCache(tmp_path).assign(-1, 0)
    with pytest.raises(ValueError):
        LeaderEpochCache(tmp_path).assign(0, -5)


@pytest.mark.parametrize(
    "requested, expected",
    [
        (5, (5, 100)),  # the latest epoch runs to the log end
        (2, (2, 30)),  # ended where the next epoch began
        (0, (0, 10)),
        (1, (0, 10)),  # never used: the largest epoch below it, ending at the next start
        (3, (2, 30)),
        (4, (2, 30)),
        (-1, (-1, -1)),  # UNDEFINED_EPOCH asked
        (6, (-1, -1)),  # newer than any
    ],
)
def test_end_offset_for_follows_kafka(tmp_path, requested, expected):
    cache = cache_with(tmp_path, (0, 5), (2, 10), (5, 30))
    assert cache.end_offset_for(requested, log_end_offset=100) == expected


def test_end_offset_below_the_first_entry_and_on_an_empty_cache_is_undefined(tmp_path):
    assert cache_with(tmp_path, (3, 40)).end_offset_for(1, 100) == (-1, -1)
    assert LeaderEpochCache(tmp_path).end_offset_for(0, 100) == (-1, -1)
    assert LeaderEpochCache(tmp_path).latest_epoch == -1


def test_truncate_from_end_drops_entries_starting_at_or_after_the_offset(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (2, 10), (5, 30))
    cache.truncate_from_end(30)
    assert cache.entries == [(0, 0), (2, 10)]
    cache.truncate_from_end(11)
    assert cache.entries == [(0, 0), (2, 10)]
    cache.truncate_from_end(0)
    assert cache.entries == []


def test_truncate_from_start_moves_the_covering_entry_up(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (2, 10), (5, 30))
    cache.truncate_from_start(15)
    assert cache.entries == [(2, 15), (5, 30)]
    cache.truncate_from_start(30)
    assert cache.entries == [(5, 30)]
    cache.truncate_from_start(3)  # below the first entry: nothing to do
    assert cache.entries == [(5, 30)]


def test_every_change_is_checkpointed_in_kafkas_format(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (3, 17))
    assert (tmp_path / LEADER_EPOCH_FILE).read_text() == "0\n2\n0 0\n3 17\n"
    cache.truncate_from_end(17)
    assert LeaderEpochCache.load(tmp_path).entries == [EpochEntry(0, 0)]
    cache.clear()
    assert (tmp_path / LEADER_EPOCH_FILE).read_text() == "0\n0\n"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "text",
    ["", "1\n1\n0 0\n", "0\n2\n0 0\n", "0\n1\nzero 0\n", "0\n2\n3 10\n2 20\n", "0\n1\n0\n"],
)
def test_a_damaged_checkpoint_is_refused(tmp_path, text):
    (tmp_path / LEADER_EPOCH_FILE).write_text(text)
    with pytest.raises(EpochCheckpointError):
        LeaderEpochCache.load(tmp_path)


def _log_with_epochs(directory, plan):
    """A log appended batch by batch under the epochs of ``plan``; returns the cache entries
    the appends made."""
    plog = PartitionLog.open(directory, LogConfig(segment_bytes=2048))
    for seq, epoch in enumerate(plan):
        plog.append(batch_for(seq)[0], leader_epoch=epoch)
    entries = list(plog.leader_epochs.entries)
    plog.close()
    return entries


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_missing_or_damaged_checkpoint_is_rebuilt_from_batch_headers(tmp_path, caplog, damage):
    directory = tmp_path / "events-0"
    entries = _log_with_epochs(directory, [0, 0, 1, 1, 1, 4, 4, 7])
    assert entries == [(0, 0), (1, 3), (4, 15), (7, 28)]  # batch_for(seq) holds 1 + seq % 7
    path = directory / LEADER_EPOCH_FILE
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x00\xffnot a checkpoint")
    with caplog.at_level(logging.WARNING):
        plog = PartitionLog.open(directory, LogConfig(segment_bytes=2048))
    assert len(plog.segments) > 1
    assert plog.leader_epochs.entries == entries
    assert "rebuilding the leader epoch cache" in caplog.text
    assert LeaderEpochCache.load(directory).entries == entries  # saved again
    plog.close()


def test_the_loader_cuts_the_cache_to_the_log_it_found(tmp_path):
    directory = tmp_path / "events-0"
    _log_with_epochs(directory, [0, 2])
    # A crash after the cache was saved but before a batch reached the file.
    (directory / LEADER_EPOCH_FILE).write_text("0\n3\n0 0\n2 1\n9 3\n")
    plog = PartitionLog.open(directory, LogConfig())
    assert plog.leader_epochs.entries == [(0, 0), (2, 1)]
    plog.close()
