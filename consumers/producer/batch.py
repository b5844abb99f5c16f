"""A producer's record batch and the delivery futures of its messages: what the caller holds
and the sender settles (ARCHITECTURE.md, Clients)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import NamedTuple

log = logging.getLogger(__name__)

BATCH_OVERHEAD = 61  # a record batch's header, before its records
RECORD_OVERHEAD = 24  # varints and attributes around key and value, roughly

_CALLBACKS_LOCK = threading.Lock()  # orders add_done_callback against a batch finishing


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int  # -1 with acks=0
    timestamp: int


class Batch:
    """The messages of one partition sent together, from the first ``send`` to the answer."""

    __slots__ = (
        "attempts",
        "base_offset",
        "callbacks",
        "created",
        "data",
        "done",
        "error",
        "log_append_time",
        "not_before",
        "number",
        "partition",
        "producer_id",
        "records",
        "sequence",
        "size",
        "topic",
    )

    def __init__(self, topic, partition, now, number=0):
        self.topic, self.partition = topic, partition
        self.number = number  # creation order: a partition's batches go out in this order
        self.records: list = []
        self.size = BATCH_OVERHEAD
        self.created = now
        self.attempts = 0
        self.not_before = 0.0
        self.done = threading.Event()
        self.error: Exception | None = None
        self.base_offset = -1
        self.log_append_time = -1
        self.callbacks: list | None = []
        self.sequence = -1  # the base sequence once numbered (idempotence)
        self.data: bytes | None = None  # the encoded batch, built at its first send
        self.producer_id = -1  # the producer id in ``data`` (idempotence)

    @property
    def finished(self) -> bool:
        return self.callbacks is None

    def complete(self) -> None:
        """Mark the batch done (its ``error`` or offsets are set) and run the callbacks."""
        with _CALLBACKS_LOCK:
            callbacks, self.callbacks = self.callbacks, None
            self.done.set()
        for fn, future in callbacks or ():
            try:
                fn(future)
            except Exception:
                log.exception("a delivery callback failed")


class DeliveryFuture:
    """The outcome of one message: ``result(timeout)``, ``exception()``, ``done()``,
    ``add_done_callback(fn)`` (``fn(future)`` runs on the producer's thread)."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Batch, index: int):
        self._batch, self._index = batch, index

    def done(self) -> bool:
        return self._batch.done.is_set()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        batch = self._batch
        if not batch.done.wait(timeout):
            raise FutureTimeoutError()
        if batch.error is not None:
            raise batch.error
        offset = batch.base_offset + self._index if batch.base_offset >= 0 else -1
        ts = batch.log_append_time if batch.log_append_time >= 0 else batch.records[self._index][3]
        return RecordMetadata(batch.topic, batch.partition, offset, ts)

    def exception(self, timeout: float | None = None) -> Exception | None:
        if not self._batch.done.wait(timeout):
            raise FutureTimeoutError()
        return self._batch.error

    def same_batch(self, other: DeliveryFuture) -> bool:
        """Whether both messages travel in one record batch (they succeed or fail together)."""
        return self._batch is other._batch

    def add_done_callback(self, fn: Callable[[DeliveryFuture], None]) -> None:
        batch = self._batch
        with _CALLBACKS_LOCK:
            if batch.callbacks is not None:
                batch.callbacks.append((fn, self))
                return
        fn(self)  # already finished


class FailedFuture(DeliveryFuture):
    """A message refused before it was queued."""

    def __init__(self, topic: str, error: Exception):
        batch = Batch(topic, -1, 0.0)
        batch.error = error
        batch.callbacks = None
        batch.done.set()
        super().__init__(batch, 0)
