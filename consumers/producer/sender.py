"""The producer's sender thread: takes sealed batches from the accumulator, sends them to the
partitions' leaders with requests in flight, and settles, retries or fails them."""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections.abc import Callable

from broker.protocol.errors import KafkaError, RequestTimedOutError, error_for_code
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey

from ..cluster import ClusterClient, InFlightConnection
from .accumulator import RecordAccumulator
from .batch import Batch
from .sequences import MAX_IN_FLIGHT_IDEMPOTENT, SequenceState

log = logging.getLogger(__name__)

_OUT_OF_ORDER_SEQUENCE = 45
_DUPLICATE_SEQUENCE = 46
_HELD_RETRY = 0.02  # seconds between asks of a gate that holds batches back

Requests = dict[int, list[list[Batch]]]  # per leader, requests of batches


class Sender:
    """Sends what the accumulator seals, up to ``max_in_flight`` requests per broker (a sliding
    window: each answer lets the next request go before its batches are settled)."""

    def __init__(
        self,
        accumulator: RecordAccumulator,
        cluster: ClusterClient,
        send_gate: Callable[[str, int], bool] | None = None,
    ):
        self.acc = accumulator
        # asked before a partition's batches go into a request: False holds them queued
        self.send_gate = send_gate
        self._held = False  # the gate held batches back: look again soon
        self.cluster = cluster
        self.config = accumulator.config
        self.sequences = SequenceState()
        self._conns: dict[int, InFlightConnection] = {}
        self._stale_topics: set[str] = set()
        self._selector = selectors.DefaultSelector()
        self._selector.register(accumulator.wake_r, selectors.EVENT_READ, None)
        self.on_acknowledged = None  # called with each batch the brokers took (the audit)
        self.thread = threading.Thread(target=self._run, name="headrace-producer", daemon=True)

    def start(self) -> None:
        self.thread.start()

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
                    time.sleep(self.config.retry_backoff)
        finally:
            for leader in list(self._conns):
                self._drop(
                    leader, RequestTimedOutError("the producer closed before delivery"), fail=True
                )
            self._selector.close()

    def _turn(self) -> bool:
        """One turn of the sender: send whatever may go now (up to max_in_flight requests per
        broker, a sliding window), else wait for an answer, a new batch or a deadline."""
        acc = self.acc
        init = False
        with acc.lock:
            now = time.monotonic()
            if acc.open:
                acc.seal_due(now)
            if acc.closed and not acc.in_flight:
                return False
            requests: Requests = {}
            expired: list[Batch] = []
            if self.sequences.reset_needed:
                if not acc.in_flight:
                    self.sequences.reset({k: p.queue for k, p in acc.partitions.items()})
                    return True
            elif acc.queued and not acc.closed:
                if self.config.idempotent and not self.sequences.has_id:
                    init = not acc.in_flight
                else:
                    requests, expired = self._collect(now)
            waiting = any(conn.pending for conn in self._conns.values())
            idle = not (requests or expired or init)
            if idle:
                if not waiting:
                    if not self._stale_topics:
                        wait = acc.next_wakeup(now)
                        acc.lock.wait(min(wait, _HELD_RETRY) if self._held else wait)
                        return True
                    # a batch found no leader: ask for its topic's metadata before sleeping
                else:
                    acc.selecting = True
        self._dispatch(requests, expired)
        if init:
            self._start_producer_id()
        if idle and waiting:
            self._await_answers(now)
        if self._stale_topics:
            topics, self._stale_topics = sorted(self._stale_topics), set()
            try:
                self.cluster.refresh(topics)
            except Exception as exc:  # brokers or ZooKeeper unreachable: retry later anyway
                log.debug("metadata refresh failed: %r", exc)
        return True

    def _collect_now(self) -> tuple[Requests, list[Batch]]:
        """``_collect`` unless the sender must not send now (closing, numbering again)."""
        acc = self.acc
        with acc.lock:
            if (
                self.sequences.reset_needed
                or acc.closed
                or not acc.queued
                or (self.config.idempotent and not self.sequences.has_id)
            ):
                return {}, []
            return self._collect(time.monotonic())

    def _dispatch(self, requests: Requests, expired: list[Batch]) -> None:
        for batch in expired:
            self.fail(
                batch,
                RequestTimedOutError(
                    "not delivered within delivery_timeout_ms: its partition has no leader"
                ),
            )
        for leader, batches in requests.items():
            self._send_requests(leader, batches)

    def _collect(self, now: float) -> tuple[Requests, list[Batch]]:
        """Requests to send now, per leader (each holds at most one batch of a partition and
        about max_request_size bytes), and batches past delivery_timeout_ms without a leader.

        A partition's batches go oldest first, as many as its leader's window has room for
        (five at most with idempotence: what the broker remembers); one refused waits, with
        every batch of its partition, until that partition has nothing in flight, and a
        partition has batches of one producer id in flight at a time.  This touches each
        partition's first few batches only, however long the queues are."""
        acc = self.acc
        config = self.config
        limit = MAX_IN_FLIGHT_IDEMPOTENT if config.idempotent else config.max_in_flight
        max_request_size = config.max_request_size
        producer_id = self.sequences.producer_id
        requests: Requests = {}
        sizes: dict[int, list[int]] = {}
        expired: list[Batch] = []
        gate = self.send_gate
        self._held = False
        for key, part in acc.partitions.items():
            queue = part.queue
            if not queue or queue[0].not_before > now or (part.troubled and part.in_flight):
                continue
            if gate is not None and not gate(*key):  # a retry is asked too: it is queued
                self._held = True
                continue
            leader = self.cluster.leader(*key)
            if leader < 0:
                taken = part.expire(now, self.config.delivery_timeout)
                acc.queued -= len(taken)
                expired += taken
                if queue:
                    queue[0].not_before = now + self.config.retry_backoff
                self._stale_topics.add(key[0])
                continue
            reqs = requests.get(leader)
            if reqs is None:
                conn = self._conns.get(leader)
                room = self.config.max_in_flight - (len(conn.pending) if conn is not None else 0)
                reqs = requests[leader] = [[] for _ in range(max(0, room))]
                sizes[leader] = [0] * len(reqs)
            sized = sizes[leader]
            for i, request in enumerate(reqs):
                if not queue or part.in_flight >= limit:
                    break
                batch = queue[0]
                pid = batch.producer_id if batch.data is not None else producer_id
                if (
                    batch.not_before > now
                    or (part.in_flight and part.producer_id != pid)
                    or (request and sized[i] + batch.size > max_request_size)
                ):
                    break
                queue.popleft()
                request.append(batch)
                sized[i] += batch.size
                part.in_flight += 1
                part.producer_id = pid
                acc.queued -= 1
                acc.in_flight += 1
        return {
            leader: [r for r in reqs if r] for leader, reqs in requests.items() if reqs and reqs[0]
        }, expired

    def _send_requests(self, leader: int, requests: list[list[Batch]]) -> None:
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
                        "acks": self.config.acks,
                        "timeout_ms": self.config.request_timeout_ms,
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
            gate = self.send_gate
            for body in bodies:  # one at a time: the broker starts on the first at once
                if gate is not None and not all(gate(b.topic, b.partition) for b in body[1]):
                    self._hold(requests[sent:])  # closed since _collect: asked at the write
                    requests = requests[:sent]
                    break
                conn.send(ApiKey.PRODUCE, [body], expect_answer=self.config.acks != 0)
                sent += 1
        except (OSError, KafkaError) as exc:
            if leader in self._conns:
                self._drop(leader, exc)  # what it had in flight, the ones just sent included
            self._retry_all(requests[sent:], f"broker {leader}: {exc}")
        if self.config.acks == 0:
            for request in requests[:sent]:
                for batch in request:
                    self._succeed(batch, -1)
                self.acc.landed(request)

    def _await_answers(self, now: float) -> None:
        """Wait for answers (or a new batch, or a deadline) and settle what arrived."""
        deadlines = [d for d in (conn.deadline() for conn in self._conns.values()) if d is not None]
        timeout = min([self.acc.next_wakeup(now)] + [d - now for d in deadlines])
        for key, _ in self._selector.select(max(0.0, timeout)):
            if key.data is None:  # woken: a batch was sealed, or flush or close
                self.acc.drain_wake()
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
                self.acc.free([batch for request, _ in settled for batch in request])
                self._dispatch(*self._collect_now())
            for request, got in settled:
                for batch in request:
                    self._settle(batch, got.get((batch.topic, batch.partition)))
                self.acc.landed(request, freed)
            if error is not None:
                self._drop(leader, error)
        now = time.monotonic()
        for leader, conn in list(self._conns.items()):
            if conn.expired(now):
                self._drop(
                    leader,
                    RequestTimedOutError(
                        f"no answer within request_timeout_ms ({self.config.request_timeout_ms})"
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
                    self.fail(batch, error)
                self.acc.landed(request)
        else:
            self._retry_all(lost, f"broker {leader}: {error}")

    def _hold(self, requests: list[list[Batch]]) -> None:
        """Queue again, in their places, batches the send gate refused at the last moment."""
        self._held = True
        for request in requests:
            for batch in request:
                self.acc.requeue(batch)
            self.acc.landed(request)

    def _retry_all(self, requests: list[list[Batch]], why: str) -> None:
        for request in requests:
            for batch in request:
                self._retry(batch, why)
            self.acc.landed(request)

    def _batch_bytes(self, batch: Batch) -> bytes:
        """The batch's bytes, built once: a retry sends the same bytes, with the same
        producer id, epoch and sequence."""
        if batch.data is None:
            if self.config.idempotent:
                sequences = self.sequences
                batch.data = build_batch(
                    batch.records,
                    compression_type=self.config.codec,
                    producer_id=sequences.producer_id,
                    producer_epoch=sequences.epoch,
                    base_sequence=sequences.number(batch),
                )
            else:
                batch.data = build_batch(batch.records, compression_type=self.config.codec)
        return batch.data

    def _settle(self, batch: Batch, answer: dict | None) -> None:
        if answer is None:
            self._retry(batch, "no answer for the partition")
            return
        code = answer["error_code"]
        if code == 0 or (code == _DUPLICATE_SEQUENCE and self.config.idempotent):
            self._succeed(batch, answer["base_offset"], answer["log_append_time_ms"])
            return
        error = error_for_code(code)
        message = answer.get("error_message") or error.description
        part = self.acc.partitions[(batch.topic, batch.partition)]
        if code == _OUT_OF_ORDER_SEQUENCE and part.troubled:
            # It follows a batch that did not get in: it is sent again after that one.
            self._retry(batch, f"{error.name} behind a failed batch")
        elif error.retriable:
            self._retry(batch, f"{error.name}: {message}")
        else:
            if batch.sequence >= 0:  # later batches of the partition meet a gap: send again
                part.troubled = True
            self.fail(batch, error(message))

    def _start_producer_id(self) -> None:
        """Take a producer id before the first numbered batch goes out; while no broker gives
        one, batches wait (up to delivery_timeout_ms) and metadata is refreshed."""
        acc = self.acc
        with acc.lock:
            leaders = [
                self.cluster.leader(*key) for key, part in acc.partitions.items() if part.queue
            ]
        nodes = [n for n in leaders if n >= 0] or list(self.cluster.brokers)
        if nodes and self._init_producer_id(nodes[0]):
            return
        expired, topics = acc.expire(time.monotonic(), self.config.delivery_timeout)
        self._stale_topics.update(topics)
        for batch in expired:
            self.fail(
                batch,
                RequestTimedOutError("not delivered within delivery_timeout_ms: no producer id"),
            )
        time.sleep(self.config.retry_backoff)

    def _init_producer_id(self, node_id: int) -> bool:
        """InitProducerId: a producer id (epoch 0) for the sequences to follow."""
        try:
            body = self.cluster.request(
                node_id,
                ApiKey.INIT_PRODUCER_ID,
                {"transactional_id": None, "transaction_timeout_ms": -1},
            )
        except (OSError, ValueError, KafkaError) as exc:
            log.debug("InitProducerId at broker %d failed: %r", node_id, exc)
            return False
        if body["error_code"]:
            log.debug("InitProducerId at broker %d: error %d", node_id, body["error_code"])
            return False
        self.sequences.set_id(body["producer_id"], body["producer_epoch"])
        log.debug("producer id %d epoch %d", body["producer_id"], body["producer_epoch"])
        return True

    def _retry(self, batch: Batch, why: str) -> None:
        """Queue a batch again, in its place among its partition's batches (``number``
        order), ahead of those never sent; its partition sends nothing more until every
        batch in flight is back."""
        self.acc.partitions[(batch.topic, batch.partition)].troubled = True
        if time.monotonic() - batch.created > self.config.delivery_timeout:
            self.fail(
                batch, RequestTimedOutError(f"not delivered within delivery_timeout_ms: {why}")
            )
            return
        log.debug("retrying %s-%d: %s", batch.topic, batch.partition, why)
        batch.not_before = time.monotonic() + self.config.retry_backoff
        self._stale_topics.add(batch.topic)
        self.acc.requeue(batch)

    def _succeed(self, batch: Batch, base_offset: int, log_append_time: int = -1) -> None:
        batch.base_offset = base_offset
        batch.log_append_time = log_append_time
        if self.on_acknowledged is not None and not batch.finished:
            self.on_acknowledged(batch)
        self._finish(batch)

    def fail(self, batch: Batch, error: Exception) -> None:
        """Finish ``batch`` with ``error`` (unless it is finished already)."""
        if not batch.finished:
            if batch.sequence >= 0:
                self.sequences.failed(batch)
            batch.error = error
            self._finish(batch)

    def fail_queued(self, batch: Batch, error: Exception) -> None:
        """``fail`` for a batch taken out of the queues by another thread (under the lock the
        sender reads the sequences' reset under)."""
        with self.acc.lock:
            if not batch.finished and batch.sequence >= 0:
                self.sequences.failed(batch)
                batch.error = error
        if not batch.finished:
            batch.error = error
            self._finish(batch)

    def _finish(self, batch: Batch) -> None:
        self.acc.release(batch)
        batch.complete()
