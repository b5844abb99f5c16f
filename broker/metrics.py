"""Prometheus metrics of one broker, served over HTTP on ``metrics.port`` by ``prometheus_client``.

    >>> metrics = BrokerMetrics(broker)               # once the broker's parts exist
    >>> factory = KafkaServerFactory(metrics.metered(broker.handlers), max_bytes)
    >>> reactor.listenTCP(9404, metrics.site(), interface="127.0.0.1")

Counters move on the request path, at little cost: each label set's child is looked up once
and kept (``MeteredHandlers``; per topic in ``BrokerMetrics.produced``).  Everything else is
read from the broker's state when Prometheus scrapes (``BrokerStateCollector``): per-partition
log end offsets and sizes, connections, waiting fetches, groups, the ZooKeeper session and
the replication figures.  The page is rendered on the reactor thread, the thread that owns
that state (``prometheus_client``'s own Twisted resource renders on a thread pool).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import resource, server

from .groups import COMPLETING, DEAD, EMPTY, PREPARING, STABLE
from .protocol.errors import error_for_code
from .protocol.registry import ApiKey

log = logging.getLogger(__name__)

# Seconds: from a request's arrival to its answer (a long poll's wait and an acks=all wait
# for the followers included, as in Kafka's TotalTimeMs).
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
GROUP_STATES = (EMPTY, PREPARING, COMPLETING, STABLE, DEAD)
ZOOKEEPER_STATES = ("connected", "suspended", "lost")


class MetricsPage(resource.Resource):
    """``/metrics`` (any path, in fact) of a registry, in the format the scraper asks for."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(
            accept.decode() if isinstance(accept, bytes) else accept
        )
        request.setHeader("Content-Type", content_type)
        return encoder(self.registry)


class BrokerMetrics:
    """The registry of one broker and the counters its request path moves."""

    def __init__(self, broker):
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "headrace_requests",
            "Requests received, by API and version",
            ["api", "version"],
            registry=registry,
        )
        self.request_errors = Counter(
            "headrace_request_errors",
            "Error codes answered (per partition, topic or request), by API and error name",
            ["api", "error"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "headrace_request_seconds",
            "Time from a request's arrival to its answer, by API",
            ["api"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.messages_in = Counter(
            "headrace_messages_in",
            "Records appended by producers, by topic",
            ["topic"],
            registry=registry,
        )
        self.bytes_in = Counter(
            "headrace_bytes_in",
            "Record batch bytes appended by producers, by topic",
            ["topic"],
            registry=registry,
        )
        self.bytes_out = Counter(
            "headrace_bytes_out",
            "Record bytes fetched by consumers (not followers), by topic",
            ["topic"],
            registry=registry,
        )
        self._topics_in: dict[str, tuple] = {}  # topic -> (messages child, bytes child)
        self._topics_out: dict[str, object] = {}
        self._errors: dict[tuple[int, int], object] = {}  # (api key, error code) -> child
        registry.register(BrokerStateCollector(broker))

    # --- what the request handlers call ------------------------------------------------------

    def produced(self, topic: str, records: int, size: int) -> None:
        """A producer's batches of ``records`` records, ``size`` bytes, were appended."""
        children = self._topics_in.get(topic)
        if children is None:
            children = self._topics_in[topic] = (
                self.messages_in.labels(topic),
                self.bytes_in.labels(topic),
            )
        children[0].inc(records)
        children[1].inc(size)

    def produce_answered(self, responses) -> None:
        """A Produce's answers (``produce.encode_response``'s tuples): count their errors."""
        for _, answers in responses:
            for answer in answers:
                if answer[1]:
                    self.error(ApiKey.PRODUCE, answer[1])

    def error(self, api_key: int, code: int) -> None:
        """One error code answered; -1 (UNKNOWN_SERVER_ERROR) also stands for a handler that
        failed, which closes the connection."""
        child = self._errors.get((api_key, code))
        if child is None:
            child = self._errors[api_key, code] = self.request_errors.labels(
                ApiKey(api_key).title, error_for_code(code).name
            )
        child.inc()

    def fetched(self, body: dict) -> None:
        """A consumer's Fetch answer: bytes out per topic, and its error codes."""
        for topic_data in body["responses"]:
            size = 0
            for p in topic_data["partitions"]:
                if p["error_code"]:
                    self.error(ApiKey.FETCH, p["error_code"])
                records = p["records"]
                if records:
                    size += records.size if hasattr(records, "size") else len(records)
            if size:
                topic = topic_data["topic"]
                child = self._topics_out.get(topic)
                if child is None:
                    child = self._topics_out[topic] = self.bytes_out.labels(topic)
                child.inc(size)

    def answered(self, api_key: int, body) -> None:
        """Count the error codes anywhere in a response body (a dict: not Produce's bytes)."""
        if type(body) is dict:
            for code in _error_codes(body, []):
                self.error(api_key, code)

    # --- wiring ------------------------------------------------------------------------------

    def metered(self, handlers) -> MeteredHandlers:
        return MeteredHandlers(handlers, self)

    def site(self) -> server.Site:
        site = server.Site(MetricsPage(self.registry))
        site.noisy = False
        return site


def _error_codes(body: dict, found: list) -> list:
    code = body.get("error_code")
    if code:
        found.append(code)
    for value in body.values():
        if type(value) is list:
            for item in value:
                if type(item) is dict:
                    _error_codes(item, found)
    return found


class NoMetrics:
    """What the request handlers call while metrics are off: nothing happens."""

    def produced(self, topic: str, records: int, size: int) -> None:
        pass

    def produce_answered(self, responses) -> None:
        pass


class MeteredHandlers:
    """``RequestHandlers`` with every request counted by API and version, timed, and its
    answer's errors (and a consumer Fetch's bytes) counted."""

    def __init__(self, handlers, metrics: BrokerMetrics):
        self.handlers = handlers
        self.metrics = metrics
        self._handle = handlers.handle
        self._children: dict[tuple[int, int], tuple] = {}  # (key, version) -> children

    def handle(self, request, connection):
        header = request.header
        children = self._children.get((header.api_key, header.api_version))
        if children is None:
            children = self._children_of(request)
        children[0].inc()
        start = time.perf_counter()
        try:
            result = self._handle(request, connection)
        except Exception:
            self.metrics.error(header.api_key, -1)
            raise
        if isinstance(result, defer.Deferred):
            return result.addBoth(self._answered, request, children[1], start)
        return self._answered(result, request, children[1], start)

    def _children_of(self, request) -> tuple:
        header = request.header
        name = request.api.name
        children = (
            self.metrics.requests.labels(name, str(header.api_version)),
            self.metrics.request_seconds.labels(name),
        )
        self._children[header.api_key, header.api_version] = children
        return children

    def _answered(self, result, request, latency, start: float):
        key = request.header.api_key
        if isinstance(result, Failure):
            if not result.check(defer.CancelledError):  # cancelled: the client went away
                self.metrics.error(key, -1)
            return result
        latency.observe(time.perf_counter() - start)
        if type(result) is dict:
            if key == ApiKey.FETCH and request.body["replica_id"] < 0:
                self.metrics.fetched(result)
            else:
                self.metrics.answered(key, result)
        return result


class BrokerStateCollector:
    """Gauges (and counters kept by the broker's parts) read at scrape time."""

    def __init__(self, broker):
        self.broker = broker

    def describe(self):
        return []

    def collect(self):
        broker = self.broker
        if broker.handlers is None:  # not started yet
            return
        yield _gauge(
            "headrace_connections", "Open client connections", len(broker.factory.connections)
        )
        yield _gauge(
            "headrace_waiting_fetches",
            "Fetches parked waiting for data (long polls)",
            len(broker.handlers.waiters),
        )
        yield self._groups()
        yield self._zookeeper()
        yield from self._logs()
        yield from self._replication()

    def _groups(self):
        family = GaugeMetricFamily(
            "headrace_groups",
            "Kafka-protocol groups this broker coordinates, by state",
            labels=["state"],
        )
        states = Tally(g.state for g in self.broker.handlers.groups.coordinator.groups.values())
        for state in GROUP_STATES:
            family.add_metric([state], states.get(state, 0))
        return family

    def _zookeeper(self):
        family = GaugeMetricFamily(
            "headrace_zookeeper_session_state",
            "This broker's ZooKeeper session: 1 for its state now, 0 for the others",
            labels=["state"],
        )
        client = self.broker.cluster.client
        now = str(client.state).lower() if client is not None else "lost"
        for state in ZOOKEEPER_STATES:
            family.add_metric([state], 1 if state == now else 0)
        return family

    def _logs(self):
        offsets = GaugeMetricFamily(
            "headrace_log_end_offset",
            "Offset of the next record appended to this broker's log of a partition",
            labels=["topic", "partition"],
        )
        sizes = GaugeMetricFamily(
            "headrace_log_size_bytes",
            "Bytes of this broker's log of a partition, all segments",
            labels=["topic", "partition"],
        )
        for (topic, partition), plog in sorted(self.broker.manager.logs.items()):
            labels = [topic, str(partition)]
            offsets.add_metric(labels, plog.log_end_offset)
            sizes.add_metric(labels, plog.size)
        yield offsets
        yield sizes

    def _replication(self):
        broker = self.broker
        me = broker.config["broker.id"]
        led = sum(
            1
            for partitions in tuple(broker.cluster.metadata.states.values())
            for known in tuple(partitions.values())
            if known.state.leader == me
        )
        yield _gauge("headrace_partitions_led", "Partitions this broker leads", led)
        replicas = broker.replicas
        leaders = [s for s in replicas.leaders.values() if s.is_leader] if replicas else []
        yield _gauge(
            "headrace_under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replica list",
            sum(1 for s in leaders if s.under_replicated),
        )
        lag = GaugeMetricFamily(
            "headrace_follower_lag_messages",
            "On a leader: records each follower is behind the leader's log end",
            labels=["topic", "partition", "follower"],
        )
        for state in leaders:
            for follower, progress in sorted(state.followers.items()):
                behind = state.log_end_offset - max(progress.log_end_offset, 0)
                lag.add_metric([state.topic, str(state.partition), str(follower)], max(behind, 0))
        yield lag
        yield _counter(
            "headrace_isr_shrinks",
            "ISR shrinks this broker wrote as a leader",
            replicas.isr_shrinks if replicas else 0,
        )
        yield _counter(
            "headrace_isr_expands",
            "ISR expansions this broker wrote as a leader",
            replicas.isr_expands if replicas else 0,
        )
        controller = broker.controller
        active = controller is not None and controller.active
        yield _gauge(
            "headrace_controller_active", "1 if this broker is the controller", int(active)
        )
        offline = 0
        if active:
            live = set(controller.brokers)
            offline = sum(
                1 for state, _ in tuple(controller.states.values()) if state.leader not in live
            )
        yield _gauge(
            "headrace_offline_partitions",
            "On the controller: partitions without a live leader (0 elsewhere)",
            offline,
        )
        yield _counter(
            "headrace_leader_elections",
            "Partition leaders this broker elected while it was the controller",
            controller.leader_elections if controller is not None else 0,
        )


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


__all__ = ["BrokerMetrics", "MeteredHandlers", "MetricsPage", "NoMetrics"]
