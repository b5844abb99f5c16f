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

import logging
import random
import threading
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Callable, NamedTuple

from broker.protocol import compression as codecs
from broker.protocol.errors import (
    KafkaError,
    MessageTooLargeError,
    RequestTimedOutError,
    error_for_code,
)
from broker.protocol.records import build_batch

from .cluster import ClusterClient
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
    __slots__ = ("topic", "partition", "records", "size", "created", "attempts", "not_before",
                 "done", "error", "base_offset", "log_append_time", "callbacks", "sequence", "data",
                 "producer_id")

    def __init__(self, topic, partition, now):
        self.topic, self.partition = topic, partition
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

    def add_done_callback(self, fn: Callable[["DeliveryFuture"], None]) -> None:
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
            raise ValueError(f"enable_idempotence allows at most {MAX_IN_FLIGHT_IDEMPOTENT} "
                             "requests in flight per connection")
        self._producer_id = self._producer_epoch = -1
        self._next_seq: dict[tuple[str, int], int] = {}
        self._reset_needed = False
        self._failed_at: dict[tuple[str, int], int] = {}  # partition -> sequence that failed for good
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
        self.cluster = cluster or ClusterClient(bootstrap_servers, zookeeper, client_id=client_id,
                                                request_timeout=request_timeout_ms / 1000.0)
        self._own_cluster = cluster is None
        self._sticky: dict[str, int] = {}  # topic -> partition for unkeyed messages
        self._sticky_turn: dict[str, int] = {}
        self._lock = threading.Condition()
        self._open: dict[tuple[str, int], _Batch] = {}
        self._ready: deque[_Batch] = deque()
        self._buffered = 0
        self._in_flight = 0
        self._flushing = 0
        self._closed = False
        self._sender = threading.Thread(target=self._run, name="headrace-producer", daemon=True)
        self._sender.start()

    # --- the caller's side ---------------------------------------------------------------

    def send(self, topic: str, value: bytes | None, key: bytes | None = None,
             headers: list[tuple[str, bytes | None]] | None = None, partition: int | None = None,
             timestamp: int | None = None) -> DeliveryFuture:
        """Queue a message; its DeliveryFuture resolves once the broker has it.

        The first message to a topic waits (up to ``max_block_ms``) for its metadata; if no
        broker answers, that raises here (NoBrokersError or the broker's KafkaError)."""
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        size = _RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            size += sum(len(k) + (len(v) if v else 0) + 4 for k, v in headers)
        if size + 61 > self.max_request_size:
            return _Failed(topic, MessageTooLargeError(
                f"a message of about {size} bytes exceeds max_request_size {self.max_request_size}"))
        if partition is None:
            if key is None:
                partition = self._sticky.get(topic)
                if partition is None:
                    partition = self._next_sticky(topic)
            else:
                partition = partition_for_key(key, len(self.cluster.partitions(topic, wait=self.max_block)))
        if timestamp is None:
            timestamp = int(time.time() * 1000)
        with self._lock:
            if self._buffered + size > self.buffer_memory:
                self._wait_for_room(size)
            batch = self._open.get((topic, partition))
            if batch is None or batch.size + size > self.batch_size:
                if batch is not None:
                    self._seal(batch)
                batch = self._open[(topic, partition)] = _Batch(topic, partition, time.monotonic())
                if len(self._open) == 1:
                    self._lock.notify()
            records = batch.records
            future = DeliveryFuture(batch, len(records))
            records.append((key, value, headers, timestamp))
            batch.size += size
            self._buffered += size
            if batch.size >= self.batch_size:
                self._seal(batch)
                self._lock.notify()
        return future

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
        while self._buffered + size > self.buffer_memory:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BufferFullError(f"buffer_memory stayed full for {self.max_block:.1f} s")
            self._lock.notify()
            self._lock.wait(min(left, 0.1))

    def _seal(self, batch: _Batch) -> None:
        del self._open[(batch.topic, batch.partition)]
        self._ready.append(batch)
        if self._sticky.get(batch.topic) == batch.partition:
            del self._sticky[batch.topic]  # the next unkeyed message starts another partition

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued and wait for the outcome; returns messages still pending
        (0 unless the timeout ran out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            self._lock.notify_all()
            try:
                while self._open or self._ready or self._in_flight:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._lock.wait(0.05 if left is None else min(left, 0.05))
                return sum(len(b.records) for b in list(self._open.values()) + list(self._ready))
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout``), fail the rest, stop the sender."""
        if self._closed:
            return
        self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._fail_leftovers()
        self._sender.join(10)
        self._fail_leftovers()  # a send that failed while closing came back after the sender left
        if self._own_cluster:
            self.cluster.close()

    def _fail_leftovers(self) -> None:
        with self._lock:
            leftovers = list(self._open.values()) + list(self._ready)
            self._open.clear()
            self._ready.clear()
        for batch in leftovers:
            self._fail(batch, RequestTimedOutError("the producer closed before delivery"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                batches = self._collect()
                if not batches:
                    if self._closed:
                        return
                    self._lock.wait(self._next_wakeup())
                    continue
                self._in_flight += len(batches)
            try:
                self._send(batches)
            except Exception:  # never let the sender thread die
                log.exception("producer sender failed; failing the batches")
                for batch in batches:
                    self._fail(batch, RequestTimedOutError("the producer's sender failed"))
            finally:
                with self._lock:
                    self._in_flight -= len(batches)
                    self._lock.notify_all()

    def _next_wakeup(self) -> float:
        if not self._open and not self._ready:
            return 0.5
        now = time.monotonic()
        waits = [b.created + self.linger - now for b in self._open.values()]
        waits += [b.not_before - now for b in self._ready]
        return max(0.0005, min(waits))

    def _collect(self) -> list[_Batch]:
        """Sealed batches, plus open ones past their linger (all of them when flushing)."""
        now = time.monotonic()
        for key, batch in list(self._open.items()):
            if self._flushing or self._closed or now - batch.created >= self.linger:
                self._seal(batch)
        # Oldest first, at most ``per_partition`` batches of a partition at a time (one
        # without idempotence), and none past a batch that waits to be retried: messages of a
        # partition stay in order even when a send fails.
        # A round sends a partition's batches of one producer id only (the new id's after the
        # old id's retries are through).
        per_partition = self.max_in_flight if self.idempotent else 1
        ready, later, blocked, taken, ids = [], deque(), set(), {}, {}
        while self._ready:
            batch = self._ready.popleft()
            key = (batch.topic, batch.partition)
            pid = batch.producer_id if batch.data is not None else self._producer_id
            if key in blocked or batch.not_before > now or taken.get(key, 0) >= per_partition \
                    or ids.setdefault(key, pid) != pid:
                blocked.add(key)
                later.append(batch)
            else:
                taken[key] = taken.get(key, 0) + 1
                ready.append(batch)
        self._ready = later
        return ready

    def _send(self, batches: list[_Batch]) -> None:
        """Send one round of batches and settle every one of them: delivered, failed, or
        put back (in their order, ahead of newer batches) to be retried."""
        retries: list[_Batch] = []
        failed: set[tuple[str, int]] = set()  # partitions with a batch to retry this round
        by_leader: dict[int, list[_Batch]] = {}
        for batch in batches:
            leader = self.cluster.leader(batch.topic, batch.partition)
            if leader < 0:
                self._retry(batch, "no leader known", retries, failed)
                continue
            by_leader.setdefault(leader, []).append(batch)
        if by_leader and self.idempotent and self._producer_id < 0 and not self._init_producer_id(
                next(iter(by_leader))):
            for group in by_leader.values():
                for batch in group:
                    self._retry(batch, "no producer id yet", retries, failed)
            by_leader = {}
        for leader, group in by_leader.items():
            # Requests hold one batch per partition (answers are matched by partition) and no
            # more than max_request_size; up to max_in_flight of them go out before the first
            # answer is read.
            requests = []
            while group:
                request, later, seen, size = [], [], set(), 0
                for batch in group:
                    key = (batch.topic, batch.partition)
                    if key in seen or (request and size + batch.size > self.max_request_size):
                        later.append(batch)
                        continue
                    seen.add(key)
                    size += batch.size
                    request.append(batch)
                requests.append(request)
                group = later
            for start in range(0, len(requests), self.max_in_flight):
                self._send_window(leader, requests[start : start + self.max_in_flight], retries, failed)
        if retries:
            try:
                self.cluster.refresh(sorted({b.topic for b in retries}))
            except Exception as exc:  # brokers or ZooKeeper unreachable: retry later anyway
                log.debug("metadata refresh failed: %r", exc)
        with self._lock:
            if self._reset_needed:
                self._reset_sequences(retries)
            self._ready.extendleft(reversed(retries))

    def _send_window(self, leader: int, requests: list[list[_Batch]], retries: list, failed: set) -> None:
        bodies = []
        for request in requests:
            # A partition whose earlier batch must be retried sends nothing more this round.
            for batch in [b for b in request if (b.topic, b.partition) in failed]:
                request.remove(batch)
                self._retry(batch, "an earlier batch of its partition is retried", retries, failed)
            topics: dict[str, list] = {}
            for batch in request:
                topics.setdefault(batch.topic, []).append(
                    {"index": batch.partition, "records": self._batch_bytes(batch)})
                batch.attempts += 1
            bodies.append({"transactional_id": None, "acks": self.acks,
                           "timeout_ms": self.request_timeout_ms,
                           "topic_data": [{"name": t, "partition_data": p} for t, p in topics.items()]})
        if self.acks == 0:
            for request, body in zip(requests, bodies):
                try:
                    self.cluster.send_only(leader, PRODUCE, 8, body)
                except (OSError, ValueError, KafkaError) as exc:
                    for batch in request:
                        self._retry(batch, f"broker {leader}: {exc}", retries, failed)
                    continue
                for batch in request:
                    self._succeed(batch, -1)
            return
        try:
            results = self.cluster.pipeline(leader, PRODUCE, 8, bodies)
        except KafkaError as exc:  # the broker is not known any more
            results = [exc] * len(bodies)
        for request, response in zip(requests, results):
            if isinstance(response, Exception):
                for batch in request:
                    self._retry(batch, f"broker {leader}: {response}", retries, failed)
                continue
            answers = {(t["name"], p["index"]): p for t in response["responses"]
                       for p in t["partition_responses"]}
            for batch in request:
                self._settle(batch, answers.get((batch.topic, batch.partition)), retries, failed)

    def _batch_bytes(self, batch: _Batch) -> bytes:
        """The batch's bytes, built once: a retry sends the same bytes, with the same
        producer id, epoch and sequence."""
        if batch.data is None:
            if self.idempotent:
                key = (batch.topic, batch.partition)
                batch.sequence = self._next_seq.get(key, 0)
                self._next_seq[key] = (batch.sequence + len(batch.records)) % _SEQUENCE_MODULUS
                batch.producer_id = self._producer_id
                batch.data = build_batch(batch.records, compression_type=self.codec,
                                         producer_id=self._producer_id,
                                         producer_epoch=self._producer_epoch,
                                         base_sequence=batch.sequence)
            else:
                batch.data = build_batch(batch.records, compression_type=self.codec)
        return batch.data

    def _settle(self, batch: _Batch, answer: dict | None, retries: list, failed: set) -> None:
        if answer is None:
            self._retry(batch, "no answer for the partition", retries, failed)
            return
        code = answer["error_code"]
        if code == 0 or (code == _DUPLICATE_SEQUENCE and self.idempotent):
            self._succeed(batch, answer["base_offset"], answer["log_append_time_ms"])
            return
        error = error_for_code(code)
        message = answer.get("error_message") or error.description
        if code == _OUT_OF_ORDER_SEQUENCE and (batch.topic, batch.partition) in failed:
            # It follows a batch that did not get in: it is sent again after that one.
            self._retry(batch, f"{error.name} behind a failed batch", retries, failed)
        elif error.retriable:
            self._retry(batch, f"{error.name}: {message}", retries, failed)
        else:
            if batch.sequence >= 0:  # later batches of the partition meet a gap: send again
                failed.add((batch.topic, batch.partition))
            self._fail(batch, error(message))

    def _init_producer_id(self, node_id: int) -> bool:
        """InitProducerId: a producer id (epoch 0) for the sequences to follow."""
        try:
            body = self.cluster.request(node_id, INIT_PRODUCER_ID, 1,
                                        {"transactional_id": None, "transaction_timeout_ms": -1})
        except (OSError, ValueError, KafkaError) as exc:
            log.debug("InitProducerId at broker %d failed: %r", node_id, exc)
            return False
        if body["error_code"]:
            log.debug("InitProducerId at broker %d: error %d", node_id, body["error_code"])
            return False
        self._producer_id, self._producer_epoch = body["producer_id"], body["producer_epoch"]
        log.debug("producer id %d epoch %d", self._producer_id, self._producer_epoch)
        return True

    def _reset_sequences(self, retries: list[_Batch]) -> None:
        """After a batch with a sequence failed for good, the broker would refuse every later
        sequence of its partition: start again under a new producer id.  Batches behind the
        failed one were never stored and are renumbered; others already sent keep their id
        and sequence (stored or not, the broker judges them as before)."""
        log.warning("a numbered batch failed; taking a new producer id and numbering again")
        self._reset_needed = False
        failed_at, self._failed_at = self._failed_at, {}
        self._producer_id = self._producer_epoch = -1
        self._next_seq.clear()
        for batch in list(retries) + list(self._ready):
            at = failed_at.get((batch.topic, batch.partition))
            if at is not None and (batch.sequence - at) % _SEQUENCE_MODULUS < _SEQUENCE_MODULUS // 2:
                batch.sequence = -1
                batch.data = None

    def _retry(self, batch: _Batch, why: str, retries: list, failed: set) -> None:
        failed.add((batch.topic, batch.partition))
        if time.monotonic() - batch.created > self.delivery_timeout:
            self._fail(batch, RequestTimedOutError(f"not delivered within delivery_timeout_ms: {why}"))
            return
        log.debug("retrying %s-%d: %s", batch.topic, batch.partition, why)
        batch.not_before = time.monotonic() + self.retry_backoff
        retries.append(batch)

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
            self._lock.notify_all()
