"""Helpers shared by the storage tests: deterministic batches and a full-log check."""

from __future__ import annotations

import hashlib

from broker.protocol import compression
from broker.protocol.records import build_batch, check_batch, decode_batch, split_batches

CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]


def batch_for(seq: int, timestamp: int = 1_700_000_000_000) -> tuple[bytes, list[bytes]]:
    """Batch number ``seq``: its bytes and its record values, all derived from ``seq``."""
    count = 1 + seq % 7
    size = 20 + (seq * 37) % 400
    values = [hashlib.sha256(b"%d/%d" % (seq, i)).digest() * (size // 32 + 1) for i in range(count)]
    values = [v[:size] for v in values]
    records = [
        (b"seq-%d" % seq, v, [("n", b"%d" % i)], timestamp + seq) for i, v in enumerate(values)
    ]
    return build_batch(records, compression_type=CODECS[seq % len(CODECS)]), values


def read_all(plog) -> list:
    """Every batch in the log from its start, decoded (CRC checked), in order."""
    batches = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, 64 * 1024)
        assert data, f"empty read at offset {offset} below the log end {plog.log_end_offset}"
        for pos, _header in split_batches(data):
            check_batch(data, pos)
            batches.append(decode_batch(data, pos))
        offset = batches[-1].header.next_offset
    return batches


def values_by_seq(plog) -> dict[int, list[bytes]]:
    """Map batch seq (from the record key) to its record values, for the whole log."""
    result = {}
    for batch in read_all(plog):
        seq = int(batch.records[0].key.split(b"-")[1])
        result[seq] = [r.value for r in batch.records]
    return result
