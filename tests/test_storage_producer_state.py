"""Producer state of a partition (idempotent produce): duplicates, gaps, epochs, wrap, expiry,
snapshots and the rebuild after an unclean shutdown, against a real PartitionLog."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from broker.log import LogConfig, PartitionLog
from broker.log.producer_state import snapshot_offsets
from broker.protocol.errors import InvalidProducerEpochError, OutOfOrderSequenceNumberError
from broker.protocol.records import build_batch, iter_records

INT_MAX = 2**31 - 1
PID = 4000


def batch(seq, n=1, pid=PID, epoch=0, tag=b"m"):
    """``n`` records numbered from ``seq`` (their values say which), as a producer sends them."""
    return build_batch(
        [(None, b"%s-%d" % (tag, seq + i)) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def open_log(tmp_path, clock=None, recover=False, recovery_point=0, **config):
    return PartitionLog.open(
        tmp_path / "events-0",
        LogConfig(**config),
        clock=clock or Clock(),
        recover=recover,
        recovery_point=recovery_point,
    )


def values(plog):
    return [r.value for r in iter_records(plog.read(0, 1 << 30))]


def test_a_retried_batch_gets_its_first_offset_and_is_not_stored_again(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0, 3))
    second = plog.append(batch(3, 2))
    again = plog.append(batch(3, 2))
    assert (
        (again.base_offset, again.last_offset) == (second.base_offset, second.last_offset) == (3, 4)
    )
    first_again = plog.append(batch(0, 3))
    assert first_again.base_offset == 0
    assert plog.log_end_offset == 5
    assert values(plog) == [b"m-0", b"m-1", b"m-2", b"m-3", b"m-4"]


def test_only_the_last_five_batches_are_remembered(tmp_path):
    plog = open_log(tmp_path)
    for seq in range(6):
        plog.append(batch(seq))
    for seq in range(1, 6):
        assert plog.append(batch(seq)).base_offset == seq
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(0))  # older than every cached batch
    assert plog.log_end_offset == 6


def test_a_gap_in_sequences_is_out_of_order_and_writes_nothing(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0, 2))
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(3))
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(1))  # overlaps the cached batch without equalling it
    assert plog.log_end_offset == 2
    assert plog.append(batch(2)).base_offset == 2


def test_epochs_a_new_one_starts_at_zero_an_older_one_is_fenced(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0, 2, epoch=1))
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(5, epoch=2))
    assert plog.append(batch(0, epoch=2, tag=b"e2")).base_offset == 2
    with pytest.raises(InvalidProducerEpochError):
        plog.append(batch(2, epoch=1))
    assert plog.append(batch(1, epoch=2, tag=b"e2")).base_offset == 3


def test_sequences_wrap_from_int_max_to_zero(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(INT_MAX - 2, 2))  # an unknown id may start anywhere
    across = batch(INT_MAX, 3)  # INT_MAX, 0, 1
    assert plog.append(across).base_offset == 2
    assert plog.append(across).base_offset == 2  # and its retry is still recognised
    assert plog.append(batch(2)).base_offset == 5
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(INT_MAX))


def test_unknown_producer_ids_start_at_any_sequence_and_id_minus_one_is_not_tracked(tmp_path):
    plog = open_log(tmp_path)
    assert plog.append(batch(1234, pid=7)).base_offset == 0
    assert plog.append(batch(99, pid=8)).base_offset == 1
    plain = build_batch([(None, b"x")])
    plog.append(plain)
    plog.append(plain)
    assert plog.log_end_offset == 4
    assert set(plog.producer_state.producers) == {7, 8}


def test_several_batches_in_one_append_are_checked_in_order(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0))
    result = plog.append(batch(1) + batch(2, 2) + batch(0, pid=9))
    assert (result.base_offset, result.last_offset) == (1, 4)
    assert plog.append(batch(1) + batch(2, 2)).base_offset == 1  # the same pair again
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(4) + batch(6))  # the second leaves a gap: nothing is written
    assert plog.log_end_offset == 5
    # A retry whose head was stored and whose tail was not: only the tail is appended.
    assert plog.append(batch(2, 2) + batch(4)).last_offset == 5
    assert values(plog)[-1] == b"m-4"


def test_producers_expire_after_producer_id_expiration_ms(tmp_path):
    clock = Clock()
    plog = open_log(tmp_path, clock=clock, producer_id_expiration_ms=60_000)
    plog.append(batch(0))
    clock.advance(30)
    assert plog.append(batch(0)).base_offset == 0  # still known: a duplicate
    clock.advance(61)
    assert plog.append(batch(0)).base_offset == 1  # forgotten: taken as new
    clock.advance(61)
    plog.enforce_retention()
    assert plog.producer_state.producers == {}


def test_state_survives_a_clean_restart_through_its_snapshot(tmp_path):
    plog = open_log(tmp_path)
    for seq in range(3):
        plog.append(batch(seq))
    plog.close()
    assert snapshot_offsets(tmp_path / "events-0") == [3]
    plog = open_log(tmp_path)
    assert plog.producer_batches_replayed == 0  # loaded from the snapshot alone
    assert plog.append(batch(2)).base_offset == 2
    assert plog.append(batch(3)).base_offset == 3
    plog.close()


def test_state_is_rebuilt_from_batch_headers_after_an_unclean_shutdown(tmp_path):
    plog = open_log(tmp_path, segment_bytes=400)
    for seq in range(12):
        plog.append(batch(seq, tag=b"x" * 40))
    assert len(plog.segments) > 2
    snapshots = snapshot_offsets(plog.directory)
    assert snapshots and snapshots[-1] == plog.segments[-1].base_offset  # written at the roll
    plog.close_without_flush()
    plog = open_log(tmp_path, recover=True, segment_bytes=400)
    assert 0 < plog.producer_batches_replayed < 12  # only what follows the last snapshot
    assert plog.append(batch(11, tag=b"x" * 40)).base_offset == 11
    assert plog.append(batch(10, tag=b"x" * 40)).base_offset == 10
    with pytest.raises(OutOfOrderSequenceNumberError):
        plog.append(batch(13))
    assert plog.log_end_offset == 12


def test_a_snapshot_past_the_recovered_log_end_is_dropped(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(0))
    plog.flush()
    plog.append(batch(1))
    plog.producer_state.write_snapshot(plog.log_end_offset, 0)
    plog.close_without_flush()
    segment = plog.segments[-1]
    with open(segment.log_path, "r+b") as f:  # the unflushed batch is torn by a crash
        f.truncate(segment.size - 5)
    plog = open_log(tmp_path, recover=True, recovery_point=1)
    assert plog.log_end_offset == 1
    assert snapshot_offsets(plog.directory) == []
    assert plog.append(batch(1)).base_offset == 1  # not taken for a duplicate of the lost one


def test_retention_keeps_live_producers_and_removes_old_snapshots(tmp_path):
    clock = Clock()
    clock.advance(1_700_000_000)
    plog = open_log(tmp_path, clock=clock, segment_bytes=400, retention_bytes=800)
    for seq in range(20):
        plog.append(batch(seq, tag=b"y" * 40))
        plog.flush()
    deleted = plog.enforce_retention()
    assert deleted > 0 and plog.log_start_offset > 10
    assert len(snapshot_offsets(plog.directory)) == 1
    assert plog.append(batch(19, tag=b"y" * 40)).base_offset == 19
    plog.close()
    plog = open_log(tmp_path, clock=clock, segment_bytes=400, retention_bytes=800)
    assert plog.append(batch(19, tag=b"y" * 40)).base_offset == 19
    assert plog.append(batch(20, tag=b"y" * 40)).base_offset == 20
    plog.close()


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[:-3], lambda data: b"", lambda data: data[:-1] + bytes([data[-1] ^ 1])],
    ids=["cut-short", "empty", "flipped-bit"],
)
def test_a_damaged_snapshot_is_ignored_and_the_log_replayed(tmp_path, damage):
    plog = open_log(tmp_path)
    plog.append(batch(0))
    plog.append(batch(1))
    plog.close()
    path = plog.directory / f"{2:020d}.snapshot"
    path.write_bytes(damage(path.read_bytes()))
    plog = open_log(tmp_path)
    assert plog.producer_batches_replayed == 2
    assert plog.append(batch(1)).base_offset == 1
    plog.close()
