"""The cluster through ZooKeeper: broker registry, topic registry, placement, metadata cache.

    >>> cluster = ZkCluster("127.0.0.1:2181/headrace", broker_id=1, host="127.0.0.1", port=9092,
    ...                     reactor=reactor)
    >>> cluster.start()                       # connect, register, load and watch the registries
    >>> cluster.metadata.topics["clicks"]     # {partition: [broker ids]}
    >>> cluster.metadata.states["clicks"][0]  # KnownState(PartitionState(leader, ...), version)
    >>> yield cluster.create_topic("clicks", {0: [1, 2]}, {})

The broker's nodes (``/brokers/ids``, ``/brokers/topics``, ``/config/topics``, ``/cluster/id``,
``/latest_producer_id_block``, under the chroot of ``zookeeper.connect``) and their data are
those of ``broker/protocol/zookeeper.py`` (ARCHITECTURE.md, ZooKeeper layout).

Every broker watches ``/brokers/ids``, ``/brokers/topics`` and each partition's ``state`` node
and acts on what it sees (opens or deletes its own partition logs).  The states are written by
the controller (``broker/controller.py``) and, for its ISR, by a partition's leader
(``update_isr``); a broker learns its roles from them (ARCHITECTURE.md, Replication).  Topics
are created with one ZooKeeper transaction (config and placement together), so two brokers
racing to create the same topic cannot both win.  Watch callbacks arrive on kazoo's threads
and are moved onto the reactor with ``callFromThread``; blocking ZooKeeper calls run in the
reactor's thread pool.

A broker restarted after a crash finds its old node still there until the old session expires
(``zookeeper.session.timeout.ms``).  If the node names the same endpoints and the same log
directories, and this process holds those directories' locks (``locked_log_dirs``: the lock
proves the process that registered is dead), the node is replaced at once.  A node of another
live broker with our id is waited out for twice the session timeout, then refused.

States of the registration: *connecting*, *registered* (ephemeral node present), *suspended*
(connection lost, session alive: nothing to do), *lost* (session expired: register again on
reconnect), *stopped*.  ``registered_again`` is false from a lost session until this broker
is registered on its new one (with a new ``broker_epoch``): until then no state it caches can
be known to be meant for this incarnation.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from .cluster_writes import ClusterWrites, PartitionStateChangedError
from .protocol import zookeeper as layout
from .protocol.broker_nodes import format_endpoint
from .protocol.zk_client import ensure_chroot, is_secured, secure_tree, zookeeper_client
from .protocol.zk_security import ZkCredentials, ZkSecurityError
from .protocol.zookeeper import (
    BROKER_IDS,
    BROKER_TOPICS,
    CLUSTER_ID,
    BrokerRegistration,
    MalformedNodeError,
    PartitionState,
)

log = logging.getLogger(__name__)


def _holder(data: bytes) -> str:
    """host:port of a broker registration, for messages."""
    try:
        reg = layout.decode_broker(data)
        if reg.host is not None:
            return f"{reg.host}:{reg.port}"
        return ", ".join(reg.endpoints)
    except MalformedNodeError:
        return repr(data[:100])


class BrokerIdInUseError(RuntimeError):
    """Another live broker is registered with this broker's id."""


class KnownState(NamedTuple):
    """A partition's state as last read, with the version of its node (for conditional
    writes) and the zxid of the node's last write (-1: not known), which tells whether it was
    written after this broker's registration (``ZkCluster.broker_epoch``)."""

    state: PartitionState
    version: int
    mzxid: int = -1


@dataclass(frozen=True)
class BrokerInfo:
    """A live broker: ``host``/``port`` its PLAINTEXT address (or, without one, its first
    endpoint's), ``endpoints`` every advertised listener's (name -> (host, port))."""

    node_id: int
    host: str
    port: int
    rack: str | None = None
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False)

    def address(self, listener: str | None) -> tuple[str, int] | None:
        """(host, port) on ``listener`` (None: ``host``/``port``); None if the broker has
        no such listener."""
        if listener is None or not self.endpoints:
            return (self.host, self.port) if listener in (None, "PLAINTEXT") else None
        return self.endpoints.get(listener.upper())


@dataclass
class ClusterMetadata:
    """What this broker knows of the cluster; changed only on the reactor thread."""

    cluster_id: str | None = None
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    topic_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    topic_ids: dict[str, str] = field(default_factory=dict)
    broker_configs: dict[str, dict[str, str]] = field(default_factory=dict)  # id|<default>: dynamic
    states: dict[str, dict[int, KnownState]] = field(default_factory=dict)
    deleted_topic_ids: frozenset[str] = frozenset()  # tombstones, /admin/deleted_topics

    def brokers_on(self, listener: str | None) -> list[tuple[BrokerInfo, str, int]]:
        """Each live broker with its address on ``listener``, by id; brokers without that
        listener are left out, as Kafka leaves them out of its answers."""
        found = []
        for info in sorted(self.brokers.values(), key=lambda b: b.node_id):
            address = info.address(listener)
            if address is not None:
                found.append((info, *address))
        return found

    def leader(self, topic: str, partition: int) -> int:
        """The leader its state names if that broker is alive; -1 without a state (not yet
        elected), offline, or while the leader's registration is gone."""
        known = self.states.get(topic, {}).get(partition)
        if known is None or known.state.leader not in self.brokers:
            return -1
        return known.state.leader


def split_chroot(connect: str) -> tuple[str, str]:
    """``host:port,host:port/chroot`` -> (hosts, chroot or "")."""
    slash = connect.find("/")
    if slash < 0:
        return connect, ""
    return connect[:slash], connect[slash:].rstrip("/")


class ZkCluster(ClusterWrites):
    """Registers this broker and keeps ``metadata`` in step with ZooKeeper; its writes are
    those of ``ClusterWrites``."""

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
        endpoints: tuple[tuple[str, str, str, int], ...] = (),
        credentials: ZkCredentials | None = None,
        secure: bool = False,
    ):
        self.connect = connect
        self.credentials = credentials  # the ZooKeeper digest identity, if any
        self.secure = secure  # zookeeper.set.acl: nodes owned by this identity, world READ
        self.broker_id = broker_id
        self.host = host
        self.port = port
        # (listener, security protocol, host, port) of every advertised listener; () : one
        # PLAINTEXT listener at host:port.
        self.endpoints = endpoints or (("PLAINTEXT", "PLAINTEXT", host, port),)
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
        # on_topics_deleted(topic ids): tombstones appeared (and every one at start)
        self.on_topics_deleted: list[Callable[[frozenset[str]], None]] = []
        # on_partition_state(topic, partition, state, version): a newer leader epoch, or the
        # same epoch with another ISR, on the reactor thread
        self.on_partition_state: list[Callable[[str, int, PartitionState, int], None]] = []
        self.broker_epoch = -1  # the czxid of our registration (KIP-380)
        self.loaded = False
        self._broker_watches: dict[int, DataWatch] = {}
        self._topic_watches: dict[str, tuple[DataWatch, DataWatch]] = {}
        self._state_watches: dict[tuple[str, int], object] = {}  # (topic, p) -> current token
        self._stopped = False
        self.registered_again = True  # false from a lost session until registered again
        self._pid_block = (0, -1)
        self.state = "connecting"

    # --- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Connect, create the base paths, register, and load the registries (blocking).
        ZooKeeper refusing this broker's identity raises ``ZkSecurityError`` saying so."""
        try:
            self._join(timeout)
        except NoAuthError as exc:
            who = f"'{self.credentials.username}'" if self.credentials else "no identity"
            what = exc.args[0] if exc.args else "not authorized"
            raise ZkSecurityError(
                f"ZooKeeper refused a write by this broker ({who}): {what}."
                " Its nodes belong to another ZooKeeper identity: check zookeeper.jaas.config.file"
                " / zookeeper.digest.credentials against the identity the cluster was secured with"
            ) from None

    def _join(self, timeout: float) -> None:
        ensure_chroot(self.connect, self.credentials, self.secure, timeout)
        self.client = zookeeper_client(
            self.connect, self.credentials, self.secure, timeout=self.session_timeout
        )
        self.client.add_listener(self._on_state)
        self.client.start(timeout=timeout)
        for path in layout.BROKER_BASE_PATHS:
            self.client.ensure_path(path)
        if self.secure:  # Kafka's persistent /consumers, open to all
            self.client.ensure_path(layout.CONSUMERS)
            if not is_secured(self.client):  # the first secure start: fix up older nodes
                seen, changed = secure_tree(self.client, True, skip=(layout.CONSUMERS,))
                log.info("secured the ACLs of %d of %d ZooKeeper nodes", changed, seen)
        self.metadata.cluster_id = self._cluster_id()
        self._register(timeout)
        # Tombstones first: a role given for a topic's partition (with the topic's data,
        # below) can tell a deleted topic's log from one of unknown origin.
        ChildrenWatch(self.client, layout.DELETED_TOPICS, self._deleted_topics_changed)
        for entity in (str(self.broker_id), layout.DEFAULT_BROKER):  # dynamic broker configs
            DataWatch(
                self.client,
                layout.broker_config_path(entity),
                lambda data, stat, event=None, entity=entity: self._config_data(entity, data, True),
            )
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

    def _endpoint_strings(self) -> tuple[str, ...]:
        return tuple(format_endpoint(name, host, port) for name, _, host, port in self.endpoints)

    def _registration(self) -> bytes:
        plaintext = [(h, p) for _, protocol, h, p in self.endpoints if protocol == "PLAINTEXT"]
        host, port = plaintext[0] if plaintext else (None, -1)  # Kafka's rule
        return layout.encode_broker(
            BrokerRegistration(
                host,
                port,
                self.rack,
                self._endpoint_strings(),
                None if self.log_dirs is None else tuple(self.log_dirs),
                int(time.time() * 1000),
                tuple((name, protocol) for name, protocol, _, _ in self.endpoints),
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
        return reg.log_dirs == tuple(self.log_dirs) and reg.endpoints == self._endpoint_strings()

    def _register(self, timeout: float = 30.0) -> None:
        """Create our ephemeral node.  A node our previous run left is replaced at once; one
        of another session is waited out for twice the session timeout (it may be a crashed
        broker's), then BrokerIdInUseError names its holder."""
        path = layout.broker_path(self.broker_id)
        deadline = time.monotonic() + self.session_timeout * 2
        while True:
            try:
                _, stat = self.client.create(
                    path, self._registration(), ephemeral=True, include_data=True
                )
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
        # The epoch first: a registered state with the old epoch would pass old states as new.
        self.broker_epoch = stat.czxid
        self.state = "registered"
        log.info(
            "registered broker %d at %s (broker epoch %d)",
            self.broker_id,
            ", ".join(self._endpoint_strings()),
            self.broker_epoch,
        )

    def _on_state(self, state) -> None:  # kazoo thread: must not block
        if self._stopped:
            return  # our own close, not a lost session
        if state == KazooState.LOST:
            self.registered_again = False
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
                self.registered_again = True
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
                host, port = reg.address_for() or ("", -1)
                info = BrokerInfo(node_id, host, port, reg.rack, reg.endpoint_map())
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

    def _deleted_topics_changed(self, children):
        if self._stopped:
            return False
        self.reactor.callFromThread(self._apply_deleted_topics, frozenset(children))
        return True

    def _apply_deleted_topics(self, ids: frozenset[str]) -> None:
        new = ids - self.metadata.deleted_topic_ids
        self.metadata.deleted_topic_ids = ids
        if new:
            for callback in self.on_topics_deleted:
                try:
                    callback(new)
                except Exception:
                    log.exception("deleted topics callback failed")

    def _topics_changed(self, children):
        for key in [k for k in self._state_watches if k[0] not in children]:
            del self._state_watches[key]  # their watches stop when they next fire
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
            for partition in placement.partitions:
                if (name, partition) not in self._state_watches:
                    self._watch_state(name, partition)
        return True

    def _watch_state(self, name: str, partition: int) -> None:
        """Follow a partition's state node (it may not exist yet); a token tells the watch
        whether it is still wanted (a topic deleted and created again gets new ones)."""
        key, token = (name, partition), object()
        self._state_watches[key] = token

        def on_state(data, stat, event=None):
            if self._stopped or self._state_watches.get(key) is not token:
                return False
            state = None
            if data:
                try:
                    state = layout.decode_partition_state(data)
                except MalformedNodeError:
                    log.warning("ignoring malformed state of %s-%d: %r", name, partition, data)
                    return True
            version, mzxid = (stat.version, stat.mzxid) if stat is not None else (-1, -1)
            self.reactor.callFromThread(self._apply_state, name, partition, state, version, mzxid)
            return True

        DataWatch(self.client, layout.partition_state_path(name, partition), on_state)

    def _config_data(self, name: str, data, broker: bool = False):
        """A topic's config node, or (``broker``) the dynamic configs of this broker or of
        every broker (``name`` its id or ``<default>``)."""
        if self._stopped or not (broker or name in self._topic_watches):
            return False
        config = {}
        if data:
            try:
                config = layout.decode_topic_config(data)
            except MalformedNodeError:
                log.warning("ignoring malformed config of %s: %r", name, data)
        self.reactor.callFromThread(self._apply_config, name, config, broker)
        return True

    def _apply_state(self, name: str, partition: int, state, version: int, mzxid: int = -1) -> None:
        """A partition's state node changed: keep it with its version; tell the listeners of
        a newer leader epoch or a new ISR, and the metadata listeners of a new leader."""
        states = self.metadata.states.setdefault(name, {})
        old = states.get(partition)
        if state is None:
            states.pop(partition, None)
            return
        if old is not None and (state.leader_epoch < old.state.leader_epoch or mzxid < old.mzxid):
            return  # an older write seen late
        states[partition] = KnownState(state, version, mzxid)
        if old is None or state.leader_epoch > old.state.leader_epoch or state.isr != old.state.isr:
            for callback in self.on_partition_state:
                try:
                    callback(name, partition, state, version)
                except Exception:
                    log.exception("partition state callback failed")
        if old is None or old.state.leader != state.leader:
            self._notify({name})

    def _apply_topic(self, name: str, placement, topic_id=None):
        if placement is None:
            self.metadata.states.pop(name, None)
            if self.metadata.topics.pop(name, None) is not None:
                self.metadata.topic_configs.pop(name, None)
                self.metadata.topic_ids.pop(name, None)
                log.info("topic %s was deleted", name)
        else:
            self.metadata.topics[name] = placement
            if topic_id:
                self.metadata.topic_ids[name] = topic_id
        self._notify({name})

    def _apply_config(self, name: str, config, broker: bool = False):
        configs = self.metadata.broker_configs if broker else self.metadata.topic_configs
        if configs.get(name) != config:
            configs[name] = config
            self._notify(set() if broker else {name})

    def _notify(self, topics: set[str]):
        for listener in self.listeners:
            try:
                listener(self.metadata, topics)
            except Exception:
                log.exception("cluster metadata listener failed")


__all__ = [
    "BrokerIdInUseError",
    "BrokerInfo",
    "ClusterMetadata",
    "KnownState",
    "PartitionStateChangedError",
    "ZkCluster",
    "split_chroot",
]
