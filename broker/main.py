"""One broker process: storage, ZooKeeper membership, and the Kafka-protocol listener.

    >>> broker = Broker(BrokerConfig.from_file("server.properties"), reactor)
    >>> broker.start()          # recover logs, register in ZooKeeper, listen
    >>> broker.stop()           # stop listening, deregister, flush and close logs cleanly

``run(config)`` is what ``headrace broker`` calls: it starts a broker on the global reactor
and stops it cleanly on SIGTERM or SIGINT, after a controlled shutdown (its leaderships
handed to other in-sync replicas) when ``controlled.shutdown.enable`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import socket

from twisted.internet import defer

from .cluster import ZkCluster
from .config import BrokerConfig, zookeeper_identity
from .config_entries import effective_config
from .controller import Controller
from .handlers import RequestHandlers
from .log import ConfigError, LogConfig, LogManager
from .metrics import BrokerMetrics
from .replica.manager import ReplicaManager
from .security import (
    InterBrokerSecurity,
    NoMatchingRule,
    ServerTls,
    TlsSettings,
    listener_plan,
    principal_of,
)
from .security.acl_cache import AclCache
from .security.credentials import ScramCredentialCache
from .security.sasl_settings import broker_client_login, listener_sasl
from .server import KafkaServerFactory
from .shutdown import controlled_shutdown

log = logging.getLogger(__name__)


def _advertised_host(host: str) -> str:
    """An advertised host: an empty or wildcard one becomes this machine's name."""
    return socket.getfqdn() if host in ("", "0.0.0.0", "::") else host


class Broker:
    """Wires the log manager, the cluster membership and the network listener together."""

    def __init__(self, config: BrokerConfig, reactor):
        if config["broker.id"] < 0:
            raise ConfigError("broker.id must be set to a non-negative number")
        if not config["zookeeper.connect"]:
            raise ConfigError("zookeeper.connect must be set, e.g. 127.0.0.1:2181/headrace")
        self.config = config
        self.reactor = reactor
        # Every listener, checked (names, ports, protocols, the inter-broker one), and each
        # TLS listener's context loaded now: a bad keystore stops the start, not a client.
        self.plan = listener_plan(config)
        self.tls = {
            x.name: TlsSettings.for_listener(config, x.name)
            for x in self.plan.listeners
            if x.uses_tls
        }
        self.inter_broker = InterBrokerSecurity.from_config(config, self.plan)
        first = self.plan.listeners[0]
        self.listen_host, self.listen_port = first.host, first.port
        self.credentials: ScramCredentialCache | None = None  # SCRAM users, once started
        # Each SASL listener's settings (checked now: a bad one stops the start), and the
        # broker's own login on a SASL inter-broker listener.
        self.sasl = {
            x.name: listener_sasl(config, x.name, self._credential_of)
            for x in self.plan.listeners
            if x.security_protocol.startswith("SASL_")
        }
        self.client_login = broker_client_login(config)
        self.manager = LogManager.from_broker_config(config, clock=reactor)
        self.cluster = None
        self.controller = None
        self.replicas = None
        self.handlers = None
        self.acl_cache: AclCache | None = None
        self.port = None  # the first listener's listening port
        self.ports: dict = {}  # listener name -> its listening port
        self.factories: dict[str, KafkaServerFactory] = {}
        self.metrics = None  # BrokerMetrics while metrics.port is set
        self.metrics_port = None
        self.metrics_folding = None
        self.dynamic_configs: dict[str, dict[str, str]] = {}  # as last applied

    def start(self) -> None:
        """Open (and if needed recover) the logs, join the cluster, start listening."""
        credentials, secure = zookeeper_identity(self.config)
        self.manager.startup()
        self.cluster = ZkCluster(
            self.config["zookeeper.connect"],
            self.config["broker.id"],
            "",
            -1,
            self.reactor,
            session_timeout_ms=self.config["zookeeper.session.timeout.ms"],
            rack=self.config["broker.rack"],
            locked_log_dirs=[str(d.resolve()) for d in self.manager.log_dirs],
            endpoints=(("PLAINTEXT", "PLAINTEXT", "", -1),),  # set once listening
            credentials=credentials,
            secure=secure,
        )
        self.handlers = RequestHandlers(self.config, self.manager, self.cluster, self.reactor)
        handlers = self.handlers
        if self.config["metrics.port"] is not None:
            self.metrics = BrokerMetrics(self)
            self.handlers.metrics = self.metrics
            handlers = self.metrics.metered(self.handlers)
        self._listen(handlers)
        self.cluster.endpoints = self._advertised_endpoints()
        self.cluster.host, self.cluster.port = next(
            ((h, p) for _, protocol, h, p in self.cluster.endpoints if protocol == "PLAINTEXT"),
            self.cluster.endpoints[0][2:],
        )
        self.cluster.inter_broker = self.inter_broker
        if self.metrics is not None:  # a port in use fails the start before joining the cluster
            self._serve_metrics()
        self.replicas = ReplicaManager(
            self.config["broker.id"],
            self.manager,
            self.cluster,
            self.reactor,
            self.config,
            self.handlers.waiters,
        )
        self.replicas.client_login = self.client_login
        self.handlers.replicas = self.replicas
        self.replicas.start()
        self.cluster.listeners.append(self._metadata_changed)
        self.cluster.on_loaded.append(self._set_aside_strays)
        self.cluster.on_topics_deleted.append(self._topics_deleted)
        self.cluster.start()
        # The ACLs and the SCRAM users are loaded here, on the reactor's thread, before
        # start() returns: the listeners above accept connections already, but no request is
        # read until the reactor runs again, so none is judged against empty caches (as
        # Kafka loads its authorizer before serving).  Keep these loads blocking.
        if self.handlers.authorizer is not None:  # ACLs loaded, then followed
            self.acl_cache = AclCache(
                self.cluster.client, self.reactor, self.handlers.authorizer.acls
            )
            self.acl_cache.start()
        self.credentials = ScramCredentialCache(self.cluster.client, self.reactor)
        self.credentials.start()
        self.controller = Controller(
            self.cluster.client,
            self.config["broker.id"],
            self.reactor,
            unclean_leader_election=self.config["unclean.leader.election.enable"],
            auto_leader_rebalance=self.config["auto.leader.rebalance.enable"],
            leader_imbalance_check_interval_s=self.config[
                "leader.imbalance.check.interval.seconds"
            ],
        )
        self.handlers.controller = self.controller
        self.controller.start()
        self.manager.start(self.reactor)
        log.info(
            "broker %d serving on %s (advertised %s; brokers talk over %s)",
            self.config["broker.id"],
            ", ".join(f"{n}://{self.listen_address(n)}" for n in self.ports),
            ", ".join(f"{n}://{h}:{p}" for n, _, h, p in self.cluster.endpoints),
            self.inter_broker.listener,
        )

    def _credential_of(self, user: str, mechanism: str):
        """A user's SCRAM credential, as ZooKeeper has it (None before the cache starts)."""
        return None if self.credentials is None else self.credentials.credential_of(user, mechanism)

    def listen_address(self, name: str) -> str:
        x = self.plan.listener(name)
        return f"{x.host or '*'}:{self.ports[name].getHost().port}"

    def _listen(self, handlers) -> None:
        """One listening port per listener: TCP, or TLS with the listener's context."""
        for x in self.plan.listeners:
            factory = KafkaServerFactory(
                handlers,
                self.config["socket.request.max.bytes"],
                listener_name=x.name,
                security_protocol=x.security_protocol,
                sasl=self.sasl.get(x.name),
                clock=self.reactor,
            )
            if x.uses_tls:
                settings = self.tls[x.name]
                if x.security_protocol == "SSL":  # SASL_SSL: the SASL login names the peer
                    factory.on_handshake = lambda conn, s=settings: _certificate_principal(conn, s)
                port = self.reactor.listenSSL(
                    x.port, factory, ServerTls(settings), interface=x.host
                )
            else:
                port = self.reactor.listenTCP(x.port, factory, interface=x.host)
            self.ports[x.name] = port
            self.factories[x.name] = factory
        first = self.plan.listeners[0].name
        self.port, self.factory = self.ports[first], self.factories[first]

    def _advertised_endpoints(self) -> tuple:
        """(name, protocol, host, port) of each advertised listener; port 0 is the port the
        listener of that name got."""
        found = []
        for x in self.plan.advertised:
            port = x.port or self.ports[x.name].getHost().port
            found.append((x.name, x.security_protocol, _advertised_host(x.host), port))
        return tuple(found)

    def _serve_metrics(self) -> None:
        """The Prometheus page on ``metrics.port``, at ``metrics.host`` (by default the
        listener's host)."""
        self.metrics_folding = self.metrics.start_folding(self.reactor)
        host = self.config["metrics.host"]
        if host is None:
            host = self.listen_host
        self.metrics_port = self.reactor.listenTCP(
            self.config["metrics.port"], self.metrics.site(), interface=host
        )
        log.info("metrics on http://%s:%d/metrics", host or "*", self.metrics_port.getHost().port)

    def _metadata_changed(self, metadata, topics) -> None:
        """Apply each topic's configuration and the dynamic broker configs; delete the logs
        of deleted topics.  Logs are opened by the replica manager as roles arrive."""
        if metadata.broker_configs != self.dynamic_configs:
            self._apply_dynamic_configs(metadata.broker_configs)
        for topic in topics:
            if topic not in metadata.topics:
                self._delete_logs([k for k in self.manager.logs if k[0] == topic])
                continue
            try:
                self.manager.set_topic_overrides(topic, metadata.topic_configs.get(topic, {}))
            except ConfigError as exc:
                log.error("topic %s has a bad configuration, keeping the old one: %s", topic, exc)

    def _apply_dynamic_configs(self, dynamic) -> None:
        """New dynamic broker configs: new defaults for every log's settings."""
        self.dynamic_configs = {entity: dict(values) for entity, values in dynamic.items()}
        try:
            self.manager.default_config = LogConfig.from_broker(
                effective_config(self.config, dynamic)
            )
        except ConfigError as exc:
            log.error("bad dynamic broker configs, keeping the old ones: %s", exc)
            return
        for (topic, _), plog in self.manager.logs.items():
            with contextlib.suppress(ConfigError):  # a bad override was reported as it came
                plog.config = self.manager.config_for(topic)
        log.info("dynamic broker configs: %s", self.dynamic_configs)

    def _delete_logs(self, keys) -> None:
        for topic, partition in keys:
            self.replicas.stop_replica(topic, partition)
            self.handlers.waiters.wake_all(topic, partition)
            self.manager.delete_log(topic, partition, checkpoint=False)
            log.info("deleted the local log %s-%d (its topic was deleted)", topic, partition)
        if keys:
            self.manager.checkpoint_recovery_points()
            self.manager.checkpoint_log_start_offsets()

    def _topics_deleted(self, topic_ids) -> None:
        """Tombstones of deleted topics (all of them at start): delete this broker's logs of
        those topics, even where the name is in use again, then take this broker off them."""
        self._delete_logs(
            [k for k, plog in self.manager.logs.items() if plog.topic_id in topic_ids]
        )
        for topic_id in topic_ids:
            d = self.cluster.deleted_topic_logs_removed(topic_id)
            d.addErrback(
                lambda f, t=topic_id: log.warning("tombstone %s not updated: %s", t, f.value)
            )

    def _set_aside_strays(self, metadata) -> None:
        """After the first full view of ZooKeeper: logs of topics that no longer exist and
        have no tombstone (deleted topics' logs are gone already: ``_topics_deleted``) are of
        unknown origin: set aside, not served, and not deleted."""
        for topic, partition in list(self.manager.logs):
            if topic not in metadata.topics:
                aside = self.manager.set_aside_log(topic, partition)
                log.warning(
                    "topic %s no longer exists; its log %s-%d was set aside as %s",
                    topic,
                    topic,
                    partition,
                    aside,
                )

    def shutdown(self):
        """Stop as SIGTERM does: with ``controlled.shutdown.enable``, first ask the controller
        to move this broker's leaderships away (``broker/shutdown.py``), serving meanwhile."""
        if not self.config["controlled.shutdown.enable"] or self.controller is None:
            return self.stop()
        d = controlled_shutdown(
            self.reactor, self.cluster, self.controller, self.config, self.client_login
        )
        d.addErrback(lambda failure: log.error("controlled shutdown: %s", failure.value))
        return d.addCallback(lambda _: self.stop())

    def stop(self):
        """Stop listening, close client connections, deregister, close logs cleanly."""
        stopped = [port.stopListening() for port in self.ports.values()]
        deferred = defer.DeferredList(stopped) if stopped else None
        if self.metrics_port is not None:
            self.metrics_port.stopListening()
            self.metrics_folding.stop()
        for factory in self.factories.values():
            for connection in list(factory.connections):
                connection.transport.abortConnection()
        if self.replicas is not None:
            self.replicas.stop()
        if self.controller is not None:
            self.controller.stop()
        if self.acl_cache is not None:
            self.acl_cache.stop()
        if self.credentials is not None:
            self.credentials.stop()
        if self.cluster is not None:
            self.cluster.stop()
        self.manager.shutdown()
        log.info("broker %d stopped cleanly", self.config["broker.id"])
        return deferred


def _certificate_principal(connection, settings: TlsSettings) -> None:
    """After an SSL listener's handshake: the client certificate's subject, through
    ``ssl.principal.mapping.rules``, is the connection's principal (none: ANONYMOUS).  A
    subject no rule maps is refused: the connection is closed."""
    try:
        principal = principal_of(connection.transport, settings.mapper)
    except NoMatchingRule as exc:
        log.warning("closing %s: %s", connection.peer, exc)
        connection.transport.abortConnection()
        return
    if principal is not None:
        connection.principal = principal


def run(config: BrokerConfig) -> int:
    """Run a broker on the global reactor until SIGTERM or SIGINT; returns an exit status."""
    from twisted.internet import reactor

    broker = Broker(config, reactor)
    failure = []

    def start():
        try:
            broker.start()
        except Exception as exc:
            failure.append(exc)
            log.error("broker failed to start: %s", exc)
            if broker.manager.started:
                broker.manager.shutdown()  # leave the logs cleanly closed
            reactor.stop()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: broker.shutdown() if not failure else None
    )
    reactor.run()
    return 1 if failure else 0
