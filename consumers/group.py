"""The paper's consumer group, coordinated through ZooKeeper with no master.

    >>> with GroupConsumer("loaders", ["clicks"], zookeeper="127.0.0.1:2181/headrace") as consumer:
    ...     for message in consumer:              # each message goes to one member of the group
    ...         handle(message)                   # finished when the next one is requested

Registries (ARCHITECTURE.md, ZooKeeper layout; paths and node data in
broker/protocol/zookeeper.py): the group's kind ``/consumers/<group>/kind`` ("zookeeper", or
"loader" for the loaders' workers: no other kind may use the name), its members
``/consumers/<group>/ids``, the partitions' owners ``/consumers/<group>/owners`` and offsets
``/consumers/<group>/offsets``.

A change in the broker registry, the group's members or a subscribed topic's partitions
triggers a rebalance (debounced: watches only raise a flag; the consuming thread acts on it).
Rebalance, as in section 3.2 of the paper: commit and release owned partitions; sort the
topic's partitions P and its consumers C; take the contiguous range of |P|/|C| partitions (one
more for the first |P| mod |C| members) at this member's index; claim each in ``/owners``,
retrying a claim that collides (the previous owner has not yet released it) after a back-off
until it succeeds or the group changes again; then start from the offset in ``/offsets``, or
from the earliest or latest offset (``auto_offset_reset``).

At least once: only messages the application has finished with are committed. Iterating, a
message is finished when the next one is requested; with ``poll()``, Kafka's rule: what one
poll returned is finished when poll is called again. Auto-commit (every
``auto_commit_interval_ms``: inside poll, or between messages while iterating; and before a
rebalance releases partitions) commits finished messages only, never what this poll returns.
``commit()`` commits every message handed over so far, ``commit(message)`` the offset after
``message`` in its partition. ``close()`` commits what was handed over; after an exception
(``__exit__``, or ``close(failed=True)``) only what was finished, so the message that raised is
read again. Each commit is one ZooKeeper transaction that checks this session still owns the
partition, so a member that lost a partition never moves its offset. While the ZooKeeper
connection is suspended the consumer stops fetching (it may have lost its partitions); after
the session is lost it drops every uncommitted offset, registers again and rebalances.

A batch that cannot be decoded raises ``CorruptBatchError`` from poll() (see
consumers/consumer.py); ``seek(err.topic, err.partition, err.next_offset)`` skips it, and the
next commit moves the group's offset past it.

States: *joining*, *rebalancing*, *consuming*, *suspended*, *lost*, *closed*.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from kazoo.client import KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from broker.protocol import zookeeper as layout
from broker.protocol.offsets import (
    ANY_VERSION,
    GroupKindError,
    OwnershipError,
    claim_kind,
    commit_owned,
    read_offset,
    read_owner,
)
from broker.protocol.zk_client import zookeeper_client
from broker.protocol.zk_security import ZkCredentials
from broker.protocol.zookeeper import LOADER, ZOOKEEPER

from .cluster import ClusterClient
from .consumer import EARLIEST, LATEST, Consumer, Message
from .security import PLAINTEXT, ClientSecurity

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
        kind: str = ZOOKEEPER,
        bootstrap_servers: str | None = None,
        consumer_id: str | None = None,
        auto_offset_reset: str = "largest",
        auto_commit_interval_ms: int = 5000,
        session_timeout_ms: int = 6000,
        rebalance_backoff_ms: int = 200,
        fetch_max_wait_ms: int = 200,
        auto_commit: bool = True,
        on_assign=None,
        on_revoke=None,
        columnar: bool = False,
        consumer_options: dict | None = None,
        security: ClientSecurity = PLAINTEXT,
        zookeeper_credentials: ZkCredentials | None = None,
    ):
        if auto_offset_reset not in _RESETS:
            raise ValueError("auto_offset_reset must be smallest/earliest or largest/latest")
        if kind not in (ZOOKEEPER, LOADER):
            raise ValueError(f"kind must be {ZOOKEEPER!r} or {LOADER!r}")
        self.group = group
        self.kind = kind
        self.topics = sorted(set(topics))
        self.consumer_id = (
            consumer_id or f"{group}_{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.reset = _RESETS[auto_offset_reset]
        self.auto_commit_interval = auto_commit_interval_ms / 1000.0
        self.rebalance_backoff = rebalance_backoff_ms / 1000.0
        # auto_commit=False: offsets are the caller's business (the loaders commit their own
        # with a compare-and-set); on_assign(owned) runs after the claims and before the
        # stored offsets are read, so the caller can reconcile them.
        self.auto_commit = auto_commit
        self.on_assign = on_assign
        # on_revoke(owned) runs on the polling thread before owned partitions are released
        # (a rebalance, close), while this member still owns them: the last chance to finish
        # their work and commit (commit_offsets) before the next owner reads the offsets
        self.on_revoke = on_revoke
        self._watched: set[str] = set()
        # /consumers is open to all: the identity, if given, is only for ZooKeepers that
        # require one (zookeeper_credentials; ARCHITECTURE.md, Trust boundary)
        self.zk = zookeeper_client(
            zookeeper, zookeeper_credentials, timeout=session_timeout_ms / 1000.0
        )
        self.cluster = ClusterClient(
            bootstrap_servers,
            zookeeper if not bootstrap_servers else None,
            zookeeper_credentials=zookeeper_credentials,
            security=security,
        )
        # consumer_options (Consumer's keyword arguments) override these: the loaders, say,
        # want offsets out of range reported ("none"), not reset
        self.consumer = Consumer(
            cluster=self.cluster,
            **{
                "fetch_max_wait_ms": fetch_max_wait_ms,
                "columnar": columnar,
                "auto_offset_reset": "earliest" if self.reset == EARLIEST else "latest",
                **(consumer_options or {}),
            },
        )
        self.owned: dict[str, list[int]] = {}
        self.state = "joining"
        self.rebalances = 0
        self._dirty = threading.Event()  # a watch fired: rebalance before the next fetch
        self._suspended = threading.Event()
        self._lost = threading.Event()
        # per owned partition, the offset after: what was handed to the application, what it
        # finished with, what is committed (and the offset node's version)
        self._delivered: dict[tuple[str, int], int] = {}
        self._finished: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._versions: dict[tuple[str, int], int | None] = {}
        self._last_commit = time.monotonic()
        self._started = False

    # --- joining -------------------------------------------------------------------------

    def start(self) -> GroupConsumer:
        """Connect, register in the group, watch the registries, and do the first rebalance.
        GroupKindError if the group name belongs to another kind of group."""
        self.zk.add_listener(self._on_state)
        self.zk.start(timeout=30)
        try:
            claim_kind(self.zk, self.group, self.kind)
        except GroupKindError:
            self.close()
            raise
        for path in (layout.members_path, layout.owners_path, layout.offsets_path):
            self.zk.ensure_path(path(self.group))
        self._register()
        ChildrenWatch(self.zk, layout.members_path(self.group), self._changed)
        ChildrenWatch(self.zk, layout.BROKER_IDS, self._changed)
        self._watch_topics()
        self._started = True
        self._dirty.set()
        self._rebalance_if_needed()
        return self

    def _register(self) -> None:
        data = layout.encode_consumer(
            layout.ConsumerRegistration(tuple(self.topics), timestamp_ms=int(time.time() * 1000))
        )
        path = layout.member_path(self.group, self.consumer_id)
        try:
            self.zk.create(path, data, ephemeral=True)
        except NodeExistsError:
            self.zk.delete(path)
            self.zk.create(path, data, ephemeral=True)

    def _watch_topics(self) -> None:
        for topic in self.topics:
            if topic not in self._watched:
                self._watched.add(topic)
                DataWatch(self.zk, layout.topic_path(topic), self._topic_watch(topic))

    def _topic_watch(self, topic: str):
        def changed(data, stat, event=None):
            if topic not in self.topics:  # unsubscribed: stop watching it
                self._watched.discard(topic)
                return False
            self._dirty.set()
            return self.state != "closed"

        return changed

    def subscribe(self, topics: list[str]) -> None:
        """Consume these topics from now on (a regex subscription's current matches, say):
        this member's registration is updated, which makes the whole group rebalance.  Call
        it from the polling thread."""
        wanted = sorted(set(topics))
        if wanted == self.topics:
            return
        self.topics = wanted
        if not self._started:
            return
        data = layout.encode_consumer(
            layout.ConsumerRegistration(tuple(self.topics), timestamp_ms=int(time.time() * 1000))
        )
        try:
            self.zk.set(layout.member_path(self.group, self.consumer_id), data)
        except NoNodeError:  # the session was lost meanwhile: registering again uses the topics
            pass
        self._watch_topics()
        self._dirty.set()

    def request_rebalance(self) -> None:
        """Rebalance before the next fetch (a partition turned out to be lost, say)."""
        self._dirty.set()

    @property
    def rebalance_pending(self) -> bool:
        return self._dirty.is_set()

    def _changed(self, *_args):
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
            log.warning(
                "%s: ZooKeeper session was lost; dropping uncommitted offsets and "
                "registering again",
                self.consumer_id,
            )
            self.owned = {}
            self._forget_progress()
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
                self._forget_progress()
                self.consumer.assign([])
                self._dirty.set()
                time.sleep(self.rebalance_backoff)
                return

    def _rebalance(self) -> None:
        self.state = "rebalancing"
        self.rebalances += 1
        if self.auto_commit:
            self._write(self._finished)
        self._release()
        members = self.zk.get_children(layout.members_path(self.group))
        subscriptions = {}
        for member in members:
            try:
                data, _ = self.zk.get(layout.member_path(self.group, member))
                subscriptions[member] = set(layout.decode_consumer(data).subscription)
            except (NoNodeError, layout.MalformedNodeError):
                continue
        wanted: dict[str, list[int]] = {}
        for topic in self.topics:
            try:
                data, _ = self.zk.get(layout.topic_path(topic))
                partitions = sorted(layout.decode_topic(data).partitions)
            except (NoNodeError, layout.MalformedNodeError):
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
                offset, self._versions[(topic, p)] = self._stored_offset(topic, p)
                assignments.append((topic, p, self.reset if offset is None else offset))
                if offset is not None:
                    self._committed[(topic, p)] = offset
        self.consumer.assign(assignments)
        # the starting offsets are committed too, so a reset to the latest offset sticks
        self._finished = {(t, p): self.consumer.position(t, p) for t, p, _ in assignments}
        self.state = "consuming"
        log.info(
            "%s: owns %s after rebalance %d",
            self.consumer_id,
            {t: ps for t, ps in wanted.items()},
            self.rebalances,
        )

    def _claim(self, wanted: dict[str, list[int]]) -> bool:
        """Claim every wanted partition; a collision is retried after a back-off, forever,
        unless the group changes meanwhile (then False: rebalance again)."""
        pending = [(t, p) for t, ps in wanted.items() for p in ps]
        claimed = []
        while pending:
            still = []
            for topic, partition in pending:
                path = layout.owner_path(self.group, topic, partition)
                try:
                    self.zk.create(
                        path, layout.encode_owner(self.consumer_id), ephemeral=True, makepath=True
                    )
                    claimed.append((topic, partition))
                except NodeExistsError:
                    if read_owner(self.zk, self.group, topic, partition) == self.consumer_id:
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
        if self.on_revoke is not None and self.owned:
            self.on_revoke({t: list(ps) for t, ps in self.owned.items()})
        for topic, partitions in self.owned.items():
            for partition in partitions:
                self._delete_owner(topic, partition)
        self.owned = {}
        self._forget_progress()
        self.consumer.assign([])

    def _forget_progress(self) -> None:
        """Offsets of partitions this member no longer owns are none of its business."""
        self._delivered.clear()
        self._finished.clear()
        self._committed.clear()
        self._versions.clear()

    def _delete_owner(self, topic: str, partition: int) -> None:
        try:
            if read_owner(self.zk, self.group, topic, partition) == self.consumer_id:
                self.zk.delete(layout.owner_path(self.group, topic, partition))
        except NoNodeError:
            pass

    def _stored_offset(self, topic: str, partition: int) -> tuple[int | None, int | None]:
        """(offset, node version); a node that holds no offset is overwritten by the next commit."""
        try:
            return read_offset(self.zk, self.group, topic, partition)
        except ValueError as exc:
            log.warning(
                "%s: %s; starting from %s",
                self.consumer_id,
                exc,
                "the earliest" if self.reset == EARLIEST else "the latest",
            )
            return None, ANY_VERSION

    # --- consuming -----------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_messages: int = 100_000) -> list[Message]:
        """The next messages for this member.  What the previous poll returned counts as
        finished now, and auto-commit (in here, before fetching) commits only finished
        messages, never what this poll returns.  Rebalances happen in here too."""
        self._finish(self._delivered)
        messages = self._fetch(timeout, max_messages)
        for key, end in map(_end, messages):
            self._delivered[key] = end
        return messages

    def __iter__(self):
        """Every message for this member; a message is finished when the next is requested."""
        while self.state != "closed":
            for message in self._fetch(1.0, 100_000):
                key, end = _end(message)
                self._delivered[key] = end
                yield message
                self._finish({key: end})
                if self.state == "closed":
                    return
                if (
                    self.auto_commit
                    and time.monotonic() - self._last_commit >= self.auto_commit_interval
                ):
                    self._write(self._finished)  # a long batch is committed as it goes

    def _fetch(self, timeout: float, max_messages: int) -> list[Message]:
        if not self._started:
            self.start()
        self._rebalance_if_needed()
        if self._suspended.is_set():
            time.sleep(min(timeout, 0.2))  # not sure we still own our partitions: do not fetch
            return []
        if self.auto_commit and time.monotonic() - self._last_commit >= self.auto_commit_interval:
            self._write(self._finished)
        return self.consumer.poll(timeout, max_messages)

    def _finish(self, ends: dict[tuple[str, int], int]) -> None:
        for key, end in list(ends.items()):
            if key in self._finished:  # still owned (released partitions are forgotten)
                self._finished[key] = end

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read an owned partition from ``offset`` on; what comes before it counts as finished,
        so the next commit stores it (this is how a CorruptBatchError's batch is skipped)."""
        self.consumer.seek(topic, partition, offset)
        self._delivered[(topic, partition)] = offset
        self._finish({(topic, partition): offset})

    def commit(self, message: Message | None = None) -> None:
        """Commit now.  With no argument, every message handed to the application so far
        (what poll returned; the iterator's messages up to the current one); with a message,
        the offset after it (``message.offset + 1``, or after a columnar block's last) for its
        partition, counting the messages before it in that partition as finished."""
        if message is None:
            self._finish(self._delivered)
            self._write(self._finished)
        else:
            key, end = _end(message)
            self._finish({key: end})
            self._write({key: end} if key in self._finished else {})

    def commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit these next offsets, ``{(topic, partition): offset}``, each only while this
        session owns the partition (as ``commit()``; a partition not owned is skipped).  Meant
        for ``auto_commit=False``, where the caller decides what is done."""
        mine = {
            key: offset
            for key, offset in offsets.items()
            if key[1] in self.owned.get(key[0], ()) and key in self._finished
        }
        self._finish(mine)
        self._write(mine)

    def _write(self, ends: dict[tuple[str, int], int]) -> None:
        """Commit these offsets, each only while this session owns its partition."""
        self._last_commit = time.monotonic()
        for key, offset in list(ends.items()):
            if self._committed.get(key) == offset or key not in self._versions:
                continue
            try:
                self._versions[key] = commit_owned(
                    self.zk, self.group, *key, offset, self.consumer_id, self._versions[key]
                )
                self._committed[key] = offset
            except OwnershipError as exc:  # lost the partition (or a hand moved the offset)
                log.warning("%s: not committed: %s; rebalancing", self.consumer_id, exc)
                for progress in (self._delivered, self._finished, self._versions):
                    progress.pop(key, None)
                self._dirty.set()
            except KazooException as exc:  # the session may be suspended: next time
                log.warning("%s: cannot commit %s-%d now (%r)", self.consumer_id, *key, exc)

    def close(self, failed: bool = False) -> None:
        """Commit what was handed to the application (after a failure, ``failed=True``, only
        what it finished), release the partitions, leave the group."""
        if self.state == "closed":
            return
        try:
            if self._started and not self._suspended.is_set():
                if self.auto_commit:
                    if not failed:
                        self._finish(self._delivered)
                    self._write(self._finished)
                self._release()
                try:
                    self.zk.delete(layout.member_path(self.group, self.consumer_id))
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

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)


def _end(message) -> tuple[tuple[str, int], int]:
    """(topic, partition) and the offset after a message, or after a columnar block."""
    if hasattr(message, "offsets"):
        return (message.topic, message.partition), int(message.offsets[-1]) + 1
    return (message.topic, message.partition), message.offset + 1
