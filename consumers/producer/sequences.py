"""An idempotent producer's sequence state: its producer id and epoch, the next sequence of
each partition, and the renumbering after a numbered batch failed for good (no I/O)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from .batch import Batch

log = logging.getLogger(__name__)

SEQUENCE_MODULUS = 2**31
MAX_IN_FLIGHT_IDEMPOTENT = 5  # batches a broker remembers per producer and partition


class SequenceState:
    """The producer id and the sequences its batches carry, per (topic, partition).

    ``number`` gives a batch its base sequence under the current id; ``failed`` records that a
    numbered batch failed for good, after which the broker would refuse every later sequence
    of that partition, so ``reset`` drops the id (a new one is taken) and the numbers of the
    batches behind the failed one."""

    __slots__ = ("epoch", "failed_at", "next_seq", "producer_id", "reset_needed")

    def __init__(self):
        self.producer_id = self.epoch = -1
        self.next_seq: dict[tuple[str, int], int] = {}
        self.reset_needed = False
        self.failed_at: dict[tuple[str, int], int] = {}  # partition -> sequence that failed

    @property
    def has_id(self) -> bool:
        return self.producer_id >= 0

    def set_id(self, producer_id: int, epoch: int) -> None:
        self.producer_id, self.epoch = producer_id, epoch

    def number(self, batch: Batch) -> int:
        """Give ``batch`` the next base sequence of its partition under the current id."""
        key = (batch.topic, batch.partition)
        batch.sequence = sequence = self.next_seq.get(key, 0)
        self.next_seq[key] = (sequence + len(batch.records)) % SEQUENCE_MODULUS
        batch.producer_id = self.producer_id
        return sequence

    def failed(self, batch: Batch) -> None:
        """A numbered batch failed for good: its partition's later sequences meet a gap."""
        self.reset_needed = True
        self.failed_at.setdefault((batch.topic, batch.partition), batch.sequence)

    def reset(self, queues: Mapping[tuple[str, int], Iterable[Batch]]) -> None:
        """Start again under a new producer id.  Queued batches behind the failed one were
        never stored and are renumbered; others already sent keep their id and sequence
        (stored or not, the broker judges them as before)."""
        log.warning("a numbered batch failed; taking a new producer id and numbering again")
        self.reset_needed = False
        failed_at, self.failed_at = self.failed_at, {}
        self.producer_id = self.epoch = -1
        self.next_seq.clear()
        for key, at in failed_at.items():
            for batch in queues[key]:
                if batch.data is None:  # the batches sent before come first
                    break
                if (batch.sequence - at) % SEQUENCE_MODULUS < SEQUENCE_MODULUS // 2:
                    batch.sequence = -1
                    batch.data = None
