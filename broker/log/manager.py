"""The log manager: every partition log under one or more ``log.dirs``, and their schedule.

    >>> manager = LogManager.from_broker_config(config, clock=reactor)
    >>> manager.startup()                     # lock dirs, open (and if needed recover) logs
    >>> log = manager.get_or_create_log("clicks", 0)
    >>> manager.start(reactor)                # flush, retention, checkpoints on a timer
    >>> manager.truncate_to("clicks", 0, 120)  # a replica cut back, recovery point saved
    >>> manager.shutdown()                    # flush, checkpoint, leave the clean marker

Once started on a reactor, no fsync runs on the reactor thread: flushes (the flush policy's
``flush.messages`` from appends, ``flush.ms`` and rolled segments from the schedule) and
checkpoint files are written by one worker thread of the manager, in the order they were asked
for.  The reactor prepares each flush, the thread fsyncs, and the recovery point advances on the
reactor only once the fsyncs completed.  One flush per log is in flight; more requests for it
meanwhile become one more flush after it.

States of a log directory: *locked* by one manager (a second one fails to start), *open*
(no clean-shutdown marker: a crash now means recovery), *clean* (marker written after the
final flush and checkpoints).  On start-up without the marker, each partition is recovered
from its checkpointed recovery point, so recovery reads only the unflushed tail.  Each log's
high watermark is checkpointed with the recovery points (``replication-offset-checkpoint``)
and restored at start-up, clamped to the recovered log end.
"""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import shutil
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.internet.task import LoopingCall
from twisted.python.threadpool import ThreadPool

from ..protocol.durable import atomic_write, fsync_directory
from ..protocol.errors import KafkaStorageError
from .checkpoint import (
    HIGH_WATERMARK_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from .cleaner import CLEANER_OFFSET_FILE, CleanerConfig, LogCleaner
from .clock import SystemClock, milliseconds
from .config import LONG_MAX, LogConfig
from .names import parse_partition_dir_name, partition_dir_name, validate_topic_name
from .partition import PartitionLog

log = logging.getLogger(__name__)

_NOT_AGAIN = -1  # a flush in flight that nobody asked to repeat (offsets are never negative)
CLEAN_SHUTDOWN_FILE = ".clean-shutdown"
LOCK_FILE = ".lock"
DELETE_DIR_SUFFIX = "-delete"
STRAY_DIR_SUFFIX = "-stray"


class LogDirInUseError(RuntimeError):
    """Another process holds a log directory's lock."""


class LogManager:
    """Opens, creates, deletes, flushes, retains and checkpoints partition logs."""

    def __init__(
        self,
        log_dirs: Iterable[str | Path],
        default_config: LogConfig | None = None,
        *,
        clock=None,
        retention_check_interval_ms: int = 300_000,
        flush_check_interval_ms: int = LONG_MAX,
        recovery_checkpoint_interval_ms: int = 60_000,
        start_offset_checkpoint_interval_ms: int = 60_000,
        topic_overrides: Mapping[str, Mapping[str, str]] | None = None,
        cleaner_config: CleanerConfig | None = None,
    ):
        self.log_dirs = [Path(d) for d in log_dirs]
        if not self.log_dirs:
            raise ValueError("at least one log directory is needed")
        self.default_config = default_config or LogConfig()
        self.clock = clock or SystemClock()
        self.retention_check_interval_ms = retention_check_interval_ms
        self.flush_check_interval_ms = flush_check_interval_ms
        self.recovery_checkpoint_interval_ms = recovery_checkpoint_interval_ms
        self.start_offset_checkpoint_interval_ms = start_offset_checkpoint_interval_ms
        self.topic_overrides: dict[str, dict[str, str]] = {
            topic: dict(values) for topic, values in (topic_overrides or {}).items()
        }
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self._dir_of: dict[tuple[str, int], Path] = {}
        self._locks: list[int] = []
        self._last_run: dict[str, int] = {}
        self._loop: LoopingCall | None = None
        self._reactor: Any = None  # the reactor that runs the flush thread's callbacks
        self._flush_pool: ThreadPool | None = None  # one thread: fsyncs off the reactor
        self._flushing: dict[PartitionLog, int | None] = {}  # in flight -> asked again (up_to)
        self._detached: set[tuple[str, int]] = set()  # logs the checkpoints on disk may still name
        self.started = False
        self.recovered_unclean = False
        self.cleaner = LogCleaner(cleaner_config or CleanerConfig(), self.clock)

    @classmethod
    def from_broker_config(
        cls, config: Mapping[str, Any], *, clock=None, topic_overrides=None
    ) -> LogManager:
        return cls(
            config["log.dirs"],
            LogConfig.from_broker(config),
            clock=clock,
            retention_check_interval_ms=config["log.retention.check.interval.ms"],
            flush_check_interval_ms=config["log.flush.scheduler.interval.ms"],
            recovery_checkpoint_interval_ms=config["log.flush.offset.checkpoint.interval.ms"],
            start_offset_checkpoint_interval_ms=config[
                "log.flush.start.offset.checkpoint.interval.ms"
            ],
            topic_overrides=topic_overrides,
            cleaner_config=CleanerConfig.from_broker(config),
        )

    def _now_ms(self) -> int:
        return milliseconds(self.clock)

    # --- start-up ------------------------------------------------------------------------

    def startup(self) -> None:
        """Lock every log dir, open every partition log in them, recovering after a crash."""
        _raise_open_file_limit()
        try:
            for directory in self.log_dirs:
                directory.mkdir(parents=True, exist_ok=True)
                self._lock(directory)
            for directory in self.log_dirs:
                self._load_dir(directory)
        except BaseException:
            self.crash()  # close what was opened and release the locks
            self.logs.clear()
            self._dir_of.clear()
            raise
        for directory in self.log_dirs:
            marker = directory / CLEAN_SHUTDOWN_FILE
            if marker.exists():
                marker.unlink()
                fsync_directory(directory)
        self.cleaner.load_checkpoints(self.log_dirs, self.logs.values())
        now = self._now_ms()
        for task in ("flush", "retention", "recovery-checkpoint", "start-checkpoint"):
            self._last_run[task] = now
        self.started = True
        log.info(
            "log manager started with %d partition logs in %s",
            len(self.logs),
            ", ".join(map(str, self.log_dirs)),
        )

    def _lock(self, directory: Path) -> None:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogDirInUseError(
                f"log directory {directory} is locked by another process (is a broker running?)"
            ) from None
        self._locks.append(fd)

    def _load_dir(self, directory: Path) -> None:
        clean = (directory / CLEAN_SHUTDOWN_FILE).exists()
        try:
            recovery_points = read_checkpoint(directory / RECOVERY_POINT_FILE)
        except CheckpointError as exc:
            log.warning("%s; recovering every log in %s from its start", exc, directory)
            recovery_points, clean = {}, False
        try:
            start_offsets = read_checkpoint(directory / LOG_START_OFFSET_FILE)
        except CheckpointError as exc:
            log.warning("%s; log start offsets come from the oldest segments", exc)
            start_offsets = {}
        try:
            high_watermarks = read_checkpoint(directory / HIGH_WATERMARK_FILE)
        except CheckpointError as exc:
            log.warning("%s; high watermarks start at the log start offsets", exc)
            high_watermarks = {}
        has_logs = any(
            child.is_dir() and parse_partition_dir_name(child.name) for child in directory.iterdir()
        )
        if not clean and has_logs:
            self.recovered_unclean = True
            log.warning("%s was not shut down cleanly; recovering unflushed data", directory)
        for child in sorted(directory.iterdir()):
            if not child.is_dir():
                continue
            if child.name.endswith(DELETE_DIR_SUFFIX):
                shutil.rmtree(child, ignore_errors=True)
                continue
            parsed = parse_partition_dir_name(child.name)
            if parsed is None:
                continue
            if parsed in self.logs:
                raise KafkaStorageError(
                    f"partition {child.name} is in both {self._dir_of[parsed]} and {directory}"
                )
            config = self.config_for(parsed[0])
            self.logs[parsed] = PartitionLog.open(
                child,
                config,
                clock=self.clock,
                recover=not clean,
                recovery_point=recovery_points.get(parsed, 0),
                log_start_offset=start_offsets.get(parsed, 0),
                high_watermark=high_watermarks.get(parsed, 0),
            )
            self._dir_of[parsed] = directory

    # --- partitions ----------------------------------------------------------------------

    def config_for(self, topic: str) -> LogConfig:
        return self.default_config.with_overrides(self.topic_overrides.get(topic, {}))

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def get_or_create_log(self, topic: str, partition: int) -> PartitionLog:
        """The partition's log, created in the least-loaded log dir if it does not exist."""
        key = (topic, partition)
        existing = self.logs.get(key)
        if existing is not None:
            return existing
        validate_topic_name(topic)
        if partition < 0:
            raise ValueError(f"partition {partition} is negative")
        if key in self._detached:
            # The checkpoint files may still hold the old log's offsets (they are written on
            # the flush thread, behind its queue): after a crash, a new log of the name would
            # take them.  Write them without it, and wait, before the new log exists.
            self._detached.discard(key)
            self.checkpoint_recovery_points(wait=True)
            self.checkpoint_log_start_offsets(wait=True)
            self.checkpoint_high_watermarks(wait=True)
        counts = {d: 0 for d in self.log_dirs}
        for d in self._dir_of.values():
            counts[d] += 1
        directory = min(self.log_dirs, key=lambda d: counts[d])
        plog = PartitionLog.open(
            directory / partition_dir_name(topic, partition),
            self.config_for(topic),
            clock=self.clock,
        )
        self._in_background(fsync_directory, directory)
        if self._flush_pool is not None:
            plog.flusher = self.flush_in_background
        self.logs[key] = plog
        self._dir_of[key] = directory
        log.info("created log for %s-%d in %s", topic, partition, directory)
        return plog

    def set_topic_overrides(self, topic: str, overrides: Mapping[str, str]) -> None:
        """Apply new per-topic settings to the topic's existing and future logs."""
        config = self.default_config.with_overrides(overrides)  # validates before storing
        self.topic_overrides[topic] = dict(overrides)
        for (t, _), plog in self.logs.items():
            if t == topic:
                plog.config = config

    def _detach(self, topic: str, partition: int, suffix: str, flush: bool) -> Path | None:
        """Stop serving a partition's log and rename its directory with ``suffix`` (durably);
        returns the new path, or None if there is no such log."""
        key = (topic, partition)
        plog = self.logs.pop(key, None)
        if plog is None:
            return None
        directory = self._dir_of.pop(key)
        self._detached.add(key)
        self.cleaner.forget(key)
        if flush:
            plog.close()
        else:
            plog.close_without_flush()
        target = directory / f"{plog.directory.name}.{uuid.uuid4().hex[:8]}{suffix}"
        os.replace(plog.directory, target)
        fsync_directory(directory)
        return target

    def set_aside_log(self, topic: str, partition: int) -> Path | None:
        """Stop serving a log without deleting its data: the directory is renamed
        ``<name>.<id>-stray`` and never loaded again (remove it by hand when sure)."""
        return self._detach(topic, partition, STRAY_DIR_SUFFIX, flush=True)

    def delete_log(self, topic: str, partition: int, checkpoint: bool = True) -> bool:
        """Remove a partition's log: renamed ``-delete`` at once, files removed after.  With
        ``checkpoint=False`` the caller writes the checkpoints once after many deletions."""
        doomed = self._detach(topic, partition, DELETE_DIR_SUFFIX, flush=False)
        if doomed is None:
            return False
        # A topic created again under this name must not inherit these offsets after a crash.
        if checkpoint:
            self.checkpoint_recovery_points()
            self.checkpoint_log_start_offsets()
            self.checkpoint_high_watermarks()
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # --- the schedule --------------------------------------------------------------------

    def tick(self) -> None:
        """Run whatever is due: time-based flushes (``flush.ms``), flushes of rolled segments,
        retention, removal of deleted segments' files, and checkpoints."""
        now = self._now_ms()
        check_time = now - self._last_run["flush"] >= self.flush_check_interval_ms
        if check_time:
            self._last_run["flush"] = now
        for plog in self.logs.values():
            if plog.offline or not plog.unflushed:
                continue
            if check_time and now - plog.last_flush_ms >= plog.config.flush_interval_ms:
                self._scheduled_flush(plog, None)
            elif plog.has_rolled_unflushed():
                self._scheduled_flush(plog, plog.segments[-1].base_offset)
        if now - self._last_run["retention"] >= self.retention_check_interval_ms:
            self._last_run["retention"] = now
            self.enforce_retention()
        for plog in self.logs.values():
            if plog.pending_deletes:
                plog.delete_pending()
        if now - self._last_run["recovery-checkpoint"] >= self.recovery_checkpoint_interval_ms:
            self._last_run["recovery-checkpoint"] = now
            self.checkpoint_recovery_points()
            self.checkpoint_high_watermarks()
            self.checkpoint_cleaner_offsets()
        self.cleaner.tick(self.logs)
        if now - self._last_run["start-checkpoint"] >= self.start_offset_checkpoint_interval_ms:
            self._last_run["start-checkpoint"] = now
            self.checkpoint_log_start_offsets()

    def _scheduled_flush(self, plog: PartitionLog, up_to: int | None) -> None:
        if self._flush_pool is not None:
            self.flush_in_background(plog, up_to)
            return
        try:
            plog.flush(up_to)
        except OSError as exc:
            self._flush_failed(plog, exc)

    def _flush_failed(self, plog: PartitionLog, exc: BaseException) -> None:
        if self.logs.get((plog.topic, plog.partition)) is not plog:
            return  # deleted or set aside meanwhile
        plog.offline = True
        log.error("%s: disk error, taking the log offline: %s", plog.directory, exc)

    def flush_in_background(self, plog: PartitionLog, up_to: int | None = None) -> None:
        """Flush ``plog`` to ``up_to`` (default: its end) on the flush thread; the recovery
        point advances (on the reactor) when the fsyncs completed.  Serves as the logs'
        ``flusher``."""
        if plog in self._flushing:  # one in flight: one more after it covers both
            again = self._flushing[plog]
            if again == _NOT_AGAIN:
                self._flushing[plog] = up_to
            elif again is not None:
                self._flushing[plog] = None if up_to is None else max(again, up_to)
            return
        try:
            job = plog.prepare_flush(up_to)
        except OSError as exc:
            self._flush_failed(plog, exc)
            return
        if job is None:
            return
        self._flushing[plog] = _NOT_AGAIN

        def done(_):
            plog.flushed(job)

        def failed(failure):
            self._flush_failed(plog, failure.value)

        def next_one(_):
            again = self._flushing.pop(plog, _NOT_AGAIN)
            if again != _NOT_AGAIN and not plog.offline and self._flush_pool is not None:
                self.flush_in_background(plog, again)

        pool = self._flush_pool
        assert pool is not None  # logs get this method as their flusher only with a pool
        d = threads.deferToThreadPool(self._reactor, pool, job.run)
        d.addCallbacks(done, failed).addBoth(next_one)

    def _in_background(self, function, *args, wait: bool = False) -> None:
        """Run a disk write with fsyncs on the flush thread once started (in order with the
        flushes), else here; errors are logged.  With ``wait``, return once it ran."""

        def report(failure):
            log.error("%s failed: %s", getattr(function, "__name__", function), failure.value)

        if wait and self._flush_pool is not None:
            ran = threading.Event()

            def run_then_tell():
                try:
                    function(*args)
                except OSError as exc:
                    log.error("%s failed: %s", getattr(function, "__name__", function), exc)
                finally:
                    ran.set()

            self._flush_pool.callInThread(run_then_tell)
            ran.wait()
            return
        if self._flush_pool is None:
            try:
                function(*args)
            except OSError as exc:
                log.error("%s failed: %s", getattr(function, "__name__", function), exc)
            return
        d = threads.deferToThreadPool(self._reactor, self._flush_pool, function, *args)
        d.addErrback(report)

    def enforce_retention(self) -> int:
        deleted = 0
        for plog in list(self.logs.values()):
            if not plog.offline:
                deleted += plog.enforce_retention()
        return deleted

    def checkpoint_recovery_points(self, wait: bool = False) -> None:
        self._checkpoint(RECOVERY_POINT_FILE, lambda plog: plog.recovery_point, wait)

    def checkpoint_log_start_offsets(self, wait: bool = False) -> None:
        self._checkpoint(LOG_START_OFFSET_FILE, lambda plog: plog.log_start_offset, wait)

    def checkpoint_high_watermarks(self, wait: bool = False) -> None:
        self._checkpoint(HIGH_WATERMARK_FILE, lambda plog: plog.high_watermark, wait)

    def checkpoint_cleaner_offsets(self, wait: bool = False) -> None:
        self._checkpoint(CLEANER_OFFSET_FILE, self.cleaner.checkpoint_of, wait)

    # --- truncation (replicas) -----------------------------------------------------------

    def truncate_to(self, topic: str, partition: int, offset: int) -> bool:
        """Truncate a partition's log (``PartitionLog.truncate_to``) and write the lowered
        recovery point and high watermark before returning, so that data appended after the
        cut is re-checked by a recovery after a crash.  False if nothing was cut."""
        truncated = self.logs[(topic, partition)].truncate_to(offset)
        if truncated:
            self.checkpoint_recovery_points(wait=True)
            self.checkpoint_high_watermarks(wait=True)
        return truncated

    def truncate_fully_and_start_at(self, topic: str, partition: int, offset: int) -> None:
        """Empty a partition's log to start at ``offset``, and checkpoint its offsets."""
        self.logs[(topic, partition)].truncate_fully_and_start_at(offset)
        self.checkpoint_recovery_points(wait=True)
        self.checkpoint_log_start_offsets(wait=True)
        self.checkpoint_high_watermarks(wait=True)

    def _checkpoint(self, file_name: str, value, wait: bool = False) -> None:
        """Write a checkpoint file per log dir of the values now (the file is written on the
        flush thread once started: after the flushes asked for before it; with ``wait``, this
        returns once it is written)."""
        for directory in self.log_dirs:
            offsets = {
                key: value(plog)
                for key, plog in self.logs.items()
                if self._dir_of[key] == directory and not plog.offline
            }
            self._in_background(write_checkpoint, directory / file_name, offsets, wait=wait)

    def start(self, clock, interval: float | None = None):
        """Run ``tick`` on a Twisted LoopingCall driven by ``clock`` (a reactor or a
        ``twisted.internet.task.Clock``); returns the LoopingCall's deferred."""
        if interval is None:
            intervals = [
                self.retention_check_interval_ms,
                self.flush_check_interval_ms,
                self.recovery_checkpoint_interval_ms,
                self.start_offset_checkpoint_interval_ms,
                1000,
            ]
            interval = max(0.01, min(intervals) / 1000.0)
        if hasattr(clock, "callFromThread") and self._flush_pool is None:  # a real reactor
            self._reactor = clock
            self._flush_pool = ThreadPool(1, 1, name="log-flush")
            self._flush_pool.start()
            for plog in self.logs.values():
                plog.flusher = self.flush_in_background
            self.cleaner.start(clock)
        loop = self._loop = LoopingCall(self.tick)
        loop.clock = clock
        return loop.start(interval, now=False)

    def stop(self) -> None:
        """Stop the schedule; wait for the flush thread to finish what it was given."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.cleaner.stop()
        if self._flush_pool is not None:
            pool, self._flush_pool = self._flush_pool, None
            pool.stop()  # joins the thread: every queued fsync has run
            for plog in self.logs.values():
                plog.flusher = None
            self._flushing.clear()

    # --- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Flush and close every log, write both checkpoints, leave the clean-shutdown marker."""
        self.stop()
        offline = False
        for plog in self.logs.values():
            if plog.offline:
                offline = True
                plog.close_without_flush()
                continue
            try:
                plog.close()
            except OSError as exc:
                offline = True
                log.error("%s: cannot flush on shutdown: %s", plog.directory, exc)
        self.checkpoint_recovery_points()
        self.checkpoint_log_start_offsets()
        self.checkpoint_high_watermarks()
        self.checkpoint_cleaner_offsets()
        if not offline:
            for directory in self.log_dirs:
                atomic_write(directory / CLEAN_SHUTDOWN_FILE, b"")
        for fd in self._locks:
            os.close(fd)
        self._locks = []
        self.started = False
        log.info("log manager shut down %s", "cleanly" if not offline else "with offline logs")

    def crash(self) -> None:
        """Close everything without flushing or marking clean, as ``kill -9`` would (tests)."""
        self.stop()
        for plog in self.logs.values():
            plog.close_without_flush()
        for fd in self._locks:
            os.close(fd)
        self._locks = []
        self.started = False


def _raise_open_file_limit() -> None:
    """Each partition holds a file open per segment; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
