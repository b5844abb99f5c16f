"""The real-time dashboard consumer: reads every partition of a topic as the only member of a
group of the paper's kind, and feeds each message to a ``WindowedCounter``.

    >>> feed = AggregateFeed(counter, "access", "127.0.0.1:2181/headrace", group="dash-1")
    >>> threading.Thread(target=feed.run, daemon=True).start()   # blocking: its own thread
    >>> counter.snapshot(now_ms, 600, 10)                         # from any thread
    >>> feed.stop()

A new group has no offsets: when its partitions are assigned, each is set to the offset for
time now - window (offsets for times), so a (re)started dashboard reads its window again and
shows the same counts.  ``widen(window_s)`` reads a longer window again the same way.
States: *starting*, *reading*, *stopped*.
"""

from __future__ import annotations

import logging
import threading
import time

from broker.protocol.offsets import read_offset, write_offset

from ..consumer import LATEST
from ..group import GroupConsumer
from ..security import PLAINTEXT, ClientSecurity
from .window import WindowedCounter

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class AggregateFeed:
    """Feeds ``counter`` from every partition of ``topic``; see the module docstring."""

    def __init__(
        self,
        counter: WindowedCounter,
        topic: str,
        zookeeper: str,
        group: str,
        clock=_now_ms,
        security: ClientSecurity = PLAINTEXT,
    ):
        self.counter = counter
        self.topic = topic
        self.clock = clock
        self.state = "starting"
        self._stop = threading.Event()
        self._widen_to: int | None = None
        self.consumer = GroupConsumer(
            group,
            [topic],
            zookeeper,
            auto_offset_reset="largest",
            fetch_max_wait_ms=250,
            on_assign=self._start_window,
            columnar=True,  # Blocks of parallel lists: no object per message
            security=security,
        )

    def _offset_for(self, partition: int, window_s: int) -> int:
        cluster = self.consumer.cluster
        found = cluster.list_offset(self.topic, partition, self.clock() - window_s * 1000)
        return found if found >= 0 else cluster.list_offset(self.topic, partition, LATEST)

    def _start_window(self, owned: dict[str, list[int]]) -> None:
        """Partitions this group never read start at the offset for now - window."""
        zk, group = self.consumer.zk, self.consumer.group
        for partition in owned.get(self.topic, []):
            if read_offset(zk, group, self.topic, partition)[0] is None:
                offset = self._offset_for(partition, self.counter.window_s)
                write_offset(zk, group, self.topic, partition, offset)

    def widen(self, window_s: int) -> None:
        """Count over ``window_s`` from now on, reading back that far if it is longer."""
        if window_s > self.counter.window_s:
            self._widen_to = max(window_s, self._widen_to or 0)

    def _read_back(self, window_s: int) -> None:
        self.counter.reset(window_s)
        for partition in self.consumer.owned.get(self.topic, []):
            self.consumer.seek(self.topic, partition, self._offset_for(partition, window_s))

    def run(self) -> None:
        """Read until ``stop()``; errors are logged and reading goes on after a pause."""
        try:
            while not self._stop.is_set():
                try:
                    if self._widen_to is not None:
                        window, self._widen_to = self._widen_to, None
                        self._read_back(window)
                    messages = self.consumer.poll(0.5)
                    self.state = "reading"
                except Exception as exc:  # a broker or ZooKeeper away: try again
                    log.warning("aggregate of %s: %r; retrying", self.topic, exc)
                    self._stop.wait(1.0)
                    continue
                now = self.clock()
                for block in messages:
                    self.counter.add_many(block.values, block.timestamps, now)
        finally:
            self.state = "stopped"
            try:
                self.consumer.close()
            except Exception as exc:
                log.info("closing the aggregate consumer of %s: %r", self.topic, exc)

    def stop(self) -> None:
        self._stop.set()
