"""The log cleaner in this process: latest record per key with offsets kept, tombstones until
``delete.retention.ms`` after their clean, producers' last batches, keyless records refused,
a crash at every step of the swap, followers copying a compacted log, recovery across gaps."""

from __future__ import annotations

import dataclasses
import itertools
import random
import time

import pytest
from twisted.internet.task import Clock

from broker.log import LogConfig, PartitionLog
from broker.log import swap as swap_module
from broker.log.cleaner import CleanerConfig, LogCleaner
from broker.log.compaction import CleanAborted
from broker.protocol import compression
from broker.protocol.errors import InvalidRecordError
from broker.protocol.records import build_batch, decode_batch, split_batches

COMPACT = LogConfig(
    segment_bytes=4096,
    cleanup_policy="compact",
    min_cleanable_dirty_ratio=0.0,
    file_delete_delay_ms=0,
    delete_retention_ms=60_000,
)


def clock_now() -> Clock:
    clock = Clock()
    clock.advance(time.time())  # segment files' modification times are real ones
    return clock


def open_log(tmp_path, config=COMPACT, clock=None, **kw) -> PartitionLog:
    return PartitionLog.open(tmp_path / "kv-0", config, clock=clock or clock_now(), **kw)


def produce(plog, updates, codec=compression.NONE, **batch_kw) -> dict[int, tuple]:
    """Append ``updates`` ((key, value) pairs) a few per batch; offset -> (key, value)."""
    written = {}
    for i in range(0, len(updates), 3):
        chunk = updates[i : i + 3]
        result = plog.append(build_batch(chunk, compression_type=codec, **batch_kw))
        for offset, kv in zip(range(result.base_offset, result.last_offset + 1), chunk):
            written[offset] = kv
    plog.flush()
    plog.high_watermark = plog.log_end_offset
    return written


def records(plog) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) of every record from the log start, batches read as stored."""
    out, offset = [], plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        if not data:  # a gap up to the log end (a truncation into one)
            break
        for pos, header in split_batches(data):
            out += [(r.offset, r.key, r.value) for r in decode_batch(data, pos).records]
            offset = header.next_offset
    return out


def assert_compacted(kept, written, clean_end):
    """Every record kept is the one written at its offset; below ``clean_end`` only the
    latest of each key there; every key's latest record is there; offsets increase."""
    offsets = [o for o, _, _ in kept]
    assert offsets == sorted(set(offsets))
    for offset, key, value in kept:
        assert written[offset] == (key, value)
    latest = {}
    for offset in sorted(written):
        latest[written[offset][0]] = offset
    present = set(offsets)
    assert all(o in present for o in latest.values())
    assert all(o in present for o in written if o >= clean_end)
    latest_below = {}
    for offset in sorted(o for o in written if o < clean_end):
        latest_below[written[offset][0]] = offset
    below = [o for o in offsets if o < clean_end]
    assert all(latest_below[written[o][0]] == o for o in below)


def updates(n, keys=40, seed=1):
    rng = random.Random(seed)
    return [
        (b"k%d" % rng.randrange(keys), b"v%d-" % i + b"x" * rng.randrange(80)) for i in range(n)
    ]


@pytest.mark.parametrize("codec", [compression.NONE, compression.GZIP, compression.LZ4])
def test_clean_keeps_the_latest_record_per_key_at_its_offset(tmp_path, codec):
    plog = open_log(tmp_path)
    written = produce(plog, updates(900), codec)
    cleaner = LogCleaner(CleanerConfig(), plog.clock)
    size_before = plog.size
    result = cleaner.clean_now(plog)
    assert result is not None and result.swapped >= 1
    assert plog.size < size_before / 2
    assert_compacted(records(plog), written, result.end)
    assert cleaner.checkpoint_of(plog) == result.end == plog.active_segment.base_offset
    # more updates, cleaned again: the clean section is merged with the new dirty one
    written.update(produce(plog, updates(600, seed=2), codec))
    result = cleaner.clean_now(plog)
    assert_compacted(records(plog), written, result.end)
    plog.close()
    reopened = open_log(tmp_path, recover=True)  # every batch re-checked, across the gaps
    assert reopened.recovery_cut_bytes == 0
    assert_compacted(records(reopened), written, result.end)
    reopened.close()


def test_tombstones_stay_for_delete_retention_after_their_clean(tmp_path):
    clock = clock_now()
    plog = open_log(tmp_path, clock=clock)
    written = produce(plog, updates(300, keys=10))
    deletes = [(b"k%d" % i, None) for i in range(5)]
    written.update(produce(plog, deletes + updates(200, keys=10, seed=3)[:0]))
    written.update(produce(plog, [(b"k9", b"x" * 200)] * 40))  # roll past the tombstones
    cleaner = LogCleaner(CleanerConfig(), clock)
    cleaner.clean_now(plog)
    kept = {k: v for _, k, v in records(plog)}
    assert all(kept[b"k%d" % i] is None for i in range(5))  # tombstones kept, values gone
    assert cleaner.tombstones_due[("kv", 0)] > clock.seconds() * 1000
    assert cleaner.clean_now(plog) is None  # nothing dirty, tombstones not due
    clock.advance(61)
    result = cleaner.clean_now(plog)  # the tombstones' time came: a pass of its own
    assert result is not None
    keys = {k for _, k, _ in records(plog)}
    assert not keys & {b"k%d" % i for i in range(5)}
    assert cleaner.tombstones_due[("kv", 0)] is None
    plog.close()


def test_a_live_producers_last_batch_is_kept_even_empty(tmp_path):
    plog = open_log(tmp_path)
    batch = build_batch(
        [(b"a", b"1"), (b"b", b"1")], producer_id=7, producer_epoch=0, base_sequence=0
    )
    first = plog.append(batch)
    produce(plog, [(b"a", b"2"), (b"b", b"2")] + [(b"c", b"y" * 300)] * 30)
    LogCleaner(CleanerConfig(), plog.clock).clean_now(plog)
    data = plog.read(first.base_offset, 1 << 20)
    _pos, header = next(split_batches(data))
    assert (header.base_offset, header.record_count, header.producer_id) == (0, 0, 7)
    assert header.last_offset == first.last_offset
    plog.close()
    reopened = open_log(tmp_path, recover=True)  # producer state rebuilt from the empty batch
    again = reopened.append(batch)  # the producer's retry is still known as a duplicate
    assert (again.base_offset, again.last_offset) == (first.base_offset, first.last_offset)
    reopened.close()


@pytest.mark.parametrize("codec", [compression.NONE, compression.ZSTD])
@pytest.mark.parametrize("count", [1, 5, 40])
def test_a_keyless_record_is_refused_in_a_compacted_topic(tmp_path, codec, count):
    plog = open_log(tmp_path)
    rows = [(b"k%d" % i, b"v") for i in range(count - 1)] + [(None, b"no key")]
    with pytest.raises(InvalidRecordError, match="only records with a key"):
        plog.append(build_batch(rows, compression_type=codec))
    assert plog.log_end_offset == 0 and plog.size == 0
    plog.append(build_batch([*rows[:-1], (b"key", b"v")], compression_type=codec))
    plog.close()
    other = PartitionLog.open(tmp_path / "plain-0", LogConfig())
    other.append(build_batch(rows))  # cleanup.policy=delete takes them
    other.close()


def test_a_follower_copies_a_compacted_log_with_its_gaps(tmp_path):
    leader = open_log(tmp_path)
    written = produce(leader, updates(600))
    LogCleaner(CleanerConfig(), leader.clock).clean_now(leader)
    follower = PartitionLog.open(tmp_path / "kv-1", COMPACT)
    offset = 0
    while offset < leader.log_end_offset:
        follower.append_as_follower(leader.read(offset, 8192))
        offset = follower.log_end_offset
    assert records(follower) == records(leader)
    follower.close()
    leader.close()
    assert written


STEPS = ["writing", "cleaned", "swap", "deleted", "installed"]


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_every_step_of_a_clean_leaves_a_correct_log(tmp_path, step, monkeypatch):
    plog = open_log(tmp_path)
    written = produce(plog, updates(900))
    before = records(plog)
    cleaner = LogCleaner(CleanerConfig(), plog.clock)

    class Crash(Exception):
        pass

    def crash(name):
        if name == step:
            raise Crash(name)

    monkeypatch.setattr(swap_module, "crash_hook", crash)
    if step == "writing":  # the clean stopped half-way through a .cleaned file
        import broker.log.compaction as compaction

        real = compaction._write

        def write_then_die(fd, parts, job):
            real(fd, parts, job)
            raise CleanAborted

        monkeypatch.setattr(compaction, "_write", write_then_die)
        with pytest.raises(CleanAborted):
            cleaner.clean_now(plog)
        (tmp_path / "kv-0" / "00000000000000000000.log.cleaned").write_bytes(b"\0" * 100)
    else:
        with pytest.raises(Crash):
            cleaner.clean_now(plog)
    plog.close_without_flush()  # as kill -9 leaves it
    monkeypatch.undo()
    reopened = open_log(tmp_path, recover=True, recovery_point=0)
    names = {p.name for p in (tmp_path / "kv-0").iterdir()}
    assert not [n for n in names if n.endswith((".cleaned", ".swap", ".deleted"))]
    kept = records(reopened)
    if step in ("writing", "cleaned"):
        assert kept == before  # the old segments, untouched
    else:  # every group of the clean was marked for swapping with one directory fsync
        assert_compacted(kept, written, reopened.active_segment.base_offset)
    reopened.flush()
    reopened.high_watermark = reopened.log_end_offset
    result = LogCleaner(CleanerConfig(), reopened.clock).clean_now(reopened)
    assert_compacted(records(reopened), written, result.end)
    reopened.close()


def test_compact_only_logs_are_not_deleted_by_retention(tmp_path):
    config = LogConfig(
        segment_bytes=1024, cleanup_policy="compact", retention_ms=1, retention_bytes=10
    )
    plog = open_log(tmp_path, config)
    produce(plog, updates(200))
    assert plog.enforce_retention() == 0
    plog.config = LogConfig(segment_bytes=1024, cleanup_policy="compact,delete", retention_bytes=10)
    assert plog.enforce_retention() > 0
    plog.close()


def test_a_truncation_during_a_clean_discards_it(tmp_path):
    plog = open_log(tmp_path)
    produce(plog, updates(900))
    cleaner = LogCleaner(CleanerConfig(), plog.clock)
    now = int(plog.clock.seconds() * 1000)
    _, first_dirty, end = cleaner._plan(plog, now)
    taken = cleaner._take(plog, first_dirty, end, now)
    result = cleaner.run(taken.job)  # the cleaner thread's part, done
    assert [g for g in result.groups if g.path is not None]
    cut = plog.segments[-2].base_offset  # a replica cut back below the clean's end
    plog.truncate_to(cut)
    before = records(plog)
    result = cleaner._finish(taken, result, {("kv", 0): plog})
    assert result.swapped == 0 and records(plog) == before
    names = [p.name for p in (tmp_path / "kv-0").iterdir()]
    assert not [n for n in names if n.endswith((".cleaned", ".swap"))]
    assert cleaner.checkpoint_of(plog) == 0 and not cleaner.in_progress
    plog.close()


def test_compaction_lags_bound_what_is_cleaned_and_when(tmp_path):
    clock = clock_now()
    config = dataclasses.replace(
        COMPACT, min_cleanable_dirty_ratio=1.0, max_compaction_lag_ms=5_000
    )
    plog = open_log(tmp_path, config, clock=clock)
    now_ms = int(clock.seconds() * 1000)
    for i in range(300):
        plog.append(build_batch([(b"k%d" % (i % 10), b"v" * 60, None, now_ms)]))
    plog.flush()
    plog.high_watermark = plog.log_end_offset
    cleaner = LogCleaner(CleanerConfig(), clock)
    assert cleaner.clean_now(plog) is None  # below the ratio, not yet overdue
    clock.advance(6)
    assert cleaner.clean_now(plog) is not None  # max.compaction.lag.ms passed: cleaned
    plog.close()

    young = dataclasses.replace(COMPACT, min_compaction_lag_ms=60_000)
    other = PartitionLog.open(tmp_path / "young-0", young, clock=clock)
    for i in range(300):
        other.append(build_batch([(b"k%d" % (i % 10), b"v" * 60, None, now_ms + 6_000)]))
    other.flush()
    other.high_watermark = other.log_end_offset
    assert cleaner.clean_now(other) is None  # every record younger than the lag
    clock.advance(61)
    assert cleaner.clean_now(other) is not None
    other.close()


def test_a_small_dedupe_buffer_cleans_in_several_passes(tmp_path):
    plog = open_log(tmp_path)
    written = produce(plog, updates(900))
    cleaner = LogCleaner(CleanerConfig(dedupe_buffer_size=int(60 * 24 / 0.9) + 24), plog.clock)
    ends = []
    while (result := cleaner.clean_now(plog)) is not None and len(ends) < 20:
        ends.append(result.end)
        assert_compacted(records(plog), written, result.end)
    assert len(ends) > 1 and ends == sorted(ends)  # each pass as far as 60 keys reach
    assert ends[-1] == plog.active_segment.base_offset
    plog.close()


def test_a_read_up_to_an_offset_in_a_gap_returns_the_batches_below_it(tmp_path):
    plog = open_log(tmp_path)
    produce(plog, updates(900))
    LogCleaner(CleanerConfig(), plog.clock).clean_now(plog)
    gaps = []
    for segment, following in zip(plog.segments, plog.segments[1:]):
        ends = [h[0] + h[6] + 1 for _, h in segment.scan_headers(0, segment.size)]
        if ends and ends[-1] < following.base_offset:
            gaps.append((segment, ends[-1]))
    assert gaps  # the cleaner left segments whose last offsets went
    for segment, gap_start in gaps:
        first = next(segment.scan_headers(0, segment.size))[1][0]
        piece = plog.read_slice(first, 1 << 20, max_offset=gap_start)
        assert piece.size == segment.size  # all of it, none of the next segment
    plog.close()


def test_a_replica_truncates_a_compacted_log_to_an_offset_in_a_gap(tmp_path):
    plog = open_log(tmp_path)
    written = produce(plog, updates(900))
    LogCleaner(CleanerConfig(), plog.clock).clean_now(plog)
    offsets = [o for o, _, _ in records(plog)]
    spans = [(h[0], h[0] + h[6] + 1) for s in plog.segments for _, h in s.scan_headers(0, s.size)]
    holes = [end + 1 for (_, end), (base, _) in itertools.pairwise(spans) if base > end + 1]
    cut = holes[len(holes) // 2]  # strictly between two batches that stay
    assert plog.truncate_to(cut)
    assert [o for o, _, _ in records(plog)] == [o for o in offsets if o < cut]
    plog.close()
    reopened = open_log(tmp_path, recover=True, recovery_point=0)
    assert [o for o, _, _ in records(reopened)] == [o for o in offsets if o < cut]
    assert written
    reopened.close()
