"""The log loader: opens a partition directory and hands back segments ready for appends.

As Kafka's ``LogLoader``: find the segments, remove what a crash left half-done, recover the
unflushed tail (CRC check, cut at the first bad batch, rebuild the index, report the cut) and
rebuild the producer state from its newest snapshot and the batch headers after it.

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

from ..protocol.records import BASE_OFFSET, LAST_OFFSET_DELTA
from .config import LogConfig
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

    def load(self) -> LoadedLog:
        parsed = parse_partition_dir_name(self.directory.name)
        if parsed is None:
            raise ValueError(f"{self.directory} is not named <topic>-<partition>")
        topic, partition = parsed
        validate_topic_name(topic)
        self.directory.mkdir(parents=True, exist_ok=True)
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
            replayed = self._load_producer_state(producers, segments, log_start)
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
            if i > start and segment.base_offset != segments[i - 1].next_offset:
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

    def _load_producer_state(
        self, producers: ProducerStateTable, segments: list[Segment], log_start: int
    ) -> int:
        """Load the newest producer snapshot, then replay the batch headers after it (all of
        them after an unclean shutdown; none after a clean one, whose snapshot is at the log
        end).  With no snapshot, the last two segments are replayed, as Kafka does.  Returns
        the number of batch headers replayed."""
        start = producers.load_latest_snapshot(segments[-1].next_offset)
        if start is None:
            start = segments[-2 if len(segments) > 1 else 0].base_offset
        start = max(start, log_start)
        bases = [s.base_offset for s in segments]
        replayed = 0
        for segment in segments[max(0, bisect_right(bases, start) - 1) :]:
            position = segment.find_position(start) if segment.base_offset < start else 0
            if position is None:
                continue
            for _, header in segment.scan_headers(position, segment.size):
                if header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] >= start:
                    producers.record_header(header, header[BASE_OFFSET], self.now_ms)
                    replayed += 1
        if replayed:
            log.info(
                "%s: producer state rebuilt from %d batch headers after offset %d",
                self.directory.name,
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
