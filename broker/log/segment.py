"""One segment of a partition log: a ``.log`` file of record batches plus its two indexes.

Batches are appended as they arrived (only the first 16 bytes, base offset, length and leader
epoch, are rewritten), so a read is a byte range of the file.  The segment keeps what it must
know to append and to find batches: its size, next offset, largest timestamp, and when the
last index entries were made.  ``recover`` re-checks the batches from a given offset, cuts the
file at the first bad one and rebuilds the index entries from there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import crc32c

from ..protocol.records import (
    BASE_OFFSET,
    BATCH_LENGTH,
    CRC,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LAST_OFFSET_DELTA,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_BYTE,
    MAX_TIMESTAMP,
    MIN_BATCH_LENGTH,
    RECORD_COUNT,
)
from .clock import milliseconds
from .index import OffsetIndex, TimeIndex
from .names import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    offset_file_name,
)

log = logging.getLogger(__name__)


_SCAN_CHUNK = 4096  # about one index interval of headers
_IOV_MAX = 1000  # below the usual IOV_MAX of 1024
_RECOVER_CHUNK = 1024 * 1024


class _OwnedFd:
    """A duplicate of a descriptor, closed when the last slice holding it is dropped."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = -1  # so __del__ has nothing to close if dup fails
        self.fd = os.dup(fd)

    def __del__(self):
        if self.fd >= 0:
            os.close(self.fd)


@dataclass(frozen=True)
class FileSlice:
    """A byte range of a segment file: what a fetch sends (by pread or sendfile)."""

    fd: int
    position: int
    size: int
    owner: object = field(default=None, compare=False, repr=False)  # keeps a dup'd fd open

    def detached(self) -> FileSlice:
        """The same range over a descriptor of its own, so it can still be read after the
        segment is closed or deleted (a response waiting behind others to be sent)."""
        if self.size == 0 or self.owner is not None:
            return self
        owned = _OwnedFd(self.fd)
        return FileSlice(owned.fd, self.position, self.size, owned)

    def __len__(self) -> int:
        return self.size

    def read_range(self, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` within the range (a piece of a streamed send);
        OSError if the file no longer holds them."""
        data = os.pread(self.fd, length, self.position + start)
        if len(data) != length:
            raise OSError(
                f"segment file is shorter than a fetch expected "
                f"({len(data)} of {length} bytes at {self.position + start})"
            )
        return data

    def read(self) -> bytes:
        """The bytes of the range, from the page cache."""
        if self.size == 0:
            return b""
        data = os.pread(self.fd, self.size, self.position)
        while len(data) < self.size:  # only at a concurrent truncation; return what exists
            more = os.pread(self.fd, self.size - len(data), self.position + len(data))
            if not more:
                break
            data += more
        return data


class Segment:
    """A ``.log`` file with a sparse ``.index`` and ``.timeindex``; see the module docstring."""

    def __init__(self, directory: Path, base_offset: int, fd: int, index_interval: int):
        self.directory = directory
        self.base_offset = base_offset
        self.log_path = directory / offset_file_name(base_offset, LOG_SUFFIX)
        index_path = directory / offset_file_name(base_offset, INDEX_SUFFIX)
        self.index = OffsetIndex(index_path, base_offset)
        time_index_path = directory / offset_file_name(base_offset, TIME_INDEX_SUFFIX)
        self.time_index = TimeIndex(time_index_path, base_offset)
        self.index_interval = index_interval
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.next_offset = base_offset  # exact for the active segment; set by the log for others
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp = -1  # max timestamp of the first batch, if it has one
        self.created_ms = -1  # when this process created or opened the segment
        # Offsets may jump between batches, and batches hold fewer records than offsets, as
        # the cleaner leaves them; the loader allows it where a clean or a follower's copy of
        # a compacted log may have put them (not in a non-compacted log's last segment, whose
        # base offsets, outside the CRC, must then follow on exactly).
        self.gaps_allowed = False
        self._bytes_since_index = 0

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, index_interval: int, now_ms: int):
        """A new, empty segment (stale files with the same name are replaced)."""
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            try:
                (directory / offset_file_name(base_offset, suffix)).unlink()
            except FileNotFoundError:
                pass
        fd = os.open(
            directory / offset_file_name(base_offset, LOG_SUFFIX),
            os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
            0o644,
        )
        segment = cls(directory, base_offset, fd, index_interval)
        segment.index.reset()
        segment.time_index.reset()
        segment.created_ms = now_ms
        return segment

    @classmethod
    def open(cls, directory: Path, base_offset: int, index_interval: int):
        """Open an existing segment; indexes load when first needed."""
        fd = os.open(directory / offset_file_name(base_offset, LOG_SUFFIX), os.O_RDWR | os.O_APPEND)
        segment = cls(directory, base_offset, fd, index_interval)
        ts, offset = segment.time_index.last_entry()
        segment.max_timestamp, segment.offset_of_max_timestamp = ts, offset
        return segment

    def load_tail(self, now_ms: int) -> bool:
        """Prepare a cleanly closed segment for appends: find its next offset and timestamps by
        walking headers from the last index entry.  False if the walk does not end exactly at
        the end of the file (the segment then needs ``recover``)."""
        offset, position = self._checked(self.index.last_entry)
        next_offset = offset
        try:
            for pos, header in self.scan_headers(position, self.size):
                if header[BASE_OFFSET] != next_offset and not (
                    self.gaps_allowed and next_offset < header[BASE_OFFSET] < self._offset_limit
                ):
                    return False
                next_offset = header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] + 1
                self._note_timestamp(header[MAX_TIMESTAMP], header[BASE_OFFSET])
                position = pos + header[BATCH_LENGTH] + LOG_OVERHEAD
        except EOFError:
            return False
        if position != self.size:
            return False
        self.next_offset = next_offset
        self._bytes_since_index = self.size - self.index.last_entry()[1]
        self.prepare_for_appends(now_ms)
        return True

    def prepare_for_appends(self, now_ms: int) -> None:
        """Set what time-based rolling compares against: the first batch's timestamp."""
        self.created_ms = now_ms
        self.first_batch_timestamp = -1
        if self.size >= HEADER_SIZE:
            self.first_batch_timestamp = HEADER.unpack(os.pread(self.fd, HEADER_SIZE, 0))[
                MAX_TIMESTAMP
            ]

    def should_roll_for_time(self, max_ts: int, clock, roll_ms: int) -> bool:
        """Kafka's rule: a batch whose timestamp is more than ``roll_ms`` after the first
        batch's starts a new segment; without timestamps, the segment's age on ``clock``."""
        if self.first_batch_timestamp >= 0 and max_ts >= 0:
            return max_ts - self.first_batch_timestamp > roll_ms
        return milliseconds(clock) - self.created_ms > roll_ms

    # --- appending -----------------------------------------------------------------------

    def append(self, parts: list, size: int, entries: list, last_offset: int) -> None:
        """Write batches (``parts``: header prefix and body of each, ``size`` bytes in all) at
        the end of the file in one system call; ``entries`` are (base offset, size, max
        timestamp) per batch, for the indexes.

        On a short write or an OSError the file is cut back to its previous size and the error
        is raised, so a failed append leaves nothing behind.
        """
        position = self.size
        if len(parts) > _IOV_MAX:
            parts = [b"".join(parts)]
        try:
            written = os.writev(self.fd, parts)
        except OSError:
            self._undo(position)
            raise
        if written != size:
            self._undo(position)
            raise OSError(28, f"short write: {written} of {size} bytes")
        if position == 0:
            self.first_batch_timestamp = entries[0][2]
        for base_offset, batch_size, max_ts in entries:
            self._index_batch(base_offset, position, batch_size, max_ts)
            position += batch_size
        self.size = position
        self.next_offset = last_offset + 1

    def _index_batch(self, base_offset: int, position: int, size: int, max_ts: int) -> None:
        """Kafka's sparse indexing: an entry for a batch once more than ``index.interval.bytes``
        were written since the last entry; a time entry with it if the largest timestamp grew."""
        if self._bytes_since_index > self.index_interval:
            self.index.append(base_offset, position)
            if self.max_timestamp >= 0:
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0
        self._bytes_since_index += size
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.offset_of_max_timestamp = base_offset

    def _undo(self, position: int) -> None:
        try:
            os.ftruncate(self.fd, position)
        except OSError:
            log.exception(
                "cannot cut %s back to %d bytes after a failed write", self.log_path, position
            )
            raise

    def close_for_appends(self) -> None:
        """Record the largest timestamp so far in the time index (on roll, close, recovery and
        index rebuilds), so that a reopened segment knows it without reading the log."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)

    # --- reading -------------------------------------------------------------------------

    def scan_headers(self, position: int, end: int) -> Iterator[tuple[int, tuple]]:
        """Yield (position, header tuple) for each batch from ``position`` up to ``end``.

        No CRC check: used over data already validated.  Raises EOFError if a header is cut
        short by the end of the file.
        """
        buf = b""
        buf_start = position
        want = _SCAN_CHUNK
        while position < end:
            off = position - buf_start
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(self.fd, max(HEADER_SIZE, min(want, end - position)), position)
                buf_start, off = position, 0
                if len(buf) < HEADER_SIZE:
                    raise EOFError(f"{self.log_path}: header cut short at byte {position}")
            header = HEADER.unpack_from(buf, off)
            if header[BATCH_LENGTH] < MIN_BATCH_LENGTH:
                raise EOFError(f"{self.log_path}: bad batch length at byte {position}")
            yield position, header
            size = header[BATCH_LENGTH] + LOG_OVERHEAD
            # Large batches: read just the next header rather than a chunk of data.
            want = HEADER_SIZE if size > _SCAN_CHUNK else _SCAN_CHUNK
            position += size

    def _entry_matches_log(self, entry: tuple[int, int]) -> bool:
        """True if the batch at the entry's position starts with the entry's offset."""
        offset, position = entry
        if position == 0:
            return offset == self.base_offset
        if position + 8 > self.size:
            return False
        stored = os.pread(self.fd, 8, position)
        return len(stored) == 8 and int.from_bytes(stored, "big", signed=True) == offset

    def _checked(self, lookup) -> tuple[int, int]:
        """The index entry ``lookup()`` gives, checked against the log; a damaged index is
        rebuilt from the log and looked up again."""
        entry = lookup()
        if self._entry_matches_log(entry):
            return entry
        log.warning(
            "%s: index entry %s does not match the log; rebuilding the index", self.log_path, entry
        )
        self.rebuild_index()
        return lookup()

    def _index_start(self, offset: int) -> int:
        """Position of the last indexed batch at or below ``offset``."""
        return self._checked(lambda: self.index.lookup(offset))[1]

    def _walk_from_entry(self, lookup, end: int) -> Iterator[tuple[int, tuple]]:
        """Walk batch headers from the index entry ``lookup()`` gives.  The first header must
        carry the entry's offset; if not, the index is damaged: it is rebuilt from the log and
        the walk starts again from the new entry."""
        entry_offset, position = lookup()
        for attempt in (0, 1):
            headers = self.scan_headers(position, end)
            try:
                first = next(headers, None)
            except EOFError:
                first = None  # the entry points into the middle of a batch
            if first is None and position == 0:
                return
            if first is not None and (
                first[1][BASE_OFFSET] == entry_offset or position == 0 or attempt
            ):  # at byte 0 the first batch may start after the base (compaction)
                yield first
                yield from headers
                return
            if attempt:
                return
            log.warning(
                "%s: index entry (%d, %d) does not match the log; rebuilding the index",
                self.log_path,
                entry_offset,
                position,
            )
            self.rebuild_index()
            entry_offset, position = lookup()

    def find_position(self, offset: int) -> int | None:
        """Byte position of the batch holding ``offset`` (its last offset >= ``offset``), or
        None if the segment ends before it."""
        if offset >= self.next_offset:
            return None
        for pos, header in self._walk_from_entry(lambda: self.index.lookup(offset), self.size):
            if header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] >= offset:
                return pos
        return None

    def read_end(self, start: int, max_bytes: int) -> int:
        """End of the longest run of whole batches from ``start`` within ``max_bytes``; at least
        one whole batch.  Walks headers only from the last index entry below the limit."""
        limit = start + max_bytes
        if limit >= self.size:
            return self.size
        end = start
        floor = self.index.floor_entry(limit)
        if floor[1] > start:
            walk = self._walk_from_entry(lambda: self.index.floor_entry(limit), self.size)
        else:
            walk = self.scan_headers(start, self.size)
        for pos, header in walk:
            if pos < start:
                continue  # the index was rebuilt and now starts below ``start``
            end = max(end, pos)  # batches from start up to an indexed one fit within the limit
            batch_end = pos + header[BATCH_LENGTH] + LOG_OVERHEAD
            if batch_end > limit:
                if end == start:
                    end = batch_end  # always at least one whole batch
                break
            end = batch_end
        return end

    def slice(self, start: int, end: int) -> FileSlice:
        return FileSlice(self.fd, start, end - start)

    def batches_from_timestamp(self, timestamp: int) -> Iterator[tuple[int, tuple]]:
        """(position, header) of each batch from the first whose max timestamp is >=
        ``timestamp`` to the end of the segment."""
        if self.max_timestamp < timestamp:
            return
        start_offset = self.time_index.lookup(timestamp)
        position = 0 if start_offset is None else self._index_start(start_offset)
        found = False
        for pos, header in self.scan_headers(position, self.size):
            found = found or header[MAX_TIMESTAMP] >= timestamp
            if found:
                yield pos, header

    def largest_timestamp_or_mtime(self) -> int:
        """Largest record timestamp, or the file's modification time if it has none (ms)."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return int(os.fstat(self.fd).st_mtime * 1000)

    def rebuild_index(self) -> None:
        """Recreate both indexes by walking every batch header (no CRC checks)."""
        self.index.reset()
        self.time_index.reset()
        self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset
        self._bytes_since_index = 0
        try:
            for pos, header in self.scan_headers(0, self.size):
                self._index_batch(
                    header[BASE_OFFSET],
                    pos,
                    header[BATCH_LENGTH] + LOG_OVERHEAD,
                    header[MAX_TIMESTAMP],
                )
        except EOFError:
            pass  # a torn tail: recovery deals with it; the entries so far are right
        self.close_for_appends()

    # --- recovery ------------------------------------------------------------------------

    def recover(self, from_offset: int) -> tuple[int, int]:
        """Re-check batches from ``from_offset`` to the end, cut the file at the first bad or
        torn one, and rebuild index entries from there.

        Batches before ``from_offset`` were flushed and are trusted.  If ``from_offset`` is not
        found at a batch boundary, the whole segment is checked.  Returns (bytes checked,
        bytes cut).
        """
        position = self.position_of_batch_start(from_offset)
        if position is None:
            from_offset, position = self.base_offset, 0
        for _attempt in range(2):
            self.index.truncate_to_offset(from_offset)
            self.index.truncate_to_position(position)
            self.time_index.truncate_to_offset(from_offset)
            if self._entry_matches_log(self.index.last_entry()):
                break
            self.rebuild_index()  # then cut it back to from_offset again
        ts, ts_offset = self.time_index.last_entry()
        self.max_timestamp, self.offset_of_max_timestamp = ts, ts_offset
        # Batches between the last index entry and from_offset: their timestamps count too.
        _last_offset, last_position = self.index.last_entry()
        for _, header in self.scan_headers(last_position, position):
            self._note_timestamp(header[MAX_TIMESTAMP], header[BASE_OFFSET])
        self._bytes_since_index = position - last_position
        expected = from_offset
        file_size = os.fstat(self.fd).st_size
        good_end = self._check_from(position, file_size, expected)
        cut = file_size - good_end
        if cut:
            os.ftruncate(self.fd, good_end)
            self.index.truncate_to_position(good_end)
        self.size = good_end
        self.close_for_appends()  # the largest timestamp must survive in the time index
        return file_size - position, cut

    def position_of_batch_start(self, offset: int) -> int | None:
        """Byte position where the batch with base ``offset`` starts, the file size if the
        data ends just before ``offset``, or None if ``offset`` is not a batch boundary."""
        if offset == self.base_offset:
            return 0
        size = os.fstat(self.fd).st_size
        self.size = size
        entry_offset, position = self._checked(lambda: self.index.lookup(offset))
        next_offset = entry_offset  # the batch at ``position`` starts at ``entry_offset``
        if next_offset == offset:
            return position
        try:
            for pos, header in self.scan_headers(position, size):
                if header[BASE_OFFSET] > offset:
                    # ``offset`` is in a gap compaction left before this batch, or in a batch
                    return pos if next_offset <= offset else None
                position = pos + header[BATCH_LENGTH] + LOG_OVERHEAD
                next_offset = header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] + 1
                if next_offset == offset:
                    return position  # what follows is the unflushed tail: not read here
        except EOFError:
            return None
        # ``offset`` in a gap the cleaner left after the segment's last batch: its end
        return position if self.gaps_allowed and next_offset < offset else None

    def _check_from(self, position: int, file_size: int, expected: int) -> int:
        """Walk and CRC-check batches from ``position``; returns the end of the last good one."""
        self.next_offset = expected
        buf = b""
        buf_start = position
        while position < file_size:
            off = position - buf_start
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(self.fd, min(_RECOVER_CHUNK, file_size - position), position)
                buf_start, off = position, 0
                if len(buf) < HEADER_SIZE:
                    log.warning("%s: torn batch header at byte %d", self.log_path, position)
                    return position
            header = HEADER.unpack_from(buf, off)
            size = header[BATCH_LENGTH] + LOG_OVERHEAD
            problem = None
            if header[BATCH_LENGTH] < MIN_BATCH_LENGTH:
                problem = f"implausible batch length {header[BATCH_LENGTH]}"
            elif position + size > file_size:
                problem = f"a batch of {size} bytes runs past the end of the file (torn write)"
            elif header[MAGIC_BYTE] != MAGIC:
                problem = f"magic byte {header[MAGIC_BYTE]}"
            elif header[BASE_OFFSET] != expected and not (
                self.gaps_allowed and expected < header[BASE_OFFSET] < self._offset_limit
            ):
                problem = f"base offset {header[BASE_OFFSET]} where {expected} was expected"
            elif not (
                (count := header[RECORD_COUNT]) == header[LAST_OFFSET_DELTA] + 1 > 0
                or (self.gaps_allowed and 0 <= count <= header[LAST_OFFSET_DELTA] + 1)
            ):
                problem = f"{count} records with lastOffsetDelta {header[LAST_OFFSET_DELTA]}"
            elif off + size <= len(buf):
                crc = crc32c.crc32c(memoryview(buf)[off + CRC_START : off + size])
                if crc != header[CRC]:
                    problem = f"CRC mismatch (stored {header[CRC]:#010x}, computed {crc:#010x})"
            else:
                problem = self._check_crc(position, size, header[CRC])
            if problem is not None:
                log.warning(
                    "%s: %s at byte %d; the log is cut there", self.log_path, problem, position
                )
                return position
            self._index_batch(header[BASE_OFFSET], position, size, header[MAX_TIMESTAMP])
            expected = header[BASE_OFFSET] + header[LAST_OFFSET_DELTA] + 1
            self.next_offset = expected
            position += size
        return position

    def _check_crc(self, position: int, size: int, stored: int) -> str | None:
        """CRC of a batch too large for the read buffer, read in chunks."""
        crc = 0
        done = CRC_START
        while done < size:
            chunk = os.pread(self.fd, min(_RECOVER_CHUNK, size - done), position + done)
            if not chunk:
                return "batch cut short"
            crc = crc32c.crc32c(chunk, crc)
            done += len(chunk)
        return (
            None if crc == stored else f"CRC mismatch (stored {stored:#010x}, computed {crc:#010x})"
        )

    def truncate_to(self, offset: int, position: int, now_ms: int) -> None:
        """Cut the file at ``position``, where the batch with base ``offset`` starts
        (``position_of_batch_start``), and the index entries from there, ready for appends."""
        self.index.truncate_to_offset(offset)  # in memory; the files follow at the next flush
        self.time_index.truncate_to_offset(offset)
        os.ftruncate(self.fd, position)
        self.size = position
        self.recover(offset)  # the indexes and timestamps cut to ``offset``; nothing to check
        self.prepare_for_appends(now_ms)

    @property
    def _offset_limit(self) -> int:
        return self.base_offset + 2**31  # offsets of a segment are 32-bit deltas from its base

    def _note_timestamp(self, max_ts: int, base_offset: int) -> None:
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.offset_of_max_timestamp = base_offset

    # --- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def rename_for_deletion(self) -> list[Path]:
        """Rename the segment's files with a ``.deleted`` suffix; returns the new paths."""
        renamed = []
        for path in (self.log_path, self.index.path, self.time_index.path):
            if path.exists():
                target = path.with_name(path.name + DELETED_SUFFIX)
                os.replace(path, target)
                renamed.append(target)
        return renamed

    def delete_files(self) -> None:
        for path in (self.log_path, self.index.path, self.time_index.path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
