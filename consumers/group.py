"""The paper's consumer group, coordinated through ZooKeeper with no master.

    >>> consumer = GroupConsumer("loaders", ["clicks"], zookeeper="127.0.0.1:2181/headrace")
    >>> for message in consumer:                  # each message goes to one member of the group
    ...     handle(message)
    >>> consumer.close()                          # commit, release partitions, leave

Registries (DESIGN.md)::

    /consumers/<group>/ids/<consumer id>       ephemeral  {"subscription": {"<topic>": 1}, ...}
    /consumers/<group>/owners/<topic>/<p>      ephemeral  <consumer id>
    /consumers/<group>/offsets/<topic>/<p>     persistent next offset to read, decimal text

A change in the broker registry, the group's members or a subscribed topic's partitions
triggers a rebalance (debounced: watches only raise a flag; the consuming thread acts on it).
Rebalance, as in section 3.2 of the paper: commit and release owned partitions; sort the
topic's partitions P and its consumers C; take the contiguous range of |P|/|C| partitions (one
more for the first |P| mod |C| members) at this member's index; claim each in ``/owners``,
retrying a claim that collides (the previous owner has not yet released it) after a back-off
until it succeeds or the group changes again; then start from the offset in ``/offsets``, or
from the earliest or latest offset (``auto_offset_reset``).  Offsets are committed every
``auto_commit_interval_ms``, before a rebalance releases partitions, on close, and by
``commit()``.  While the ZooKeeper connection is suspended the consumer stops fetching (it may
have lost its partitions); after the session is lost it registers again and rebalances.

A batch that cannot be decoded raises ``CorruptBatchError`` from poll() (see
consumers/consumer.py); ``seek(err.topic, err.partition, err.next_offset)`` skips it, and the
next commit moves the group's offset past it.

States: *joining*, *rebalancing*, *consuming*, *suspended*, *lost*, *closed*.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from broker.offsets import read_offset, write_offset

from .cluster import ClusterClient
from .consumer import EARLIEST, LATEST, Consumer, Message

log = logging.getLogger(__name__)

_RESETS = {"smallest": EARLIEST, "earliest": EARLIEST, "largest": LATEST, "latest": LATEST}


def range_assignment(partitions: list[int], consumers: list[str], me: str) -> list[int]:
    """The paper's (and Kafka's) range assignment: ``me``'s contiguous share of the sorted
    partitions among the sorted consumers."""
    partitions, consumers = sorted(partitions), sorted(consumers)
    if me not in consumers or not partitions:
        return []
    i = consumers.index(me)
    per, extra = divmod(len(partitions), len(consumers))
    start = per * i + min(i, extra)
    return partitions[start : start + per + (1 if i < extra else 0)]


class GroupConsumer:
    """A member of a ZooKeeper-coordinated consumer group; see the module docstring."""

    def __init__(
        self,
        group: str,
        topics: list[str],
        zookeeper: str,
        *,
        bootstrap_servers: str | None = None,
        consumer_id: str | None = None,
        auto_offset_reset: str = "largest",
        auto_commit_interval_ms: int = 5000,
        session_timeout_ms: int = 6000,
        rebalance_backoff_ms: int = 200,
        fetch_max_wait_ms: int = 200,
        auto_commit: bool = True,
        on_assign=None,
        columnar: bool = False,
        consumer_options: dict | None = None,
    ):
        if auto_offset_reset not in _RESETS:
            raise ValueError("auto_offset_reset must be smallest/earliest or largest/latest")
        self.group = group
        self.topics = sorted(set(topics))
        self.consumer_id = consumer_id or f"{group}_{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.reset = _RESETS[auto_offset_reset]
        self.auto_commit_interval = auto_commit_interval_ms / 1000.0
        self.rebalance_backoff = rebalance_backoff_ms / 1000.0
        # auto_commit=False: offsets are the caller's business (the loaders commit their own
        # with a compare-and-set); on_assign(owned) runs after the claims and before the
        # stored offsets are read, so the caller can reconcile them.
        self.auto_commit = auto_commit
        self.on_assign = on_assign
        self.zk = KazooClient(hosts=zookeeper, timeout=session_timeout_ms / 1000.0)
        self.cluster = ClusterClient(bootstrap_servers, zookeeper if not bootstrap_servers else None)
        # consumer_options (Consumer's keyword arguments) override these: the loaders, say,
        # want offsets out of range reported ("none"), not reset
        self.consumer = Consumer(cluster=self.cluster, **{
            "fetch_max_wait_ms": fetch_max_wait_ms, "columnar": columnar,
            "auto_offset_reset": "earliest" if self.reset == EARLIEST else "latest",
            **(consumer_options or {})})
        self.owned: dict[str, list[int]] = {}
        self.state = "joining"
        self.rebalances = 0
        self._dirty = threading.Event()  # a watch fired: rebalance before the next fetch
        self._suspended = threading.Event()
        self._lost = threading.Event()
        self._delivered: dict[tuple[str, int], int] = {}  # next offset after what poll returned
        self._committed: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self._base = f"/consumers/{group}"
        self._started = False

    # --- joining -------------------------------------------------------------------------

    def start(self) -> "GroupConsumer":
        """Connect, register in the group, watch the registries, and do the first rebalance."""
        self.zk.add_listener(self._on_state)
        self.zk.start(timeout=30)
        for path in ("ids", "owners", "offsets"):
            self.zk.ensure_path(f"{self._base}/{path}")
        self._register()
        ChildrenWatch(self.zk, f"{self._base}/ids", self._changed)
        ChildrenWatch(self.zk, "/brokers/ids", self._changed)
        for topic in self.topics:
            DataWatch(self.zk, f"/brokers/topics/{topic}", self._topic_changed)
        self._started = True
        self._dirty.set()
        self._rebalance_if_needed()
        return self

    def _register(self) -> None:
        data = json.dumps({"version": 1, "subscription": {t: 1 for t in self.topics},
                           "pattern": "static", "timestamp": str(int(time.time() * 1000))}).encode()
        path = f"{self._base}/ids/{self.consumer_id}"
        try:
            self.zk.create(path, data, ephemeral=True)
        except NodeExistsError:
            self.zk.delete(path)
            self.zk.create(path, data, ephemeral=True)

    def request_rebalance(self) -> None:
        """Rebalance before the next fetch (a partition turned out to be lost, say)."""
        self._dirty.set()

    @property
    def rebalance_pending(self) -> bool:
        return self._dirty.is_set()

    def _changed(self, *_args):
        self._dirty.set()
        return self.state != "closed"

    def _topic_changed(self, data, stat, event=None):
        self._dirty.set()
        return self.state != "closed"

    def _on_state(self, state):  # kazoo thread: set flags only
        if state == KazooState.SUSPENDED:
            self._suspended.set()
        elif state == KazooState.LOST:
            self._lost.set()
            self._suspended.set()
        else:
            self._suspended.clear()
            self._dirty.set()

    # --- rebalancing ---------------------------------------------------------------------

    def _rebalance_if_needed(self) -> None:
        if self._lost.is_set() and not self._suspended.is_set():
            log.warning("%s: ZooKeeper session was lost; registering again", self.consumer_id)
            self.owned = {}
            self.consumer.assign([])
            try:
                self._register()
            except KazooException as exc:
                log.warning("%s: cannot register yet (%r)", self.consumer_id, exc)
                time.sleep(self.rebalance_backoff)
                return
            self._lost.clear()
            self._dirty.set()
        while self._dirty.is_set() and not self._suspended.is_set() and self.state != "closed":
            self._dirty.clear()
            try:
                self._rebalance()
            except KazooException as exc:
                # The session broke mid-way (suspended, expired): hold nothing, try again later.
                log.warning("%s: rebalance interrupted (%r); retrying", self.consumer_id, exc)
                self.owned = {}
                self.consumer.assign([])
                self._dirty.set()
                time.sleep(self.rebalance_backoff)
                return

    def _rebalance(self) -> None:
        self.state = "rebalancing"
        self.rebalances += 1
        if self.auto_commit:
            self.commit()
        self._release()
        members = self.zk.get_children(f"{self._base}/ids")
        subscriptions = {}
        for member in members:
            try:
                data, _ = self.zk.get(f"{self._base}/ids/{member}")
                subscriptions[member] = set(json.loads(data).get("subscription", {}))
            except (NoNodeError, ValueError):
                continue
        wanted: dict[str, list[int]] = {}
        for topic in self.topics:
            try:
                data, _ = self.zk.get(f"/brokers/topics/{topic}")
                partitions = sorted(int(p) for p in json.loads(data)["partitions"])
            except (NoNodeError, ValueError, KeyError):
                log.warning("%s: topic %s does not exist (yet)", self.consumer_id, topic)
                continue
            consumers = [m for m, subs in subscriptions.items() if topic in subs]
            mine = range_assignment(partitions, consumers, self.consumer_id)
            if mine:
                wanted[topic] = mine
        if not self._claim(wanted):
            return  # the group changed while claiming: the loop rebalances again
        self.owned = wanted
        if self.on_assign is not None:
            self.on_assign(wanted)
        assignments = []
        for topic, partitions in wanted.items():
            self.cluster.partitions(topic)
            for p in partitions:
                offset = self._stored_offset(topic, p)
                assignments.append((topic, p, self.reset if offset is None else offset))
                if offset is not None:
                    self._committed[(topic, p)] = offset
        self.consumer.assign(assignments)
        self._delivered = {(t, p): self.consumer.position(t, p) for t, p, _ in assignments}
        self.state = "consuming"
        log.info("%s: owns %s after rebalance %d", self.consumer_id,
                 {t: ps for t, ps in wanted.items()}, self.rebalances)

    def _claim(self, wanted: dict[str, list[int]]) -> bool:
        """Claim every wanted partition; a collision is retried after a back-off, forever,
        unless the group changes meanwhile (then False: rebalance again)."""
        pending = [(t, p) for t, ps in wanted.items() for p in ps]
        claimed = []
        while pending:
            still = []
            for topic, partition in pending:
                path = f"{self._base}/owners/{topic}/{partition}"
                try:
                    self.zk.create(path, self.consumer_id.encode(), ephemeral=True, makepath=True)
                    claimed.append((topic, partition))
                except NodeExistsError:
                    try:
                        owner, _ = self.zk.get(path)
                    except NoNodeError:
                        still.append((topic, partition))
                        continue
                    if owner.decode() == self.consumer_id:
                        claimed.append((topic, partition))
                    else:
                        still.append((topic, partition))
            pending = still
            if pending:
                if self._dirty.is_set() or self._suspended.is_set() or self.state == "closed":
                    self.owned = {}
                    for topic, partition in claimed:
                        self._delete_owner(topic, partition)
                    return False
                log.debug("%s: %d claims collide; retrying", self.consumer_id, len(pending))
                time.sleep(self.rebalance_backoff)
        return True

    def _release(self) -> None:
        for topic, partitions in self.owned.items():
            for partition in partitions:
                self._delete_owner(topic, partition)
        self.owned = {}
        self.consumer.assign([])

    def _delete_owner(self, topic: str, partition: int) -> None:
        path = f"{self._base}/owners/{topic}/{partition}"
        try:
            owner, _ = self.zk.get(path)
            if owner.decode() == self.consumer_id:
                self.zk.delete(path)
        except NoNodeError:
            pass

    def _stored_offset(self, topic: str, partition: int) -> int | None:
        try:
            return read_offset(self.zk, self.group, topic, partition)[0]
        except ValueError:
            return None

    # --- consuming -----------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_messages: int = 100_000) -> list[Message]:
        """The next messages for this member; rebalances and commits happen in here.  What
        poll returns counts as delivered: auto-commit and close() commit past it."""
        if not self._started:
            self.start()
        self._rebalance_if_needed()
        if self._suspended.is_set():
            time.sleep(min(timeout, 0.2))  # not sure we still own our partitions: do not fetch
            return []
        messages = self.consumer.poll(timeout, max_messages)
        if self.consumer.columnar:  # Blocks
            for block in messages:
                self._delivered[(block.topic, block.partition)] = block.offsets[-1] + 1
        else:
            for m in messages:
                self._delivered[(m.topic, m.partition)] = m.offset + 1
        if self.auto_commit and time.monotonic() - self._last_commit >= self.auto_commit_interval:
            self.commit()
        return messages

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read an owned partition from ``offset`` on; the next commit stores it (this is how a
        CorruptBatchError's batch is skipped)."""
        self.consumer.seek(topic, partition, offset)
        self._delivered[(topic, partition)] = offset

    def __iter__(self):
        while self.state != "closed":
            yield from self.poll(1.0)

    def commit(self) -> None:
        """Write the offsets after the messages delivered so far to ``/offsets``."""
        self._last_commit = time.monotonic()
        for (topic, partition), offset in list(self._delivered.items()):
            if self._committed.get((topic, partition)) == offset:
                continue
            try:
                write_offset(self.zk, self.group, topic, partition, offset)
                self._committed[(topic, partition)] = offset
            except Exception as exc:  # the session may be suspended: next time
                log.warning("%s: cannot commit %s-%d: %s", self.consumer_id, topic, partition, exc)

    def close(self) -> None:
        """Commit, release the partitions, leave the group."""
        if self.state == "closed":
            return
        try:
            if self._started and not self._suspended.is_set():
                if self.auto_commit:
                    self.commit()
                self._release()
                try:
                    self.zk.delete(f"{self._base}/ids/{self.consumer_id}")
                except NoNodeError:
                    pass
        finally:
            self.state = "closed"
            self.zk.stop()
            self.zk.close()
            self.consumer.close()
            self.cluster.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
