"""Fetched record batches as one buffer of JSON lines, for the JSON fast path.

    >>> consumer = Consumer(..., columnar=decode_value_block)
    >>> block = consumer.poll()[0]   # a ValueBlock: offsets, timestamps (numpy), keys
    >>> block.lines()                # its values, one a line, for pyarrow's JSON reader

The record sections of a fetch are copied once into one buffer, in which every byte that is
not a value (lengths, deltas, keys, header counts) is overwritten with a space and the byte
right after each value with a newline: value ``i`` stays at ``starts[i]`` and the buffer is
newline-delimited JSON as it is, without a bytes object per record.  Positions come from
``broker.protocol.columns.record_fields`` (numpy, all records of a batch at once); a batch it
leaves to the Python decoder (records with headers, say) is decoded record by record and its
values appended as lines.
"""

from __future__ import annotations

import bisect
from itertools import chain

import numpy as np

from broker.protocol.columns import record_fields
from broker.protocol.errors import KafkaError
from broker.protocol.records import (
    LOG_APPEND_TIME,
    RecordColumns,
    decode_batch_columns,
    records_section,
    split_batches,
)
from consumers.consumer import Block, corrupt_batch_error

_SPACE, _NEWLINE = 0x20, 0x0A
_BOM = b"\xef\xbb\xbf"


class ValueBlock(Block):
    """A Block whose values live in one buffer of lines: value ``i`` is
    ``buf[starts[i]:starts[i] + lengths[i]]`` (length -1: null), followed by a newline, with
    only spaces between a newline and the next value.  ``offsets`` and ``timestamps`` are
    int64 arrays; ``values`` makes the bytes objects, for the paths that want them."""

    __slots__ = ("buf", "lengths", "starts")

    def __init__(
        self,
        topic: str,
        partition: int,
        offsets: np.ndarray,
        timestamps: np.ndarray,
        keys: list,
        buf: bytearray,
        starts: np.ndarray,
        lengths: np.ndarray,
    ):
        self.topic, self.partition = topic, partition
        self.offsets, self.timestamps, self.keys = offsets, timestamps, keys
        self.buf, self.starts, self.lengths = buf, starts, lengths

    @property
    def values(self) -> list[bytes | None]:
        buf = memoryview(self.buf)
        return [
            buf[s : s + n].tobytes() if n >= 0 else None
            for s, n in zip(self.starts.tolist(), self.lengths.tolist())
        ]

    def __getitem__(self, index: slice) -> ValueBlock:
        return ValueBlock(
            self.topic,
            self.partition,
            self.offsets[index],
            self.timestamps[index],
            self.keys[index],
            self.buf,
            self.starts[index],
            self.lengths[index],
        )

    def sizes(self) -> np.ndarray:
        """Input bytes of each record: value plus key."""
        sizes = np.maximum(self.lengths, 0)
        if self.keys.count(None) != len(self.keys):
            sizes = sizes + np.array([len(k) if k is not None else 0 for k in self.keys], np.int64)
        return sizes

    def lines(self) -> memoryview | None:
        """The values as newline-delimited lines (a view of the buffer), or None if they
        cannot be read that way: a null or empty value, a newline inside a value, or a byte
        order mark at the start (the reader would skip it; a JSON parser refuses it)."""
        n = len(self.starts)
        if not n or self.lengths.min() <= 0:
            return None
        first = int(self.starts[0])
        end = int(self.starts[-1] + self.lengths[-1]) + 1
        if self.buf.startswith(_BOM, first):
            return None
        lines = memoryview(self.buf)[first:end]
        if (
            np.count_nonzero(np.frombuffer(lines, np.uint8) == _NEWLINE) != n
        ):  # (3x bytes.count's speed)
            return None
        return lines


def decode_value_block(
    topic: str, partition: int, data, from_offset: int
) -> tuple[ValueBlock | None, int]:
    """``consumers.consumer.decode_block`` making a ValueBlock: the records in fetched bytes at
    or after ``from_offset`` (None if none), and the offset to fetch next.  A batch that cannot
    be decoded ends the block before it, or raises CorruptBatchError when it comes first."""
    parts: list[tuple] = []
    next_offset = from_offset
    for pos, header in split_batches(data):
        if header.next_offset <= from_offset:
            continue
        if not header.is_control:
            try:
                parts.append(_batch_part(data, pos))
            except KafkaError as exc:
                if next_offset == from_offset:
                    raise corrupt_batch_error(topic, partition, data, pos, header, exc) from exc
                next_offset = max(from_offset, header.base_offset)
                break
        next_offset = max(next_offset, header.next_offset)
    if not parts:
        return None, next_offset
    block = _join(topic, partition, parts)
    if not len(block):  # only empty batches (compaction leaves them)
        return None, next_offset
    if block.offsets[0] < from_offset:
        block = block[int(np.searchsorted(block.offsets, from_offset)) :]
    return (block if len(block) else None), next_offset


def _batch_part(data, pos: int) -> tuple:
    """(section, offsets, timestamps, keys, value starts, value lengths, blanks) of the batch
    at ``pos``; ``blanks`` are the (start, end) ranges of the section that are not values,
    None if the section is already lines (the Python decoder's values, joined)."""
    header, section = records_section(data, pos, True)
    count = header.record_count
    fields = record_fields(section, count)
    if fields is None:  # the Python decoder, with its precise errors
        columns = RecordColumns()
        decode_batch_columns(data, pos, columns)
        lengths = np.array([len(v) if v is not None else -1 for v in columns.values], np.int64)
        starts = np.cumsum(np.maximum(lengths, 0) + 1) - np.maximum(lengths, 0) - 1
        section = b"".join([(v or b"") + b"\n" for v in columns.values])
        return (
            section,
            np.array(columns.offsets, np.int64),
            np.array(columns.timestamps, np.int64),
            columns.keys,
            starts,
            lengths,
            None,
        )
    offset_delta, ts_delta, key_start, key_len, value_start, value_len = fields
    if header.timestamp_type == LOG_APPEND_TIME:
        timestamps = np.full(count, header.max_timestamp, np.int64)
    else:
        timestamps = ts_delta + header.base_timestamp
    if (key_len < 0).all():
        keys = [None] * count
    else:
        keys = [
            section[x : x + n] if n >= 0 else None
            for x, n in zip(key_start.tolist(), key_len.tolist())
        ]
    value_end = value_start + np.maximum(value_len, 0)
    blank_starts = np.concatenate(([0], value_end))
    blank_ends = np.concatenate((value_start, [len(section)]))
    return (
        section,
        offset_delta + header.base_offset,
        timestamps,
        keys,
        value_start,
        value_len,
        (blank_starts, blank_ends),
    )


def _join(topic: str, partition: int, parts: list[tuple]) -> ValueBlock:
    """One ValueBlock of the parts of consecutive batches: their sections in one buffer, with
    what is not a value blanked and a newline after each value."""
    buf = bytearray().join([p[0] for p in parts])
    shifts = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    starts = np.concatenate([p[4] + shift for p, shift in zip(parts, shifts.tolist())])
    lengths = np.concatenate([p[5] for p in parts])
    blanks = [
        (p[6][0] + shift, p[6][1] + shift)
        for p, shift in zip(parts, shifts.tolist())
        if p[6] is not None
    ]
    if blanks:
        lo = np.concatenate([b[0] for b in blanks])
        hi = np.concatenate([b[1] for b in blanks])
        size = hi - lo
        a = np.frombuffer(buf, np.uint8)
        # every position in [lo, hi) of every range, at once
        a[np.arange(int(size.sum())) + np.repeat(lo - np.cumsum(size) + size, size)] = _SPACE
        a[starts + np.maximum(lengths, 0)] = _NEWLINE
    keys = parts[0][3] if len(parts) == 1 else list(chain.from_iterable(p[3] for p in parts))
    return ValueBlock(
        topic,
        partition,
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        keys,
        buf,
        starts,
        lengths,
    )


def offset_index(offsets, offset: int) -> int:
    """Where ``offset`` is, or would go, in sorted offsets (a list or an int64 array)."""
    if isinstance(offsets, np.ndarray):
        return int(np.searchsorted(offsets, offset))
    return bisect.bisect_left(offsets, offset)
