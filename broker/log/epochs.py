"""The leader epoch cache of one partition: the offset at which each leader epoch began.

As Kafka's ``LeaderEpochFileCache`` (KIP-101, KIP-279): ascending (epoch, start offset)
entries, saved as ``leader-epoch-checkpoint`` in the partition directory in Kafka's format
(``0``, the count, then ``<epoch> <start_offset>`` per line), replaced atomically.  A replica
asks the leader where an epoch ended (OffsetForLeaderEpoch) and truncates its log there.

    >>> cache = LeaderEpochCache(directory)
    >>> cache.assign(0, 0); cache.assign(3, 120)
    >>> cache.end_offset_for(0, log_end_offset=200)   # epoch 0 ended where epoch 3 began
    (0, 120)

A missing or unreadable file is rebuilt by the loader from the batch headers
(``rebuild``), so the cache never needs a file to be right.
"""

from __future__ import annotations

import itertools
import logging
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from ..protocol.durable import atomic_write
from .names import TEMPORARY_SUFFIX

log = logging.getLogger(__name__)

LEADER_EPOCH_FILE = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
_VERSION = 0


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


class EpochCheckpointError(ValueError):
    """A leader-epoch-checkpoint file that cannot be read; the loader rebuilds the cache."""


class LeaderEpochCache:
    """Ascending (epoch, start offset) entries of one partition; see the module docstring.

    Every change is written to ``leader-epoch-checkpoint`` before the method returns (changes
    are rare: one per leader change, truncation or retention step).  ``assign``, on the
    appending thread, replaces the file without fsync and sets ``unsynced``: the log's next
    flush fsyncs it before the recovery point passes the new entry, and a recovery re-reads
    the epochs of the batches after the recovery point.  The others fsync at once.
    """

    def __init__(self, directory: Path, entries: Iterable[EpochEntry] = ()):
        self.path = directory / LEADER_EPOCH_FILE
        self.entries: list[EpochEntry] = [EpochEntry(*e) for e in entries]
        self.unsynced = False
        # The newest epoch, or -1 (UNDEFINED_EPOCH) when empty: a plain attribute, kept by
        # ``save`` (every change saves), as each append compares its epoch with it.
        self.latest_epoch = self.entries[-1].epoch if self.entries else UNDEFINED_EPOCH

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> LeaderEpochCache:
        """The cache saved in ``directory``; FileNotFoundError or EpochCheckpointError if it
        has none or a damaged one."""
        path = directory / LEADER_EPOCH_FILE
        data = path.read_bytes()
        try:
            lines = data.decode("ascii").splitlines()
            if int(lines[0]) != _VERSION:
                raise EpochCheckpointError(f"{path}: unknown version {lines[0]}")
            count = int(lines[1])
            entries = []
            for line in lines[2:]:
                epoch, start = line.split()
                entries.append(EpochEntry(int(epoch), int(start)))
        except (IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise EpochCheckpointError(f"{path}: malformed ({exc})") from None
        if len(entries) != count:
            raise EpochCheckpointError(f"{path}: {count} entries announced, {len(entries)} found")
        for before, after in itertools.pairwise(entries):
            if after.epoch <= before.epoch or after.start_offset < before.start_offset:
                raise EpochCheckpointError(f"{path}: entries out of order: {before}, {after}")
        return cls(directory, entries)

    @classmethod
    def rebuild(cls, directory: Path, epochs_and_offsets: Iterable[tuple[int, int]]):
        """A cache built from (partition leader epoch, base offset) of each batch in log order
        (the batch headers; no record is decoded), and saved without fsync (a new log is
        made on the reactor; if the file is lost, it is rebuilt the same way)."""
        cache = cls(directory)
        entries = cache.entries
        for epoch, base_offset in epochs_and_offsets:
            if epoch >= 0 and (not entries or epoch > entries[-1].epoch):
                entries.append(EpochEntry(epoch, base_offset))
        cache.save(sync=False)
        return cache

    def save(self, sync: bool = True) -> None:
        """Replace the file (atomically; with ``sync``, durably too)."""
        self.latest_epoch = self.entries[-1].epoch if self.entries else UNDEFINED_EPOCH
        lines = [str(_VERSION), str(len(self.entries))]
        lines += [f"{epoch} {start}" for epoch, start in self.entries]
        data = ("\n".join(lines) + "\n").encode()
        if sync:
            atomic_write(self.path, data)
        else:
            tmp = self.path.with_name(self.path.name + TEMPORARY_SUFFIX)
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        self.unsynced = not sync

    # --- queries -------------------------------------------------------------------------

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) for OffsetForLeaderEpoch: where ``requested_epoch`` ended.

        * the latest epoch: (it, ``log_end_offset``), its entries run to the log end;
        * an epoch between entries (or one never used, between two that were): the largest
          epoch <= requested and the start offset of the entry after it;
        * below the first entry, above the latest, -1, or an empty cache: (-1, -1), UNDEFINED
          (Kafka 2.0's answer; the replica then truncates to its high watermark).
        """
        entries = self.entries
        if requested_epoch == UNDEFINED_EPOCH or not entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == entries[-1].epoch:
            return requested_epoch, log_end_offset
        if requested_epoch < entries[0].epoch or requested_epoch > entries[-1].epoch:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        epochs = [e.epoch for e in entries]
        higher = bisect_right(epochs, requested_epoch)  # the first entry newer than requested
        return entries[higher - 1].epoch, entries[higher].start_offset

    # --- changes -------------------------------------------------------------------------

    def assign(self, epoch: int, start_offset: int, sync: bool = False) -> bool:
        """Note that ``epoch`` began at ``start_offset``; ignored unless ``epoch`` is newer
        than the latest.  Entries starting at or after ``start_offset`` contradict the new
        one (their data was truncated) and are removed first.  Returns True if it changed."""
        entries = self.entries
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"leader epoch {epoch} at offset {start_offset}")
        if entries and epoch <= entries[-1].epoch:
            return False
        if entries and start_offset <= entries[-1].start_offset:
            starts = [e.start_offset for e in entries]
            removed = entries[bisect_left(starts, start_offset) :]
            log.warning(
                "%s: epoch %d starts at %d; removing the entries it contradicts: %s",
                self.path.parent.name,
                epoch,
                start_offset,
                removed,
            )
            del entries[bisect_left(starts, start_offset) :]
        entries.append(EpochEntry(epoch, start_offset))
        self.save(sync)
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was cut to end at ``end_offset``: drop entries starting at or after it."""
        starts = [e.start_offset for e in self.entries]
        cut = bisect_left(starts, end_offset)
        if cut < len(self.entries):
            del self.entries[cut:]
            self.save()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log start moved up to ``start_offset``: entries wholly before it go, and the
        entry covering it now starts there."""
        starts = [e.start_offset for e in self.entries]
        covering = bisect_right(starts, start_offset) - 1
        if covering < 0 or (covering == 0 and starts[0] == start_offset):
            return
        self.entries[: covering + 1] = [EpochEntry(self.entries[covering].epoch, start_offset)]
        self.save(sync=False)  # retention, on the reactor; a stale file is cut the same way

    def clear(self) -> None:
        if self.entries or not self.path.exists():
            self.entries = []
            self.save()


__all__ = [
    "LEADER_EPOCH_FILE",
    "UNDEFINED_EPOCH",
    "UNDEFINED_EPOCH_OFFSET",
    "EpochCheckpointError",
    "EpochEntry",
    "LeaderEpochCache",
]
