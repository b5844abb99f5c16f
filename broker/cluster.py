"""The cluster through ZooKeeper: broker registry, topic registry, placement, metadata cache.

    >>> cluster = ZkCluster("127.0.0.1:2181/headrace", broker_id=1, host="127.0.0.1", port=9092,
    ...                     reactor=reactor)
    >>> cluster.start()                       # connect, register, load and watch the registries
    >>> cluster.metadata.topics["clicks"]     # {partition: [broker ids]}
    >>> yield cluster.create_topic("clicks", 8)

The broker's nodes (``/brokers/ids``, ``/brokers/topics``, ``/config/topics``, ``/cluster/id``,
``/latest_producer_id_block``, under the chroot of ``zookeeper.connect``) and their data are
those of ``broker/protocol/zookeeper.py`` (ARCHITECTURE.md, ZooKeeper layout).

There is no controller: every broker watches ``/brokers/ids`` and ``/brokers/topics`` and acts
on what it sees (opens or deletes its own partition logs).  Topics are created with one
ZooKeeper transaction (config and placement together), so two brokers racing to create the same
topic cannot both win.  Watch callbacks arrive on kazoo's threads and are moved onto the
reactor with ``callFromThread``; blocking ZooKeeper calls run in the reactor's thread pool.

A broker restarted after a crash finds its old node still there until the old session expires
(``zookeeper.session.timeout.ms``).  If the node names the same endpoints and the same log
directories, and this process holds those directories' locks (``locked_log_dirs``: the lock
proves the process that registered is dead), the node is replaced at once.  A node of another
live broker with our id is waited out for twice the session timeout, then refused.

States of the registration: *connecting*, *registered* (ephemeral node present), *suspended*
(connection lost, session alive: nothing to do), *lost* (session expired: register again on
reconnect), *stopped*.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from twisted.internet import defer, threads

from .protocol import zookeeper as layout
from .protocol.zookeeper import (
    BROKER_IDS,
    BROKER_TOPICS,
    CLUSTER_ID,
    PRODUCER_ID_BLOCK,
    BrokerRegistration,
    MalformedNodeError,
    ProducerIdBlock,
    TopicPlacement,
)

log = logging.getLogger(__name__)

PRODUCER_ID_BLOCK_SIZE = 1000
ZK_TIMEOUT = 10.0  # seconds a ZooKeeper write may take before the request fails


def _raise_first(results, name: str) -> None:
    """Raise the first error in a transaction's results (kazoo returns them, not raises)."""
    for result in results:
        if isinstance(result, NodeExistsError):
            raise NodeExistsError(f"topic {name} already exists")
        if isinstance(result, Exception) and not _is_rollback(result):
            raise result
    for result in results:
        if isinstance(result, Exception):
            raise result


def _holder(data: bytes) -> str:
    """host:port of a broker registration, for messages."""
    try:
        reg = layout.decode_broker(data)
        return f"{reg.host}:{reg.port}"
    except MalformedNodeError:
        return repr(data[:100])


def _is_rollback(result) -> bool:
    from kazoo.exceptions import RolledBackError, RuntimeInconsistency

    return isinstance(result, (RolledBackError, RuntimeInconsistency))


class BrokerIdInUseError(RuntimeError):
    """Another live broker is registered with this broker's id."""


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class ClusterMetadata:
    """What this broker knows of the cluster; changed only on the reactor thread."""

    cluster_id: str | None = None
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    topic_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    topic_ids: dict[str, str] = field(default_factory=dict)

    def leader(self, topic: str, partition: int) -> int:
        """The partition's leader (its first replica) if that broker is alive, else -1."""
        replicas = self.topics.get(topic, {}).get(partition)
        if not replicas or replicas[0] not in self.brokers:
            return -1
        return replicas[0]


def split_chroot(connect: str) -> tuple[str, str]:
    """``host:port,host:port/chroot`` -> (hosts, chroot or "")."""
    slash = connect.find("/")
    if slash < 0:
        return connect, ""
    return connect[:slash], connect[slash:].rstrip("/")


def assign_partitions(
    partitions: int, brokers: list[int], start: int | None = None
) -> dict[int, list[int]]:
    """Spread partitions over brokers round-robin from a random start, as Kafka does."""
    if not brokers:
        raise ValueError("no live brokers to place partitions on")
    ordered = sorted(brokers)
    first = random.randrange(len(ordered)) if start is None else start
    return {p: [ordered[(first + p) % len(ordered)]] for p in range(partitions)}


class ZkCluster:
    """Registers this broker and keeps ``metadata`` in step with ZooKeeper."""

    def __init__(
        self,
        connect: str,
        broker_id: int,
        host: str,
        port: int,
        reactor,
        session_timeout_ms: int = 18000,
        rack: str | None = None,
        locked_log_dirs: list[str] | None = None,
    ):
        self.connect = connect
        self.broker_id = broker_id
        self.host = host
        self.port = port
        self.rack = rack
        # host:path of each log dir this process has locked; None: never replace a node
        self.log_dirs = (
            None
            if locked_log_dirs is None
            else [f"{socket.gethostname()}:{d}" for d in locked_log_dirs]
        )
        self.reactor = reactor
        self.session_timeout = session_timeout_ms / 1000.0
        self.metadata = ClusterMetadata()
        self.client: KazooClient | None = None
        self.listeners: list[Callable[[ClusterMetadata, set[str]], None]] = []
        self.on_loaded: list[Callable[[ClusterMetadata], None]] = []
        self.loaded = False
        self._broker_watches: dict[int, DataWatch] = {}
        self._topic_watches: dict[str, tuple[DataWatch, DataWatch]] = {}
        self._stopped = False
        self._lost = False
        self._pid_block = (0, -1)
        self.state = "connecting"

    # --- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Connect, create the base paths, register, and load the registries (blocking)."""
        hosts, chroot = split_chroot(self.connect)
        if chroot:
            root = KazooClient(hosts=hosts, timeout=self.session_timeout)
            root.start(timeout=timeout)
            try:
                root.ensure_path(chroot)
            finally:
                root.stop()
                root.close()
        self.client = KazooClient(hosts=self.connect, timeout=self.session_timeout)
        self.client.add_listener(self._on_state)
        self.client.start(timeout=timeout)
        for path in layout.BROKER_BASE_PATHS:
            self.client.ensure_path(path)
        self.metadata.cluster_id = self._cluster_id()
        self._register(timeout)
        ChildrenWatch(self.client, BROKER_IDS, self._brokers_changed)
        ChildrenWatch(self.client, BROKER_TOPICS, self._topics_changed)
        # The watches above queued every topic's data for the reactor; this comes after them.
        self.reactor.callFromThread(self._initial_load_done)

    def _initial_load_done(self) -> None:
        self.loaded = True
        for callback in self.on_loaded:
            try:
                callback(self.metadata)
            except Exception:
                log.exception("cluster on-loaded callback failed")

    def stop(self) -> None:
        """Deregister (delete the ephemeral node) and close the session."""
        self._stopped = True
        self.state = "stopped"
        if self.client is None:
            return
        if self.client.connected:
            try:
                self.client.delete_async(layout.broker_path(self.broker_id)).get(timeout=5)
            except Exception:  # the session's end removes it anyway
                pass
        self.client.stop()
        self.client.close()

    def _cluster_id(self) -> str:
        try:
            data, _ = self.client.get(CLUSTER_ID)
        except NoNodeError:
            cluster_id = uuid.uuid4().hex[:22]
            try:
                self.client.create(CLUSTER_ID, layout.encode_cluster_id(cluster_id))
            except NodeExistsError:
                data, _ = self.client.get(CLUSTER_ID)
                return layout.decode_cluster_id(data, CLUSTER_ID)
            return cluster_id
        return layout.decode_cluster_id(data, CLUSTER_ID)

    def _registration(self) -> bytes:
        return layout.encode_broker(
            BrokerRegistration(
                self.host,
                self.port,
                self.rack,
                (layout.plaintext_endpoint(self.host, self.port),),
                None if self.log_dirs is None else tuple(self.log_dirs),
                int(time.time() * 1000),
            )
        )

    def _left_by_previous_run(self, data: bytes) -> bool:
        """True if a registration is this broker's own from before a crash: same endpoints and
        log dirs, which this process has locked, so whoever wrote it is dead."""
        if self.log_dirs is None:
            return False
        try:
            reg = layout.decode_broker(data)
        except MalformedNodeError:
            return False
        return reg.log_dirs == tuple(self.log_dirs) and reg.endpoints == (
            layout.plaintext_endpoint(self.host, self.port),
        )

    def _register(self, timeout: float = 30.0) -> None:
        """Create our ephemeral node.  A node our previous run left is replaced at once; one
        of another session is waited out for twice the session timeout (it may be a crashed
        broker's), then BrokerIdInUseError names its holder."""
        path = layout.broker_path(self.broker_id)
        deadline = time.monotonic() + self.session_timeout * 2
        while True:
            try:
                self.client.create(path, self._registration(), ephemeral=True)
                break
            except NodeExistsError:
                try:
                    data, stat = self.client.get(path)
                except NoNodeError:
                    continue
                if stat.ephemeralOwner == self.client.client_id[0]:
                    break
                if self._left_by_previous_run(data):
                    log.warning(
                        "broker %d: replacing the registration left by our previous run "
                        "(session 0x%x; its log dirs are locked by us now)",
                        self.broker_id,
                        stat.ephemeralOwner,
                    )
                    try:
                        self.client.delete(path, version=stat.version)
                    except (NoNodeError, BadVersionError):
                        pass
                    continue
                if time.monotonic() > deadline:
                    raise BrokerIdInUseError(
                        f"broker id {self.broker_id} is registered by another live broker at "
                        f"{_holder(data)} (ZooKeeper session 0x{stat.ephemeralOwner:x})"
                    ) from None
                time.sleep(0.2)
        self.state = "registered"
        log.info("registered broker %d at %s:%d", self.broker_id, self.host, self.port)

    def _on_state(self, state) -> None:  # kazoo thread: must not block
        if self._stopped:
            return  # our own close, not a lost session
        if state == KazooState.LOST:
            self._lost = True
            self.state = "lost"
            log.warning("ZooKeeper session lost; broker %d will register again", self.broker_id)
        elif state == KazooState.SUSPENDED:
            self.state = "suspended"
        elif state == KazooState.CONNECTED and self.state != "connecting":
            # After any reconnect, make sure our node exists and is ours (a new session after
            # an expiry has none); retried until it holds or we stop.
            self.state = "connected"
            self.client.handler.spawn(self._register_again)

    def _register_again(self) -> None:
        backoff = 0.2
        while not self._stopped:
            try:
                self._register()
                self._lost = False
                return
            except Exception as exc:
                log.warning("cannot register broker %d yet (%s); retrying", self.broker_id, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    # --- watches (kazoo threads -> reactor) ----------------------------------------------

    def _follow_children(self, watches: dict, keys: set, watch, apply) -> bool:
        """A children watch's callback: start ``watch(key)`` for each key new in ``keys`` and
        drop those gone, applying ``None`` for them on the reactor; False once stopped."""
        if self._stopped:
            return False
        for key in keys - set(watches):
            watches[key] = None  # the watches call back before they return
            watches[key] = watch(key)
        for key in set(watches) - keys:
            del watches[key]
            self.reactor.callFromThread(apply, key, None)
        return True

    def _brokers_changed(self, children):
        ids = {int(child) for child in children if child.isdigit()}
        return self._follow_children(
            self._broker_watches, ids, self._watch_broker, self._apply_broker
        )

    def _data_watch(self, path: str, on_data, key) -> DataWatch:
        """Watch ``path``'s data, calling ``on_data(key, data)`` on kazoo's thread."""
        return DataWatch(self.client, path, lambda data, stat, event=None: on_data(key, data))

    def _watch_broker(self, node_id: int) -> DataWatch:
        return self._data_watch(layout.broker_path(node_id), self._broker_data, node_id)

    def _broker_data(self, node_id: int, data):
        if self._stopped or node_id not in self._broker_watches:
            return False
        info = None
        if data:
            try:
                reg = layout.decode_broker(data)
                info = BrokerInfo(node_id, reg.host, reg.port, reg.rack)
            except MalformedNodeError:
                log.warning("ignoring malformed registration of broker %d: %r", node_id, data)
        self.reactor.callFromThread(self._apply_broker, node_id, info)
        return True

    def _apply_broker(self, node_id: int, info: BrokerInfo | None):
        if info is None:
            if self.metadata.brokers.pop(node_id, None) is not None:
                log.info("broker %d left the cluster", node_id)
        else:
            if node_id not in self.metadata.brokers:
                log.info("broker %d is at %s:%d", node_id, info.host, info.port)
            self.metadata.brokers[node_id] = info
        self._notify(set())

    def _topics_changed(self, children):
        return self._follow_children(
            self._topic_watches, set(children), self._watch_topic, self._apply_topic
        )

    def _watch_topic(self, name: str) -> tuple[DataWatch, DataWatch]:
        return (
            self._data_watch(layout.topic_path(name), self._topic_data, name),
            self._data_watch(layout.topic_config_path(name), self._config_data, name),
        )

    def _topic_data(self, name: str, data):
        if self._stopped or name not in self._topic_watches:
            return False
        if data:
            try:
                placement = layout.decode_topic(data)
            except MalformedNodeError:
                log.warning("ignoring malformed placement of topic %s: %r", name, data)
                return True  # keep what we had; only the topic list removes topics
            self.reactor.callFromThread(
                self._apply_topic, name, placement.partitions, placement.topic_id
            )
        return True

    def _config_data(self, name: str, data):
        if self._stopped or name not in self._topic_watches:
            return False
        config = {}
        if data:
            try:
                config = layout.decode_topic_config(data)
            except MalformedNodeError:
                log.warning("ignoring malformed config of topic %s: %r", name, data)
        self.reactor.callFromThread(self._apply_config, name, config)
        return True

    def _apply_topic(self, name: str, placement, topic_id=None):
        if placement is None:
            if self.metadata.topics.pop(name, None) is not None:
                self.metadata.topic_configs.pop(name, None)
                self.metadata.topic_ids.pop(name, None)
                log.info("topic %s was deleted", name)
        else:
            self.metadata.topics[name] = placement
            if topic_id:
                self.metadata.topic_ids[name] = topic_id
        self._notify({name})

    def _apply_config(self, name: str, config):
        if self.metadata.topic_configs.get(name) != config:
            self.metadata.topic_configs[name] = config
            self._notify({name})

    def _notify(self, topics: set[str]):
        for listener in self.listeners:
            try:
                listener(self.metadata, topics)
            except Exception:
                log.exception("cluster metadata listener failed")

    # --- writes (in the thread pool) -----------------------------------------------------

    def _in_pool(self, work):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work)

    def create_topic(self, name: str, placement: dict[int, list[int]], config: dict[str, str]):
        """Create a topic's config and placement (with a new topic id) in one transaction; a
        Deferred that fails with NodeExistsError if the topic exists."""

        config_path, topic_path = layout.topic_config_path(name), layout.topic_path(name)

        def create():
            # A config left by a deletion that broke half-way must not block the name forever.
            if self.client.exists_async(config_path).get(
                timeout=ZK_TIMEOUT
            ) and not self.client.exists_async(topic_path).get(timeout=ZK_TIMEOUT):
                try:
                    self.client.delete_async(config_path).get(timeout=ZK_TIMEOUT)
                except NoNodeError:
                    pass
            tx = self.client.transaction()
            tx.create(config_path, layout.encode_topic_config(config))
            tx.create(topic_path, layout.encode_topic(TopicPlacement(placement, uuid.uuid4().hex)))
            _raise_first(tx.commit_async().get(timeout=ZK_TIMEOUT), name)

        return self._in_pool(create)

    def delete_topic(self, name: str):
        """Delete a topic's placement and config in one transaction; a Deferred that fails with
        NoNodeError if the topic does not exist.  Every broker deletes its own logs when its
        watch fires."""

        config_path = layout.topic_config_path(name)

        def delete():
            tx = self.client.transaction()
            tx.delete(layout.topic_path(name))
            if self.client.exists_async(config_path).get(timeout=ZK_TIMEOUT):
                tx.delete(config_path)
            _raise_first(tx.commit_async().get(timeout=ZK_TIMEOUT), name)

        return self._in_pool(delete)

    @defer.inlineCallbacks
    def next_producer_id(self):
        """A producer id unique in the cluster: blocks of 1000 are claimed in ZooKeeper with a
        compare-and-set, as Kafka does, then handed out locally."""
        start, end = self._pid_block
        if start > end:
            start, end = yield self._in_pool(self._claim_producer_id_block)
        self._pid_block = (start + 1, end)
        return start

    def _claim_producer_id_block(self) -> tuple[int, int]:
        while True:
            try:
                data, stat = self.client.get_async(PRODUCER_ID_BLOCK).get(timeout=ZK_TIMEOUT)
                last = layout.decode_producer_id_block(data, PRODUCER_ID_BLOCK) if data else None
                block_start = last.block_end + 1 if last else 0
                version = stat.version
            except NoNodeError:
                block_start, version = 0, None
            block_end = block_start + PRODUCER_ID_BLOCK_SIZE - 1
            doc = layout.encode_producer_id_block(
                ProducerIdBlock(self.broker_id, block_start, block_end)
            )
            try:
                if version is None:
                    self.client.create_async(PRODUCER_ID_BLOCK, doc).get(timeout=ZK_TIMEOUT)
                else:
                    self.client.set_async(PRODUCER_ID_BLOCK, doc, version=version).get(
                        timeout=ZK_TIMEOUT
                    )
                return block_start, block_end
            except (BadVersionError, NodeExistsError):
                continue
