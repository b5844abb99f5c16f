"""``/api/tail`` and ``/api/aggregate``: the live feeds of ``consumers/feeds`` streamed as
Server-Sent Events.  Each tail is one consumer in a thread of its own; each aggregate key
(topic, field, time_field, classes) is one consumer in a thread, shared by every page that
asks, the only member of a ZooKeeper group of the paper's kind named for this dashboard
process (``dashboard-<host>-<uuid>-<n>``), deleted when the aggregate stops.  Threads hand
their results to the reactor (``callFromThread``); a stream that closes stops its thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from twisted.internet import defer, task, threads

from broker.protocol.zookeeper import group_path
from consumers.cluster import ClusterClient
from consumers.feeds import AggregateFeed, BadStart, TailReader, WindowedCounter, parse_start
from consumers.feeds.tail import message_fields

from .history import Rates
from .server import ApiError
from .sse import NOT_DONE_YET, EventStream

# "simple": aggregates count as they first did (an orjson document per message)
SIMPLE_AGGREGATE_ENV = "HEADRACE_AGGREGATE_PATH"

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_S = 200  # per tail connection; the rest are counted in status.dropped
MAX_WINDOW_S = 7 * 86_400
MAX_BUCKETS = 3_600
FLAGS = {"1": True, "true": True, "0": False, "false": False, "": False}


def _arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[0].decode()
    except UnicodeDecodeError:
        raise ApiError(400, f"{name}: not UTF-8") from None


def _int_arg(request, name: str, default: int | None, low: int, high: int) -> int:
    text = _arg(request, name)
    if text is None or text == "":
        if default is None:
            raise ApiError(400, f"{name} is required (whole seconds)")
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ApiError(400, f"{name}={text}: give whole seconds from {low} to {high}")
    return int(text)


class Tail:
    """One ``/api/tail`` stream and the thread that reads for it."""

    def __init__(self, feeds, stream: EventStream, topic, start, needle):
        self.feeds, self.stream = feeds, stream
        self.topic, self.start, self.needle = topic, start, needle
        self.stopped = threading.Event()
        self.dropped = 0

    def run(self) -> None:
        reactor = self.feeds.reactor
        cluster = self.feeds.cluster_client("headrace-dashboard-tail")
        try:
            reader = TailReader(cluster, self.topic, self.start, self.needle)
        except Exception as exc:
            reactor.callFromThread(self._fail, f"cannot start the tail: {exc}")
            cluster.close()
            return
        try:
            second, sent = int(time.monotonic()), 0
            while not self.stopped.is_set():
                try:
                    messages = reader.read(0.5)
                except Exception as exc:  # a leader away: the consumer retries
                    log.info("tail of %s: %r", self.topic, exc)
                    self.stopped.wait(0.5)
                    messages = []
                batch = []
                for message in messages:
                    if sent < MAX_MESSAGES_PER_S:
                        batch.append(message_fields(message))
                        sent += 1
                    else:
                        self.dropped += 1
                if batch:
                    reactor.callFromThread(self._send_all, batch)
                if sent >= MAX_MESSAGES_PER_S:  # over the rate: the rest of this second and
                    try:  # what arrives meanwhile is dropped unread, so a busy topic costs little
                        self.dropped += reader.skip_to_end()
                    except Exception as exc:
                        log.info("tail of %s: %r", self.topic, exc)
                    self.stopped.wait(max(0.0, second + 1 - time.monotonic()))
                now = int(time.monotonic())
                if now != second:
                    second, sent = now, 0
                    status = {
                        "partitions": reader.partitions,
                        "positions": {str(p): o for p, o in reader.positions().items()},
                        "skipped": reader.skipped,
                        "dropped": self.dropped,
                    }
                    reactor.callFromThread(self.stream.send, "status", status)
        finally:
            reader.close()
            cluster.close()

    def _send_all(self, batch: list[dict]) -> None:
        for fields in batch:
            self.stream.send("message", fields)

    def _fail(self, message: str) -> None:
        self.stream.send("error", {"error": message})
        self.stream.close()


class Aggregate:
    """One aggregate key: its counter, its consumer thread and the streams it feeds."""

    def __init__(self, key, counter: WindowedCounter, feed: AggregateFeed, group: str):
        self.key, self.counter, self.feed, self.group = key, counter, feed, group
        self.streams: dict[EventStream, tuple[int, int]] = {}  # stream -> (window, step)
        self.thread = threading.Thread(target=feed.run, name=f"aggregate-{group}", daemon=True)


class Feeds:
    """Every tail and aggregate of this dashboard process."""

    def __init__(self, zookeeper: str, reactor, sampler):
        self.zookeeper = zookeeper
        self.reactor = reactor
        self.sampler = sampler
        self.group_prefix = f"dashboard-{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        self._groups = 0
        self.tails: set[Tail] = set()
        self.aggregates: dict[tuple, Aggregate] = {}
        self.retiring: set[Aggregate] = set()  # stopped by their last page, still running
        self.rates = Rates()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor
        self._loop.start(1.0, now=False)

    def cluster_client(self, client_id: str) -> ClusterClient:
        bootstrap = self.sampler.bootstrap()
        security = self.sampler.security
        if bootstrap:
            return ClusterClient(bootstrap, client_id=client_id, security=security)
        return ClusterClient(zookeeper=self.zookeeper, client_id=client_id, security=security)

    def _topic(self, request) -> str:
        topic = _arg(request, "topic")
        if not topic:
            raise ApiError(400, "topic is required")
        return topic

    def _when_known(self, topic: str, start) -> defer.Deferred:
        """``start()`` once ``topic`` is known to exist (the last sample, else ZooKeeper,
        asked in a thread); an ApiError 404 if it does not."""
        if topic in self.sampler.layout.topics:
            return defer.maybeDeferred(start)

        def check(found):
            if not found:
                raise ApiError(404, f"no topic {topic}")
            return start()

        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self.sampler.topic_exists, topic
        )
        return d.addCallback(check)

    # --- tail ----------------------------------------------------------------------------

    def open_tail(self, request):
        topic = self._topic(request)
        try:
            start = parse_start(_arg(request, "from"))
        except BadStart as exc:
            raise ApiError(400, str(exc)) from None
        needle = (_arg(request, "filter") or "").encode() or None
        return self._when_known(topic, lambda: self._start_tail(request, topic, start, needle))

    def _start_tail(self, request, topic, start, needle):
        tail = Tail(self, None, topic, start, needle)
        tail.stream = EventStream(request, on_close=lambda _s: self._close_tail(tail))
        self.tails.add(tail)
        threading.Thread(target=tail.run, name=f"tail-{topic}", daemon=True).start()
        return NOT_DONE_YET

    def _close_tail(self, tail: Tail) -> None:
        tail.stopped.set()
        self.tails.discard(tail)

    # --- aggregate -----------------------------------------------------------------------

    def open_aggregate(self, request):
        topic = self._topic(request)
        field = _arg(request, "field")
        if not field:
            raise ApiError(400, "field is required (a dotted path such as http.status)")
        window = _int_arg(request, "window", None, 1, MAX_WINDOW_S)
        step = _int_arg(request, "step", max(1, window // 60), 1, window)
        if -(-window // step) > MAX_BUCKETS:
            raise ApiError(400, f"window/step gives more than {MAX_BUCKETS} buckets")
        time_field = _arg(request, "time_field") or None
        classes = FLAGS.get((_arg(request, "classes") or "").lower())
        if classes is None:
            raise ApiError(400, "classes: give 1 or 0")
        key = (topic, field, time_field, classes)
        return self._when_known(topic, lambda: self._join_aggregate(request, key, window, step))

    def _join_aggregate(self, request, key, window: int, step: int):
        aggregate = self.aggregates.get(key)
        if aggregate is None:
            aggregate = self.aggregates[key] = self._start_aggregate(key, window)
        aggregate.feed.widen(window)
        stream = EventStream(request, on_close=lambda s: self._close_stream(aggregate, s))
        aggregate.streams[stream] = (window, step)
        return NOT_DONE_YET

    def _start_aggregate(self, key, window: int) -> Aggregate:
        topic, field, time_field, classes = key
        self._groups += 1
        group = f"{self.group_prefix}-{self._groups}"
        simple = os.environ.get(SIMPLE_AGGREGATE_ENV) == "simple"  # benchmarks compare
        counter = WindowedCounter(field, window, time_field, classes, simple=simple)
        feed = AggregateFeed(counter, topic, self.zookeeper, group, security=self.sampler.security)
        aggregate = Aggregate(key, counter, feed, group)
        aggregate.thread.start()
        return aggregate

    def _close_stream(self, aggregate: Aggregate, stream: EventStream) -> None:
        aggregate.streams.pop(stream, None)
        if not aggregate.streams and self.aggregates.get(aggregate.key) is aggregate:
            del self.aggregates[aggregate.key]
            self.retiring.add(aggregate)
            d = threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), self._retire, aggregate
            )
            d.addBoth(lambda _: self.retiring.discard(aggregate))

    def _retire(self, aggregate: Aggregate) -> None:
        """Stop an aggregate's consumer and delete its group (blocking: in a thread)."""
        aggregate.feed.stop()
        aggregate.thread.join(10.0)
        try:
            self.sampler.zk.delete(group_path(aggregate.group), recursive=True)
        except Exception as exc:
            log.info("could not delete the group %s: %r", aggregate.group, exc)

    def _tick(self) -> None:
        now = int(time.time() * 1000)
        for aggregate in list(self.aggregates.values()):
            topic, field, _, _ = aggregate.key
            rate = self.rates.update(aggregate.key, now / 1000, aggregate.counter.read) or 0.0
            views = {}
            for stream, (window, step) in list(aggregate.streams.items()):
                if (window, step) not in views:
                    views[(window, step)] = {
                        "topic": topic,
                        "field": field,
                        "window_s": window,
                        "step_s": step,
                        "now": now,
                        **aggregate.counter.snapshot(now, window, step),
                        "events_per_s": rate,
                    }
                stream.send("window", views[(window, step)])
        self.rates.keep_only(self.aggregates)

    def stop(self) -> None:
        """Stop every feed (at shutdown): tails at once, aggregates with their groups."""
        if self._loop.running:
            self._loop.stop()
        for tail in list(self.tails):
            tail.stopped.set()
        for aggregate in [*self.aggregates.values(), *self.retiring]:
            self._retire(aggregate)
        self.aggregates.clear()
