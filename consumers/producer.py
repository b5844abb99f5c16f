"""The producer: batches messages per partition and sends them to the partitions' leaders.

    >>> producer = Producer(bootstrap_servers="127.0.0.1:9092", compression="lz4")
    >>> future = producer.send("clicks", b"GET /", key=b"10.0.0.7")
    >>> producer.flush()                      # everything delivered or failed
    >>> future.result().offset

``send`` returns at once with a DeliveryFuture for the message (``result()`` gives
``RecordMetadata`` or raises the KafkaError; ``add_done_callback`` as with concurrent futures).
Keyed messages go to ``murmur2(key) % partitions`` like the Java client's and librdkafka's;
unkeyed ones stick to one partition with a live leader until its batch is sent, then move on
(Kafka's sticky partitioning: full batches, and a dead broker's partitions are skipped).  A background thread collects each partition's batch
until it holds ``batch_size`` bytes or is ``linger_ms`` old, compresses it, and sends it with
``acks`` 0, 1 or -1 ("all").  Retriable errors (a leader moved, a broker restarting) are retried
after ``retry_backoff_ms`` with fresh metadata until ``delivery_timeout_ms``; other errors fail
that batch's messages.  Memory is bounded by ``buffer_memory``: when full, ``send`` blocks up to
``max_block_ms`` (``block_on_full=True``) or raises BufferFullError.  Thread-safe; no Twisted.

Idempotence (``enable_idempotence``, on by default with ``acks="all"``, as in Kafka's producer):
the producer takes a producer id (InitProducerId) and numbers each partition's batches; the
broker stores a batch once however often it is sent.  Up to
``max_in_flight_requests_per_connection`` (at most 5) requests go to a broker before the first
answer is read.  A retry (retriable error, lost connection) sends the very same bytes, in
order; a batch refused as OUT_OF_ORDER_SEQUENCE_NUMBER behind one that failed is sent again
after it.  If a numbered batch fails for good, the producer takes a new producer id and
numbers afresh what was never sent and what follows the failed batch in its partition; a batch
sent before keeps its producer id and sequence, so the broker still knows it if it was stored
(its answer lost), and a partition sends no batch of the new id until those are through.
"""

from __future__ import annotations

import itertools
import logging
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import NamedTuple

from broker.protocol import compression as codecs
from broker.protocol.errors import (
    KafkaError,
    MessageTooLargeError,
    RequestTimedOutError,
    error_for_code,
)
from broker.protocol.records import build_batch

from .cluster import ClusterClient, InFlightConnection
from .partitioner import partition_for_key

log = logging.getLogger(__name__)

PRODUCE = 0
INIT_PRODUCER_ID = 22
_SEQUENCE_MODULUS = 2**31
_OUT_OF_ORDER_SEQUENCE = 45
_DUPLICATE_SEQUENCE = 46
MAX_IN_FLIGHT_IDEMPOTENT = 5  # batches a broker remembers per producer and partition
_RECORD_OVERHEAD = 24  # varints and attributes around key and value, roughly


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int  # -1 with acks=0
    timestamp: int


class BufferFullError(KafkaError):
    """The producer's buffer stayed full for max_block_ms (or blocking was turned off)."""

    code = -1
    name = "BUFFER_FULL"
    retriable = True


class ProducerClosedError(RuntimeError):
    """send() after close()."""


_CALLBACKS_LOCK = threading.Lock()  # orders add_done_callback against a batch finishing


class _Batch:
    __slots__ = (
        "attempts",
        "base_offset",
        "callbacks",
        "created",
        "data",
        "done",
        "error",
        "log_append_time",
        "not_before",
        "number",
        "partition",
        "producer_id",
        "records",
        "sequence",
        "size",
        "topic",
    )

    def __init__(self, topic, partition, now, number=0):
        self.topic, self.partition = topic, partition
        self.number = number  # creation order: a partition's batches go out in this order
        self.records: list = []
        self.size = 61
        self.created = now
        self.attempts = 0
        self.not_before = 0.0
        self.done = threading.Event()
        self.error: Exception | None = None
        self.base_offset = -1
        self.log_append_time = -1
        self.callbacks: list = []
        self.sequence = -1  # the base sequence once numbered (idempotence)
        self.data: bytes | None = None  # the encoded batch, built at its first send
        self.producer_id = -1  # the producer id in ``data`` (idempotence)


class _Partition:
    """A partition's sealed batches waiting to be sent, oldest first, and its batches in flight."""

    __slots__ = ("in_flight", "producer_id", "queue", "troubled")

    def __init__(self):
        self.queue: deque[_Batch] = deque()
        self.in_flight = 0
        self.producer_id = -1  # the producer id of the batches in flight
        self.troubled = False  # one in flight was refused: send no more until all are back


class DeliveryFuture:
    """The outcome of one message: ``result(timeout)``, ``exception()``, ``done()``,
    ``add_done_callback(fn)`` (``fn(future)`` runs on the producer's thread)."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _Batch, index: int):
        self._batch, self._index = batch, index

    def done(self) -> bool:
        return self._batch.done.is_set()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        batch = self._batch
        if not batch.done.wait(timeout):
            raise FutureTimeoutError()
        if batch.error is not None:
            raise batch.error
        offset = batch.base_offset + self._index if batch.base_offset >= 0 else -1
        ts = batch.log_append_time if batch.log_append_time >= 0 else batch.records[self._index][3]
        return RecordMetadata(batch.topic, batch.partition, offset, ts)

    def exception(self, timeout: float | None = None) -> Exception | None:
        if not self._batch.done.wait(timeout):
            raise FutureTimeoutError()
        return self._batch.error

    def add_done_callback(self, fn: Callable[[DeliveryFuture], None]) -> None:
        batch = self._batch
        with _CALLBACKS_LOCK:
            if batch.callbacks is not None:
                batch.callbacks.append((fn, self))
                return
        fn(self)  # already finished


class _Failed(DeliveryFuture):
    """A message refused before it was queued."""

    def __init__(self, topic: str, error: Exception):
        batch = _Batch(topic, -1, 0.0)
        batch.error = error
        batch.callbacks = None
        batch.done.set()
        super().__init__(batch, 0)


class Producer:
    """Batching, compressing, retrying Kafka-protocol producer.  See the module docstring."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        zookeeper: str | None = None,
        *,
        acks: int | str = "all",
        enable_idempotence: bool | None = None,
        max_in_flight_requests_per_connection: int = 5,
        compression: str = "none",
        linger_ms: float = 5.0,
        batch_size: int = 512 * 1024,
        buffer_memory: int = 64 * 1024 * 1024,
        block_on_full: bool = True,
        max_block_ms: float = 60_000,
        retry_backoff_ms: float = 100,
        delivery_timeout_ms: float = 120_000,
        request_timeout_ms: float = 30_000,
        max_request_size: int = 1_048_576,
        client_id: str = "headrace-producer",
        cluster: ClusterClient | None = None,
    ):
        self.acks = -1 if acks in ("all", -1, "-1") else int(acks)
        if self.acks not in (-1, 0, 1):
            raise ValueError("acks must be 0, 1 or all")
        if enable_idempotence is None:  # Kafka's rule: on, unless acks asks for less
            enable_idempotence = self.acks == -1
        elif enable_idempotence and self.acks != -1:
            raise ValueError("enable_idempotence needs acks='all'")
        self.idempotent = enable_idempotence
        self.max_in_flight = max(1, max_in_flight_requests_per_connection)
        if self.idempotent and self.max_in_flight > MAX_IN_FLIGHT_IDEMPOTENT:
            raise ValueError(
                f"enable_idempotence allows at most {MAX_IN_FLIGHT_IDEMPOTENT} "
                "requests in flight per connection"
            )
        self._producer_id = self._producer_epoch = -1
        self._next_seq: dict[tuple[str, int], int] = {}
        self._reset_needed = False
        self._failed_at: dict[
            tuple[str, int], int
        ] = {}  # partition -> sequence that failed for good
        self.codec = codecs.codec_by_name(compression)
        self.linger = linger_ms / 1000.0
        self.batch_size = max(1, batch_size)
        self.buffer_memory = buffer_memory
        self.block_on_full = block_on_full
        self.max_block = max_block_ms / 1000.0
        self.retry_backoff = retry_backoff_ms / 1000.0
        self.delivery_timeout = delivery_timeout_ms / 1000.0
        self.request_timeout_ms = int(request_timeout_ms)
        self.max_request_size = max_request_size
        self.cluster = cluster or ClusterClient(
            bootstrap_servers,
            zookeeper,
            client_id=client_id,
            request_timeout=request_timeout_ms / 1000.0,
        )
        self._own_cluster = cluster is None
        self._sticky: dict[str, int] = {}  # topic -> partition for unkeyed messages
        self._sticky_turn: dict[str, int] = {}
        self._lock = threading.Condition()
        self._open: dict[tuple[str, int], _Batch] = {}
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._numbers = itertools.count()
        self._buffered = 0
        self._waiting_for_room = 0  # send() calls waiting for buffer_memory
        self._queued = 0  # sealed batches in the partitions' queues
        self._in_flight = 0
        self._flushing = 0
        self._closed = False
        # The sender thread's: its connections, and a socket pair that wakes it from select().
        self._conns: dict[int, InFlightConnection] = {}
        self._stale_topics: set[str] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._selecting = False
        self._sender = threading.Thread(target=self._run, name="headrace-producer", daemon=True)
        self._sender.start()

    # --- the caller's side ---------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> DeliveryFuture:
        """Queue a message; its DeliveryFuture resolves once the broker has it.

        The first message to a topic waits (up to ``max_block_ms``) for its metadata; if no
        broker answers, that raises here (NoBrokersError or the broker's KafkaError)."""
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            size += sum(len(k) + (len(v) if v else 0) + 4 for k, v in headers)
        if size + 61 > self.max_request_size:
            return _Failed(
                topic,
                MessageTooLargeError(
                    f"a message of about {size} bytes exceeds max_request_size {self.max_request_size}"
                ),
            )
        if partition is None:
            if key is None:
                partition = self._sticky.get(topic)
                if partition is None:
                    partition = self._next_sticky(topic)
            else:
                partition = partition_for_key(
                    key, len(self.cluster.partitions(topic, wait=self.max_block))
                )
        if timestamp is None:
            timestamp = int(time.time() * 1000)
        with self._lock:
            if self._buffered + size > self.buffer_memory:
                self._wait_for_room(size)
            batch = self._open.get((topic, partition))
            if batch is None or batch.size + size > self.batch_size:
                if batch is not None:
                    self._seal(batch)
                batch = self._open[(topic, partition)] = _Batch(
                    topic, partition, time.monotonic(), next(self._numbers)
                )
                if len(self._open) == 1:
                    self._wake()
            records = batch.records
            future = DeliveryFuture(batch, len(records))
            records.append((key, value, headers, timestamp))
            batch.size += size
            self._buffered += size
            if batch.size >= self.batch_size:
                self._seal(batch)
                self._wake()
        return future

    def _wake(self) -> None:
        """Wake the sender (under ``_lock``): it waits on the condition, or in select()."""
        self._lock.notify_all()
        if self._selecting:
            self._selecting = False
            try:
                self._wake_w.send(b"\0")
            except OSError:  # full (it is awake anyway) or closed
                pass

    def _next_sticky(self, topic: str) -> int:
        """The next partition with a live leader for unkeyed messages, in turn."""
        partitions = self.cluster.partitions(topic, wait=self.max_block)
        available = self.cluster.available_partitions(topic) or partitions
        turn = self._sticky_turn.get(topic)
        if turn is None:
            turn = random.randrange(len(available))
        turn = (turn + 1) % len(available)
        self._sticky_turn[topic] = turn
        self._sticky[topic] = partition = available[turn]
        return partition

    def _wait_for_room(self, size: int) -> None:
        if not self.block_on_full:
            raise BufferFullError(f"buffer_memory ({self.buffer_memory} bytes) is full")
        deadline = time.monotonic() + self.max_block
        self._waiting_for_room += 1
        try:
            while self._buffered + size > self.buffer_memory:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BufferFullError(f"buffer_memory stayed full for {self.max_block:.1f} s")
                self._wake()
                self._lock.wait(min(left, 0.1))
        finally:
            self._waiting_for_room -= 1

    def _seal(self, batch: _Batch) -> None:
        key = (batch.topic, batch.partition)
        del self._open[key]
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition()
        part.queue.append(batch)
        self._queued += 1
        if self._sticky.get(batch.topic) == batch.partition:
            del self._sticky[batch.topic]  # the next unkeyed message starts another partition

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued and wait for the outcome; returns messages still pending
        (0 unless the timeout ran out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            self._wake()
            try:
                while self._open or self._queued or self._in_flight:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._lock.wait(0.05 if left is None else min(left, 0.05))
                return sum(len(b.records) for b in self._open.values()) + sum(
                    len(b.records) for part in self._partitions.values() for b in part.queue
                )
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout``), fail the rest, stop the sender."""
        if self._closed:
            return
        self.flush(timeout)
        with self._lock:
            self._closed = True
            self._wake()
        self._fail_leftovers()
        self._sender.join(10)
        self._fail_leftovers()  # a send that failed while closing came back after the sender left
        if not self._sender.is_alive():
            self._wake_r.close()
            self._wake_w.close()
        if self._own_cluster:
            self.cluster.close()

    def _fail_leftovers(self) -> None:
        with self._lock:
            leftovers = list(self._open.values())
            for part in self._partitions.values():
                leftovers += part.queue
                part.queue.clear()
            self._open.clear()
            self._queued = 0
        for batch in leftovers:
            self._fail(batch, RequestTimedOutError("the producer closed before delivery"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._turn():
                        return
                except Exception:  # never let the sender thread die
                    log.exception("producer sender failed; failing the batches in flight")
                    for leader in list(self._conns):
                        self._drop(
                            leader, RequestTimedOutError("the producer's sender failed"), fail=True
                        )
                    time.sleep(self.retry_backoff)
        finally:
            for leader in list(self._conns):
                self._drop(
                    leader, RequestTimedOutError("the producer closed before delivery"), fail=True
                )
            self._selector.close()

    def _turn(self) -> bool:
        """One turn of the sender: send whatever may go now (up to max_in_flight requests per
        broker, a sliding window), else wait for an answer, a new batch or a deadline."""
        init = False
        with self._lock:
            now = time.monotonic()
            if self._open:
                self._seal_due(now)
            if self._closed and not self._in_flight:
                return False
            requests: dict[int, list[list[_Batch]]] = {}
            expired: list[_Batch] = []
            if self._reset_needed:
                if not self._in_flight:
                    self._reset_sequences()
                    return True
            elif self._queued and not self._closed:
                if self.idempotent and self._producer_id < 0:
                    init = not self._in_flight
                else:
                    requests, expired = self._collect(now)
            waiting = any(conn.pending for conn in self._conns.values())
            if not (requests or expired or init):
                if not waiting:
                    self._lock.wait(self._next_wakeup(now))
                    return True
                self._selecting = True
        self._dispatch(requests, expired)
        if init:
            self._start_producer_id()
        if not (requests or expired or init):
            self._await_answers(now)
        if self._stale_topics:
            topics, self._stale_topics = sorted(self._stale_topics), set()
            try:
                self.cluster.refresh(topics)
            except Exception as exc:  # brokers or ZooKeeper unreachable: retry later anyway
                log.debug("metadata refresh failed: %r", exc)
        return True

    def _collect_now(self) -> tuple[dict[int, list[list[_Batch]]], list[_Batch]]:
        """``_collect`` unless the sender must not send now (closing, numbering again)."""
        with self._lock:
            if (
                self._reset_needed
                or self._closed
                or not self._queued
                or (self.idempotent and self._producer_id < 0)
            ):
                return {}, []
            return self._collect(time.monotonic())

    def _dispatch(self, requests: dict[int, list[list[_Batch]]], expired: list[_Batch]) -> None:
        for batch in expired:
            self._fail(
                batch,
                RequestTimedOutError(
                    "not delivered within delivery_timeout_ms: its partition has no leader"
                ),
            )
        for leader, batches in requests.items():
            self._send_requests(leader, batches)

    def _seal_due(self, now: float) -> None:
        """Seal open batches past their linger (all of them when flushing or closing)."""
        everything = self._flushing or self._closed
        for batch in list(self._open.values()):
            if everything or now - batch.created >= self.linger:
                self._seal(batch)

    def _next_wakeup(self, now: float) -> float:
        waits = [b.created + self.linger - now for b in self._open.values()]
        waits += [
            p.queue[0].not_before - now
            for p in self._partitions.values()
            if p.queue and p.queue[0].not_before > now
        ]
        return max(0.0005, min(waits)) if waits else 0.5

    def _collect(self, now: float) -> tuple[dict[int, list[list[_Batch]]], list[_Batch]]:
        """Requests to send now, per leader (each holds at most one batch of a partition and
        about max_request_size bytes), and batches past delivery_timeout_ms without a leader.

        A partition's batches go oldest first, as many as its leader's window has room for
        (five at most with idempotence: what the broker remembers); one refused waits, with
        every batch of its partition, until that partition has nothing in flight, and a
        partition has batches of one producer id in flight at a time.  This touches each
        partition's first few batches only, however long the queues are."""
        limit = MAX_IN_FLIGHT_IDEMPOTENT if self.idempotent else self.max_in_flight
        requests: dict[int, list[list[_Batch]]] = {}
        sizes: dict[int, list[int]] = {}
        expired: list[_Batch] = []
        for key, part in self._partitions.items():
            queue = part.queue
            if not queue or queue[0].not_before > now or (part.troubled and part.in_flight):
                continue
            leader = self.cluster.leader(*key)
            if leader < 0:
                while queue and now - queue[0].created > self.delivery_timeout:
                    expired.append(queue.popleft())
                    self._queued -= 1
                if queue:
                    queue[0].not_before = now + self.retry_backoff
                self._stale_topics.add(key[0])
                continue
            reqs = requests.get(leader)
            if reqs is None:
                conn = self._conns.get(leader)
                room = self.max_in_flight - (len(conn.pending) if conn is not None else 0)
                reqs = requests[leader] = [[] for _ in range(max(0, room))]
                sizes[leader] = [0] * len(reqs)
            sized = sizes[leader]
            for i, request in enumerate(reqs):
                if not queue or part.in_flight >= limit:
                    break
                batch = queue[0]
                pid = batch.producer_id if batch.data is not None else self._producer_id
                if (
                    batch.not_before > now
                    or (part.in_flight and part.producer_id != pid)
                    or (request and sized[i] + batch.size > self.max_request_size)
                ):
                    break
                queue.popleft()
                request.append(batch)
                sized[i] += batch.size
                part.in_flight += 1
                part.producer_id = pid
                self._queued -= 1
                self._in_flight += 1
        return {
            leader: [r for r in reqs if r] for leader, reqs in requests.items() if reqs and reqs[0]
        }, expired

    def _send_requests(self, leader: int, requests: list[list[_Batch]]) -> None:
        """Write requests to the leader without waiting for answers (acks=0: they are done)."""
        bodies = []
        for request in requests:
            topics: dict[str, list] = {}
            for batch in request:
                topics.setdefault(batch.topic, []).append(
                    {"index": batch.partition, "records": self._batch_bytes(batch)}
                )
                batch.attempts += 1
            bodies.append(
                (
                    {
                        "transactional_id": None,
                        "acks": self.acks,
                        "timeout_ms": self.request_timeout_ms,
                        "topic_data": [{"name": t, "partition_data": p} for t, p in topics.items()],
                    },
                    request,
                )
            )
        conn = self._conns.get(leader)
        sent = 0
        try:
            if conn is None:
                conn = self._conns[leader] = self.cluster.connect(leader)
                self._selector.register(conn, selectors.EVENT_READ, leader)
            for body in bodies:  # one at a time: the broker starts on the first at once
                conn.send(PRODUCE, 8, [body], expect_answer=self.acks != 0)
                sent += 1
        except (OSError, KafkaError) as exc:
            if leader in self._conns:
                self._drop(leader, exc)  # what it had in flight, the ones just sent included
            self._retry_all(requests[sent:], f"broker {leader}: {exc}")
        if self.acks == 0:
            for request in requests[:sent]:
                for batch in request:
                    self._succeed(batch, -1)
                self._landed(request)

    def _await_answers(self, now: float) -> None:
        """Wait for answers (or a new batch, or a deadline) and settle what arrived."""
        deadlines = [d for d in (conn.deadline() for conn in self._conns.values()) if d is not None]
        timeout = min([self._next_wakeup(now)] + [d - now for d in deadlines])
        for key, _ in self._selector.select(max(0.0, timeout)):
            if key.data is None:  # woken: a batch was sealed, or flush or close
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            leader = key.data
            conn = self._conns.get(leader)
            if conn is None:
                continue
            answers, error = conn.read()
            settled = [
                (
                    request,
                    {
                        (t["name"], p["index"]): p
                        for t in body["responses"]
                        for p in t["partition_responses"]
                    },
                )
                for request, body in answers
            ]
            freed = error is None and all(
                len(got) == len(request) and all(p["error_code"] == 0 for p in got.values())
                for request, got in settled
            )
            if freed and settled:
                # Every batch got in: free their places in flight and send what follows
                # before settling them, so that the broker works while the callbacks run.
                self._free([batch for request, _ in settled for batch in request])
                self._dispatch(*self._collect_now())
            for request, got in settled:
                for batch in request:
                    self._settle(batch, got.get((batch.topic, batch.partition)))
                self._landed(request, freed)
            if error is not None:
                self._drop(leader, error)
        now = time.monotonic()
        for leader, conn in list(self._conns.items()):
            if conn.expired(now):
                self._drop(
                    leader,
                    RequestTimedOutError(
                        f"no answer within request_timeout_ms ({self.request_timeout_ms})"
                    ),
                )

    def _drop(self, leader: int, error: Exception, fail: bool = False) -> None:
        """Close a broker's connection; what it had in flight is retried (or failed)."""
        conn = self._conns.pop(leader)
        self._selector.unregister(conn)
        lost = conn.close()
        if fail:
            for request in lost:
                for batch in request:
                    self._fail(batch, error)
                self._landed(request)
        else:
            self._retry_all(lost, f"broker {leader}: {error}")

    def _retry_all(self, requests: list[list[_Batch]], why: str) -> None:
        for request in requests:
            for batch in request:
                self._retry(batch, why)
            self._landed(request)

    def _free(self, batches: list[_Batch]) -> None:
        """Batches answered: their partitions may send more."""
        with self._lock:
            for batch in batches:
                part = self._partitions[(batch.topic, batch.partition)]
                part.in_flight -= 1
                if not part.in_flight:
                    part.troubled = False

    def _landed(self, batches: list[_Batch], freed: bool = False) -> None:
        """Batches back from flight and settled: delivered, failed, or queued again."""
        if not freed:
            self._free(batches)
        with self._lock:
            self._in_flight -= len(batches)
            if not self._in_flight:  # what flush() waits for
                self._lock.notify_all()

    def _batch_bytes(self, batch: _Batch) -> bytes:
        """The batch's bytes, built once: a retry sends the same bytes, with the same
        producer id, epoch and sequence."""
        if batch.data is None:
            if self.idempotent:
                key = (batch.topic, batch.partition)
                batch.sequence = self._next_seq.get(key, 0)
                self._next_seq[key] = (batch.sequence + len(batch.records)) % _SEQUENCE_MODULUS
                batch.producer_id = self._producer_id
                batch.data = build_batch(
                    batch.records,
                    compression_type=self.codec,
                    producer_id=self._producer_id,
                    producer_epoch=self._producer_epoch,
                    base_sequence=batch.sequence,
                )
            else:
                batch.data = build_batch(batch.records, compression_type=self.codec)
        return batch.data

    def _settle(self, batch: _Batch, answer: dict | None) -> None:
        if answer is None:
            self._retry(batch, "no answer for the partition")
            return
        code = answer["error_code"]
        if code == 0 or (code == _DUPLICATE_SEQUENCE and self.idempotent):
            self._succeed(batch, answer["base_offset"], answer["log_append_time_ms"])
            return
        error = error_for_code(code)
        message = answer.get("error_message") or error.description
        part = self._partitions[(batch.topic, batch.partition)]
        if code == _OUT_OF_ORDER_SEQUENCE and part.troubled:
            # It follows a batch that did not get in: it is sent again after that one.
            self._retry(batch, f"{error.name} behind a failed batch")
        elif error.retriable:
            self._retry(batch, f"{error.name}: {message}")
        else:
            if batch.sequence >= 0:  # later batches of the partition meet a gap: send again
                part.troubled = True
            self._fail(batch, error(message))

    def _start_producer_id(self) -> None:
        """Take a producer id before the first numbered batch goes out; while no broker gives
        one, batches wait (up to delivery_timeout_ms) and metadata is refreshed."""
        with self._lock:
            leaders = [
                self.cluster.leader(*key) for key, part in self._partitions.items() if part.queue
            ]
        nodes = [n for n in leaders if n >= 0] or list(self.cluster.brokers)
        if nodes and self._init_producer_id(nodes[0]):
            return
        expired = []
        now = time.monotonic()
        with self._lock:
            for part in self._partitions.values():
                while part.queue and now - part.queue[0].created > self.delivery_timeout:
                    expired.append(part.queue.popleft())
                    self._queued -= 1
                self._stale_topics.update(b.topic for b in part.queue)
        for batch in expired:
            self._fail(
                batch,
                RequestTimedOutError("not delivered within delivery_timeout_ms: no producer id"),
            )
        time.sleep(self.retry_backoff)

    def _init_producer_id(self, node_id: int) -> bool:
        """InitProducerId: a producer id (epoch 0) for the sequences to follow."""
        try:
            body = self.cluster.request(
                node_id,
                INIT_PRODUCER_ID,
                1,
                {"transactional_id": None, "transaction_timeout_ms": -1},
            )
        except (OSError, ValueError, KafkaError) as exc:
            log.debug("InitProducerId at broker %d failed: %r", node_id, exc)
            return False
        if body["error_code"]:
            log.debug("InitProducerId at broker %d: error %d", node_id, body["error_code"])
            return False
        self._producer_id, self._producer_epoch = body["producer_id"], body["producer_epoch"]
        log.debug("producer id %d epoch %d", self._producer_id, self._producer_epoch)
        return True

    def _reset_sequences(self) -> None:
        """After a batch with a sequence failed for good, the broker would refuse every later
        sequence of its partition: start again under a new producer id.  Batches behind the
        failed one were never stored and are renumbered; others already sent keep their id
        and sequence (stored or not, the broker judges them as before)."""
        log.warning("a numbered batch failed; taking a new producer id and numbering again")
        self._reset_needed = False
        failed_at, self._failed_at = self._failed_at, {}
        self._producer_id = self._producer_epoch = -1
        self._next_seq.clear()
        for key, at in failed_at.items():
            for batch in self._partitions[key].queue:
                if batch.data is None:  # the batches sent before come first
                    break
                if (batch.sequence - at) % _SEQUENCE_MODULUS < _SEQUENCE_MODULUS // 2:
                    batch.sequence = -1
                    batch.data = None

    def _retry(self, batch: _Batch, why: str) -> None:
        """Queue a batch again, in its place among its partition's batches (``number``
        order), ahead of those never sent; its partition sends nothing more until every
        batch in flight is back."""
        part = self._partitions[(batch.topic, batch.partition)]
        part.troubled = True
        if time.monotonic() - batch.created > self.delivery_timeout:
            self._fail(
                batch, RequestTimedOutError(f"not delivered within delivery_timeout_ms: {why}")
            )
            return
        log.debug("retrying %s-%d: %s", batch.topic, batch.partition, why)
        batch.not_before = time.monotonic() + self.retry_backoff
        self._stale_topics.add(batch.topic)
        with self._lock:
            queue = part.queue
            at = 0
            while at < len(queue) and queue[at].number < batch.number:
                at += 1
            queue.insert(at, batch)
            self._queued += 1

    def _succeed(self, batch: _Batch, base_offset: int, log_append_time: int = -1) -> None:
        batch.base_offset = base_offset
        batch.log_append_time = log_append_time
        self._finish(batch)

    def _fail(self, batch: _Batch, error: Exception) -> None:
        if batch.callbacks is not None:  # not finished yet
            if batch.sequence >= 0:
                self._reset_needed = True
                self._failed_at.setdefault((batch.topic, batch.partition), batch.sequence)
            batch.error = error
            self._finish(batch)

    def _finish(self, batch: _Batch) -> None:
        self._release(batch)
        with _CALLBACKS_LOCK:
            callbacks, batch.callbacks = batch.callbacks, None
            batch.done.set()
        for fn, future in callbacks or ():
            try:
                fn(future)
            except Exception:
                log.exception("a delivery callback failed")

    def _release(self, batch: _Batch) -> None:
        with self._lock:
            self._buffered -= batch.size - 61
            if self._waiting_for_room:
                self._lock.notify_all()
