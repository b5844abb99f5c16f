"""A partition log as a replica uses it: epochs stamped on append, follower appends,
truncation (checked against a log built directly to the same point, and crashed at every
step), the high watermark and its checkpoint, reads bounded by ``max_offset``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import read_all
from twisted.internet.task import Clock

from broker.log import LogConfig, LogManager, PartitionLog, truncation
from broker.log.checkpoint import HIGH_WATERMARK_FILE, RECOVERY_POINT_FILE, read_checkpoint
from broker.log.epochs import LeaderEpochCache
from broker.protocol.errors import CorruptMessageError, UnexpectedAppendOffsetError
from broker.protocol.records import build_batch, parse_header, split_batches

CONFIG = LogConfig(segment_bytes=900, index_interval_bytes=100)
T0 = 1_700_000_000_000


def plan_batch(seq: int) -> tuple[bytes, int]:
    """Batch ``seq`` of a test log (1-4 records, some from idempotent producers) and the
    leader epoch it is appended under (epochs rise every few batches, skipping some)."""
    count = 1 + seq % 4
    pid = seq % 3 - 1  # -1 (no producer id), 0 or 1
    records = [
        (b"k%d" % seq, b"v%d-%d" % (seq, i) * 9, [], T0 + 10 * seq + i) for i in range(count)
    ]
    kwargs = {}
    if pid >= 0:
        kwargs = {"producer_id": pid, "producer_epoch": 0, "base_sequence": _sequence(seq, pid)}
    return build_batch(records, **kwargs), (seq // 5) * 2


def _sequence(seq: int, pid: int) -> int:
    """The next sequence of producer ``pid`` before batch ``seq`` (its earlier batches' counts)."""
    return sum(1 + s % 4 for s in range(seq) if s % 3 - 1 == pid)


def build_log(directory, batches: int, clock=None) -> PartitionLog:
    plog = PartitionLog.open(directory, CONFIG, clock=clock or Clock())
    for seq in range(batches):
        data, epoch = plan_batch(seq)
        plog.append(data, leader_epoch=epoch)
    return plog


def boundaries(plog) -> list[int]:
    """Base offset of every batch in the log, and its end."""
    return [b.header.base_offset for b in read_all(plog)] + [plog.log_end_offset]


def producers(plog) -> dict:
    return {pid: (e.epoch, list(e.batches)) for pid, e in plog.producer_state.producers.items()}


def assert_same_log(got: PartitionLog, want: PartitionLog) -> None:
    """Everything a reader or a replica can see of two logs agrees."""
    assert got.log_end_offset == want.log_end_offset
    got_batches, want_batches = read_all(got), read_all(want)
    assert [b.header for b in got_batches] == [b.header for b in want_batches]
    for offset in range(want.log_start_offset, want.log_end_offset + 1):
        assert got.read(offset, 300) == want.read(offset, 300)  # the offset index's answers
    for seq in range(-1, len(want_batches) * 4 + 2, 3):
        ts = T0 + 10 * seq
        assert got.offset_for_timestamp(ts) == want.offset_for_timestamp(ts)
    assert producers(got) == producers(want)
    assert got.leader_epochs.entries == want.leader_epochs.entries
    for epoch in range(-1, 30):
        assert got.end_offset_for_epoch(epoch) == want.end_offset_for_epoch(epoch)


# --- append stamps the epoch ------------------------------------------------------------------


def test_append_stamps_each_batch_with_the_leader_epoch_and_notes_new_epochs(tmp_path):
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    for epoch in (0, 0, 3, 3, 3, 7):
        plog.append(build_batch([(None, b"x", [], T0)] * 2), leader_epoch=epoch)
    stamped = [h.partition_leader_epoch for _, h in split_batches(plog.read(0, 1 << 20))]
    assert stamped == [0, 0, 3, 3, 3, 7]
    assert plog.leader_epochs.entries == [(0, 0), (3, 4), (7, 10)]
    assert plog.end_offset_for_epoch(3) == (3, 10)
    assert plog.end_offset_for_epoch(7) == (7, 12)
    plog.close()
    assert LeaderEpochCache.load(tmp_path / "t-0").entries == [(0, 0), (3, 4), (7, 10)]


# --- follower appends -------------------------------------------------------------------------


def test_follower_copies_the_leaders_batches_byte_for_byte(tmp_path):
    leader = build_log(tmp_path / "t-0", 23)
    follower = PartitionLog.open(tmp_path / "f" / "t-0", CONFIG, clock=Clock())
    offset = 0
    while offset < leader.log_end_offset:
        data = leader.read(offset, 500)
        result = follower.append_as_follower(data)
        assert result.base_offset == offset
        offset = result.last_offset + 1
    assert_same_log(follower, leader)
    for offset in boundaries(leader)[:-1]:
        assert follower.read(offset, 1 << 20) == leader.read(offset, 1 << 20)


def test_a_follower_made_leader_answers_a_retried_idempotent_batch_as_a_duplicate(tmp_path):
    """The idempotent producers' state a follower builds from the batches it copies: a batch
    the old leader stored, retried to the new one after a leader change, is answered with its
    original offsets and not stored twice; the producer's next batch is taken."""
    leader = build_log(tmp_path / "t-0", 14)
    follower = PartitionLog.open(tmp_path / "f" / "t-0", CONFIG, clock=Clock())
    while follower.log_end_offset < leader.log_end_offset:
        follower.append_as_follower(leader.read(follower.log_end_offset, 1 << 20))
    end = follower.log_end_offset
    originals = {
        (b.header.producer_id, b.header.base_sequence): (b.header.base_offset, b.header.last_offset)
        for b in read_all(leader)
        if b.header.producer_id >= 0
    }
    for seq in (11, 13):  # the last batches of producers 1 and 0
        data, _epoch = plan_batch(seq)
        header = parse_header(data)
        result = follower.append(data, leader_epoch=9)
        assert (result.base_offset, result.last_offset) == originals[
            (header.producer_id, header.base_sequence)
        ]
    assert follower.log_end_offset == end
    data, _epoch = plan_batch(14)  # producer 1's next batch
    assert follower.append(data, leader_epoch=9).base_offset == end
    assert follower.log_end_offset > end
    follower.close()
    leader.close()


def test_follower_append_refuses_a_gap_an_overlap_or_a_corrupt_batch(tmp_path):
    leader = build_log(tmp_path / "t-0", 6)
    follower = PartitionLog.open(tmp_path / "f" / "t-0", CONFIG, clock=Clock())
    edges = boundaries(leader)
    follower.append_as_follower(leader.read(0, 1))  # the first batch only
    before = follower.log_end_offset
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(leader.read(edges[2], 1))  # skips batch 1
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(leader.read(0, 1 << 20))  # overlaps
    first, second = leader.read(edges[1], 1), leader.read(edges[3], 1)
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(first + second)  # not contiguous
    damaged = bytearray(leader.read(edges[1], 1))
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptMessageError):
        follower.append_as_follower(bytes(damaged))
    assert follower.log_end_offset == before
    assert follower.active_segment.size == len(leader.read(0, 1))


# --- truncation ---------------------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(total=st.integers(1, 40), data=st.data())
def test_truncation_at_any_batch_boundary_equals_a_log_built_to_that_point(
    tmp_path_factory, total, data
):
    root = tmp_path_factory.mktemp("trunc")
    full = build_log(root / "a" / "t-0", total)
    cut_batches = data.draw(st.integers(0, total), label="batches kept")
    offset = boundaries(full)[cut_batches]
    cuts = offset < full.log_end_offset
    assert full.truncate_to(offset) is cuts
    direct = build_log(root / "b" / "t-0", cut_batches)
    assert_same_log(full, direct)
    # The same segments; as in Kafka, a cut at a segment's base leaves it, empty, active.
    bases = [s.base_offset for s in full.segments if s.size or s is full.active_segment]
    assert bases[: len(direct.segments)] == [s.base_offset for s in direct.segments]
    assert full.recovery_point <= offset and full.high_watermark <= offset
    # Appends go on from the cut exactly as in the direct log.
    more = data.draw(st.integers(0, 6), label="batches appended after")
    for seq in range(cut_batches, cut_batches + more):
        for plog in (full, direct):
            payload, epoch = plan_batch(seq)
            plog.append(payload, leader_epoch=epoch)
    assert_same_log(full, direct)
    full.close()
    assert_same_log(PartitionLog.open(root / "a" / "t-0", CONFIG, clock=Clock()), direct)


def test_truncation_inside_a_batch_is_refused_and_changes_nothing(tmp_path):
    plog = build_log(tmp_path / "t-0", 8)
    edges = boundaries(plog)
    inside = next(o for o in range(plog.log_end_offset) if o not in edges)
    end, files = plog.log_end_offset, sorted(p.name for p in (tmp_path / "t-0").iterdir())
    with pytest.raises(ValueError, match="inside a batch"):
        plog.truncate_to(inside)
    assert plog.log_end_offset == end
    assert sorted(p.name for p in (tmp_path / "t-0").iterdir()) == files


def test_truncation_at_or_past_the_end_does_nothing(tmp_path):
    plog = build_log(tmp_path / "t-0", 5)
    end = plog.log_end_offset
    assert plog.truncate_to(end) is False
    assert plog.truncate_to(end + 100) is False
    assert plog.log_end_offset == end


def test_truncate_fully_and_start_at_leaves_an_empty_log_there(tmp_path):
    plog = build_log(tmp_path / "t-0", 20)
    plog.high_watermark = 30
    plog.truncate_fully_and_start_at(500)
    assert (plog.log_start_offset, plog.log_end_offset, plog.high_watermark) == (500, 500, 500)
    assert plog.leader_epochs.entries == [] and producers(plog) == {}
    assert not list((tmp_path / "t-0").glob("*.snapshot"))
    result = plog.append(plan_batch(0)[0], leader_epoch=9)
    assert result.base_offset == 500
    plog.close()
    reopened = PartitionLog.open(tmp_path / "t-0", CONFIG, log_start_offset=500)
    assert [b.header.base_offset for b in read_all(reopened)] == [500]
    assert reopened.leader_epochs.entries == [(9, 500)]


def test_truncation_below_the_log_start_empties_the_log_to_start_there(tmp_path):
    plog = build_log(tmp_path / "t-0", 20)
    plog.log_start_offset = 10
    assert plog.truncate_to(4)
    assert (plog.log_start_offset, plog.log_end_offset) == (4, 4)


class Crash(Exception):
    """A process killed at this step."""


# step -> (owner, function, calls let through before the crash)
CRASH_POINTS = {
    "renaming later segments": (PartitionLog, "_schedule_deletes", 0),
    "between two renames": (truncation.Segment, "rename_for_deletion", 1),
    "cutting the segment": (truncation.Segment, "truncate_to", 0),
    "cutting the epoch cache": (LeaderEpochCache, "truncate_from_end", 0),
    "rebuilding producer state": (truncation, "replay_producer_state", 0),
}


@pytest.mark.parametrize("step", sorted(CRASH_POINTS))
def test_a_crash_at_any_step_of_truncation_leaves_a_prefix_the_loader_opens(
    tmp_path, monkeypatch, step
):
    directory = tmp_path / "t-0"
    plog = build_log(directory, 30)
    plog.flush()
    assert len(plog.segments) > 3
    edges = boundaries(plog)
    target = edges[12]
    owner, name, let_through = CRASH_POINTS[step]
    real = getattr(owner, name)
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) > let_through:
            raise Crash(step)
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, crash)
        with pytest.raises(Crash):
            plog.truncate_to(target)
    plog.close_without_flush()  # no clean shutdown: files as the killed process left them
    reopened = PartitionLog.open(directory, CONFIG, clock=Clock(), recover=True)
    end = reopened.log_end_offset
    assert end in edges and end >= target  # a prefix of the old log, cut at a batch
    kept = edges.index(end)
    assert_same_log(reopened, build_log(tmp_path / "direct" / "t-0", kept))
    assert reopened.truncate_to(target) is (end > target)  # the replica truncates again
    assert_same_log(reopened, build_log(tmp_path / "direct2" / "t-0", 12))


def test_the_manager_checkpoints_the_lowered_recovery_point_at_once(tmp_path):
    manager = LogManager([tmp_path], CONFIG, clock=Clock())
    manager.startup()
    plog = manager.get_or_create_log("t", 0)
    for seq in range(20):
        data, epoch = plan_batch(seq)
        plog.append(data, leader_epoch=epoch)
    plog.flush()
    plog.high_watermark = plog.log_end_offset
    manager.checkpoint_recovery_points()
    target = boundaries(plog)[7]
    assert manager.truncate_to("t", 0, target)
    assert read_checkpoint(tmp_path / RECOVERY_POINT_FILE)[("t", 0)] == target
    assert read_checkpoint(tmp_path / HIGH_WATERMARK_FILE)[("t", 0)] == target
    manager.crash()


def test_a_flush_taken_before_a_truncation_does_not_move_the_recovery_point(tmp_path):
    plog = build_log(tmp_path / "t-0", 20)
    job = plog.prepare_flush()
    target = boundaries(plog)[5]
    plog.truncate_to(target)
    job.run()
    plog.flushed(job)
    assert plog.recovery_point <= target


# --- high watermark -----------------------------------------------------------------------------


def test_the_high_watermark_is_clamped_to_the_log(tmp_path):
    plog = build_log(tmp_path / "t-0", 5)
    assert plog.high_watermark == 0
    plog.high_watermark = 10**9
    assert plog.high_watermark == plog.log_end_offset
    plog.high_watermark = -5
    assert plog.high_watermark == plog.log_start_offset


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_high_watermarks_are_checkpointed_and_restored(tmp_path, how):
    clock = Clock()
    manager = LogManager([tmp_path], CONFIG, clock=clock, recovery_checkpoint_interval_ms=1000)
    manager.startup()
    marks = {}
    for partition in range(3):
        plog = manager.get_or_create_log("t", partition)
        for seq in range(5 + partition):
            plog.append(plan_batch(seq)[0])
        plog.high_watermark = marks[("t", partition)] = plog.log_end_offset - partition
    if how == "clean":
        manager.shutdown()
    else:
        clock.advance(1.5)
        manager.tick()  # the checkpoint schedule, as for recovery points
        manager.crash()
    assert read_checkpoint(tmp_path / HIGH_WATERMARK_FILE) == marks
    again = LogManager([tmp_path], CONFIG, clock=Clock())
    again.startup()
    assert {key: plog.high_watermark for key, plog in again.logs.items()} == marks
    again.shutdown()


def test_a_restored_high_watermark_is_clamped_to_the_recovered_log_end(tmp_path):
    manager = LogManager([tmp_path], CONFIG, clock=Clock())
    manager.startup()
    plog = manager.get_or_create_log("t", 0)
    for seq in range(5):
        plog.append(plan_batch(seq)[0])
    plog.high_watermark = plog.log_end_offset
    manager.shutdown()
    segment = sorted((tmp_path / "t-0").glob("*.log"))[-1]
    cut = boundaries(PartitionLog.open(tmp_path / "t-0", CONFIG))[3]
    with open(segment, "r+b") as f:  # the disk lost the last batches
        data = f.read()
        f.truncate(sum(h.size for _, h in split_batches(data) if h.base_offset < cut))
    again = LogManager([tmp_path], CONFIG, clock=Clock())
    again.startup()
    assert again.get_log("t", 0).log_end_offset == cut
    assert again.get_log("t", 0).high_watermark == cut
    again.shutdown()


# --- reads bounded by max_offset ------------------------------------------------------------------


def test_reads_with_max_offset_return_whole_batches_below_it(tmp_path):
    plog = build_log(tmp_path / "t-0", 20)
    edges = boundaries(plog)
    for bound in range(plog.log_end_offset + 1):
        for start in edges[:-1]:
            data = plog.read_slice(start, 1 << 20, max_offset=bound).read()
            if start >= bound:
                assert data == b""
                continue
            last = [h.last_offset for _, h in split_batches(data)]
            assert all(o < bound for o in last)
            below = [e for e in edges[1:] if e <= bound and e > start]
            segment_end = min(s.next_offset for s in plog.segments if s.next_offset > start)
            want = min(below[-1], segment_end) if below else start  # a read stays in a segment
            assert (last[-1] + 1 if last else start) == want
    # Between max_offset and the log end: empty, not an error; out of range stays so.
    assert plog.read_slice(edges[3] + 1, 100, max_offset=edges[3]).size == 0
    with pytest.raises(Exception, match="OFFSET_OUT_OF_RANGE"):
        plog.read_slice(plog.log_end_offset + 1, 100, max_offset=edges[3])


def test_the_header_parser_reads_the_stamped_epoch(tmp_path):
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    plog.append(build_batch([(None, b"x", [], T0)]), leader_epoch=41)
    assert parse_header(plog.read(0, 100)).partition_leader_epoch == 41


def test_a_new_epoch_reaches_the_disk_with_the_next_flush_not_on_the_append(tmp_path):
    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    plog.append(plan_batch(0)[0], leader_epoch=3)
    assert plog.leader_epochs.unsynced  # replaced, not yet fsynced
    job = plog.prepare_flush()
    assert plog.leader_epochs.path in job.index_paths and job.directory == plog.directory
    job.run()
    plog.flushed(job)
    assert not plog.leader_epochs.unsynced


def test_retention_moves_the_first_epoch_entry_up_to_the_new_log_start(tmp_path):
    clock = Clock()
    clock.advance(T0 / 1000 + 10_000)
    config = LogConfig(segment_bytes=900, retention_ms=1000, file_delete_delay_ms=0)
    plog = PartitionLog.open(tmp_path / "t-0", config, clock=clock)
    for seq in range(20):
        data, epoch = plan_batch(seq)
        plog.append(data, leader_epoch=epoch)
    plog.high_watermark = 2
    assert plog.enforce_retention() > 0
    start = plog.log_start_offset
    assert plog.leader_epochs.entries[0].start_offset == start
    assert plog.high_watermark == start
    assert all(e.start_offset >= start for e in plog.leader_epochs.entries)


def test_dump_log_prints_each_batchs_partition_leader_epoch(tmp_path, capsys):
    from headrace.cli import main

    plog = PartitionLog.open(tmp_path / "t-0", CONFIG)
    for epoch in (0, 6):
        plog.append(build_batch([(None, b"x", [], T0)]), leader_epoch=epoch)
    plog.close()
    assert main(["dump-log", str(tmp_path / "t-0")]) == 0
    out = capsys.readouterr().out
    assert "partitionLeaderEpoch 0 " in out and "partitionLeaderEpoch 6 " in out


KILLED_TRUNCATION = """
import os, signal, sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from twisted.internet.task import Clock
import test_storage_replica_log as t
from broker.log import PartitionLog, truncation
from broker.log.epochs import LeaderEpochCache
owner, name = {{
    "segment": (truncation.Segment, "truncate_to"),
    "epochs": (LeaderEpochCache, "truncate_from_end"),
    "producers": (truncation, "replay_producer_state"),
}}[{step!r}]
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
plog = PartitionLog.open(Path({directory!r}), t.CONFIG, clock=Clock())
setattr(owner, name, killed)
plog.truncate_to({target})
"""


@pytest.mark.integration
@pytest.mark.parametrize("step", ["segment", "epochs", "producers"])
def test_a_truncation_killed_with_sigkill_leaves_a_log_the_loader_opens(tmp_path, step):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    directory = tmp_path / "t-0"
    plog = build_log(directory, 30)
    plog.close()
    edges = boundaries(PartitionLog.open(directory, CONFIG))
    root = str(Path(__file__).resolve().parent.parent)
    code = KILLED_TRUNCATION.format(
        root=root,
        tests=str(Path(__file__).resolve().parent),
        step=step,
        directory=str(directory),
        target=edges[12],
    )
    child = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    reopened = PartitionLog.open(directory, CONFIG, clock=Clock(), recover=True)
    end = reopened.log_end_offset
    assert end in edges and end >= edges[12]
    assert_same_log(reopened, build_log(tmp_path / "direct" / "t-0", edges.index(end)))


def test_truncation_after_a_clean_restart_rebuilds_every_producer_from_the_log(tmp_path):
    plog = build_log(tmp_path / "t-0", 30)
    plog.close()  # keeps one producer snapshot, at the log end
    reopened = PartitionLog.open(tmp_path / "t-0", CONFIG, clock=Clock())
    target = boundaries(reopened)[12]
    reopened.truncate_to(target)
    assert_same_log(reopened, build_log(tmp_path / "direct" / "t-0", 12))
