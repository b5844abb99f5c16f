"""The audit's count of what the brokers hold, over a log the cleaner thinned: each record
counted once at its own offset, batches with gaps and empty batches included."""

from __future__ import annotations

import time

from twisted.internet.task import Clock

from broker.log import LogConfig, PartitionLog
from broker.log.cleaner import CleanerConfig, LogCleaner
from broker.protocol.records import build_batch, decode_batch, split_batches
from headrace.audit.sources import _HeaderCounter


def test_brokered_counts_follow_the_offsets_of_thinned_batches(tmp_path):
    clock = Clock()
    clock.advance(time.time())
    config = LogConfig(segment_bytes=2048, cleanup_policy="compact", min_cleanable_dirty_ratio=0)
    plog = PartitionLog.open(tmp_path / "t-0", config, clock=clock)
    now_ms = int(time.time() * 1000)
    for i in range(60):
        rows = [(b"k%d" % ((i * 5 + j) % 7), b"v" * 40, None, now_ms) for j in range(5)]
        plog.append(build_batch(rows))
    plog.flush()
    plog.high_watermark = plog.log_end_offset
    LogCleaner(CleanerConfig(), clock).clean_now(plog)
    data = plog.read(0, 1 << 20)
    offsets = [r.offset for pos, _ in split_batches(data) for r in decode_batch(data, pos).records]
    assert len(offsets) < plog.log_end_offset  # thinned
    end = plog.log_end_offset
    for start in range(offsets[0] - 1, end + 1):
        counts, _ = _HeaderCounter({0: end}, 60_000, 0)("t", 0, data, start)
        expected = sum(1 for o in offsets if start <= o < end)
        assert len(counts) == expected == sum(counts.counts.values())
    plog.close()
