"""The log of one topic partition: an ordered set of segments in ``<log.dirs>/<topic>-<p>/``.

    >>> log = PartitionLog.open(Path("/var/lib/headrace/clicks-0"), LogConfig())
    >>> result = log.append(batch_bytes)      # validated, offsets assigned, written
    >>> log.read(result.base_offset, 1 << 20)   # whole batches from that offset
    >>> log.append_as_follower(leader_bytes)    # a replica: offsets and epochs kept

Only the newest (active) segment takes appends.  A segment is found by bisecting the sorted
base offsets; inside it, by the sparse offset index and a short walk over batch headers.
The flush policy (``flush.messages``; ``flush.ms`` via the log manager) fsyncs the unflushed
segments and advances the recovery point.  Opening, and recovery after a crash from that
point, is the ``LogLoader``'s (loader.py).  Each batch carries the leader epoch it was
appended under; the leader epoch cache (epochs.py) records where each epoch began.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..protocol import records
from ..protocol.durable import atomic_write
from ..protocol.errors import (
    KafkaStorageError,
    OffsetOutOfRangeError,
    UnexpectedAppendOffsetError,
)
from ..protocol.records import (
    BASE_OFFSET,
    BATCH_LENGTH,
    EARLIEST_TIMESTAMP,
    LAST_OFFSET_DELTA,
    LATEST_TIMESTAMP,
    LOG_OVERHEAD,
    MAX_TIMESTAMP,
    PREFIX,
)
from . import log_start, truncation
from .appends import checked_batches
from .clock import SystemClock, milliseconds
from .config import LogConfig
from .epochs import UNDEFINED_EPOCH
from .flush import FlushJob
from .loader import LoadedLog, LogLoader
from .segment import FileSlice, Segment

log = logging.getLogger(__name__)

_MAX_RELATIVE_OFFSET = 2**31 - 1
PARTITION_METADATA = "partition.metadata"

# Benchmarks only (bench/validate_bench.py): a broker started with this variable set stores
# batches after the header and CRC check alone, to measure what the record check costs.
CHECK_RECORDS = os.environ.get("HEADRACE_BENCH_UNCHECKED_RECORDS") != "1"


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic stamps LogAppendTime
    record_count: int


class PartitionLog:
    """Appends, reads, rolls, flushes and retention of one partition's segments."""

    def __init__(self, directory: Path, config: LogConfig, clock, loaded: LoadedLog):
        self.directory = directory
        self.topic = loaded.topic
        self.partition = loaded.partition
        self.config = config
        self.clock = clock
        self.segments: list[Segment] = loaded.segments
        self._bases = [s.base_offset for s in loaded.segments]
        self.log_start_offset = loaded.log_start_offset
        self.recovery_point = loaded.recovery_point
        self.last_flush_ms = self._now_ms()
        self._unflushed_messages = 0
        self.offline = False
        self._directory_unsynced = loaded.created  # a segment file was created since the last flush
        self.flusher: Callable[[PartitionLog, int | None], None] | None = None  # see request_flush
        self.recovery_checked_bytes = loaded.recovery_checked_bytes
        self.recovery_cut_bytes = loaded.recovery_cut_bytes
        self.pending_deletes: list[tuple[float, Segment, list[Path]]] = []
        self.producer_state = loaded.producer_state
        self.producer_batches_replayed = loaded.producer_batches_replayed
        self.leader_epochs = loaded.leader_epochs
        self._high_watermark = loaded.high_watermark
        # A flush prepared before a truncation must not move the recovery point.
        self.truncations = 0

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        clock=None,
        recover: bool = False,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        high_watermark: int = 0,
    ) -> PartitionLog:
        """Open (or create) the partition log in ``directory``, named ``<topic>-<partition>``,
        as ``LogLoader`` loads it: with ``recover``, data from ``recovery_point`` on is
        re-checked and cut at the first torn or corrupt batch."""
        clock = clock or SystemClock()
        loader = LogLoader(
            directory,
            config,
            milliseconds(clock),
            recover=recover,
            recovery_point=recovery_point,
            log_start_offset=log_start_offset,
            high_watermark=high_watermark,
        )
        return cls(directory, config, clock, loader.load())

    # --- identity ------------------------------------------------------------------------

    @property
    def topic_id(self) -> str | None:
        """The id of the topic this log belongs to (``partition.metadata``), if recorded:
        a topic deleted and created again under the same name gets a new id."""
        try:
            text = (self.directory / PARTITION_METADATA).read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "topic_id":
                return value.strip()
        return None

    def set_topic_id(self, topic_id: str) -> None:
        atomic_write(
            self.directory / PARTITION_METADATA, f"version: 0\ntopic_id: {topic_id}\n".encode()
        )

    # --- properties ----------------------------------------------------------------------

    @property
    def active_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        """The next offset to be assigned."""
        return self.segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        """Offset all in-sync replicas hold up to; kept within [log start, log end]."""
        return self._high_watermark

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        self._high_watermark = min(max(offset, self.log_start_offset), self.log_end_offset)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def _now_ms(self) -> int:
        return milliseconds(self.clock)

    # --- appending -----------------------------------------------------------------------

    def append(self, data, leader_epoch: int = 0) -> AppendResult:
        """Validate and append one or more record batches; returns the offsets assigned.

        Each batch's header and CRC are checked (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE,
        INVALID_RECORD, ...), and so are its records (``validate.check_records``: the body
        decompresses, the framing matches the header), before anything is written; a bad
        batch appends nothing.  Offsets
        are assigned by rewriting the base offset, which the CRC does not cover.  A disk error
        raises KAFKA_STORAGE_ERROR with the log unchanged.  Each batch is stamped with
        ``leader_epoch`` (its partitionLeaderEpoch, not covered by the CRC either), and the
        first offset appended under a new epoch is noted in the leader epoch cache.
        """
        if self.offline:
            raise KafkaStorageError(f"{self.directory} is offline after an earlier disk error")
        view = memoryview(data)
        batches = checked_batches(view, self.config, CHECK_RECORDS)
        header = batches[0][1]
        total = len(view)
        config = self.config
        if header.producer_id >= 0 or (
            len(batches) > 1 and any(h.producer_id >= 0 for _, h in batches)
        ):
            batches, duplicate = self._skip_duplicates(batches)
            if duplicate is not None:
                return duplicate
            total = sum(h.batch_length + LOG_OVERHEAD for _, h in batches)
            now_ms = self._now_ms()
        else:
            now_ms = -1  # no producer ids to track
        log_append_time = -1
        if config.timestamp_type == "LogAppendTime":
            log_append_time = self._now_ms()
        base = self.segments[-1].next_offset
        count = 0
        parts: list[bytes | memoryview] = []
        entries = []
        for pos, h in batches:
            size = h.batch_length + LOG_OVERHEAD
            body = view[pos + PREFIX.size : pos + size]
            max_ts = h.max_timestamp
            if log_append_time >= 0:
                stamped = records.with_log_append_time(view[pos : pos + size], log_append_time)
                body = memoryview(stamped)[PREFIX.size :]
                max_ts = log_append_time
            parts += (PREFIX.pack(base + count, h.batch_length, leader_epoch), body)
            entries.append((base + count, size, max_ts))
            count += h.record_count
        last = base + count - 1
        self._write(parts, total, entries, last)
        if now_ms >= 0:
            for (_, h), (offset, _, _) in zip(batches, entries):
                self.producer_state.record_header(h, offset, now_ms)
        if leader_epoch != self.leader_epochs.latest_epoch:
            self.leader_epochs.assign(leader_epoch, base)
        self._unflushed_messages += count
        if self._unflushed_messages >= config.flush_interval_messages:
            self.request_flush()
        return AppendResult(base, last, log_append_time, count)

    def append_as_follower(self, data) -> AppendResult:
        """Append batches copied from the leader's log, their offsets and leader epochs kept.

        Each batch is checked as ``append`` checks it; the first must start at the log end and
        each next one right after the one before (or later in a compacted log: the leader's
        cleaner leaves gaps), else UnexpectedAppendOffsetError and nothing is written.  The
        producer state is taken from the headers (the leader judged the duplicates) and the
        leader epoch cache from their partitionLeaderEpoch."""
        if self.offline:
            raise KafkaStorageError(f"{self.directory} is offline after an earlier disk error")
        view = memoryview(data)
        batches = checked_batches(view, self.config, CHECK_RECORDS, replica=True)
        expected = self.log_end_offset
        entries = []
        for _, h in batches:
            gap = self.config.compact and h.base_offset > expected
            if h.base_offset != expected and not gap:
                raise UnexpectedAppendOffsetError(
                    f"{self.directory.name}: a replicated batch starts at offset {h.base_offset} "
                    f"where {expected} was expected; nothing was written"
                )
            entries.append((h.base_offset, h.batch_length + LOG_OVERHEAD, h.max_timestamp))
            expected = h.last_offset + 1
        first = self.log_end_offset
        self._write([view], len(view), entries, expected - 1)
        now_ms = self._now_ms()
        epochs = self.leader_epochs
        for _, h in batches:
            if h.producer_id >= 0:
                self.producer_state.record_header(h, h.base_offset, now_ms)
            if h.partition_leader_epoch > epochs.latest_epoch:
                epochs.assign(h.partition_leader_epoch, h.base_offset)
        count = expected - first
        self._unflushed_messages += count
        if self._unflushed_messages >= self.config.flush_interval_messages:
            self.request_flush()
        return AppendResult(first, expected - 1, -1, count)

    def _write(self, parts: list, total: int, entries: list, last: int) -> None:
        """Write batches to the active segment, rolled first by Kafka's rules if need be."""
        config = self.config
        segment = self.segments[-1]
        if segment.size and (
            segment.size + total > config.segment_bytes
            or segment.should_roll_for_time(entries[0][2], self.clock, config.roll_ms)
            or last - segment.base_offset > _MAX_RELATIVE_OFFSET
        ):
            segment = self.roll()
        try:
            segment.append(parts, total, entries, last)
        except OSError as exc:
            if segment.size != os.fstat(segment.fd).st_size:
                self.offline = True  # could not even undo the partial write
            raise KafkaStorageError(
                f"cannot append to {segment.log_path}: {exc.strerror or exc}; nothing was written"
            ) from exc

    def _skip_duplicates(self, batches):
        """Drop batches a producer sent before (by producer id, epoch and sequences); refuse
        out-of-order sequences and stale epochs.  Returns (batches to append, the result to
        answer when all of them were duplicates, else None)."""
        verdicts = self.producer_state.check([h for _, h in batches], self._now_ms())
        if verdicts is None:
            return batches, None
        fresh = [b for b, seen in zip(batches, verdicts) if seen is None]
        if fresh:
            return fresh, None
        first, last = verdicts[0], verdicts[-1]
        log.debug(
            "%s: duplicate batch at offsets %d-%d answered again",
            self.directory.name,
            first.first_offset,
            last.last_offset,
        )
        return fresh, AppendResult(
            first.first_offset, last.last_offset, -1, sum(h.record_count for _, h in batches)
        )

    def roll(self) -> Segment:
        """Close the active segment for appends and start a new one at the log end offset."""
        old = self.segments[-1]
        if old.size == 0:
            return old
        old.close_for_appends()
        old.index.flush(fsync=False)
        old.time_index.flush(fsync=False)
        new = Segment.create(
            self.directory, old.next_offset, self.config.index_interval_bytes, self._now_ms()
        )
        new.next_offset = old.next_offset
        self._directory_unsynced = True
        self.segments.append(new)
        self._bases.append(new.base_offset)
        self._snapshot_producers(sync=False)  # no fsync on the appending thread
        log.debug("%s: rolled a new segment at offset %d", self.directory.name, new.base_offset)
        return new

    def _snapshot_producers(self, sync: bool = True) -> None:
        """Save the producer state at the log end; keep only the snapshots a recovery from
        the recovery point could need."""
        self.producer_state.write_snapshot(self.log_end_offset, self._now_ms(), sync)
        self.producer_state.delete_snapshots_before(self.recovery_point)

    # --- flushing ------------------------------------------------------------------------

    def flush(self, up_to: int | None = None) -> None:
        """fsync the segments holding data past the recovery point, up to offset ``up_to``
        (default: the log end), and advance the recovery point there (here, on this thread)."""
        job = self.prepare_flush(up_to)
        if job is not None:
            job.run()
            self.flushed(job)

    def request_flush(self) -> None:
        """The flush policy's flush: handed to ``flusher`` (the log manager's flush thread)
        when one is set, else done here."""
        if self.flusher is not None:
            self.flusher(self, None)
        else:
            self.flush()

    def prepare_flush(self, up_to: int | None = None) -> FlushJob | None:
        """The first half of a flush, on the thread that appends: write pending index entries
        (without fsync) and take what must be fsynced to offset ``up_to`` (default: the log
        end).  None when there is nothing to flush.  ``FlushJob.run`` does the fsyncs (on any
        thread); ``flushed(job)`` then advances the recovery point."""
        end = self.log_end_offset if up_to is None else min(up_to, self.log_end_offset)
        if up_to is None:
            self._unflushed_messages = 0
            self.last_flush_ms = self._now_ms()
        if self.recovery_point >= end:
            return None
        i = max(0, bisect_right(self._bases, self.recovery_point) - 1)
        fds, paths = [], []
        try:
            for segment in self.segments[i:]:
                if segment.base_offset >= end:
                    break
                for index in (segment.index, segment.time_index):
                    index.flush(fsync=False)
                    paths.append(index.path)
                fds.append(os.dup(segment.fd))  # stays valid if the segment is closed meanwhile
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if self.leader_epochs.unsynced:  # replaced by an append since the last flush
            self.leader_epochs.unsynced = False
            paths.append(self.leader_epochs.path)
            self._directory_unsynced = True
        directory = self.directory if self._directory_unsynced else None
        self._directory_unsynced = False
        return FlushJob(end, fds, paths, directory, self.truncations)

    def flushed(self, job: FlushJob) -> None:
        """A flush's fsyncs completed: data before ``job.end`` survives a crash."""
        if job.truncations == self.truncations:
            self.recovery_point = max(self.recovery_point, job.end)

    def has_rolled_unflushed(self) -> bool:
        """True when a segment closed by a roll still has unflushed data."""
        return self.recovery_point < self.segments[-1].base_offset

    def flush_rolled(self) -> None:
        """Flush the segments closed by rolls (the active one is left to the flush policy)."""
        self.flush(up_to=self.segments[-1].base_offset)

    @property
    def unflushed(self) -> bool:
        return self.recovery_point < self.log_end_offset

    # --- reading -------------------------------------------------------------------------

    def read_slice(self, offset: int, max_bytes: int, max_offset: int | None = None) -> FileSlice:
        """The file range of whole batches from the batch holding ``offset``, at most
        ``max_bytes`` long unless the first batch alone is larger (it is then returned whole).
        With ``max_offset`` (the high watermark, for consumers), only batches whose last
        offset is below it.

        Empty at the log end, and from ``max_offset`` to the log end; OFFSET_OUT_OF_RANGE
        below the log start or past the end.
        """
        end_offset = self.log_end_offset
        if offset < self.log_start_offset or offset > end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {self.topic}-{self.partition}'s range "
                f"[{self.log_start_offset}, {end_offset}]"
            )
        if max_offset is not None and offset >= max_offset:
            return FileSlice(self.segments[-1].fd, self.segments[-1].size, 0)
        i = bisect_right(self._bases, offset) - 1
        while i < len(self.segments):
            segment = self.segments[i]
            if offset < segment.next_offset:
                start = segment.find_position(offset)
                if start is not None:
                    end = segment.read_end(start, max(1, max_bytes))
                    if max_offset is not None and max_offset < segment.next_offset:
                        below = segment.find_position(max_offset)  # None: in a trailing gap
                        end = end if below is None else min(end, max(below, start))
                    return segment.slice(start, end)
            i += 1
        return FileSlice(self.segments[-1].fd, self.segments[-1].size, 0)

    def read(self, offset: int, max_bytes: int) -> bytes:
        """The bytes of ``read_slice``: whole record batches as they were appended."""
        return self.read_slice(offset, max_bytes).read()

    def latest_epoch(self) -> int | None:
        """The largest leader epoch stamped in this log; None if it has none."""
        latest = self.leader_epochs.latest_epoch
        return None if latest == UNDEFINED_EPOCH else latest

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch's (epoch, end offset): ``LeaderEpochCache.end_offset_for``."""
        return self.leader_epochs.end_offset_for(epoch, self.log_end_offset)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """ListOffsets: (offset, timestamp) for -2 (earliest), -1 (latest), or the first record
        whose timestamp is >= ``timestamp``; None when no record is that recent."""
        if timestamp == EARLIEST_TIMESTAMP:
            return self.log_start_offset, -1
        if timestamp == LATEST_TIMESTAMP:
            return self.log_end_offset, -1
        for segment in self.segments:
            if segment.next_offset <= self.log_start_offset:
                continue
            for position, header in segment.batches_from_timestamp(timestamp):
                if (
                    header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] < self.log_start_offset
                    or header[MAX_TIMESTAMP] < timestamp
                ):
                    continue
                data = os.pread(segment.fd, header[BATCH_LENGTH] + LOG_OVERHEAD, position)
                for record in records.decode_batch(data).records:
                    if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                        return record.offset, record.timestamp
        return None

    # --- retention -----------------------------------------------------------------------

    def enforce_retention(self) -> int:
        """Delete whole segments past ``retention.ms`` or beyond ``retention.bytes``; the
        active segment is rolled first if it has expired too.  Returns segments deleted."""
        now = self._now_ms()
        retention_ms = self.config.retention_ms
        retention_bytes = self.config.retention_bytes
        doomed = 0
        if not self.config.delete:  # cleanup.policy=compact: the cleaner's, not retention's
            retention_ms = retention_bytes = -1
        if retention_ms >= 0:
            for segment in self.segments:
                if segment.size == 0 or now - segment.largest_timestamp_or_mtime() <= retention_ms:
                    break
                doomed += 1
        if retention_bytes >= 0:
            excess = self.size - retention_bytes
            by_size = 0
            for segment in self.segments:
                if excess - segment.size < 0:
                    break
                excess -= segment.size
                by_size += 1
            doomed = max(doomed, by_size)
        self.producer_state.remove_expired(now)
        if not doomed:
            return 0
        if doomed >= len(self.segments):
            self.roll()  # only closed segments are deleted; keep an empty active one
            doomed = len(self.segments) - 1
        return self._delete_oldest(doomed, "retention")

    def delete_records_before(self, offset: int) -> bool:
        """Raise the log start offset to ``offset`` (DeleteRecords; ``log_start.py``)."""
        return log_start.delete_records_before(self, offset)

    def _delete_oldest(self, count: int, reason: str) -> int:
        victims = self.segments[:count]
        self.segments = self.segments[count:]
        self._bases = self._bases[count:]
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        self.recovery_point = max(self.recovery_point, self.log_start_offset)
        self._high_watermark = max(self._high_watermark, self.log_start_offset)
        self.leader_epochs.truncate_from_start(self.log_start_offset)
        self._schedule_deletes(victims, reason)
        return len(victims)

    def _schedule_deletes(self, victims, reason: str) -> None:
        """Rename segments ``.deleted`` now (in the order given) and remove their files once
        ``file.delete.delay.ms`` has passed."""
        due = self.clock.seconds() + self.config.file_delete_delay_ms / 1000.0
        for segment in victims:
            renamed = segment.rename_for_deletion()
            self.pending_deletes.append((due, segment, renamed))
            log.info(
                "%s: deleting segment %d (%d bytes) for %s; log start offset is now %d",
                self.directory.name,
                segment.base_offset,
                segment.size,
                reason,
                self.log_start_offset,
            )
        self.delete_pending(force=self.config.file_delete_delay_ms == 0)

    def delete_pending(self, force: bool = False) -> None:
        """Close and remove segments renamed ``.deleted`` once ``file.delete.delay.ms`` passed
        (the delay lets reads already handed out finish)."""
        now = self.clock.seconds()
        keep = []
        for due, segment, paths in self.pending_deletes:
            if force or due <= now:
                segment.close()
                for path in paths:
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
            else:
                keep.append((due, segment, paths))
        self.pending_deletes = keep

    # --- truncation (replicas) ------------------------------------------------------------

    def truncate_to(self, offset: int) -> bool:
        """Remove everything at and after ``offset``, a batch boundary (``truncation.py``)."""
        return truncation.truncate_to(self, offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and start an empty log at ``offset`` (``truncation.py``)."""
        truncation.truncate_fully_and_start_at(self, offset)

    # --- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Flush everything, snapshot the producer state and close the files (a clean close)."""
        self.flush()
        self._snapshot_producers()
        self.active_segment.close_for_appends()
        for segment in self.segments:
            segment.index.flush()
            segment.time_index.flush()
        for segment in self.segments:
            segment.close()
        self.delete_pending(force=True)

    def close_without_flush(self) -> None:
        """Close file descriptors only, as a crash would leave them (for tests and tools)."""
        for segment in self.segments:
            segment.close()
        for _, segment, _ in self.pending_deletes:
            segment.close()

    def delete(self) -> None:
        """Remove the partition's files and directory."""
        for segment in self.segments:
            segment.close()
            segment.delete_files()
        self.delete_pending(force=True)
        for leftover in self.directory.iterdir():
            leftover.unlink()
        self.directory.rmdir()
