"""Produce requests with acks=all waiting for the high watermark (Kafka's produce purgatory).

    >>> produces = DelayedProduces(reactor)
    >>> d = produces.wait("clicks", 0, required_offset=120, timeout_ms=30000)
    >>> produces.hw_moved("clicks", 0, 120)      # every ISR member has offset 119: d fires NONE

A waiter completes once, with an error code for its partition's produce response: NONE when
the high watermark reaches ``required_offset`` (the log end just after the appended batch),
REQUEST_TIMED_OUT after ``timeout_ms`` on the injected clock, NOT_LEADER_OR_FOLLOWER when
leadership is lost (``fail_all``), NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR fell below
``min.insync.replicas`` (``not_enough_replicas``).  Cancelling its Deferred (the connection
closed) drops it.  Waiters of a partition are kept in a heap by required offset, so a moving
high watermark touches only those it completes.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.base import DelayedCall

from ..protocol.errors import NONE, error_for_code

REQUEST_TIMED_OUT = error_for_code(7).code
NOT_LEADER_OR_FOLLOWER = error_for_code(6).code
NOT_ENOUGH_REPLICAS_AFTER_APPEND = error_for_code(20).code


class _Waiter:
    __slots__ = ("deferred", "key", "required_offset", "timer")

    def __init__(self, key: tuple[str, int], required_offset: int):
        self.key = key
        self.required_offset = required_offset
        self.deferred: defer.Deferred[int] = defer.Deferred()
        self.timer: DelayedCall | None = None


class DelayedProduces:
    """acks=all produces waiting for their partitions' high watermarks."""

    def __init__(self, clock: Any):  # IReactorTime: a reactor, or task.Clock in tests
        self.clock = clock
        self._seq = itertools.count()  # ties in the heap: oldest first, never compare waiters
        self._by_partition: dict[tuple[str, int], list[tuple[int, int, _Waiter]]] = {}
        self._count = 0

    def wait(
        self, topic: str, partition: int, required_offset: int, timeout_ms: int
    ) -> defer.Deferred[int]:
        """A Deferred firing with the error code for this partition's produce response.  The
        caller checks the high watermark first (right after its append, on the same reactor
        turn, so it cannot move in between) and waits only if it is short."""
        waiter = _Waiter((topic, partition), required_offset)
        waiter.deferred = defer.Deferred(canceller=lambda _: self._drop(waiter))
        heapq.heappush(
            self._by_partition.setdefault(waiter.key, []),
            (required_offset, next(self._seq), waiter),
        )
        self._count += 1
        waiter.timer = self.clock.callLater(max(timeout_ms, 0) / 1000.0, self._expire, waiter)
        return waiter.deferred

    def hw_moved(self, topic: str, partition: int, hw: int) -> int:
        """The partition's high watermark is now ``hw``: complete, with NONE, every waiter
        whose required offset it reached.  Returns how many completed."""
        heap = self._by_partition.get((topic, partition))
        done = 0
        while heap and heap[0][0] <= hw:
            waiter = heapq.heappop(heap)[2]
            if not waiter.deferred.called:
                self._complete(waiter, NONE)
                done += 1
        if heap is not None and not heap:
            self._by_partition.pop((topic, partition), None)
        return done

    def fail_all(self, topic: str, partition: int, code: int = NOT_LEADER_OR_FOLLOWER) -> int:
        """Complete every waiter of a partition with ``code`` (leadership lost, by default);
        returns how many."""
        heap = self._by_partition.pop((topic, partition), [])
        for _, _, waiter in heap:
            self._complete(waiter, code)
        return len(heap)

    def not_enough_replicas(self, topic: str, partition: int) -> int:
        """The ISR fell below ``min.insync.replicas``: every waiter of the partition gets
        NOT_ENOUGH_REPLICAS_AFTER_APPEND (its batch was written, not replicated enough)."""
        return self.fail_all(topic, partition, NOT_ENOUGH_REPLICAS_AFTER_APPEND)

    def _complete(self, waiter: _Waiter, code: int) -> None:
        if waiter.deferred.called:
            return
        self._forget(waiter)
        waiter.deferred.callback(code)

    def _expire(self, waiter: _Waiter) -> None:
        waiter.timer = None  # it has run
        self._count -= 1
        self._unqueue(waiter)
        waiter.deferred.callback(REQUEST_TIMED_OUT)

    def _drop(self, waiter: _Waiter) -> None:
        """A cancelled waiter (its connection closed): forget it, answer nothing."""
        self._forget(waiter)
        self._unqueue(waiter)

    def _unqueue(self, waiter: _Waiter) -> None:
        heap = self._by_partition.get(waiter.key)
        if heap is not None:
            heap[:] = [entry for entry in heap if entry[2] is not waiter]
            heapq.heapify(heap)
            if not heap:
                del self._by_partition[waiter.key]

    def _forget(self, waiter: _Waiter) -> None:
        if waiter.timer is not None:
            if waiter.timer.active():
                waiter.timer.cancel()
            waiter.timer = None
            self._count -= 1

    def __len__(self) -> int:
        """Waiters not completed yet."""
        return self._count
