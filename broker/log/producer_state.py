"""Idempotent produce: per-partition state of each producer id, and its snapshot files.

For each producer id a partition remembers its epoch and the sequence and offset ranges of its
last five batches (KIP-98, without transactions).  ``check`` judges the batches of one append
from their headers alone; ``record`` notes the batches once written.  The state is saved as
``%020d.snapshot`` (the offset being the log end at that moment) and, after a crash, rebuilt
from the batch headers that follow the newest snapshot.

    >>> state = ProducerStateTable(directory, expiration_ms=86_400_000)
    >>> verdicts = state.check([header], now_ms)        # None: append; (first, last): duplicate
    >>> state.record(pid, epoch, first_seq, last_seq, first_offset, last_offset, now_ms)
    >>> state.write_snapshot(log_end_offset, now_ms)

The rules, as Kafka's: a batch equal to a cached one (same id, epoch and sequence range) is a
duplicate, answered with its original offsets; within an epoch each batch must start right
after the last one (sequences wrap from 2**31-1 to 0), else OUT_OF_ORDER_SEQUENCE_NUMBER; a new
epoch starts at sequence 0; an older epoch gets INVALID_PRODUCER_EPOCH; an id the partition
knows nothing of (new, or expired after ``producer.id.expiration.ms``) is taken at any
sequence.  Batches with producer id -1 are not tracked.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import crc32c

from ..protocol.durable import atomic_write
from ..protocol.errors import InvalidProducerEpochError, OutOfOrderSequenceNumberError
from ..protocol.records import (
    BASE_SEQUENCE,
    LAST_OFFSET_DELTA,
    PRODUCER_EPOCH,
    PRODUCER_ID,
)
from .names import SNAPSHOT_SUFFIX, TEMPORARY_SUFFIX, offset_file_name, offsets_named

log = logging.getLogger(__name__)

CACHED_BATCHES = 5  # Kafka's NUM_BATCHES_TO_RETAIN, and the clients' max in-flight requests
NO_PRODUCER_ID = -1
_SEQUENCE_MODULUS = 2**31


_VERSION = 1
_FILE_HEADER = struct.Struct(">hIi")  # version, CRC-32C of what follows, producer count
_ENTRY = struct.Struct(">qhqb")  # producer id, epoch, last append time (ms), cached batches
_BATCH = struct.Struct(">iiqq")  # first sequence, last sequence, first offset, last offset


class CachedBatch(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


class ProducerEntry:
    """One producer id's epoch, last batches (oldest first) and last append time."""

    __slots__ = ("batches", "epoch", "last_ms")

    def __init__(self, epoch: int, last_ms: int):
        self.epoch = epoch
        self.batches: deque[CachedBatch] = deque(maxlen=CACHED_BATCHES)
        self.last_ms = last_ms

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1

    def find(self, first_seq: int, last_seq: int) -> CachedBatch | None:
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    """The sequence of a batch's last record; sequences wrap from 2**31-1 to 0."""
    return (base_sequence + last_offset_delta) % _SEQUENCE_MODULUS


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / offset_file_name(offset, SNAPSHOT_SUFFIX)


def snapshot_offsets(directory: Path) -> list[int]:
    """Offsets of the snapshot files in ``directory``, ascending."""
    return offsets_named(directory, SNAPSHOT_SUFFIX)


class ProducerStateTable:
    """The producer ids of one partition; see the module docstring for the rules."""

    def __init__(self, directory: Path, expiration_ms: int = 86_400_000):
        self.directory = directory
        self.expiration_ms = expiration_ms
        self.producers: dict[int, ProducerEntry] = {}

    # --- the append path -----------------------------------------------------------------

    def check(self, headers: Sequence, now_ms: int) -> list | None:
        """Judge the batches of one append from their headers (``producer_id``,
        ``producer_epoch``, ``base_sequence``, ``last_offset_delta``).

        Returns None when every batch is to be appended, else one verdict per batch: None to
        append it, or the CachedBatch it duplicates.  Raises OutOfOrderSequenceNumberError or
        InvalidProducerEpochError for a batch that must be refused (the append then writes
        nothing).  Several batches of one producer in one append must follow each other.
        """
        verdicts: list[CachedBatch | None] | None = None
        pending: dict[int, tuple[int, int]] = {}  # id -> (epoch, last sequence) in this append
        for i, h in enumerate(headers):
            pid = h.producer_id
            if pid < 0:
                continue
            epoch, first_seq = h.producer_epoch, h.base_sequence
            last_seq = last_sequence(first_seq, h.last_offset_delta)
            entry = self._live(pid, now_ms)
            if pid in pending:
                current_epoch, current_last = pending[pid]
            elif entry is not None:
                current_epoch, current_last = entry.epoch, entry.last_seq
            else:
                pending[pid] = (epoch, last_seq)  # unknown id: any sequence starts it
                continue
            if epoch < current_epoch:
                raise InvalidProducerEpochError(
                    f"producer {pid} epoch {epoch} is older than its current epoch {current_epoch}"
                )
            if epoch > current_epoch:
                if first_seq != 0:
                    raise OutOfOrderSequenceNumberError(
                        f"producer {pid}'s new epoch {epoch} starts at sequence {first_seq}, not 0"
                    )
            elif (
                entry is not None
                and pid not in pending
                and (duplicate := entry.find(first_seq, last_seq)) is not None
            ):
                if verdicts is None:
                    verdicts = [None] * len(headers)
                verdicts[i] = duplicate
                continue
            elif first_seq != (current_last + 1) % _SEQUENCE_MODULUS:
                raise OutOfOrderSequenceNumberError(
                    f"producer {pid} epoch {epoch} sent sequence {first_seq}; expected "
                    f"{(current_last + 1) % _SEQUENCE_MODULUS}"
                )
            pending[pid] = (epoch, last_seq)
        return verdicts

    def record(
        self,
        pid: int,
        epoch: int,
        first_seq: int,
        last_seq: int,
        first_offset: int,
        last_offset: int,
        now_ms: int,
    ) -> None:
        """Note a batch written at ``first_offset..last_offset`` (also used when replaying
        the log, where the log is the truth and nothing is checked)."""
        entry = self.producers.get(pid)
        if entry is None or entry.epoch != epoch:
            entry = self.producers[pid] = ProducerEntry(epoch, now_ms)
        entry.batches.append(CachedBatch(first_seq, last_seq, first_offset, last_offset))
        entry.last_ms = now_ms

    def record_header(self, header, base_offset: int, now_ms: int) -> None:
        """``record`` from a batch header (a BatchHeader or the raw header tuple)."""
        pid, epoch, base_seq, delta = (
            header[PRODUCER_ID],
            header[PRODUCER_EPOCH],
            header[BASE_SEQUENCE],
            header[LAST_OFFSET_DELTA],
        )
        if pid >= 0:
            self.record(
                pid,
                epoch,
                base_seq,
                last_sequence(base_seq, delta),
                base_offset,
                base_offset + delta,
                now_ms,
            )

    def _live(self, pid: int, now_ms: int) -> ProducerEntry | None:
        entry = self.producers.get(pid)
        if entry is not None and now_ms - entry.last_ms >= self.expiration_ms:
            del self.producers[pid]
            return None
        return entry

    def remove_expired(self, now_ms: int) -> int:
        """Forget producers idle for ``producer.id.expiration.ms``; returns how many."""
        expired = [
            pid for pid, e in self.producers.items() if now_ms - e.last_ms >= self.expiration_ms
        ]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    # --- snapshots -----------------------------------------------------------------------

    def write_snapshot(self, offset: int, now_ms: int, sync: bool = True) -> Path:
        """Save the table as ``<offset>.snapshot``, atomically (temp file, fsync, rename).
        With ``sync=False`` (at a roll, on the appending thread) nothing is fsynced: a crash
        of the process keeps the file, and one a power loss damaged fails its CRC when read,
        so the state is then rebuilt from the log."""
        self.remove_expired(now_ms)
        parts = []
        for pid, entry in self.producers.items():
            parts.append(_ENTRY.pack(pid, entry.epoch, entry.last_ms, len(entry.batches)))
            parts.extend(_BATCH.pack(*batch) for batch in entry.batches)
        body = b"".join(parts)
        path = snapshot_path(self.directory, offset)
        data = _FILE_HEADER.pack(_VERSION, crc32c.crc32c(body), len(self.producers)) + body
        if sync:
            atomic_write(path, data)
        else:
            tmp = path.with_name(path.name + TEMPORARY_SUFFIX)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path

    def read_snapshot(self, path: Path) -> None:
        """Replace the table with a snapshot's; ValueError if the file is damaged."""
        data = path.read_bytes()
        if len(data) < _FILE_HEADER.size:
            raise ValueError(f"{path.name} is {len(data)} bytes, shorter than its header")
        version, crc, count = _FILE_HEADER.unpack_from(data)
        body = memoryview(data)[_FILE_HEADER.size :]
        if version != _VERSION or crc32c.crc32c(body) != crc:
            raise ValueError(f"{path.name}: unknown version {version} or CRC mismatch")
        producers: dict[int, ProducerEntry] = {}
        pos = 0
        try:
            for _ in range(count):
                pid, epoch, last_ms, n = _ENTRY.unpack_from(body, pos)
                pos += _ENTRY.size
                entry = producers[pid] = ProducerEntry(epoch, last_ms)
                for _ in range(n):
                    entry.batches.append(CachedBatch._make(_BATCH.unpack_from(body, pos)))
                    pos += _BATCH.size
        except struct.error as exc:
            raise ValueError(f"{path.name} is cut short: {exc}") from None
        self.producers = producers

    def load_latest_snapshot(self, log_end_offset: int) -> int | None:
        """Load the newest readable snapshot at or below ``log_end_offset`` and return its
        offset (None if there is none).  Snapshots past the log end (written before a crash
        cut the log) and damaged ones are deleted."""
        for offset in reversed(snapshot_offsets(self.directory)):
            path = snapshot_path(self.directory, offset)
            if offset > log_end_offset:
                log.info(
                    "%s: removing producer snapshot %d past the log end %d",
                    self.directory.name,
                    offset,
                    log_end_offset,
                )
                path.unlink()
                continue
            try:
                self.read_snapshot(path)
                return offset
            except (OSError, ValueError) as exc:
                log.warning("%s: ignoring damaged producer snapshot: %s", self.directory.name, exc)
                path.unlink()
        self.producers = {}
        return None

    def delete_snapshots_before(self, offset: int) -> None:
        """Remove snapshots older than the newest one at or below ``offset`` (a snapshot
        at or below the flushed offset is all a recovery can need; newer ones are kept)."""
        offsets = snapshot_offsets(self.directory)
        usable = [o for o in offsets if o <= offset]
        for old in usable[:-1]:
            try:
                snapshot_path(self.directory, old).unlink()
            except FileNotFoundError:
                pass
