"""The JSON fast path's blocks (loaders/blocks.py): fetched batches decoded into one buffer of
lines give the same records, the same rows, the same dead letters and the same Parquet bytes
as the record-by-record lists they replace."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.protocol import compression
from broker.protocol.columns import guess_spans, record_fields, record_heads
from broker.protocol.records import (
    HEADER_SIZE,
    build_batch,
    compute_crc,
    with_log_append_time,
)
from consumers.consumer import Block, CorruptBatchError, decode_messages
from loaders.blocks import ValueBlock, decode_value_block
from loaders.chunk import parquet_bytes
from loaders.convert import Converter, ValueFormat
from loaders.layout import DEAD_LETTER
from loaders.schema import MemorySchemas

PLAN_MS = 1_710_072_000_000
MAX_MS = PLAN_MS + 86_400_000

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
objects = st.dictionaries(
    st.sampled_from(["a", "b", "ts", "_offset", "n\u00e9", "x\ny"]), json_values, max_size=4
)
raw_values = st.one_of(
    objects.map(lambda o: json.dumps(o).encode()),
    objects.map(lambda o: json.dumps(o, indent=1).encode()),  # newlines inside the value
    st.sampled_from(
        [
            b"not json",
            b"[1, 2]",
            b"3",
            b"",
            b'{"a": "\xff"}',
            b'{"a": 1}\n{"a": 2}',
            b'{"a": NaN}',
            b'\xef\xbb\xbf{"a": 1}',
            b'{"a": 1} ',
            b' {"a": 1}',
            b'{"a": 1}\r',
            b'{"a": "x\x00"}',
            b"\x00\x01\x02",
        ]
    ),
    st.binary(max_size=12),
    st.none(),
)
records = st.tuples(
    st.none() | st.binary(max_size=6),
    raw_values,
    st.sampled_from([(), (), (), (("h", b"v"),)]),
    st.integers(0, 5000),
)
batches = st.lists(
    st.tuples(
        st.lists(records, min_size=1, max_size=40),
        st.sampled_from([compression.NONE, compression.LZ4, compression.GZIP]),
        st.booleans(),
    ),
    min_size=1,
    max_size=4,
)


def fetched(spec, base: int = 0) -> bytes:
    """Batches as a fetch returns them: ``spec`` is [(records, codec, log append time)]."""
    out = []
    for recs, codec, log_append in spec:
        batch = build_batch(
            [(k, v, h, PLAN_MS + t) for k, v, h, t in recs],
            base_offset=base,
            compression_type=codec,
        )
        if log_append:
            batch = with_log_append_time(batch, PLAN_MS + 7)
        out.append(batch)
        base += len(recs)
    return b"".join(out)


def as_lists(block: Block) -> tuple:
    return (
        [int(o) for o in block.offsets],
        [int(t) for t in block.timestamps],
        list(block.keys),
        list(block.values),
    )


def converted_equal(a, b) -> None:
    assert a.table.equals(b.table), (a.table, b.table)
    assert list(a.keys) == list(b.keys) and list(a.row_of) == list(b.row_of)
    assert a.dead.equals(b.dead)
    assert (a.conflicts, a.new_fields) == (b.conflicts, b.new_fields)
    if a.table.num_rows:
        assert parquet_bytes(a.table) == parquet_bytes(b.table)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=batches, skip=st.integers(0, 10), time_field=st.sampled_from([None, "ts"]))
def test_value_blocks_give_the_same_records_rows_and_dead_letters_as_lists(spec, skip, time_field):
    data = fetched(spec)
    messages, next_listed = decode_messages("t", 0, data, skip)  # the pure-Python decoder
    listed = Block.of(messages) if messages else None
    lined, next_lined = decode_value_block("t", 0, data, skip)
    assert next_lined == next_listed
    if listed is None:
        assert lined is None
        return
    assert isinstance(lined, ValueBlock)
    assert as_lists(lined) == as_lists(listed)
    fast = Converter(ValueFormat("json"), MemorySchemas(), time_field)
    slow = Converter(ValueFormat("json"), MemorySchemas(), time_field)
    for lo, hi in ((0, len(listed)), (len(listed) // 2, len(listed))):  # and a block's rest
        a = fast.convert("t", 0, lined[lo:hi], MAX_MS)
        b = slow.convert("t", 0, listed[lo:hi], MAX_MS)
        converted_equal(a, b)
        assert fast.schemas.get("t") == slow.schemas.get("t")


def test_bad_values_among_good_ones_are_exactly_the_dead_letters():
    good = [json.dumps({"a": i, "s": "x" * (i % 50)}).encode() for i in range(300)]
    bad = {
        17: b"not json",
        40: b'{"a": 1}\n{"a": 2}',
        41: None,
        99: b"[1]",
        150: b'{"s": "\xff"}',
        299: b"",
    }
    values = [bad.get(i, v) for i, v in enumerate(good)]
    data = fetched(
        [
            ([(None, v, (), 0) for v in values[:200]], compression.LZ4, False),
            ([(None, v, (), 0) for v in values[200:]], compression.NONE, False),
        ]
    )
    block, _ = decode_value_block("t", 0, data, 0)
    assert isinstance(block, ValueBlock) and block.lines() is None  # a bad value: no fast path
    result = Converter(ValueFormat("json"), MemorySchemas()).convert("t", 0, block, MAX_MS)
    assert [i for i, k in enumerate(result.keys) if k == DEAD_LETTER] == sorted(bad)
    assert result.dead.column("_offset").to_pylist() == sorted(bad)
    assert result.dead.column("_value").to_pylist() == [bad[i] for i in sorted(bad)]
    assert result.table.column("a").to_pylist() == [i for i in range(300) if i not in bad]
    # the good ones alone take the fast path, as one buffer of lines
    clean, _ = decode_value_block(
        "t", 0, fetched([([(None, v, (), 0) for v in good], 0, False)]), 0
    )
    lines = clean.lines()
    assert lines is not None and [v.strip() for v in bytes(lines).split(b"\n")[:-1]] == good


def test_a_newline_inside_a_value_keeps_it_one_record():
    """Found by the line count: without it the reader would make two rows of one value."""
    values = [b'{"a": 1}', b'{"a":\n 2}', b'{"a": 3}']
    block, _ = decode_value_block(
        "t", 0, fetched([([(None, v, (), 0) for v in values], 0, False)]), 0
    )
    assert block.lines() is None
    result = Converter(ValueFormat("json"), MemorySchemas()).convert("t", 0, block, MAX_MS)
    assert result.table.column("a").to_pylist() == [1, 2, 3]


def test_record_starts_found_from_zero_bytes_or_walked():
    recs = [(None, b'{"v": %d}' % i + b" " * (i * 37 % 3000), (), i) for i in range(200)]
    section = build_batch(recs)[HEADER_SIZE:]
    a = np.frombuffer(section, np.uint8)
    starts, lengths = guess_spans(a, 200)
    heads, _ = record_heads(section, 200)
    assert (starts - 1 - (lengths >= 64)).tolist() == heads  # one or two length bytes
    # a long record (a three-byte length), keys, headers: the guess gives up, fields still agree
    for recs2 in ([(None, b"x" * 9000, (), 0)] * 3, [(b"k", b"v", (("h", b"1"),), 0)] * 40):
        section = build_batch(recs2)[HEADER_SIZE:]
        assert guess_spans(np.frombuffer(section, np.uint8), len(recs2)) is None
    assert record_fields(build_batch([(None, b"x" * 9000, (), 0)] * 3)[HEADER_SIZE:], 3) is not None


def test_log_append_time_and_from_offset_inside_a_batch():
    recs = [(b"k%d" % i, b'{"a": %d}' % i, (), i) for i in range(50)]
    data = fetched([(recs, compression.NONE, True)], base=100)
    block, next_offset = decode_value_block("t", 0, data, 120)
    assert next_offset == 150 and block.offsets.tolist() == list(range(120, 150))
    assert set(block.timestamps.tolist()) == {PLAN_MS + 7}
    assert block.keys == [b"k%d" % i for i in range(20, 50)]
    assert bytes(block.lines()).split(b"\n")[0] == b'{"a": 20}'


def test_a_corrupt_batch_first_raises_and_after_good_ones_ends_the_block():
    good = fetched([([(None, b'{"a": 1}', (), 0)] * 40, compression.NONE, False)])
    bad = bytearray(
        fetched([([(None, b'{"a": 2}', (), 0)] * 40, compression.NONE, False)], base=40)
    )
    bad[-5] ^= 0xFF  # fails its CRC
    with pytest.raises(CorruptBatchError) as raised:
        decode_value_block("t", 0, bytes(bad), 40)
    assert (raised.value.first_offset, raised.value.last_offset) == (40, 79)
    block, next_offset = decode_value_block("t", 0, good + bytes(bad), 0)
    assert len(block) == 40 and next_offset == 40


def empty_batch(base: int) -> bytes:
    """A batch of no records at ``base``, as compaction leaves them."""
    one = bytearray(build_batch([(None, b"{}")], base_offset=base)[:HEADER_SIZE])
    struct.pack_into(">i", one, 8, HEADER_SIZE - 12)  # batchLength: the header only
    struct.pack_into(">i", one, HEADER_SIZE - 4, 0)  # recordCount
    struct.pack_into(">I", one, 17, compute_crc(one))
    return bytes(one)


def test_empty_batches_give_no_block_and_are_passed():
    block, next_offset = decode_value_block("t", 0, empty_batch(5), 5)
    assert block is None and next_offset == 6
    recs = [(None, b'{"a": %d}' % i, (), 0) for i in range(3)]
    block, next_offset = decode_value_block(
        "t", 0, empty_batch(5) + fetched([(recs, 0, False)], 6), 5
    )
    assert block.offsets.tolist() == [6, 7, 8] and next_offset == 9
    assert [v.strip() for v in bytes(block.lines()).split(b"\n")[:-1]] == [r[1] for r in recs]
