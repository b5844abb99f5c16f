"""Sparse indexes of one segment: offset -> file position, and timestamp -> offset.

Both are append-only files of fixed-size big-endian entries, as in Kafka:

* ``.index``: (relative offset int32, position int32), one entry every
  ``index.interval.bytes`` of log; it points at the start of a batch.
* ``.timeindex``: (timestamp int64, relative offset int32), added with an offset entry when
  the segment's largest timestamp has grown, and once more when the segment is closed.

Entries live in memory (loaded lazily for closed segments) and reach the file on ``flush``,
which the log calls together with the segment's own fsync; a crash can therefore lose only
entries past the recovery point, and recovery rebuilds exactly those.
"""

from __future__ import annotations

import os
import struct
import sys
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path

_NATIVE_LITTLE = sys.byteorder == "little"


class _IndexFile(ABC):
    """Shared file handling: lazy load, truncate, append-and-fsync on flush, delete.

    Subclasses provide ``_load(data)``, ``_count()`` and ``_entries_bytes(start)``.
    """

    entry_size: int

    def __init__(self, path: Path, base_offset: int):
        self.path = path
        self.base_offset = base_offset
        self._loaded = False
        self._synced = 0  # entries known to be in the file
        self._rewrite = False  # the file holds entries that must be cut on the next flush
        self._unsynced = False  # written without fsync
        self.damaged_entries = 0  # entries dropped at load for failing sanity checks

    @abstractmethod
    def _load(self, data: bytes) -> None:
        """Replace the entries with those in ``data`` (the file's bytes)."""

    @abstractmethod
    def _count(self) -> int:
        """The number of entries."""

    @abstractmethod
    def _entries_bytes(self, start: int) -> bytes:
        """The entries from number ``start`` on, as the file stores them."""

    def _read_file(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return b""
        return data[: len(data) - len(data) % self.entry_size]

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load(self._read_file())
            self._synced = self._count()
            self._rewrite = self.damaged_entries > 0
            self._loaded = True

    def __len__(self) -> int:
        self._ensure_loaded()
        return self._count()

    def _note_truncated(self, count: int) -> None:
        if count < self._synced:
            self._synced = count
            self._rewrite = True

    def reset(self) -> None:
        """Forget every entry (the file is emptied on the next flush)."""
        self._load(b"")
        self._loaded = True
        self._synced = 0
        self._rewrite = True

    def flush(self, fsync: bool = True) -> None:
        """Write entries not yet in the file (after cutting any the log has dropped)."""
        if not self._loaded:
            return
        count = self._count()
        if self._synced == count and not self._rewrite and self.path.exists():
            if fsync and self._unsynced:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._unsynced = False
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, self._synced * self.entry_size)
            tail = self._entries_bytes(self._synced)
            if tail:
                os.pwrite(fd, tail, self._synced * self.entry_size)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._synced = count
        self._rewrite = False
        self._unsynced = not fsync

    def delete(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class OffsetIndex(_IndexFile):
    """Relative offset -> byte position of the batch starting at that offset."""

    entry_size = 8

    def __init__(self, path: Path, base_offset: int):
        super().__init__(path, base_offset)
        self._offsets = array("i")
        self._positions = array("i")

    def _load(self, data: bytes) -> None:
        flat = array("i")
        flat.frombytes(data)
        if _NATIVE_LITTLE:
            flat.byteswap()
        offsets, positions = flat[0::2], flat[1::2]
        keep = len(offsets)
        for i in range(1, len(offsets)):  # both columns must strictly increase
            if offsets[i] <= offsets[i - 1] or positions[i] <= positions[i - 1]:
                keep = i
                break
        if keep and (offsets[0] < 0 or positions[0] < 0):
            keep = 0
        self.damaged_entries = len(offsets) - keep
        self._offsets, self._positions = offsets[:keep], positions[:keep]

    def _count(self) -> int:
        return len(self._offsets)

    def _entries_bytes(self, start: int) -> bytes:
        flat = array("i", bytes(8 * (len(self._offsets) - start)))
        flat[0::2] = self._offsets[start:]
        flat[1::2] = self._positions[start:]
        if _NATIVE_LITTLE:
            flat.byteswap()
        return flat.tobytes()

    def append(self, offset: int, position: int) -> None:
        """Add an entry for the batch starting at absolute ``offset``, at byte ``position``."""
        self._ensure_loaded()
        self._offsets.append(offset - self.base_offset)
        self._positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(absolute offset, position) of the last entry at or below ``offset``, else (base, 0)."""
        self._ensure_loaded()
        i = bisect_right(self._offsets, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._offsets[i], self._positions[i]

    def floor_entry(self, position: int) -> tuple[int, int]:
        """(absolute offset, position) of the last entry at or below byte ``position``, else
        (base, 0)."""
        self._ensure_loaded()
        i = bisect_right(self._positions, position) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._offsets[i], self._positions[i]

    def last_entry(self) -> tuple[int, int]:
        self._ensure_loaded()
        if not self._offsets:
            return self.base_offset, 0
        return self.base_offset + self._offsets[-1], self._positions[-1]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at or beyond byte ``position``."""
        self._ensure_loaded()
        i = bisect_left(self._positions, position)
        del self._offsets[i:]
        del self._positions[i:]
        self._note_truncated(i)

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries for offsets at or beyond ``offset``."""
        self._ensure_loaded()
        i = bisect_left(self._offsets, offset - self.base_offset)
        del self._offsets[i:]
        del self._positions[i:]
        self._note_truncated(i)


_TIME_ENTRY = struct.Struct(">qi")


class TimeIndex(_IndexFile):
    """Largest timestamp so far -> offset of the batch that holds it."""

    entry_size = 12

    def __init__(self, path: Path, base_offset: int):
        super().__init__(path, base_offset)
        self._timestamps = array("q")
        self._offsets = array("i")
        self._last: tuple[int, int] | None = None

    def _load(self, data: bytes) -> None:
        timestamps, offsets = array("q"), array("i")
        for ts, rel in _TIME_ENTRY.iter_unpack(data):
            if rel < 0 or (timestamps and (ts <= timestamps[-1] or rel < offsets[-1])):
                break
            timestamps.append(ts)
            offsets.append(rel)
        self.damaged_entries = len(data) // self.entry_size - len(timestamps)
        self._timestamps, self._offsets = timestamps, offsets
        self._last = None

    def _count(self) -> int:
        return len(self._timestamps)

    def _entries_bytes(self, start: int) -> bytes:
        return b"".join(
            _TIME_ENTRY.pack(ts, rel)
            for ts, rel in zip(self._timestamps[start:], self._offsets[start:])
        )

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add (timestamp, offset) if the timestamp is larger than the last entry's."""
        self._ensure_loaded()
        if timestamp >= 0 and (not self._timestamps or timestamp > self._timestamps[-1]):
            self._timestamps.append(timestamp)
            self._offsets.append(offset - self.base_offset)
            self._last = None

    def last_entry(self) -> tuple[int, int]:
        """(largest timestamp, its offset), or (-1, base) when the segment has none.

        Reads only the file's last entry when the index is not loaded.
        """
        if self._loaded:
            if not self._timestamps:
                return -1, self.base_offset
            return self._timestamps[-1], self.base_offset + self._offsets[-1]
        if self._last is None:
            self._last = (-1, self.base_offset)
            try:
                with open(self.path, "rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    size -= size % self.entry_size
                    if size:
                        f.seek(size - self.entry_size)
                        ts, rel = _TIME_ENTRY.unpack(f.read(self.entry_size))
                        if rel >= 0:
                            self._last = (ts, self.base_offset + rel)
            except FileNotFoundError:
                pass
        return self._last

    def lookup(self, timestamp: int) -> int | None:
        """An offset from which to scan for the first batch with max timestamp >= ``timestamp``:
        the offset of the last entry whose timestamp is below it, or None (scan from the start).
        """
        self._ensure_loaded()
        i = bisect_left(self._timestamps, timestamp) - 1
        return None if i < 0 else self.base_offset + self._offsets[i]

    def truncate_to_offset(self, offset: int) -> None:
        self._ensure_loaded()
        keep = len(self._offsets)
        rel = offset - self.base_offset
        while keep and self._offsets[keep - 1] >= rel:
            keep -= 1
        del self._timestamps[keep:]
        del self._offsets[keep:]
        self._note_truncated(keep)
        self._last = None
