"""The log loader: opens a partition directory and hands back segments ready for appends.

As Kafka's ``LogLoader``: find the segments, remove what a crash left half-done, recover the
unflushed tail (CRC check, cut at the first bad batch, rebuild the index, report the cut) and
rebuild the producer state from its newest snapshot and the batch headers after it; load the
leader epoch cache (rebuilt from the batch headers if its file is missing or damaged) and cut
it to the recovered log, and clamp the checkpointed high watermark to it.

    >>> loaded = LogLoader(directory, config, now_ms, recover=True, recovery_point=120).load()
    >>> loaded.segments, loaded.recovery_cut_bytes
"""

from __future__ import annotations

import itertools
import logging
import time
from bisect import bisect_right
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import NamedTuple

from ..protocol.records import BASE_OFFSET, LAST_OFFSET_DELTA, PARTITION_LEADER_EPOCH
from .config import LogConfig
from .epochs import EpochCheckpointError, LeaderEpochCache
from .names import (
    DELETED_SUFFIX,
    LOG_SUFFIX,
    TEMPORARY_SUFFIX,
    offsets_named,
    parse_partition_dir_name,
    validate_topic_name,
)
from .producer_state import ProducerStateTable
from .segment import Segment
from .swap import complete_swaps

log = logging.getLogger(__name__)


class LoadedLog(NamedTuple):
    """What a ``PartitionLog`` starts from."""

    topic: str
    partition: int
    segments: list[Segment]
    log_start_offset: int
    recovery_point: int
    created: bool  # the directory had no segment: its new file is not fsynced yet
    recovery_checked_bytes: int  # what this load re-checked and cut, for tools and tests
    recovery_cut_bytes: int
    producer_state: ProducerStateTable
    producer_batches_replayed: int  # batch headers read to rebuild the producer state
    leader_epochs: LeaderEpochCache
    high_watermark: int


@dataclass
class LogLoader:
    """Loads one partition directory, ``<topic>-<partition>``; see the module docstring.

    With ``recover``, data from ``recovery_point`` on is re-checked batch by batch and cut at
    the first torn or corrupt batch; data before it was flushed and is trusted.
    """

    directory: Path
    config: LogConfig
    now_ms: int
    _: KW_ONLY
    recover: bool = False
    recovery_point: int = 0
    log_start_offset: int = 0
    high_watermark: int = 0

    def load(self) -> LoadedLog:
        parsed = parse_partition_dir_name(self.directory.name)
        if parsed is None:
            raise ValueError(f"{self.directory} is not named <topic>-<partition>")
        topic, partition = parsed
        validate_topic_name(topic)
        self.directory.mkdir(parents=True, exist_ok=True)
        complete_swaps(self.directory)  # a clean the process died in the middle of
        remove_leftovers(self.directory)
        bases = offsets_named(self.directory, LOG_SUFFIX)
        segments: list[Segment] = []
        try:
            checked, cut = self._open_segments(bases, segments)
            end = segments[-1].next_offset
            log_start = max(segments[0].base_offset, min(self.log_start_offset, end))
            recovery_point = end
            if self.recover:
                recovery_point = min(end, max(self.recovery_point, segments[0].base_offset))
            producers = ProducerStateTable(self.directory, self.config.producer_id_expiration_ms)
            replayed = replay_producer_state(
                producers, segments, log_start, self.now_ms, whole_log=self.recover
            )
            epochs = self._load_leader_epochs(segments, log_start)
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        return LoadedLog(
            topic,
            partition,
            segments,
            log_start,
            recovery_point,
            not bases,
            checked,
            cut,
            producers,
            replayed,
            epochs,
            min(max(self.high_watermark, log_start), end),
        )

    def _open_segments(self, bases: list[int], segments: list[Segment]) -> tuple[int, int]:
        """Open (or create) the segments into ``segments``; returns (bytes checked, cut)."""
        interval = self.config.index_interval_bytes
        if not bases:
            start = max(0, self.log_start_offset)
            segments.append(Segment.create(self.directory, start, interval, self.now_ms))
            return 0, 0
        for base in bases:
            segments.append(Segment.open(self.directory, base, interval))
        for segment, following in itertools.pairwise(segments):
            segment.next_offset = following.base_offset
            segment.gaps_allowed = True
        segments[-1].gaps_allowed = self.config.compact
        if self.recover:
            return self._recover_segments(segments)
        last = segments[-1]
        if last.load_tail(self.now_ms):
            return 0, 0
        log.warning(
            "%s: the last segment does not end on a batch boundary; checking it", self.directory
        )
        stats = last.recover(last.index.last_entry()[0])
        last.prepare_for_appends(self.now_ms)
        return stats

    def _recover_segments(self, segments: list[Segment]) -> tuple[int, int]:
        """Re-check everything from the recovery point; drop segments after the first cut.
        Returns (bytes checked, bytes cut)."""
        name = self.directory.name
        recovery_point = self.recovery_point
        start = max(0, bisect_right([s.base_offset for s in segments], recovery_point) - 1)
        cut_total = 0
        checked = 0
        began = time.monotonic()
        for i in range(start, len(segments)):
            segment = segments[i]
            from_offset = recovery_point if i == start else segment.base_offset
            if i > start and segment.base_offset < segments[i - 1].next_offset:
                log.warning(
                    "%s: segment %d does not follow offset %d; it and later segments are dropped",
                    name,
                    segment.base_offset,
                    segments[i - 1].next_offset,
                )
                cut_total += _drop_segments(segments, i)
                break
            segment_checked, cut = segment.recover(max(from_offset, segment.base_offset))
            checked += segment_checked
            cut_total += cut
            if i + 1 < len(segments) and cut:
                cut_total += _drop_segments(segments, i + 1)
                break
        for segment, following in itertools.pairwise(segments):  # compaction leaves gaps
            segment.next_offset = max(segment.next_offset, following.base_offset)
        last = segments[-1]
        last.prepare_for_appends(self.now_ms)
        if cut_total:
            log.warning(
                "%s: recovery cut %d bytes of torn or corrupt data; the log now ends at offset %d",
                name,
                cut_total,
                last.next_offset,
            )
        log.info(
            "%s: recovered from offset %d in %.3f s (%d bytes checked)",
            name,
            recovery_point,
            time.monotonic() - began,
            checked,
        )
        return checked, cut_total

    def _load_leader_epochs(self, segments: list[Segment], log_start: int) -> LeaderEpochCache:
        """The leader epoch cache, cut to the loaded log (a crash may have cut the log after
        the cache was saved); rebuilt from the batch headers if its file is missing or
        damaged."""
        try:
            epochs = LeaderEpochCache.load(self.directory)
        except (OSError, EpochCheckpointError) as exc:
            if segments[-1].next_offset > log_start:
                log.warning(
                    "%s: rebuilding the leader epoch cache from the log: %s",
                    self.directory.name,
                    exc,
                )
            epochs = LeaderEpochCache.rebuild(self.directory, _batch_epochs(segments, 0))
        else:
            epochs.truncate_from_end(segments[-1].next_offset)
            if self.recover:  # the unflushed tail's epochs may not have reached the file
                for epoch, base_offset in _batch_epochs(segments, self.recovery_point):
                    if epoch > epochs.latest_epoch:
                        epochs.assign(epoch, base_offset, sync=True)
        epochs.truncate_from_start(log_start)
        return epochs


def _batch_epochs(segments: list[Segment], from_offset: int):
    """(partition leader epoch, base offset) of every batch from the one holding
    ``from_offset``, from the headers alone."""
    bases = [s.base_offset for s in segments]
    for segment in segments[max(0, bisect_right(bases, from_offset) - 1) :]:
        position = segment.find_position(from_offset) if segment.base_offset < from_offset else 0
        if position is None:
            continue
        try:
            for _, header in segment.scan_headers(position, segment.size):
                yield header[PARTITION_LEADER_EPOCH], header[BASE_OFFSET]
        except EOFError:
            return


def replay_producer_state(
    producers: ProducerStateTable,
    segments: list[Segment],
    log_start: int,
    now_ms: int,
    whole_log: bool = False,
) -> int:
    """Load the newest producer snapshot at or below the log end, then replay the batch
    headers after it (all of them after an unclean shutdown; none after a clean one, whose
    snapshot is at the log end).  With no snapshot, the whole log after a crash or a
    truncation (``whole_log``), else the last two segments, as Kafka does.  Returns the
    number of batch headers replayed."""
    directory = segments[0].directory
    start = producers.load_latest_snapshot(segments[-1].next_offset)
    if start is None:
        start = log_start if whole_log else segments[-2 if len(segments) > 1 else 0].base_offset
    start = max(start, log_start)
    bases = [s.base_offset for s in segments]
    replayed = 0
    for segment in segments[max(0, bisect_right(bases, start) - 1) :]:
        position = segment.find_position(start) if segment.base_offset < start else 0
        if position is None:
            continue
        for _, header in segment.scan_headers(position, segment.size):
            if header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] >= start:
                producers.record_header(header, header[BASE_OFFSET], now_ms)
                replayed += 1
    if replayed:
        log.info(
            "%s: producer state rebuilt from %d batch headers after offset %d",
            directory.name,
            replayed,
            start,
        )
    return replayed


def remove_leftovers(directory: Path) -> None:
    """Remove files a crash left half-deleted (``.deleted``) or half-written (``.tmp``)."""
    for path in directory.iterdir():
        if path.name.endswith(DELETED_SUFFIX) or path.name.endswith(TEMPORARY_SUFFIX):
            path.unlink()


def _drop_segments(segments: list[Segment], first: int) -> int:
    dropped = 0
    for segment in segments[first:]:
        dropped += segment.size
        segment.close()
        segment.delete_files()
    del segments[first:]
    return dropped
