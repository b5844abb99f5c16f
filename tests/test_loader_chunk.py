"""Chunks: cuts depend on the data only, never on how the records arrive in blocks."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.consumer import Block
from loaders.chunk import Chunk, Limits, _hour_runs
from loaders.convert import Converter, ValueFormat, rest_of
from loaders.layout import HOUR_MS
from loaders.schema import MemorySchemas

BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
MAX_MS = BASE_MS + 100 * HOUR_MS


def block_of(records, start: int) -> Block:
    """Records are (hour, payload size, valid json?) triples."""
    values = []
    for i, (hour, size, ok) in enumerate(records):
        doc = {"ts": BASE_MS + hour * HOUR_MS + i, "pad": "x" * size}
        values.append(json.dumps(doc).encode() if ok else b"{broken" + b"y" * size)
    offsets = list(range(start, start + len(records)))
    return Block("t", 0, offsets, [BASE_MS] * len(records), [None] * len(records), values)


def load(block: Block, splits: list[int], limits: Limits) -> list[tuple]:
    """Feed ``block`` in pieces cut at ``splits``, as the worker does; the cuts made (each
    chunk's range and its files) in order."""
    converter = Converter(ValueFormat("json"), MemorySchemas(), "ts")
    chunk = Chunk("t", 0, block.offsets[0], limits)
    cuts = []
    bounds = [0, *sorted(set(s for s in splits if 0 < s < len(block))), len(block)]
    for lo, hi in itertools.pairwise(bounds):
        part = block[lo:hi]
        converted = converter.convert("t", 0, part, MAX_MS)
        while True:
            taken, cut = chunk.take(part, converted)
            if cut:
                cuts.append(
                    (chunk.start, chunk.next, [(f.rel, f.table.num_rows) for f in chunk.files()])
                )
                chunk = Chunk("t", 0, chunk.next, limits)
            if taken == len(part):
                break
            part, converted = part[taken:], rest_of(converted, taken)
    cuts.append((chunk.start, chunk.next, [(f.rel, f.table.num_rows) for f in chunk.files()]))
    return cuts


records = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.integers(0, 300),
        st.booleans().map(lambda b: b or False) | st.just(True),
    ),
    min_size=1,
    max_size=300,
)
limits = st.builds(
    Limits, st.integers(1, 80), st.integers(50, 20_000), st.integers(1, 7), st.integers(100, 60_000)
)


@settings(max_examples=120, deadline=None)
@given(records, limits, st.lists(st.integers(0, 300), max_size=8))
def test_cuts_do_not_depend_on_block_boundaries(recs, lim, splits):
    block = block_of(recs, start=1000)
    whole = load(block, [], lim)
    assert load(block, splits, lim) == whole
    assert load(block, list(range(len(recs))), lim) == whole  # one record at a time
    # every record is in exactly one file of one chunk, and chunks tile the offsets
    assert sum(rows for _, _, files in whole for _, rows in files) == len(recs)
    assert [c[0] for c in whole[1:]] == [c[1] for c in whole[:-1]]
    # the limits hold: open writers per chunk, rows per file
    assert all(len(files) <= lim.max_open for _, _, files in whole)
    assert all(rows <= lim.max_rows for _, _, files in whole for _, rows in files)


def test_chunk_cut_when_its_input_reaches_max_chunk_bytes():
    block = block_of([(h % 3, 100, True) for h in range(60)], start=0)
    cuts = load(
        block, [], Limits(max_rows=1000, max_bytes=10**9, max_open=32, max_chunk_bytes=1500)
    )
    assert len(cuts) > 3
    for start, end, files in cuts[:-1]:
        assert sum(rows for _, rows in files) == end - start


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 6), st.integers(0, 500)), min_size=1, max_size=200))
def test_hour_runs_give_what_grouping_gives(rows):
    """The per-bucket stats of a block whose keys never go back, from its runs, are those of
    grouping by key; keys that go back are left to the grouping."""
    keys = [k for k, _ in rows]
    sizes = np.array([s for _, s in rows], np.int64)
    offsets = list(range(70, 70 + len(rows)))
    runs = _hour_runs(pa.array(keys, pa.int64()), sizes, offsets)
    if any(b < a for a, b in itertools.pairwise(keys)) or len(keys) < 2:
        assert runs is None
        return
    grouped = (
        pa.table({"k": keys, "s": sizes, "o": offsets, "r": list(range(len(rows)))})
        .group_by("k")
        .aggregate(
            [("s", "sum"), ("s", "count"), ("o", "min"), ("o", "max"), ("r", "min"), ("r", "max")]
        )
        .sort_by("k")
        .to_pydict()
    )
    assert runs == grouped
