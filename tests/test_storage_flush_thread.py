"""No fsync on the reactor thread: a started log manager fsyncs on its flush thread, and the
recovery point advances only once those fsyncs completed."""

from __future__ import annotations

import os
import queue
import shutil
import threading

import pytest
from twisted.internet.task import Clock

from broker.log import LogConfig, LogManager
from broker.log.checkpoint import RECOVERY_POINT_FILE, read_checkpoint
from broker.protocol.records import build_batch, iter_records


class ThreadedClock(Clock):
    """A Clock that, like a reactor, takes calls from other threads; the test runs them."""

    def __init__(self):
        super().__init__()
        self.from_threads: queue.Queue = queue.Queue()

    def callFromThread(self, f, *args, **kwargs):
        self.from_threads.put((f, args, kwargs))

    def run_thread_calls(self, count: int = 1, timeout: float = 10.0) -> None:
        for _ in range(count):
            f, args, kwargs = self.from_threads.get(timeout=timeout)
            f(*args, **kwargs)

    def drain(self) -> None:
        while not self.from_threads.empty():
            self.run_thread_calls()


@pytest.fixture
def fsyncs(monkeypatch):
    """Record the thread of every fsync; ``gate`` (an Event) holds them while it is clear."""
    real = os.fsync
    seen: list[int] = []
    gate = threading.Event()
    gate.set()

    def fsync(fd):
        seen.append(threading.get_ident())
        assert gate.wait(10), "fsync held too long"
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen, gate


def test_flush_policy_fsyncs_off_the_reactor_and_advances_the_recovery_point_after(
    tmp_path, fsyncs
):
    seen, gate = fsyncs
    clock = ThreadedClock()
    manager = LogManager([tmp_path], LogConfig(flush_interval_messages=1), clock=clock)
    manager.startup()
    plog = manager.get_or_create_log("t", 0)
    manager.start(clock)
    seen.clear()
    reactor_thread = threading.get_ident()

    gate.clear()  # the disk is slow: fsyncs wait
    plog.append(build_batch([(None, b"one")]))  # flush.messages=1: a flush is due
    plog.append(build_batch([(None, b"two")]))  # the first is in flight: one more after it
    assert plog.log_end_offset == 2
    assert plog.recovery_point == 0  # the appends returned; nothing is durable yet
    gate.set()
    clock.run_thread_calls()  # the first flush's result reaches the "reactor"
    assert plog.recovery_point in (1, 2)
    clock.run_thread_calls()  # then the second one's
    assert plog.recovery_point == 2
    assert seen and reactor_thread not in seen

    manager.stop()
    clock.drain()
    manager.shutdown()


def test_scheduled_flushes_and_checkpoints_run_on_the_flush_thread(tmp_path, fsyncs):
    seen, gate = fsyncs
    clock = ThreadedClock()
    manager = LogManager(
        [tmp_path],
        LogConfig(flush_interval_ms=1000, segment_bytes=200),
        clock=clock,
        flush_check_interval_ms=1000,
        recovery_checkpoint_interval_ms=2000,
    )
    manager.startup()
    logs = [manager.get_or_create_log("t", p) for p in range(3)]
    manager.start(clock, interval=1.0)
    seen.clear()
    for plog in logs:
        for _i in range(5):  # several segments: rolled ones are flushed on the next tick
            plog.append(build_batch([(None, b"x" * 100)]))
    gate.clear()
    clock.advance(1.0)  # flush.ms passed: one flush per log is handed to the thread
    assert [plog.recovery_point for plog in logs] == [0, 0, 0]
    gate.set()
    clock.run_thread_calls(3)
    assert [plog.recovery_point for plog in logs] == [5, 5, 5]
    clock.advance(1.0)  # the recovery-point checkpoint, written by the thread
    clock.run_thread_calls()
    assert read_checkpoint(tmp_path / RECOVERY_POINT_FILE) == {("t", p): 5 for p in range(3)}
    assert seen and threading.get_ident() not in seen
    manager.stop()
    clock.drain()
    manager.shutdown()


def test_a_failed_background_fsync_takes_only_that_log_offline(tmp_path, monkeypatch):
    clock = ThreadedClock()
    manager = LogManager([tmp_path], LogConfig(flush_interval_messages=1), clock=clock)
    manager.startup()
    bad, good = manager.get_or_create_log("t", 0), manager.get_or_create_log("t", 1)
    manager.start(clock)
    real = os.fsync
    bad_file = os.stat(bad.active_segment.log_path)

    def fsync(fd):
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (bad_file.st_dev, bad_file.st_ino):
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    bad.append(build_batch([(None, b"lost?")]))
    good.append(build_batch([(None, b"kept")]))
    clock.run_thread_calls(2)
    assert bad.offline and bad.recovery_point == 0
    assert not good.offline and good.recovery_point == 1
    manager.stop()
    clock.drain()
    manager.shutdown()


def test_a_partition_created_again_after_deletion_never_inherits_its_old_checkpoints(tmp_path):
    """The checkpoints are written on the flush thread, behind whatever is queued there.  A
    partition deleted and created again at once (a topic re-created under its name) must not
    find its predecessor's log start offset and recovery point in them after a crash."""
    config = LogConfig(segment_bytes=300, retention_bytes=400, file_delete_delay_ms=0)
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    live.mkdir()
    clock = ThreadedClock()
    manager = LogManager([live], config, clock=clock)
    manager.startup()
    old = manager.get_or_create_log("t", 0)
    for i in range(10):
        old.append(build_batch([(None, b"%d" % i * 100)]))
    manager.enforce_retention()
    assert old.log_start_offset > 3
    old.flush()
    manager.checkpoint_recovery_points()
    manager.checkpoint_log_start_offsets()
    manager.start(clock)
    slow_disk = threading.Event()  # the flush thread is busy for a while
    manager._in_background(slow_disk.wait, 10)
    threading.Timer(0.5, slow_disk.set).start()

    manager.delete_log("t", 0)
    new = manager.get_or_create_log("t", 0)
    for i in range(5):
        new.append(build_batch([(None, b"new %d" % i)]))
    shutil.copytree(live, crashed)  # what kill -9 now leaves on disk
    slow_disk.set()
    manager.stop()
    clock.drain()
    manager.crash()

    after = LogManager([crashed], config, clock=Clock())
    after.startup()
    recovered = after.get_log("t", 0)
    assert (recovered.log_start_offset, recovered.log_end_offset) == (0, 5)
    values = []
    while len(values) < 5:
        values += [r.value for r in iter_records(recovered.read(len(values), 1 << 20))]
    assert values == [b"new %d" % i for i in range(5)]
    after.shutdown()
