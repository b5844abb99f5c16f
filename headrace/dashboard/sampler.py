"""The dashboard's samplers: once a second, in a thread (never on the reactor), read the
cluster's and the groups' nodes from ZooKeeper, end offsets (ListOffsets to the leaders), log
sizes (DescribeLogDirs to every broker) and the brokers' own groups, then build the three
views on the reactor and hand them to whoever listens (the ``/api/events`` streams).

States of the ZooKeeper connection, as the cluster view reports them: ``connected``,
``suspended`` (kazoo reconnecting; the last layout read is shown) and ``lost`` (no session).
"""

from __future__ import annotations

import logging
import time

from kazoo.client import KazooState
from kazoo.exceptions import KazooException
from twisted.internet import task, threads

from broker.protocol.zk_client import zookeeper_client
from broker.protocol.zk_security import ZkCredentials
from broker.protocol.zookeeper import topic_path
from consumers.cluster import ClusterClient, registered_address
from consumers.security import PLAINTEXT, ClientSecurity

from . import brokers, warehouse
from .views import KIND_LOADER, GroupsView, TopicsView, cluster_view, leaders
from .zkread import ClusterLayout, read_groups, read_layout

log = logging.getLogger(__name__)

STATES = {
    KazooState.CONNECTED: "connected",
    KazooState.SUSPENDED: "suspended",
    KazooState.LOST: "lost",
}
BROKER_TIMEOUT_S = 2.0  # a broker that does not answer in time is shown without its values
SUCCESS_EVERY_S = 10.0  # how often the warehouses' _SUCCESS markers are listed


class Sampler:
    """Samples the cluster every ``interval`` seconds; ``snapshots`` holds the latest
    ``cluster``, ``topics`` and ``groups`` views, and each ``listeners`` function is called
    on the reactor with (name, view) as they are built."""

    def __init__(
        self,
        zookeeper: str,
        reactor,
        warehouse_url: str | None = None,
        interval: float = 1.0,
        security: ClientSecurity = PLAINTEXT,
        zookeeper_credentials: ZkCredentials | None = None,
    ):
        self.connect = zookeeper
        self.security = security  # the dashboard's own identity towards the brokers
        self.reactor = reactor
        self.warehouse_url = warehouse_url
        self.interval = interval
        self.zk = zookeeper_client(
            zookeeper,
            zookeeper_credentials,
            timeout=10,
            connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 2.0},
        )
        self.zk_state = "lost"
        self.zk.add_listener(self._on_state)
        self.layout = ClusterLayout()
        self.known_brokers: dict = {}  # every broker seen, so a dead one stays listed
        self.groups_nodes: dict = {}
        self._cluster: ClusterClient | None = None
        self._bootstrap = ""
        self.topics_view = TopicsView()
        self.groups_view = GroupsView()
        self.success = warehouse.SuccessHours(SUCCESS_EVERY_S)
        self.listeners: list = []
        now = _now_ms()
        self.snapshots = {
            "cluster": cluster_view(self.layout, {}, self._zookeeper(), now),
            "topics": {"sampled_at": now, "history_s": self.topics_view.history_s, "topics": []},
            "groups": {"sampled_at": now, "groups": []},
        }
        self._loop = None

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self.zk.start_async()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.error("sampler stopped: %s", f.getTraceback())
        )

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.zk.stop()
        self.zk.close()
        if self._cluster is not None:
            self._cluster.close()

    def _on_state(self, state) -> None:  # kazoo's thread
        self.reactor.callFromThread(setattr, self, "zk_state", STATES[state])

    def _zookeeper(self) -> dict:
        return {"connect": self.connect, "state": self.zk_state}

    # --- sampling ------------------------------------------------------------------------

    def _tick(self):
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._sample)
        d.addCallback(self._publish)
        d.addErrback(lambda f: log.warning("sampling failed: %s", f.getTraceback()))
        return d

    def bootstrap(self) -> str:
        """``host:port,...`` of every broker seen (empty before the first sample)."""
        protocol = self.security.security_protocol  # the endpoints the dashboard can speak to
        addresses = [registered_address(r, protocol) for _, r in sorted(self.known_brokers.items())]
        return ",".join(f"{a[0]}:{a[1]}" for a in addresses if a is not None)

    def topic_exists(self, topic: str) -> bool:
        """Whether ZooKeeper lists ``topic`` now (blocking: call it in a thread).  Without a
        ZooKeeper connection nobody can tell: ConnectionError (the API answers 503, retriable),
        not a 404 for a topic that may well exist."""
        if not self.zk.connected:
            raise ConnectionError("ZooKeeper is not connected (yet); try again")
        return self.zk.exists(topic_path(topic)) is not None

    def _client(self) -> ClusterClient | None:
        """A client bootstrapped from the brokers ZooKeeper lists (made again when they
        change), so a dead broker's address is never the only one tried."""
        live = self.bootstrap()
        if live and live != self._bootstrap:
            if self._cluster is not None:
                self._cluster.close()
            self._cluster = ClusterClient(
                live,
                client_id="headrace-dashboard",
                request_timeout=BROKER_TIMEOUT_S,
                security=self.security,
            )
            self._bootstrap = live
        return self._cluster

    def _sample(self) -> dict:
        """One sample (blocking): what ZooKeeper and the brokers say now."""
        if self.zk.connected:
            try:
                self.layout = read_layout(self.zk)
                self.groups_nodes = read_groups(self.zk)
            except KazooException as exc:
                log.info("ZooKeeper read failed, showing the last layout: %r", exc)
        self.known_brokers.update(self.layout.brokers)
        layout = self.layout
        offsets, sizes, protocol = {}, {}, {}
        cluster = self._client()
        if cluster is not None:
            try:
                cluster.refresh([], allow_auto_create=False)
            except Exception as exc:  # no broker reachable: values stay null
                log.debug("metadata refresh failed: %r", exc)
            offsets = brokers.list_offsets(cluster, leaders(layout))
            sizes = brokers.log_sizes(cluster, [b for b in layout.brokers if b in cluster.brokers])
            try:
                protocol = brokers.protocol_groups(cluster)
            except Exception as exc:
                log.debug("listing the brokers' groups failed: %r", exc)
        loaders = {}
        for name, node in self.groups_nodes.items():
            if node.kind == KIND_LOADER:
                url = (node.last_run or {}).get("warehouse") or self.warehouse_url
                topics = sorted({t for t, _ in node.offsets})
                loaders[name] = {"warehouse": url, "success_hours": self.success.get(url, topics)}
        return {
            "layout": layout,
            "groups": self.groups_nodes,
            "offsets": offsets,
            "sizes": sizes,
            "protocol": protocol,
            "loaders": loaders,
        }

    def _publish(self, sample: dict) -> None:
        now = _now_ms()
        layout = sample["layout"]
        ends = {key: end for key, (_, end) in sample["offsets"].items()}
        self.snapshots = {
            "cluster": cluster_view(layout, self.known_brokers, self._zookeeper(), now),
            "topics": self.topics_view.build(layout, sample["offsets"], sample["sizes"], now),
            "groups": self.groups_view.build(
                sample["groups"], sample["protocol"], ends, sample["loaders"], now
            ),
        }
        for name, view in self.snapshots.items():
            for listener in list(self.listeners):
                listener(name, view)


def _now_ms() -> int:
    return int(time.time() * 1000)
