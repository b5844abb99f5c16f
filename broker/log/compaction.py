"""One clean of one compacted log, as Kafka's ``Cleaner`` does it, off the appending thread.

    >>> job = CleanJob(...)                   # taken on the log's thread (cleaner.py)
    >>> offset_map, end = build_offset_map(job)  # key -> latest offset over the dirty section
    >>> for group in group_segments(job, end):
    ...     cleaned = clean_group(job, group, offset_map)   # a ``.cleaned`` file, or None

The *dirty section* is what no clean has seen yet, from the checkpointed first dirty offset
up to ``end`` (the active segment, the recovery point, the high watermark and
``min.compaction.lag.ms`` bound it, at segment boundaries).  Every segment from the log start
up to ``end`` is then rewritten, a group of neighbouring segments (at most ``segment.bytes``
together) into one file, keeping offsets and each batch's first and last offset: a record
stays if no later record of its key is in the map, a tombstone (null value) also only until
``delete.retention.ms`` has passed since the segment holding it was cleaned, a record without
a key never.  A batch that loses some records is rebuilt around the rest (same header fields,
codec and offset deltas); the last batch of each live idempotent producer is kept even when
empty, so its sequence numbers survive.  Pure over bytes and descriptors given to it: no
reactor, no shared state; the caller swaps the files in (swap.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..protocol import compression
from ..protocol.columns import record_fields
from ..protocol.errors import CorruptMessageError
from ..protocol.records import (
    COMPRESSION_MASK,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    BatchHeader,
    decode_batch,
    records_section,
    with_body,
)
from ..protocol.varint import decode_varint
from .names import LOG_SUFFIX, offset_file_name
from .offset_map import KeyColumn, OffsetMap, OffsetMapBuilder, gather_keys, keys_from_list

CLEANED_SUFFIX = ".cleaned"
KEY_ENTRY_BYTES = 24  # Kafka's offset map: a 16-byte key hash and an 8-byte offset per key
_MAX_SPAN = 2**31 - 1  # offsets of one segment are 32-bit deltas from its base
_READ_CHUNK = 1024 * 1024
_WRITE_CHUNK = 1024 * 1024


class CleanAborted(Exception):
    """The cleaner was told to stop; the files written so far are discarded."""


@dataclass
class SegmentCopy:
    """One segment as the cleaner sees it: a descriptor of its own and what it covers."""

    base_offset: int
    next_offset: int  # the next segment's base (or the segment's own end)
    size: int
    fd: int
    mtime: float


@dataclass
class CleanJob:
    """What one clean needs, taken on the log's thread; the cleaner thread reads only this."""

    directory: Path
    segments: list[SegmentCopy]  # from the log start up to the cleanable end, in order
    first_dirty: int
    cleanable_end: int
    now_ms: int
    delete_retention_ms: int
    segment_bytes: int
    index_interval: int
    max_map_keys: int
    producer_last_offsets: dict[int, int]  # producer id -> last offset of its last batch
    throttle: Throttle | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for segment in self.segments:
            if segment.fd >= 0:
                os.close(segment.fd)
                segment.fd = -1


@dataclass
class CleanedGroup:
    """A group of segments rewritten into ``path`` (``<base>.log.cleaned``, fsynced; None
    when it would come out unchanged)."""

    bases: list[int]  # the segments it replaces
    path: Path | None
    bytes_read: int
    bytes_written: int
    records_kept: int
    records_removed: int
    tombstones_kept: bool
    mtime: float  # seconds: the cleaned file's modification time (tombstones' clock)


class Throttle:
    """``log.cleaner.io.max.bytes.per.second``, shared by the cleaner threads: callers sleep
    so that the bytes they read and wrote stay below the rate."""

    def __init__(self, rate: float):
        self.rate = rate
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._bytes = 0

    def spent(self, amount: int) -> None:
        if self.rate == float("inf"):
            return
        with self._lock:
            self._bytes += amount
            ahead = self._bytes / self.rate - (time.monotonic() - self._start)
            if time.monotonic() - self._start > 1.0 and ahead <= 0:
                self._start, self._bytes = time.monotonic(), 0
        if ahead > 0:
            time.sleep(ahead)


# --- reading ---------------------------------------------------------------------------------


def batches(segment: SegmentCopy, job: CleanJob) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Every batch of a segment (header and bytes), read in chunks of about a megabyte."""
    position = 0
    while position < segment.size:
        if job.stop.is_set():
            raise CleanAborted
        chunk = os.pread(segment.fd, min(_READ_CHUNK, segment.size - position), position)
        if len(chunk) < HEADER_SIZE:
            return
        view = memoryview(chunk)
        off = 0
        while off + HEADER_SIZE <= len(chunk):
            header = BatchHeader._make(HEADER.unpack_from(chunk, off))
            size = header.batch_length + LOG_OVERHEAD
            if header.batch_length < MIN_BATCH_LENGTH:
                raise CorruptMessageError(
                    f"segment {segment.base_offset}: batch length {header.batch_length} at "
                    f"byte {position + off}"
                )
            if off + size > len(chunk):
                if off == 0:  # a batch larger than the chunk: read it whole
                    whole = os.pread(segment.fd, size, position)
                    if len(whole) < size:
                        raise CorruptMessageError(
                            f"segment {segment.base_offset}: a batch cut short at byte {position}"
                        )
                    yield header, memoryview(whole)
                    off = size
                break
            yield header, view[off : off + size]
            off += size
        if job.throttle is not None:
            job.throttle.spent(off)
        position += off


def batch_runs(segment: SegmentCopy, job: CleanJob) -> Iterator[list]:
    """The batches of a segment in runs of about a megabyte, decoded a run at a time."""
    run: list = []
    size = 0
    for header, batch in batches(segment, job):
        run.append((header, batch))
        size += len(batch)
        if size >= _READ_CHUNK:
            yield run
            run, size = [], 0
    if run:
        yield run


class RunRecords(NamedTuple):
    """The records of a run of batches: their sections joined in ``data`` (uint8), where
    each record ends there (it starts where the one before ends), their keys, offsets and
    whether each is a tombstone; ``bounds`` are each batch's (first, end) record indexes."""

    data: np.ndarray
    ends: np.ndarray
    keys: KeyColumn
    offsets: np.ndarray
    tombstones: np.ndarray
    bounds: list


def decode_run(run: list) -> RunRecords:
    """The records of ``run`` walked by one numpy pass over the joined record sections
    (records delimit themselves); record by record where that pass cannot (headers)."""
    sections = [
        records_section(b, 0, verify_crc=False)[1] if h.record_count else b"" for h, b in run
    ]
    counts = [h.record_count for h, _ in run]
    data = b"".join(sections)
    bounds, i = [], 0
    for count in counts:
        bounds.append((i, i + count))
        i += count
    fields = record_fields(data, i) if data else None
    if fields is None:
        return _decode_slowly(run, data, bounds)
    section = np.frombuffer(data, np.uint8)
    bases = np.repeat(np.array([h.base_offset for h, _ in run], np.int64), counts)
    return RunRecords(
        section,
        fields.value_start + fields.value_len.clip(0) + 1,
        gather_keys(section, fields.key_start, fields.key_len),
        fields.offset_delta + bases,
        fields.value_len < 0,
        bounds,
    )


def _decode_slowly(run: list, data: bytes, bounds: list) -> RunRecords:
    ends, keys, offsets, tombstones = [], [], [], []
    pos = 0
    for header, batch in run:
        if not header.record_count:
            continue
        for record in decode_batch(batch, 0, verify_crc=False).records:
            length, after = decode_varint(data, pos)
            pos = after + length
            ends.append(pos)
            keys.append(record.key)
            offsets.append(record.offset)
            tombstones.append(record.value is None)
    return RunRecords(
        np.frombuffer(data, np.uint8),
        np.array(ends, np.int64),
        keys_from_list(keys),
        np.array(offsets, np.int64),
        np.array(tombstones, bool),
        bounds,
    )


# --- the offset map --------------------------------------------------------------------------


def build_offset_map(job: CleanJob) -> tuple[OffsetMap, int]:
    """key -> offset of its latest record over the dirty section, and the offset the map
    covers up to (a segment boundary: where a segment would have overfilled the map)."""
    offset_map = OffsetMapBuilder()
    end = job.first_dirty
    for segment in job.segments:
        if segment.next_offset <= job.first_dirty:
            continue
        if segment.base_offset >= job.cleanable_end:
            break
        # at most one record per offset: stop before a segment that could overfill the map
        span = segment.next_offset - max(segment.base_offset, job.first_dirty)
        if offset_map and len(offset_map) + span > job.max_map_keys:
            break  # the rest waits for the next clean
        for run in batch_runs(segment, job):
            run = [(h, b) for h, b in run if h.last_offset >= job.first_dirty and h.record_count]
            if not run:
                continue
            records = decode_run(run)
            offset_map.add(records.keys, records.offsets)
        offset_map.merge()
        end = segment.next_offset
    return offset_map.build(), end


# --- groups and their rewrite ----------------------------------------------------------------


def group_segments(job: CleanJob, end: int) -> list[list[SegmentCopy]]:
    """The segments below ``end`` in groups of neighbours that fit one segment together
    (``segment.bytes``, and 2**31 offsets), as Kafka's ``groupSegmentsBySize``."""
    groups: list[list[SegmentCopy]] = []
    for segment in job.segments:
        if segment.base_offset >= end:
            break
        group = groups[-1] if groups else None
        if (
            group is not None
            and sum(s.size for s in group) + segment.size <= job.segment_bytes
            and segment.next_offset - group[0].base_offset <= _MAX_SPAN
        ):
            group.append(segment)
        else:
            groups.append([segment])
    return groups


def _rebuilt(header: BatchHeader, body: bytes, kept: int) -> bytes:
    """The batch around ``body``, the ``kept`` records it keeps: same base offset, last
    offset delta, producer fields and codec; an empty batch (no codec) when none is kept."""
    attributes = header.attributes
    if not kept:
        attributes &= ~COMPRESSION_MASK  # Kafka's empty batches carry no codec
    elif header.compression != compression.NONE:
        body = compression.compress(header.compression, body)
    return with_body(header, body, attributes, header.last_offset_delta, kept)


def clean_group(job: CleanJob, group: list[SegmentCopy], offset_map: OffsetMap) -> CleanedGroup:
    """Rewrite ``group`` into ``<first base>.log.cleaned`` (fsynced, its modification time
    the clean's if it holds dirty records, else the newest of the group's); no file when the
    group is one segment that would come out unchanged."""
    path = job.directory / (offset_file_name(group[0].base_offset, LOG_SUFFIX) + CLEANED_SUFFIX)
    horizon_s = (job.now_ms - job.delete_retention_ms) / 1000.0
    last_of_producer = job.producer_last_offsets
    pending: list[bytes | memoryview] = []
    pending_bytes = written = read = kept_total = removed_total = 0
    changed = len(group) > 1
    tombstones_kept = False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for segment in group:
            drop_tombstones = segment.next_offset <= job.first_dirty and segment.mtime <= horizon_s
            for run in batch_runs(segment, job):
                records = decode_run(run)
                keep = _keep(records, offset_map, job.first_dirty, drop_tombstones)
                tombstones_kept = tombstones_kept or bool((keep & records.tombstones).any())
                kept_bytes = None  # which bytes of the records stay, once a batch needs it
                for (header, batch), (i, j) in zip(run, records.bounds):
                    read += len(batch)
                    out = _filtered(header, batch, keep[i:j], last_of_producer)
                    if out is _REBUILD:
                        if kept_bytes is None:
                            kept_bytes = _kept_bytes(records, keep)
                        out = _rebuilt(
                            header, _body(records, kept_bytes, i, j), int(keep[i:j].sum())
                        )
                    kept = int(keep[i:j].sum())
                    kept_total += kept
                    removed_total += header.record_count - kept
                    if out is not batch:
                        changed = True
                    if out is None:
                        continue
                    pending.append(out)
                    pending_bytes += len(out)
                    if pending_bytes >= _WRITE_CHUNK:
                        written += _write(fd, pending, job)
                        pending, pending_bytes = [], 0
        if not changed:
            os.close(fd)
            fd = -1
            path.unlink()
            return CleanedGroup(
                [s.base_offset for s in group],
                None,
                read,
                0,
                kept_total,
                0,
                tombstones_kept,
                group[0].mtime,
            )
        written += _write(fd, pending, job)
        os.fsync(fd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
            fd = -1
        path.unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    dirty = any(s.next_offset > job.first_dirty for s in group)
    mtime = job.now_ms / 1000.0 if dirty else max(s.mtime for s in group)
    os.utime(path, (mtime, mtime))
    return CleanedGroup(
        [s.base_offset for s in group],
        path,
        read,
        written,
        kept_total,
        removed_total,
        tombstones_kept,
        mtime,
    )


def _keep(
    records: RunRecords, offset_map: OffsetMap, first_dirty: int, drop_tombstones: bool
) -> np.ndarray:
    """Which records of a run stay: one with a key no later record in the map has, and not a
    tombstone whose time has come."""
    later = offset_map.superseded(records.keys, records.offsets, first_dirty)
    keep = records.keys.present & ~later
    if drop_tombstones:
        keep &= ~records.tombstones
    return keep


_REBUILD = object()


def _filtered(header, batch, mine: np.ndarray, last_of_producer):
    """The batch as it is, ``_REBUILD`` if it must be rebuilt around the records it keeps
    (``mine``), or None if nothing stays (an empty batch is kept for a live producer's last
    batch)."""
    if mine.all():
        return batch if header.record_count or _producers_last(header, last_of_producer) else None
    if not mine.any() and not _producers_last(header, last_of_producer):
        return None
    return _REBUILD


def _kept_bytes(records: RunRecords, keep: np.ndarray) -> np.ndarray:
    """A mask over ``records.data``: the bytes of the records ``keep`` keeps."""
    lengths = np.diff(records.ends, prepend=0)
    return np.repeat(keep, lengths)


def _body(records: RunRecords, kept_bytes: np.ndarray, i: int, j: int) -> bytes:
    """The kept records of records ``i:j`` (one batch), joined."""
    start = int(records.ends[i - 1]) if i else 0
    end = int(records.ends[j - 1])
    return records.data[start:end][kept_bytes[start:end]].tobytes()


def _producers_last(header, last_of_producer) -> bool:
    return last_of_producer.get(header.producer_id) == header.last_offset


def _write(fd: int, parts: list, job: CleanJob) -> int:
    data = b"".join(parts)
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        view = view[done:]
    if job.throttle is not None:
        job.throttle.spent(len(data))
    return len(data)
