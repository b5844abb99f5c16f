"""Truncating a partition log, as a replica does when its history diverged from the leader's.

``PartitionLog.truncate_to`` and ``truncate_fully_and_start_at`` are these functions.  The
steps are ordered so that a process killed between any two of them leaves a log the
``LogLoader`` opens as a prefix of the old one (the replica then truncates again):

1. the batch boundary is found before anything changes (inside a batch: ValueError);
2. the segments after the one holding ``offset`` are renamed ``.deleted``, newest first, so
   a crash leaves contiguous segments (the loader removes renamed files);
3. that segment's file is cut, then its indexes (an index entry past the end of the file is
   noticed when it is next used, and the index rebuilt from the log);
4. the recovery point and high watermark are lowered; the log manager checkpoints the
   recovery point at once (``LogManager.truncate_to``), so data appended after the cut is
   re-checked by a recovery;
5. the leader epoch cache and the producer snapshots and state follow; at start-up the loader
   cuts the cache and drops snapshots past the log end it finds, so a crash before this step
   is repaired there.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import TYPE_CHECKING

from ..protocol.durable import fsync_directory
from .loader import replay_producer_state
from .segment import Segment

if TYPE_CHECKING:
    from .partition import PartitionLog

log = logging.getLogger(__name__)


def truncate_to(plog: PartitionLog, offset: int) -> bool:
    """Remove everything at and after ``offset``; False, doing nothing, when ``offset`` is at
    or past the log end.  Below the log start the log is emptied to start at ``offset``."""
    if offset >= plog.log_end_offset:
        return False
    if offset < plog.log_start_offset:
        truncate_fully_and_start_at(plog, offset)
        return True
    i = bisect_right(plog._bases, offset) - 1
    segment = plog.segments[i]
    position = segment.position_of_batch_start(offset)
    if position is None:
        raise ValueError(
            f"{plog.directory.name}: offset {offset} is inside a batch; "
            "a log is truncated at batch boundaries only"
        )
    plog.truncations += 1  # flushes prepared before this must not move the recovery point
    later = plog.segments[i + 1 :]
    if later:
        plog._schedule_deletes(reversed(later), "truncation")
        del plog.segments[i + 1 :], plog._bases[i + 1 :]
    now_ms = plog._now_ms()
    segment.truncate_to(offset, position, now_ms)
    plog.recovery_point = min(plog.recovery_point, offset)
    plog.high_watermark = min(plog.high_watermark, offset)
    plog.leader_epochs.truncate_from_end(offset)
    plog.producer_batches_replayed = replay_producer_state(
        plog.producer_state, plog.segments, plog.log_start_offset, now_ms, whole_log=True
    )
    log.info("%s: truncated to offset %d", plog.directory.name, offset)
    return True


def truncate_fully_and_start_at(plog: PartitionLog, offset: int) -> None:
    """Delete every segment and start an empty log at ``offset`` (log start = log end); the
    leader epoch cache and producer state are emptied (Kafka's truncateFullyAndStartAt).  The
    old segments are renamed ``.deleted`` before the new one is made, so a crash leaves the
    old log, a prefix of it, or none (the loader then starts an empty one)."""
    plog.truncations += 1
    plog._schedule_deletes(reversed(plog.segments), "truncation")
    fsync_directory(plog.directory)
    segment = Segment.create(
        plog.directory, offset, plog.config.index_interval_bytes, plog._now_ms()
    )
    plog.segments, plog._bases = [segment], [offset]
    plog._directory_unsynced = True
    plog.log_start_offset = plog.recovery_point = offset
    plog.high_watermark = offset
    plog.leader_epochs.clear()
    plog.producer_state.load_latest_snapshot(-1)  # deletes every snapshot, empties the table
    log.info("%s: emptied; the log now starts at offset %d", plog.directory.name, offset)
