"""Prometheus metrics of one broker, served over HTTP on ``metrics.port`` by ``prometheus_client``.

    >>> metrics = BrokerMetrics(broker)               # once the broker's parts exist
    >>> factory = KafkaServerFactory(metrics.metered(broker.handlers), max_bytes)
    >>> reactor.listenTCP(9401, metrics.site(), interface="127.0.0.1")

The request path only adds to plain numbers (``MeteredHandlers``, ``BrokerMetrics``), turned
into metric families when Prometheus scrapes (``RequestCollector``).  Everything else is
read from the broker's state then too (``state_metrics.BrokerStateCollector``): per-partition
log end offsets and sizes, connections, waiting fetches, groups, the ZooKeeper session and
the replication figures.  The page is rendered on the reactor thread, the thread that owns
that state (``prometheus_client``'s own Twisted resource renders on a thread pool).
"""

from __future__ import annotations

from collections import defaultdict
from time import perf_counter

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString
from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.web import resource, server

from .protocol.errors import error_for_code
from .protocol.registry import ApiKey
from .state_metrics import BrokerStateCollector

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
_BOUNDS = np.asarray(REQUEST_BUCKETS)
FOLD_INTERVAL = 5.0  # seconds between folds of the request times (bounds their memory)


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


class ApiTally:
    """One API's requests on the reactor thread: counts per version, and the seconds each
    took, folded into histogram buckets now and then (``fold``, at scrape time and every
    ``FOLD_INTERVAL``) by numpy rather than one bisection per request."""

    __slots__ = ("buckets", "seconds", "times", "versions")

    def __init__(self):
        self.versions: defaultdict[int, int] = defaultdict(int)
        self.times: list[float] = []  # seconds of the requests answered since the last fold
        self.buckets = np.zeros(len(REQUEST_BUCKETS) + 1, dtype=np.int64)  # last: over them all
        self.seconds = 0.0

    def fold(self) -> None:
        times, self.times = self.times, []
        if times:
            seconds = np.array(times)
            at = np.searchsorted(_BOUNDS, seconds, side="left")
            self.buckets += np.bincount(at, minlength=len(self.buckets))
            self.seconds += float(seconds.sum())


class BrokerMetrics:
    """The registry of one broker and the tallies its request path moves.

    The request path adds to plain ints in dicts kept per API, per topic and per error (a
    ``prometheus_client`` child's ``inc`` takes a lock, and the histogram's ``observe`` one per
    bucket: a quarter of what a one-message Produce costs the broker); the registry's
    collectors turn them into counter and histogram families when Prometheus scrapes."""

    def __init__(self, broker):
        self.apis = {int(key): ApiTally() for key in ApiKey}
        self.topics_in: dict[str, list[int]] = {}  # topic -> [records, bytes]
        self.topics_out: dict[str, int] = {}  # topic -> bytes fetched by consumers
        self.errors: dict[tuple[int, int], int] = {}  # (api key, error code) -> count
        self.registry = CollectorRegistry()
        self.registry.register(RequestCollector(self))
        self.registry.register(BrokerStateCollector(broker))

    # --- what the request handlers call ------------------------------------------------------

    def produced(self, topic: str, records: int, size: int) -> None:
        """A producer's batches of ``records`` records, ``size`` bytes, were appended."""
        tally = self.topics_in.get(topic)
        if tally is None:
            tally = self.topics_in[topic] = [0, 0]
        tally[0] += records
        tally[1] += size

    @staticmethod
    def produce_codes(responses) -> list[int]:
        """The error codes of an acks=all Produce's answers before its wait."""
        return [answer[1] for _, answers in responses for answer in answers]

    def produce_waited(self, responses, before: list[int]) -> None:
        """Count the errors the acks=all wait wrote into a Produce's answers (those before it
        were counted as they were answered)."""
        now = self.produce_codes(responses)
        for code, was in zip(now, before):
            if code and not was:
                self.error(ApiKey.PRODUCE, code)

    def error(self, api_key: int, code: int) -> None:
        """One error code answered; -1 (UNKNOWN_SERVER_ERROR) also stands for a handler that
        failed, which closes the connection."""
        key = (api_key, code)
        self.errors[key] = self.errors.get(key, 0) + 1

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
                self.topics_out[topic] = self.topics_out.get(topic, 0) + size

    def answered(self, api_key: int, body) -> None:
        """Count the error codes anywhere in a response body (a dict: not Produce's bytes)."""
        for code in _error_codes(body, []):
            self.error(api_key, code)

    # --- wiring ------------------------------------------------------------------------------

    def metered(self, handlers) -> MeteredHandlers:
        return MeteredHandlers(handlers, self)

    def start_folding(self, clock) -> task.LoopingCall:
        """Fold the request times into their buckets every ``FOLD_INTERVAL`` seconds."""
        folding = task.LoopingCall(self.fold)
        folding.clock = clock
        folding.start(FOLD_INTERVAL, now=False)
        return folding

    def fold(self) -> None:
        for tally in self.apis.values():
            tally.fold()

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

    def error(self, api_key: int, code: int) -> None:
        pass

    def produce_codes(self, responses) -> None:
        return None

    def produce_waited(self, responses, before) -> None:
        pass


class MeteredHandlers:
    """``RequestHandlers`` with every request counted by API and version, timed, and its
    answer's errors (and a consumer Fetch's bytes) counted."""

    def __init__(self, handlers, metrics: BrokerMetrics):
        self.handlers = handlers
        self.metrics = metrics
        self._handle = handlers.handle
        self._apis = metrics.apis

    def handle(self, request, connection):
        start = perf_counter()
        try:
            result = self._handle(request, connection)
        except Exception:
            self.metrics.error(request.header.api_key, -1)
            raise
        header = request.header
        tally = self._apis[header.api_key]
        tally.versions[header.api_version] += 1
        if type(result) is bytes or result is None:  # Produce: counted by the handler
            tally.times.append(perf_counter() - start)
            return result
        if isinstance(result, defer.Deferred):
            return result.addBoth(self._answered, request, tally, start)
        return self._answered(result, request, tally, start)

    def _answered(self, result, request, tally: ApiTally, start: float):
        key = request.header.api_key
        if isinstance(result, Failure):
            if not result.check(defer.CancelledError):  # cancelled: the client went away
                self.metrics.error(key, -1)
            return result
        tally.times.append(perf_counter() - start)
        if type(result) is dict:
            if key == ApiKey.FETCH and request.body["replica_id"] < 0:
                self.metrics.fetched(result)
            else:
                self.metrics.answered(key, result)
        return result


class RequestCollector:
    """The request path's tallies as counter and histogram families."""

    def __init__(self, metrics: BrokerMetrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        metrics = self.metrics
        requests = CounterMetricFamily(
            "headrace_requests", "Requests received, by API and version", labels=["api", "version"]
        )
        seconds = HistogramMetricFamily(
            "headrace_request_seconds",
            "Time from a request's arrival to its answer, by API",
            labels=["api"],
        )
        bounds = [*map(floatToGoString, REQUEST_BUCKETS), "+Inf"]
        for key, tally in metrics.apis.items():
            name = ApiKey(key).title
            for version, count in sorted(tally.versions.items()):
                requests.add_metric([name, str(version)], count)
            tally.fold()
            if tally.buckets.any():
                cumulative = [int(n) for n in np.cumsum(tally.buckets)]
                seconds.add_metric([name], list(zip(bounds, cumulative)), tally.seconds)
        yield requests
        yield seconds
        errors = CounterMetricFamily(
            "headrace_request_errors",
            "Error codes answered (per partition, topic or request), by API and error name",
            labels=["api", "error"],
        )
        for (key, code), count in sorted(metrics.errors.items()):
            errors.add_metric([ApiKey(key).title, error_for_code(code).name], count)
        yield errors
        messages_in = CounterMetricFamily(
            "headrace_messages_in", "Records appended by producers, by topic", labels=["topic"]
        )
        bytes_in = CounterMetricFamily(
            "headrace_bytes_in",
            "Record batch bytes appended by producers, by topic",
            labels=["topic"],
        )
        for topic, (records, size) in sorted(metrics.topics_in.items()):
            messages_in.add_metric([topic], records)
            bytes_in.add_metric([topic], size)
        yield messages_in
        yield bytes_in
        bytes_out = CounterMetricFamily(
            "headrace_bytes_out",
            "Record bytes fetched by consumers (not followers), by topic",
            labels=["topic"],
        )
        for topic, size in sorted(metrics.topics_out.items()):
            bytes_out.add_metric([topic], size)
        yield bytes_out


__all__ = ["BrokerMetrics", "MeteredHandlers", "MetricsPage", "NoMetrics"]
