"""A chunk: the unit of commit of one partition, cut only by what is in the data.

A chunk holds the records of offsets [start, next) of one partition, split into one open
writer per output bucket (event hour, quarantine, dead letters).  It is cut - all its writers
become files at once and the offset moves to ``next`` - when

- a writer reaches ``max_rows`` records or ``max_bytes`` input bytes (after that record),
- a record needs a new writer while ``max_open`` writers are open (before that record),
- the chunk's input reaches ``max_chunk_bytes`` (after that record; this bounds memory),
- the partition reaches the end of the run plan.

Nothing else (no wall clock, no output size, no fetch boundaries) decides a cut, so loading
the same plan again from the same committed offset rebuilds the same files under the same
names.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .blocks import ValueBlock
from .convert import Converted, concat
from .layout import DEAD_LETTER, QUARANTINE, bucket_dir, data_file_name


class Limits(NamedTuple):
    max_rows: int = 1_000_000  # rows per file
    max_bytes: int = 256 * 1024 * 1024  # input bytes per file
    max_open: int = 32  # open writers per chunk
    max_chunk_bytes: int = (
        256 * 1024 * 1024
    )  # input bytes per chunk: what a partition holds in memory


class ChunkFile(NamedTuple):
    rel: str  # path under the warehouse root
    key: int  # bucket key
    first: int
    last: int
    table: pa.Table


class _Writer:
    __slots__ = ("bytes", "first", "last", "rows", "tables")

    def __init__(self):
        self.tables: list[pa.Table] = []
        self.rows = self.bytes = 0
        self.first = self.last = -1


class Chunk:
    """The open chunk of one partition; see the module docstring."""

    def __init__(self, topic: str, partition: int, start: int, limits: Limits):
        self.topic, self.partition = topic, partition
        self.start = self.next = start
        self.limits = limits
        self.writers: dict[int, _Writer] = {}
        self.input_bytes = 0
        self.conflicts = 0

    @property
    def rows(self) -> int:
        return sum(w.rows for w in self.writers.values())

    def take(self, block, converted: Converted) -> tuple[int, bool]:
        """Add a Block's records (in offset order) until a cut is due; returns (how many were
        taken, whether the chunk must be cut now)."""
        if not len(block):
            return 0, False
        sizes = _sizes(block)
        if self._take_all(block, converted, sizes):
            return len(block), False
        return self._take_some(block, converted, sizes)

    def _take_all(self, block, converted: Converted, sizes: np.ndarray) -> bool:
        """The common case, without a loop per record: the whole block fits (no writer
        reaches a limit, no writer too many) - then take it all and say True."""
        keys = converted.keys
        n = len(keys)
        total = int(sizes.sum())
        if converted.dead.num_rows == 0 and keys[0] == keys[-1] and keys.count(keys[0]) == n:
            # one bucket, no dead letters (time-ordered logs within an hour): no grouping
            stats = {
                "k": [keys[0]],
                "s_sum": [total],
                "s_count": [n],
                "o_min": [int(block.offsets[0])],
                "o_max": [int(block.offsets[-1])],
                "r_min": [0],
                "r_max": [n - 1],
            }
        elif (
            converted.dead.num_rows == 0
            and converted.hours is not None
            and (runs := _hour_runs(converted.hours, sizes, block.offsets)) is not None
        ):
            stats = runs  # hours one after another (a time-ordered log across hours)
        else:
            stats = pa.table(
                {
                    "k": pa.array(keys, pa.int64()),
                    "s": pa.array(sizes, pa.int64()),
                    "o": pa.array(block.offsets, pa.int64()),
                    "r": pa.array(_as_array(converted.row_of), pa.int64()),
                }
            )
            stats = (
                stats.group_by("k")
                .aggregate(
                    [
                        ("s", "sum"),
                        ("s", "count"),
                        ("o", "min"),
                        ("o", "max"),
                        ("r", "min"),
                        ("r", "max"),
                    ]
                )
                .to_pydict()
            )
        max_rows, max_bytes, max_open, max_chunk_bytes = self.limits
        writers = self.writers
        fresh = sum(1 for k in stats["k"] if k not in writers)
        if len(writers) + fresh > max_open or self.input_bytes + total >= max_chunk_bytes:
            return False
        for k, size, rows in zip(stats["k"], stats["s_sum"], stats["s_count"]):
            w = writers.get(k)
            if (w.rows if w else 0) + rows >= max_rows or (w.bytes if w else 0) + size >= max_bytes:
                return False
        for k, size, rows, first, last, r_min, r_max in zip(
            stats["k"],
            stats["s_sum"],
            stats["s_count"],
            stats["o_min"],
            stats["o_max"],
            stats["r_min"],
            stats["r_max"],
        ):
            w = writers.get(k)
            if w is None:
                w = writers[k] = _Writer()
                w.first = first
            w.rows += rows
            w.bytes += size
            w.last = last
            if k == DEAD_LETTER:
                w.tables.append(converted.dead)
            elif rows == converted.table.num_rows:
                w.tables.append(converted.table)
            elif r_max - r_min + 1 == rows:  # an hour's rows in one run (time-ordered logs)
                w.tables.append(converted.table.slice(r_min, rows))
            else:
                w.tables.append(converted.table.filter(pc.equal(converted.hours, k)))
            self._count_conflicts(k, w.tables[-1])
        self.next = int(block.offsets[-1]) + 1
        self.input_bytes += total
        return True

    def _take_some(self, block, converted: Converted, sizes: np.ndarray) -> tuple[int, bool]:
        """Record by record, to find exactly where the cut falls."""
        sizes = sizes.tolist()
        keys = converted.keys
        counts = self.writers
        max_rows, max_bytes, max_open, max_chunk_bytes = self.limits
        offsets = block.offsets
        if not isinstance(offsets, list):
            offsets = offsets.tolist()
        taken, cut = len(offsets), False
        held = self.input_bytes
        for i, offset in enumerate(offsets):
            key = keys[i]
            w = counts.get(key)
            if w is None:
                if len(counts) >= max_open:
                    taken, cut = i, True
                    break
                w = counts[key] = _Writer()
            w.rows += 1
            w.bytes += sizes[i]
            held += sizes[i]
            if w.first < 0:
                w.first = offset
            w.last = offset
            if w.rows >= max_rows or w.bytes >= max_bytes or held >= max_chunk_bytes:
                taken, cut = i + 1, True
                break
        if taken:
            self._materialise(converted, taken)
            self.next = offsets[taken - 1] + 1
            self.input_bytes += sum(sizes[:taken])
        return taken, cut

    def _materialise(self, converted: Converted, taken: int) -> None:
        rows: dict[int, list[int]] = {}
        keys, row_of = converted.keys, converted.row_of
        for i in range(taken):
            rows.setdefault(keys[i], []).append(row_of[i])
        for key, picked in rows.items():
            source = converted.dead if key == DEAD_LETTER else converted.table
            if len(picked) == source.num_rows and picked[0] == 0 and picked[-1] == len(picked) - 1:
                part = source
            elif picked[-1] - picked[0] == len(picked) - 1:
                part = source.slice(picked[0], len(picked))
            else:
                part = source.take(pa.array(picked, pa.int64()))
            self.writers[key].tables.append(part)
            self._count_conflicts(key, part)

    def _count_conflicts(self, key: int, part: pa.Table) -> None:
        if key != DEAD_LETTER and "_rejected" in part.column_names:
            self.conflicts += part.num_rows - part.column("_rejected").null_count

    def files(self) -> list[ChunkFile]:
        out = []
        for key, w in sorted(self.writers.items()):
            if not w.rows:
                continue
            name = data_file_name(self.topic, self.partition, w.first, w.last)
            rel = f"{self.topic}/{bucket_dir(key)}/{name}"
            out.append(ChunkFile(rel, key, w.first, w.last, concat(w.tables)))
        return out

    def counts(self) -> dict:
        by = {"rows": 0, "dead_letters": 0, "quarantined": 0}
        for key, w in self.writers.items():
            if key == DEAD_LETTER:
                by["dead_letters"] += w.rows
            else:
                by["rows"] += w.rows
                if key == QUARANTINE:
                    by["quarantined"] += w.rows
        return by


def _sizes(block) -> np.ndarray:
    """Input bytes of each record: value plus key."""
    if isinstance(block, ValueBlock):
        return block.sizes()
    try:
        sizes = list(map(len, block.values))
    except TypeError:  # null values
        sizes = [len(v) if v is not None else 0 for v in block.values]
    if block.keys.count(None) != len(block.keys):
        sizes = [s + (len(k) if k is not None else 0) for s, k in zip(sizes, block.keys)]
    return np.array(sizes, np.int64)


def _as_array(rows) -> np.ndarray | list:
    """Row numbers for pyarrow: a range as numpy (pyarrow would walk it in Python)."""
    return np.arange(rows.start, rows.stop, rows.step) if isinstance(rows, range) else rows


def _hour_runs(hours: pa.Array, sizes: np.ndarray, offsets) -> dict | None:
    """The per-bucket stats of ``_take_all`` when every row is good and the bucket keys never
    go back (each bucket one run of rows), from the runs' bounds; None otherwise."""
    k = hours.to_numpy(zero_copy_only=False)
    if len(k) < 2 or (k[1:] < k[:-1]).any():
        return None
    first = np.concatenate(([0], np.flatnonzero(k[1:] != k[:-1]) + 1))
    last = np.append(first[1:], len(k)) - 1
    offsets = np.asarray(offsets, np.int64)
    return {
        "k": k[first].tolist(),
        "s_sum": np.add.reduceat(sizes, first).tolist(),
        "s_count": (last - first + 1).tolist(),
        "o_min": offsets[first].tolist(),
        "o_max": offsets[last].tolist(),
        "r_min": first.tolist(),
        "r_max": last.tolist(),
    }


# Offsets and times grow steadily: delta-encoded they take a fraction of the dictionary or
# plain encodings' space and time.
_DELTA = ("_offset", "_timestamp", "_event_time")


def parquet_bytes(table: pa.Table, compression: str = "snappy") -> bytes:
    sink = io.BytesIO()
    delta = [c for c in _DELTA if c in table.column_names]
    pq.write_table(
        table,
        sink,
        compression=compression,
        use_dictionary=[
            c for c in table.column_names if c not in delta and _repetitive(table.column(c))
        ],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in delta},
    )
    return sink.getvalue()


def _repetitive(column) -> bool:
    """Whether dictionary encoding pays: judged on a sample (hashing every value of a column
    of unique values - times, ids, URLs - costs more than it saves)."""
    sample = column.slice(0, 1024)
    if len(sample) < 64 or pa.types.is_nested(column.type):
        return True  # (nested columns, of Avro values: Parquet's default)
    try:
        return pc.count_distinct(sample).as_py() <= len(sample) // 4
    except pa.ArrowNotImplementedError:
        return True
