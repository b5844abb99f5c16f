"""The producer: batches messages per partition and sends them to the partitions' leaders.

    >>> producer = Producer(bootstrap_servers="127.0.0.1:9092", compression="lz4")
    >>> future = producer.send("clicks", b"GET /", key=b"10.0.0.7")
    >>> producer.flush()                      # everything delivered or failed
    >>> future.result().offset

``send`` returns at once with a DeliveryFuture for the message (``result()`` gives
``RecordMetadata`` or raises the KafkaError; ``add_done_callback`` as with concurrent futures).
Keyed messages go to ``murmur2(key) % partitions`` like the Java client's and librdkafka's;
unkeyed ones stick to one partition with a live leader until its batch is sent, then move on
(Kafka's sticky partitioning: full batches, and a dead broker's partitions are skipped). A
background thread collects each partition's batch until it holds ``batch_size`` bytes or is
``linger_ms`` old, compresses it, and sends it with ``acks`` 0, 1 or -1 ("all"). Retriable
errors (a leader moved, a broker restarting) are retried after ``retry_backoff_ms`` with fresh
metadata until ``delivery_timeout_ms``; other errors fail that batch's messages. Memory is
bounded by ``buffer_memory``: when full, ``send`` blocks up to ``max_block_ms``
(``block_on_full=True``) or raises BufferFullError. Thread-safe; no Twisted.

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

The audit (``audit=True``; ``consumers.producer.audit``): the messages the brokers acknowledged
are counted per topic and ``audit_window_ms`` window of their timestamps (default one minute,
UTC-aligned) and published to the topic ``_audit`` every ``audit_interval_ms`` (10 s) and on
``flush()`` and ``close()``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from broker.protocol.errors import KafkaError, MessageTooLargeError, RequestTimedOutError
from broker.protocol.zk_security import ZkCredentials

from ..audit import DEFAULT_WINDOW_MS
from ..cluster import ClusterClient
from ..partitioner import partition_for_key
from ..security import PLAINTEXT, ClientSecurity
from .accumulator import RecordAccumulator
from .audit import DEFAULT_INTERVAL_MS, AuditPublisher
from .batch import BATCH_OVERHEAD, RECORD_OVERHEAD, DeliveryFuture, FailedFuture
from .config import ProducerConfig
from .sender import Sender

log = logging.getLogger(__name__)


class ProducerClosedError(RuntimeError):
    """send() after close()."""


class Producer:
    """Batching, compressing, retrying Kafka-protocol producer.  See the module docstring."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        zookeeper: str | None = None,
        *,
        client_id: str = "headrace-producer",
        cluster: ClusterClient | None = None,
        audit: bool = False,
        audit_window_ms: int = DEFAULT_WINDOW_MS,
        audit_interval_ms: int = DEFAULT_INTERVAL_MS,
        send_gate: Callable[[str, int], bool] | None = None,
        security: ClientSecurity = PLAINTEXT,
        zookeeper_credentials: ZkCredentials | None = None,
        **options,
    ):
        """``options`` are ``ProducerConfig.of``'s: ``acks``, ``enable_idempotence``,
        ``max_in_flight_requests_per_connection``, ``compression``, ``linger_ms``,
        ``batch_size``, ``buffer_memory``, ``block_on_full``, ``max_block_ms``,
        ``retry_backoff_ms``, ``delivery_timeout_ms``, ``request_timeout_ms`` and
        ``max_request_size``, with Kafka's meanings.  ``audit`` publishes audit records (see
        the module docstring).  ``send_gate(topic, partition)``, if given, is asked on the
        sender thread before a partition's batches go into a produce request, a retry's
        included: while it answers False they stay queued (nothing is dropped; ``flush``
        waits for them), see ``drop_unsent``.  ``security`` (TLS, SASL) applies to every
        connection of a cluster client made here (a given ``cluster`` brings its own)."""
        self.config = config = ProducerConfig.of(**options)
        self.acks = config.acks
        self.idempotent = config.idempotent
        self.max_request_size = config.max_request_size
        self.cluster = cluster or ClusterClient(
            bootstrap_servers,
            zookeeper,
            client_id=client_id,
            request_timeout=config.request_timeout_ms / 1000.0,
            security=security,
            zookeeper_credentials=zookeeper_credentials,
        )
        self._own_cluster = cluster is None
        self._sticky_turn: dict[str, int] = {}
        self._closed = False
        self._accumulator = RecordAccumulator(config)
        self._sender = Sender(self._accumulator, self.cluster, send_gate)
        self.client_id = client_id
        self.audit: AuditPublisher | None = None
        if audit:
            self.audit = AuditPublisher(self, audit_window_ms, audit_interval_ms)
            self._sender.on_acknowledged = self.audit.acknowledged
        self._sender.start()
        if self.audit is not None:
            self.audit.start()

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
        size = RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            size += sum(len(k) + (len(v) if v else 0) + 4 for k, v in headers)
        if size + BATCH_OVERHEAD > self.max_request_size:
            return FailedFuture(
                topic,
                MessageTooLargeError(
                    f"a message of about {size} bytes exceeds "
                    f"max_request_size {self.max_request_size}"
                ),
            )
        if partition is None:
            if key is None:
                partition = self._accumulator.sticky.get(topic)
                if partition is None:
                    partition = self._next_sticky(topic)
            else:
                partition = partition_for_key(
                    key, len(self.cluster.partitions(topic, wait=self.config.max_block))
                )
        if timestamp is None:
            timestamp = int(time.time() * 1000)
        return self._accumulator.append(topic, partition, (key, value, headers, timestamp), size)

    def send_many(
        self, topic: str, partition: int, records: list[tuple]
    ) -> list[tuple[int, DeliveryFuture]]:
        """Queue ``records``, each ``(key, value, headers, timestamp)``, for one partition, in
        order: what ``send`` does for each, with less work per message (a copy loop's path).
        Returns, for each record batch they went into, the index of its last record here and
        that record's DeliveryFuture: a batch is delivered or fails as a whole, so it tells
        about every record of the batch.  A message over ``max_request_size`` makes every
        record go through ``send`` (one future each)."""
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        limit = self.max_request_size - BATCH_OVERHEAD
        sizes = []
        for key, value, headers, _ in records:
            size = RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
            if headers:
                for k, v in headers:
                    size += len(k) + (len(v) if v else 0) + 4
            if size > limit:
                return [
                    (i, self.send(topic, r[1], r[0], r[2], partition, r[3]))
                    for i, r in enumerate(records)
                ]
            sizes.append(size)
        return self._accumulator.append_many(topic, partition, records, sizes)

    def _next_sticky(self, topic: str) -> int:
        """The next partition with a live leader for unkeyed messages, in turn."""
        partitions = self.cluster.partitions(topic, wait=self.config.max_block)
        available = self.cluster.available_partitions(topic) or partitions
        turn = self._sticky_turn.get(topic)
        if turn is None:
            turn = random.randrange(len(available))
        turn = (turn + 1) % len(available)
        self._sticky_turn[topic] = turn
        self._accumulator.sticky[topic] = partition = available[turn]
        return partition

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued and wait for the outcome (with the audit, then publish its
        counts and wait for them too); returns messages still pending (0 unless the timeout
        ran out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        left = self._accumulator.wait_until_sent(timeout)
        if self.audit is None or self._closed or left:
            return left
        try:
            self.audit.publish()
        except (OSError, KafkaError) as exc:  # counted again at the next publish
            log.warning("audit records not published: %s", exc)
        rest = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._accumulator.wait_until_sent(rest)

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return self._accumulator.in_flight

    def cap_batch_size(self, size: int) -> None:
        """Build no record batch over about ``size`` bytes from now on (a caller that knows
        the smallest ``max.message.bytes`` of the topics it writes keeps its batches under
        it); a message larger than that still travels alone."""
        self._accumulator.batch_size = max(1, min(self._accumulator.batch_size, size))

    def drop_unsent(self, partitions, error: Exception) -> int:
        """Fail, with ``error``, every batch of these (topic, partition)s not in flight now
        (open, queued, or queued again for a retry); returns how many messages.  For a caller
        whose ``send_gate`` holds them back for good.  A dropped batch that was numbered makes
        the producer take a new producer id, as any numbered batch failed for good does."""
        taken = self._accumulator.take_partitions(list(partitions))
        for batch in taken:
            self._sender.fail_queued(batch, error)
        return sum(len(b.records) for b in taken)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout``), fail the rest, stop the sender."""
        if self._closed:
            return
        self.flush(timeout)
        if self.audit is not None:
            self.audit.close(timeout)
        self._closed = True
        self._accumulator.close()
        self._fail_leftovers()
        self._sender.thread.join(10)
        self._fail_leftovers()  # a send that failed while closing came back after the sender left
        if not self._sender.thread.is_alive():
            self._accumulator.close_wake()
        if self._own_cluster:
            self.cluster.close()

    def _fail_leftovers(self) -> None:
        for batch in self._accumulator.take_all():
            self._sender.fail(batch, RequestTimedOutError("the producer closed before delivery"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
