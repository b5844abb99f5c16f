"""Long-polled fetches: a Fetch that finds fewer than ``min_bytes`` waits for data.

A waiting fetch registers on the partitions it reads; each append to one of them adds the
appended size to the waiter's count, and the waiter completes when the count reaches what was
missing, or when ``max_wait_ms`` passes on the reactor's clock.  No polling loop.

Followers read to the log end, consumers only to the high watermark: on a replicated
partition an append wakes only followers (``consumers=False``), and consumers wake when the
high watermark moves (``hw_moved``); the handler reads again and waits on if still short.

    >>> waiters = FetchWaiters(reactor)
    >>> d = waiters.wait([("clicks", 0)], missing_bytes=1, max_wait_ms=500)
    >>> waiters.appended("clicks", 0, 4096)     # from the produce path: d fires now
"""

from __future__ import annotations

from collections import defaultdict

from twisted.internet import defer


class _Waiter:
    __slots__ = ("deferred", "follower", "missing", "partitions", "timer")

    def __init__(self, partitions, missing, follower, canceller):
        self.deferred = defer.Deferred(canceller=lambda _: canceller(self))
        self.partitions = partitions
        self.missing = missing
        self.follower = follower
        self.timer = None


class FetchWaiters:
    """Fetches waiting for data, indexed by (topic, partition)."""

    def __init__(self, clock):
        self.clock = clock
        self._by_partition: dict[tuple[str, int], set[_Waiter]] = defaultdict(set)

    def wait(
        self, partitions, missing_bytes: int, max_wait_ms: int, follower: bool = False
    ) -> defer.Deferred:
        """A Deferred that fires (with None) when ``missing_bytes`` more bytes were appended to
        any of ``partitions`` (for a consumer: became visible), or after ``max_wait_ms``."""
        waiter = _Waiter(list(partitions), missing_bytes, follower, self._forget)
        for key in waiter.partitions:
            self._by_partition[key].add(waiter)
        waiter.timer = self.clock.callLater(max_wait_ms / 1000.0, self._fire, waiter)
        return waiter.deferred

    def appended(self, topic: str, partition: int, size: int, consumers: bool = True) -> None:
        """``size`` bytes were appended; consumers count them only if ``consumers`` (the
        partition's high watermark is its log end)."""
        waiting = self._by_partition.get((topic, partition))
        if not waiting:
            return
        for waiter in list(waiting):
            if consumers or waiter.follower:
                waiter.missing -= size
                if waiter.missing <= 0:
                    self._fire(waiter)

    def hw_moved(self, topic: str, partition: int) -> None:
        """The high watermark moved: the consumers waiting on the partition read again."""
        for waiter in list(self._by_partition.get((topic, partition), ())):
            if not waiter.follower:
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
