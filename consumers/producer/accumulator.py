"""Where callers and the producer's sender meet: each partition's open batch, its sealed
batches waiting to be sent, the bounded buffer, and the wake-up of the sender."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import deque

from broker.protocol.errors import KafkaError

from .batch import BATCH_OVERHEAD, Batch, DeliveryFuture
from .config import ProducerConfig


class BufferFullError(KafkaError):
    """The producer's buffer stayed full for max_block_ms (or blocking was turned off)."""

    code = -1
    name = "BUFFER_FULL"
    retriable = True


class PartitionQueue:
    """A partition's sealed batches waiting to be sent, oldest first, and its batches in flight."""

    __slots__ = ("in_flight", "producer_id", "queue", "troubled")

    def __init__(self):
        self.queue: deque[Batch] = deque()
        self.in_flight = 0
        self.producer_id = -1  # the producer id of the batches in flight
        self.troubled = False  # one in flight was refused: send no more until all are back

    def expire(self, now: float, delivery_timeout: float) -> list[Batch]:
        """Take the batches at the head of the queue older than ``delivery_timeout``."""
        expired = []
        queue = self.queue
        while queue and now - queue[0].created > delivery_timeout:
            expired.append(queue.popleft())
        return expired


class RecordAccumulator:
    """Batches per partition, under one lock (``lock``, a Condition) shared with the sender.

    ``append`` adds a message to its partition's open batch, sealing it at ``batch_size``
    bytes; the sender seals batches older than ``linger`` and takes sealed ones from
    ``partitions``.  ``buffered`` bytes stay under ``buffer_memory``: ``append`` waits up to
    ``max_block`` for room (``block_on_full``) or raises BufferFullError."""

    def __init__(self, config: ProducerConfig):
        self.batch_size = config.batch_size  # read for every message
        self.buffer_memory = config.buffer_memory
        self.config = config
        self.lock = threading.Condition()
        self.open: dict[tuple[str, int], Batch] = {}
        self.partitions: dict[tuple[str, int], PartitionQueue] = {}
        self.sticky: dict[str, int] = {}  # topic -> partition for unkeyed messages
        self._numbers = itertools.count()
        self.buffered = 0
        self._waiting_for_room = 0  # append() calls waiting for buffer_memory
        self.queued = 0  # sealed batches in the partitions' queues
        self.in_flight = 0
        self.flushing = 0
        self.closed = False
        # The sender waits on the condition, or in select() on wake_r: written when it must act.
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selecting = False

    # --- the caller's side ---------------------------------------------------------------

    def append(self, topic: str, partition: int, record: tuple, size: int) -> DeliveryFuture:
        """Add ``record`` (key, value, headers, timestamp) of about ``size`` bytes."""
        with self.lock:
            if self.buffered + size > self.buffer_memory:
                self._wait_for_room(size)
            batch = self.open.get((topic, partition))
            if batch is None or batch.size + size > self.batch_size:
                if batch is not None:
                    self.seal(batch)
                batch = self.open[(topic, partition)] = Batch(
                    topic, partition, time.monotonic(), next(self._numbers)
                )
                if len(self.open) == 1:
                    self.wake()
            records = batch.records
            future = DeliveryFuture(batch, len(records))
            records.append(record)
            batch.size += size
            self.buffered += size
            if batch.size >= self.batch_size:
                self.seal(batch)
                self.wake()
        return future

    def append_many(
        self, topic: str, partition: int, records: list[tuple], sizes: list[int]
    ) -> list[tuple[int, DeliveryFuture]]:
        """Add ``records`` to one partition, in order, as ``append`` would one by one but under
        one hold of the lock; returns, for each batch they went into, the index of its last
        record here and that record's future (a batch is delivered or fails as a whole)."""
        key = (topic, partition)
        marks: list[list] = []  # [index, batch, position in the batch]
        with self.lock:
            for i, record in enumerate(records):
                size = sizes[i]
                if self.buffered + size > self.buffer_memory:
                    self._wait_for_room(size)
                batch = self.open.get(key)
                if batch is None or batch.size + size > self.batch_size:
                    if batch is not None:
                        self.seal(batch)
                    batch = self.open[key] = Batch(
                        topic, partition, time.monotonic(), next(self._numbers)
                    )
                    if len(self.open) == 1:
                        self.wake()
                if marks and marks[-1][1] is batch:
                    marks[-1][0], marks[-1][2] = i, len(batch.records)
                else:
                    marks.append([i, batch, len(batch.records)])
                batch.records.append(record)
                batch.size += size
                self.buffered += size
                if batch.size >= self.batch_size:
                    self.seal(batch)
                    self.wake()
        return [(i, DeliveryFuture(batch, position)) for i, batch, position in marks]

    def wake(self) -> None:
        """Wake the sender (under ``lock``): it waits on the condition, or in select()."""
        self.lock.notify_all()
        if self.selecting:
            self.selecting = False
            try:
                self._wake_w.send(b"\0")
            except OSError:  # full (it is awake anyway) or closed
                pass

    def drain_wake(self) -> None:
        """Empty the wake-up socket (the sender, woken in select())."""
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _wait_for_room(self, size: int) -> None:
        if not self.config.block_on_full:
            raise BufferFullError(f"buffer_memory ({self.buffer_memory} bytes) is full")
        max_block = self.config.max_block
        deadline = time.monotonic() + max_block
        self._waiting_for_room += 1
        try:
            while self.buffered + size > self.buffer_memory:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BufferFullError(f"buffer_memory stayed full for {max_block:.1f} s")
                self.wake()
                self.lock.wait(min(left, 0.1))
        finally:
            self._waiting_for_room -= 1

    def wait_until_sent(self, timeout: float | None) -> int:
        """Seal everything and wait until no batch is open, queued or in flight (or until
        ``timeout``); returns the messages still not sent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            self.flushing += 1
            self.wake()
            try:
                while self.open or self.queued or self.in_flight:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self.lock.wait(0.05 if left is None else min(left, 0.05))
                return sum(len(b.records) for b in self.open.values()) + sum(
                    len(b.records) for part in self.partitions.values() for b in part.queue
                )
            finally:
                self.flushing -= 1

    def close(self) -> None:
        """No more sending: the sender stops once nothing is in flight."""
        with self.lock:
            self.closed = True
            self.wake()

    def take_all(self) -> list[Batch]:
        """Every batch open or queued, taken out (closing: they are failed)."""
        with self.lock:
            leftovers = list(self.open.values())
            for part in self.partitions.values():
                leftovers += part.queue
                part.queue.clear()
            self.open.clear()
            self.queued = 0
        return leftovers

    def take_partitions(self, keys) -> list[Batch]:
        """The open and queued batches of these partitions, taken out (not those in flight)."""
        taken: list[Batch] = []
        with self.lock:
            for key in keys:
                batch = self.open.pop(key, None)
                part = self.partitions.get(key)
                if part is not None:
                    taken += part.queue
                    self.queued -= len(part.queue)
                    part.queue.clear()
                if batch is not None:
                    taken.append(batch)
            self.lock.notify_all()
        return taken

    def close_wake(self) -> None:
        self.wake_r.close()
        self._wake_w.close()

    # --- the sender's side ---------------------------------------------------------------

    def seal(self, batch: Batch) -> None:
        """Close ``batch`` to more messages and queue it behind its partition's (under lock)."""
        key = (batch.topic, batch.partition)
        del self.open[key]
        part = self.partitions.get(key)
        if part is None:
            part = self.partitions[key] = PartitionQueue()
        part.queue.append(batch)
        self.queued += 1
        if self.sticky.get(batch.topic) == batch.partition:
            del self.sticky[batch.topic]  # the next unkeyed message starts another partition

    def seal_due(self, now: float) -> None:
        """Seal open batches past their linger (all of them when flushing or closing)."""
        everything = self.flushing or self.closed
        linger = self.config.linger
        for batch in list(self.open.values()):
            if everything or now - batch.created >= linger:
                self.seal(batch)

    def next_wakeup(self, now: float) -> float:
        """Seconds until an open batch is due or a queued one may be sent again."""
        linger = self.config.linger
        waits = [b.created + linger - now for b in self.open.values()]
        waits += [
            p.queue[0].not_before - now
            for p in self.partitions.values()
            if p.queue and p.queue[0].not_before > now
        ]
        return max(0.0005, min(waits)) if waits else 0.5

    def expire(self, now: float, delivery_timeout: float) -> tuple[list[Batch], set[str]]:
        """Take every partition's queued batches past ``delivery_timeout``; also the topics
        of what stays queued (their metadata is worth refreshing)."""
        expired: list[Batch] = []
        topics: set[str] = set()
        with self.lock:
            for part in self.partitions.values():
                taken = part.expire(now, delivery_timeout)
                self.queued -= len(taken)
                expired += taken
                topics.update(b.topic for b in part.queue)
        return expired, topics

    def requeue(self, batch: Batch) -> None:
        """Queue a batch again in its place among its partition's (``number`` order), ahead
        of those never sent."""
        with self.lock:
            queue = self.partitions[(batch.topic, batch.partition)].queue
            at = 0
            while at < len(queue) and queue[at].number < batch.number:
                at += 1
            queue.insert(at, batch)
            self.queued += 1

    def free(self, batches: list[Batch]) -> None:
        """Batches answered: their partitions may send more."""
        with self.lock:
            for batch in batches:
                part = self.partitions[(batch.topic, batch.partition)]
                part.in_flight -= 1
                if not part.in_flight:
                    part.troubled = False

    def landed(self, batches: list[Batch], freed: bool = False) -> None:
        """Batches back from flight and settled: delivered, failed, or queued again."""
        if not freed:
            self.free(batches)
        with self.lock:
            self.in_flight -= len(batches)
            if not self.in_flight:  # what flush() waits for
                self.lock.notify_all()

    def release(self, batch: Batch) -> None:
        """A finished batch's bytes leave the buffer."""
        with self.lock:
            self.buffered -= batch.size - BATCH_OVERHEAD
            if self._waiting_for_room:
                self.lock.notify_all()
