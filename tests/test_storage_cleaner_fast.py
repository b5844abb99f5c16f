"""The cleaner's vectorised offset map against the plain rule (a dict of each key's latest
offset) on random logs: keys, tombstones, codecs, idempotent producers, records without a key
from before the topic was compacted, several cleans; and with hashes made to collide."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.log import LogConfig, PartitionLog
from broker.log import offset_map as offset_map_module
from broker.log import swap as swap_module
from broker.log.cleaner import CleanerConfig, LogCleaner
from broker.log.offset_map import OffsetMapBuilder, keys_from_list
from broker.protocol import compression
from broker.protocol.errors import InvalidRecordError
from broker.protocol.records import build_batch, split_batches
from tests.test_storage_cleaner import COMPACT, clock_now, records

_real_hashes = offset_map_module.key_hashes
CODECS = [compression.NONE, compression.GZIP, compression.LZ4, compression.ZSTD]


def bucketed(buckets: int):
    """A hash with only ``buckets`` values: most keys share one with another."""
    return lambda keys: _real_hashes(keys) % np.uint64(buckets)


def expected_after(before, first_dirty: int, end: int):
    """The plain rule: below ``end``, a record stays if it has a key and no later record of
    that key lies in [first_dirty, end)."""
    latest = {}
    for offset, key, _ in before:
        if first_dirty <= offset < end and key is not None:
            latest[key] = offset
    return [
        (o, k, v) for o, k, v in before if o >= end or (k is not None and latest.get(k, -1) <= o)
    ]


def batch_ends(plog) -> set[tuple[int, int]]:
    """(producer id, last offset) of every batch of the log."""
    ends, offset = set(), plog.log_start_offset
    while data := plog.read(offset, 1 << 20):
        for _, header in split_batches(data):
            ends.add((header.producer_id, header.last_offset))
            offset = header.next_offset
    return ends


def batches_strategy():
    key = st.sampled_from([b"k%d" % i for i in range(12)] + [b"", b"k1\x00", b"x" * 300])
    value = st.one_of(st.none(), st.binary(max_size=120))
    batch = st.tuples(
        st.lists(st.tuples(key, value), min_size=1, max_size=8),
        st.sampled_from(CODECS),
        st.sampled_from([None, 7, 8]),  # an idempotent producer's id, or none
    )
    return st.lists(st.lists(batch, min_size=1, max_size=25), min_size=1, max_size=3)


def append_rounds(plog, rounds_batches, sequences):
    for rows, codec, producer in rounds_batches:
        kw = {}
        if producer is not None:
            kw = dict(producer_id=producer, producer_epoch=0, base_sequence=sequences[producer])
            sequences[producer] += len(rows)
        plog.append(build_batch(rows, compression_type=codec, **kw))
    plog.flush()
    plog.roll()  # the batches above become cleanable
    plog.high_watermark = plog.log_end_offset


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rounds=batches_strategy(),
    keyless=st.integers(0, 4),
    buckets=st.sampled_from([None, 1, 3, 11]),
    segment_bytes=st.sampled_from([2048, 4096, 1 << 20]),
)
def test_cleans_keep_what_the_plain_rule_keeps(rounds, keyless, buckets, segment_bytes):
    config = dataclasses.replace(COMPACT, segment_bytes=segment_bytes)
    hashes = _real_hashes if buckets is None else bucketed(buckets)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(offset_map_module, "key_hashes", hashes)
        directory = Path(tmp) / "kv-0"
        if keyless:  # written before the topic was compacted
            plain = PartitionLog.open(directory, LogConfig(segment_bytes=segment_bytes))
            plain.append(build_batch([(None, b"old")] * keyless + [(b"k1", b"old")]))
            plain.close()
        plog = PartitionLog.open(directory, config, clock=clock_now())
        cleaner = LogCleaner(CleanerConfig(), plog.clock)
        sequences = {7: 0, 8: 0}
        for batches in rounds:
            append_rounds(plog, batches, sequences)
            before = records(plog)
            first_dirty = cleaner.checkpoint_of(plog)
            result = cleaner.clean_now(plog)
            end = result.end if result is not None else first_dirty
            assert records(plog) == expected_after(before, first_dirty, end)
        last = {
            pid: entry.batches[-1].last_offset
            for pid, entry in plog.producer_state.producers.items()
            if entry.batches
        }
        assert all((pid, offset) in batch_ends(plog) for pid, offset in last.items())
        plog.close()


def test_keys_with_one_hash_are_never_taken_for_one_another(monkeypatch):
    monkeypatch.setattr(offset_map_module, "key_hashes", bucketed(1))
    builder = OffsetMapBuilder()
    builder.add(keys_from_list([b"a", b"b", None, b"a"]), np.array([0, 1, 2, 3]))
    built = builder.build()
    assert len(built) == 2
    probe = keys_from_list([b"a", b"b", b"c", None, b"ab"])
    later = built.superseded(probe, np.array([0, 0, 0, 0, 0]), 1)
    assert later.tolist() == [True, True, False, False, False]


def test_a_key_sharing_a_hash_with_a_map_key_is_not_superseded(monkeypatch):
    monkeypatch.setattr(offset_map_module, "key_hashes", bucketed(2))
    builder = OffsetMapBuilder()
    keys = [b"key-%d" % i for i in range(40)]
    builder.add(keys_from_list(keys[:1]), np.array([100]))  # alone in its hash, or not
    builder.merge()
    builder.add(keys_from_list(keys[1:2]), np.array([101]))
    built = builder.build()
    later = built.superseded(keys_from_list(keys), np.zeros(40, np.int64), 1)
    assert later.tolist() == [True, True] + [False] * 38
    # the real hash: the same answers
    monkeypatch.setattr(offset_map_module, "key_hashes", _real_hashes)
    built = OffsetMapBuilder()
    built.add(keys_from_list(keys[:2]), np.array([100, 101]))
    probe = keys_from_list(keys)
    assert built.build().superseded(probe, np.zeros(40, np.int64), 1).sum() == 2


def test_a_clean_of_several_groups_fsyncs_the_directory_once(tmp_path, monkeypatch):
    plog = PartitionLog.open(tmp_path / "kv-0", COMPACT, clock=clock_now())
    rows = [(b"k%d" % (i % 30), b"v" * 60) for i in range(900)]
    for i in range(0, len(rows), 3):
        plog.append(build_batch(rows[i : i + 3]))
    plog.flush()
    plog.high_watermark = plog.log_end_offset
    synced = []
    real = swap_module.fsync_directory
    monkeypatch.setattr(swap_module, "fsync_directory", lambda d: synced.append(d) or real(d))
    result = LogCleaner(CleanerConfig(), plog.clock).clean_now(plog)
    assert result is not None and result.swapped > 1
    assert synced == [plog.directory]
    plog.close()


@pytest.mark.parametrize("headers", [None, [("h", b"v")]])
def test_the_keyless_check_decompresses_a_batch_no_second_time(tmp_path, monkeypatch, headers):
    plog = PartitionLog.open(tmp_path / "kv-0", COMPACT, clock=clock_now())
    calls = []
    real = compression.decompress
    monkeypatch.setattr(compression, "decompress", lambda *a: calls.append(1) or real(*a))
    rows = [(b"k%d" % i, b"v" * 20, headers, None) for i in range(40)]
    plog.append(build_batch(rows, compression_type=compression.GZIP))
    assert len(calls) == 1
    with pytest.raises(InvalidRecordError, match="only records with a key"):
        plog.append(
            build_batch([*rows, (None, b"x", headers, None)], compression_type=compression.GZIP)
        )
    assert len(calls) == 2
    plog.close()
