"""Long-polled fetches: a Fetch that finds fewer than ``min_bytes`` waits for appends.

A waiting fetch registers on the partitions it reads; each append to one of them adds the
appended size to the waiter's count, and the waiter completes when the count reaches what was
missing, or when ``max_wait_ms`` passes on the reactor's clock.  No polling loop.

    >>> waiters = FetchWaiters(reactor)
    >>> d = waiters.wait([("clicks", 0)], missing_bytes=1, max_wait_ms=500)
    >>> waiters.appended("clicks", 0, 4096)     # from the produce path: d fires now
"""

from __future__ import annotations

from collections import defaultdict

from twisted.internet import defer


class _Waiter:
    __slots__ = ("deferred", "missing", "partitions", "timer")

    def __init__(self, partitions, missing, canceller):
        self.deferred = defer.Deferred(canceller=lambda _: canceller(self))
        self.partitions = partitions
        self.missing = missing
        self.timer = None


class FetchWaiters:
    """Fetches waiting for data, indexed by (topic, partition)."""

    def __init__(self, clock):
        self.clock = clock
        self._by_partition: dict[tuple[str, int], set[_Waiter]] = defaultdict(set)

    def wait(self, partitions, missing_bytes: int, max_wait_ms: int) -> defer.Deferred:
        """A Deferred that fires (with None) when ``missing_bytes`` more bytes were appended to
        any of ``partitions``, or after ``max_wait_ms``."""
        waiter = _Waiter(list(partitions), missing_bytes, self._forget)
        for key in waiter.partitions:
            self._by_partition[key].add(waiter)
        waiter.timer = self.clock.callLater(max_wait_ms / 1000.0, self._fire, waiter)
        return waiter.deferred

    def appended(self, topic: str, partition: int, size: int) -> None:
        waiting = self._by_partition.get((topic, partition))
        if not waiting:
            return
        for waiter in list(waiting):
            waiter.missing -= size
            if waiter.missing <= 0:
                self._fire(waiter)

    def wake_all(self, topic: str, partition: int) -> None:
        """Complete every fetch waiting on a partition (it was deleted or moved)."""
        for waiter in list(self._by_partition.get((topic, partition), ())):
            self._fire(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        """Drop a waiter whose connection closed (its Deferred was cancelled)."""
        self._unregister(waiter)

    def _fire(self, waiter: _Waiter) -> None:
        self._unregister(waiter)
        if not waiter.deferred.called:
            waiter.deferred.callback(None)

    def _unregister(self, waiter: _Waiter) -> None:
        for key in waiter.partitions:
            waiting = self._by_partition.get(key)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._by_partition[key]
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()

    def __len__(self) -> int:
        return len({w for ws in self._by_partition.values() for w in ws})
