"""The log cleaner: compacts the logs of ``cleanup.policy=compact`` topics in threads of its
own, as Kafka's ``LogCleaner`` and ``LogCleanerManager`` do.

    >>> cleaner = LogCleaner(CleanerConfig(threads=1), clock)
    >>> cleaner.load_checkpoints(log_dirs, logs)   # cleaner-offset-checkpoint per log dir
    >>> cleaner.tick(logs)         # on the log thread: start cleans of the dirtiest logs
    >>> cleaner.clean_now(plog)    # the same on this thread, start to finish (tests, tools)

On each tick (the log manager's schedule, on the reactor) a free thread gets the dirtiest
compacted log whose dirty share (bytes not yet cleaned below the cleanable end, over all bytes
below it) is above ``min.cleanable.dirty.ratio``, or whose oldest dirty record is older
than ``max.compaction.lag.ms``, or whose kept tombstones have come due
(``delete.retention.ms`` after the clean that kept them; after a restart, each compacted log
once).  The log thread takes a ``CleanJob``: duplicated descriptors of the segments to read
and the producers' last offsets, and nothing else of the log's.  The cleaner thread builds
the offset map and writes the cleaned groups (compaction.py); back on the log thread each
group is swapped in (swap.py) only if its segments are still the log's (a truncation,
retention or deletion meanwhile discards the clean), and the log's first dirty offset moves
to the end of the clean, written to ``cleaner-offset-checkpoint`` with the other checkpoints.
Nothing to clean: the next look is ``log.cleaner.backoff.ms`` later.  Appends touch only the
active segment, which is never cleaned; reads handed out before a swap finish from the old
segments' files, which are removed after ``file.delete.delay.ms``.  Followers clean their
own copies the same way: the cleanable end never passes the high watermark, so a truncation
cannot take back a record that made an older one of its key go.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from ..protocol.records import BASE_TIMESTAMP, HEADER, HEADER_SIZE
from .checkpoint import CheckpointError, read_checkpoint
from .clock import milliseconds
from .compaction import (
    KEY_ENTRY_BYTES,
    CleanAborted,
    CleanedGroup,
    CleanJob,
    SegmentCopy,
    Throttle,
    build_offset_map,
    clean_group,
    group_segments,
)
from .swap import discard, install, mark_swaps, write_indexes

if TYPE_CHECKING:
    from .partition import PartitionLog

log = logging.getLogger(__name__)

CLEANER_OFFSET_FILE = "cleaner-offset-checkpoint"
_LOAD_FACTOR = 0.9  # log.cleaner.io.buffer.load.factor


@dataclass(frozen=True)
class CleanerConfig:
    """The broker's ``log.cleaner.*`` settings (Kafka's names and defaults)."""

    enable: bool = True
    threads: int = 1
    backoff_ms: int = 15_000
    dedupe_buffer_size: int = 134_217_728
    io_max_bytes_per_second: float = float("inf")

    @classmethod
    def from_broker(cls, broker: Mapping) -> CleanerConfig:
        return cls(
            broker["log.cleaner.enable"],
            broker["log.cleaner.threads"],
            broker["log.cleaner.backoff.ms"],
            broker["log.cleaner.dedupe.buffer.size"],
            broker["log.cleaner.io.max.bytes.per.second"],
        )


@dataclass
class CleanResult:
    """What one clean did, for logs, metrics and tests."""

    first_dirty: int
    end: int
    groups: list[CleanedGroup] = field(default_factory=list)
    swapped: int = 0
    map_keys: int = 0  # distinct keys in the offset map
    seconds: float = 0.0  # the cleaner thread's time on it

    @property
    def bytes_read(self) -> int:
        return sum(g.bytes_read for g in self.groups)

    @property
    def bytes_written(self) -> int:
        return sum(g.bytes_written for g in self.groups)


@dataclass
class _Taken:
    """A job and the log's segment objects it was taken from (checked again at the swap)."""

    plog: PartitionLog
    job: CleanJob
    segments: list
    truncations: int  # a truncation meanwhile may have taken back records the map holds


class LogCleaner:
    """Chooses, runs and swaps in cleans; see the module docstring."""

    def __init__(self, config: CleanerConfig, clock):
        self.config = config
        self.clock = clock
        self.first_dirty: dict[tuple[str, int], int] = {}
        self.tombstones_due: dict[tuple[str, int], int | None] = {}  # ms; 0: look once
        self.in_progress: set[tuple[str, int]] = set()
        self.uncleanable: set[tuple[str, int]] = set()  # a clean of theirs failed
        self.throttle = Throttle(config.io_max_bytes_per_second)
        self.cleans = 0
        self.bytes_cleaned = 0  # read by the cleans swapped in
        self.bytes_written = 0
        self.clean_seconds = 0.0
        self.last_clean_seconds = 0.0  # Kafka's max-clean-time-secs (of the last clean)
        self.max_dirty_ratio = 0.0  # Kafka's max-dirty-percent, over the logs last looked at
        self.buffer_utilization = 0.0  # the last clean's map keys over those it could hold
        self._dirtiest = 0.0
        self._pool: ThreadPool | bool | None = None  # False once stopped
        self._reactor: Any = None
        self._jobs: list[CleanJob] = []
        self._idle_until = 0

    # --- checkpoints -----------------------------------------------------------------------

    def load_checkpoints(self, log_dirs: Iterable[Path], logs: Iterable[PartitionLog]) -> None:
        """Read each dir's ``cleaner-offset-checkpoint``; every compacted log's kept
        tombstones are looked at once."""
        for directory in log_dirs:
            try:
                self.first_dirty.update(read_checkpoint(Path(directory) / CLEANER_OFFSET_FILE))
            except CheckpointError as exc:
                log.warning("%s; every compacted log is cleaned from its start", exc)
        for plog in logs:
            self.tombstones_due[(plog.topic, plog.partition)] = 0

    def forget(self, key: tuple[str, int]) -> None:
        """A log deleted or set aside: a new log of the name starts all dirty."""
        self.first_dirty.pop(key, None)
        self.tombstones_due.pop(key, None)

    def checkpoint_of(self, plog: PartitionLog) -> int:
        """The log's first dirty offset, within its bounds."""
        offset = self.first_dirty.get((plog.topic, plog.partition), plog.log_start_offset)
        return min(max(offset, plog.log_start_offset), plog.log_end_offset)

    # --- choosing --------------------------------------------------------------------------

    def _plan(self, plog: PartitionLog, now: int) -> tuple[float, int, int] | None:
        """(dirty ratio, first dirty, cleanable end) if the log should be cleaned now."""
        config = plog.config
        if not config.compact or plog.offline:
            return None
        segments = plog.segments
        bound = min(plog.active_segment.base_offset, plog.recovery_point, plog.high_watermark)
        end = 0
        while end < len(segments) - 1 and segments[end].next_offset <= bound:
            end += 1  # segments[:end] lie wholly below the bound
        first_dirty = self.checkpoint_of(plog)
        dirty = [i for i in range(end) if segments[i].next_offset > first_dirty]
        if config.min_compaction_lag_ms > 0:
            young = now - config.min_compaction_lag_ms
            for i in dirty:
                if segments[i].largest_timestamp_or_mtime() > young:
                    end = i
                    break
            dirty = [i for i in dirty if i < end]
        if end == 0:
            return None
        dirty_bytes = sum(segments[i].size for i in dirty)
        total = sum(s.size for s in segments[:end]) or 1
        ratio = dirty_bytes / total
        self._dirtiest = max(self._dirtiest, ratio)
        key = (plog.topic, plog.partition)
        due = self.tombstones_due.get(key)
        if (
            (dirty_bytes and ratio > config.min_cleanable_dirty_ratio)
            or (dirty_bytes and self._overdue(segments[dirty[0]], now, config))
            or (due is not None and due <= now)
        ):
            return ratio, first_dirty, segments[end].base_offset
        return None

    @staticmethod
    def _overdue(segment, now: int, config) -> bool:
        """``max.compaction.lag.ms``: the segment's first record waited too long."""
        if config.max_compaction_lag_ms >= now:
            return False
        first = os.pread(segment.fd, HEADER_SIZE, 0)
        ts = HEADER.unpack(first)[BASE_TIMESTAMP] if len(first) == HEADER_SIZE else -1
        if ts < 0:
            ts = segment.largest_timestamp_or_mtime()
        return ts < now - config.max_compaction_lag_ms

    def _take(self, plog: PartitionLog, first_dirty: int, end: int, now: int) -> _Taken:
        """A clean job over the log's segments below ``end`` (on the log's thread)."""
        chosen = [s for s in plog.segments if s.base_offset < end]
        copies = []
        try:
            for s, following in zip(chosen, plog.segments[1:]):
                fd = os.dup(s.fd)
                mtime = os.fstat(fd).st_mtime
                copies.append(SegmentCopy(s.base_offset, following.base_offset, s.size, fd, mtime))
        except OSError:
            for c in copies:
                os.close(c.fd)
            raise
        producers = {
            pid: entry.batches[-1].last_offset
            for pid, entry in plog.producer_state.producers.items()
            if entry.batches
        }
        threads_ = max(1, self.config.threads)
        max_keys = int(self.config.dedupe_buffer_size * _LOAD_FACTOR / KEY_ENTRY_BYTES / threads_)
        job = CleanJob(
            plog.directory,
            copies,
            first_dirty,
            end,
            now,
            plog.config.delete_retention_ms,
            plog.config.segment_bytes,
            plog.config.index_interval_bytes,
            max(1, max_keys),
            producers,
            self.throttle,
        )
        self.in_progress.add((plog.topic, plog.partition))
        return _Taken(plog, job, chosen, plog.truncations)

    def _choose(self, logs: Iterable[PartitionLog], now: int) -> _Taken | None:
        best = None
        self._dirtiest = 0.0
        for plog in logs:
            key = (plog.topic, plog.partition)
            if key in self.in_progress or key in self.uncleanable:
                continue
            plan = self._plan(plog, now)
            if plan is not None and (best is None or plan[0] > best[0][0]):
                best = (plan, plog)
        self.max_dirty_ratio = self._dirtiest
        if best is None:
            return None
        (_, first_dirty, end), plog = best
        return self._take(plog, first_dirty, end, now)

    # --- running ---------------------------------------------------------------------------

    @staticmethod
    def run(job: CleanJob) -> CleanResult:
        """The cleaner thread's part: the offset map, then each group's cleaned files."""
        began = time.monotonic()
        offset_map, end = build_offset_map(job)
        result = CleanResult(job.first_dirty, end, map_keys=len(offset_map))
        try:
            for group in group_segments(job, end):
                cleaned = clean_group(job, group, offset_map)
                if cleaned.path is not None:
                    write_indexes(cleaned, job.index_interval)
                result.groups.append(cleaned)
        except BaseException:
            for cleaned in result.groups:
                discard(cleaned)
            raise
        result.seconds = time.monotonic() - began
        return result

    def _finish(self, taken: _Taken, result: CleanResult, logs: Mapping) -> CleanResult:
        """On the log's thread: swap each group in, if its segments are still the log's."""
        plog, key = taken.plog, (taken.plog.topic, taken.plog.partition)
        try:
            alive = (
                logs.get(key) is plog
                and not plog.offline
                and plog.truncations == taken.truncations
                and self._pool is not False
            )
            changed = [g for g in result.groups if g.path is not None]
            # the groups before the first whose segments are no longer the log's go in
            fit = [_index_of(plog.segments, taken.segments, g.bases, alive) for g in changed]
            stale = fit.index(None) if None in fit else len(changed)
            for rest in changed[stale:]:
                discard(rest)
            mark_swaps(plog.directory, changed[:stale])
            for cleaned in changed[:stale]:
                first = _index_of(plog.segments, taken.segments, cleaned.bases, True)
                assert first is not None, "installing a group leaves the others in place"
                install(plog, first, len(cleaned.bases), cleaned)
                result.swapped += 1
            if stale < len(changed):
                log.info("%s: the log changed during a clean; it is discarded", key)
                return result
            self.first_dirty[key] = result.end
            retention = plog.config.delete_retention_ms
            dues = [int(g.mtime * 1000) + retention for g in result.groups if g.tombstones_kept]
            self.tombstones_due[key] = min(dues) if dues else None
            self.cleans += 1
            self.bytes_cleaned += result.bytes_read
            self.bytes_written += result.bytes_written
            self.clean_seconds += result.seconds
            self.last_clean_seconds = result.seconds
            self.buffer_utilization = result.map_keys / taken.job.max_map_keys
            log.info(
                "%s-%d: cleaned offsets up to %d: %d groups, %d bytes read, %d written",
                plog.topic,
                plog.partition,
                result.end,
                result.swapped,
                result.bytes_read,
                result.bytes_written,
            )
            return result
        finally:
            self._done(taken)

    def _done(self, taken: _Taken) -> None:
        taken.job.close()
        self.in_progress.discard((taken.plog.topic, taken.plog.partition))
        if taken.job in self._jobs:
            self._jobs.remove(taken.job)

    def clean_now(self, plog: PartitionLog, logs: Mapping | None = None) -> CleanResult | None:
        """Clean ``plog`` on this thread if it is due (tests and tools); None if not."""
        now = milliseconds(self.clock)
        plan = self._plan(plog, now)
        if plan is None:
            return None
        taken = self._take(plog, plan[1], plan[2], now)
        try:
            result = self.run(taken.job)
        except BaseException:
            self._done(taken)
            raise
        return self._finish(taken, result, logs or {(plog.topic, plog.partition): plog})

    def tick(self, logs: Mapping) -> None:
        """Start cleans on free threads (with a reactor: see ``start``)."""
        pool = self._pool
        if not self.config.enable or not isinstance(pool, ThreadPool):
            return
        now = milliseconds(self.clock)
        if now < self._idle_until:
            return
        while len(self.in_progress) < self.config.threads:
            taken = self._choose(logs.values(), now)
            if taken is None:
                self._idle_until = now + self.config.backoff_ms
                return
            self._jobs.append(taken.job)
            d = threads.deferToThreadPool(self._reactor, pool, self.run, taken.job)
            d.addCallbacks(
                lambda result, taken=taken: self._finish(taken, result, logs),
                lambda failure, taken=taken: self._failed(taken, failure),
            )

    def _failed(self, taken: _Taken, failure) -> None:
        self._done(taken)
        if failure.check(CleanAborted) or not taken.plog.directory.exists():
            return  # stopping, or the log was deleted meanwhile
        key = (taken.plog.topic, taken.plog.partition)
        self.uncleanable.add(key)  # as Kafka's: not tried again until the broker restarts
        log.error(
            "%s: the clean failed, the log is not cleaned again until a restart: %s",
            taken.plog.directory.name,
            failure.getErrorMessage(),
        )

    def start(self, reactor) -> None:
        if self.config.enable and self._pool is None:
            self._reactor = reactor
            self._pool = ThreadPool(1, self.config.threads, name="log-cleaner")
            self._pool.start()

    def stop(self) -> None:
        """Tell running cleans to stop (their files are discarded) and join the threads."""
        for job in self._jobs:
            job.stop.set()
        pool = self._pool
        if isinstance(pool, ThreadPool):
            self._pool = False  # cleans finishing after this are discarded
            pool.stop()


def _index_of(segments: list, expected: list, bases: list[int], alive: bool) -> int | None:
    """Where the segments with ``bases`` begin in ``segments``, if they are still the very
    objects the clean read (and the one after them is still there)."""
    if not alive:
        return None
    wanted = [s for s in expected if s.base_offset in bases]
    for i, segment in enumerate(segments):
        if segment is wanted[0]:
            if segments[i : i + len(wanted)] == wanted and i + len(wanted) < len(segments):
                return i
            return None
    return None
