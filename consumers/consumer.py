"""Pull consumers: read (topic, partition) from an offset, as the paper's consumers do.

    >>> consumer = Consumer(bootstrap_servers="127.0.0.1:9092")
    >>> consumer.assign([("clicks", 0, EARLIEST), ("clicks", 1, 4711)])
    >>> for message in consumer:              # blocks for new messages; Ctrl-C to stop
    ...     print(message.offset, message.value)

``Consumer.poll(timeout)`` returns the next batch of messages for those who want control, and
``position``/``seek`` move within a partition.  Batches in every codec are decoded; control
batches and records before the requested offset are skipped.  An offset out of range (deleted
by retention, or past the end) is logged loudly and reset per ``auto_offset_reset``
("earliest", "latest", or "none" to raise).

A stored batch that cannot be decoded (written before brokers checked records, or read from
another cluster) stops its partition: poll() returns what came before it, then raises
``CorruptBatchError`` (topic, partition, first and last offset, the raw bytes) each time until
the caller moves on::

    try:
        messages = consumer.poll(1.0)
    except CorruptBatchError as err:
        keep(err.raw)                                            # if it matters
        consumer.seek(err.topic, err.partition, err.next_offset)  # skip the batch
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from broker.protocol.errors import (
    CorruptMessageError,
    KafkaError,
    OffsetOutOfRangeError,
    error_for_code,
)
from broker.protocol.records import EARLIEST_TIMESTAMP as EARLIEST
from broker.protocol.records import LATEST_TIMESTAMP as LATEST
from broker.protocol.records import RecordColumns, decode_batch, decode_batch_columns, split_batches
from broker.protocol.registry import ApiKey
from broker.protocol.zk_security import ZkCredentials

from .client import BrokerConnection
from .cluster import ClusterClient, NoBrokersError
from .security import PLAINTEXT, ClientSecurity

log = logging.getLogger(__name__)


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


class CorruptBatchError(CorruptMessageError):
    """A stored record batch that cannot be decoded.  ``topic``, ``partition``,
    ``first_offset``/``last_offset`` (the batch's offsets), ``raw`` (its bytes) and ``reason``;
    ``consumer.seek(err.topic, err.partition, err.next_offset)`` skips it."""

    def __init__(
        self,
        topic: str,
        partition: int,
        first_offset: int,
        last_offset: int,
        reason: str,
        raw: bytes,
    ):
        super().__init__(
            f"{topic}-{partition}: the record batch at offsets {first_offset}..{last_offset} "
            f"cannot be decoded ({reason}); seek to {last_offset + 1} to skip it"
        )
        self.topic, self.partition = topic, partition
        self.first_offset, self.last_offset = first_offset, last_offset
        self.reason, self.raw = reason, raw

    @property
    def next_offset(self) -> int:
        """The offset after the batch: where to seek to skip it."""
        return self.last_offset + 1


def corrupt_batch_error(
    topic: str, partition: int, data, pos: int, header, exc: KafkaError
) -> CorruptBatchError:
    """The CorruptBatchError for the batch at ``pos`` of fetched ``data`` (its ``header``
    parsed) that failed to decode with ``exc``: its offsets, the reason and its raw bytes.
    Every columnar decoder (``Block`` here, ``loaders.blocks``) raises it the same way."""
    reason = exc.args[0] if exc.args else exc.description
    return CorruptBatchError(
        topic,
        partition,
        header.base_offset,
        header.last_offset,
        reason,
        bytes(data[pos : pos + header.size]),
    )


def decode_messages(
    topic: str, partition: int, data, from_offset: int
) -> tuple[list[Message], int]:
    """Messages in fetched bytes at or after ``from_offset``, and the offset to fetch next.
    A batch that cannot be decoded ends the messages before it (the next fetch starts there),
    or raises CorruptBatchError when it comes first."""
    messages: list[Message] = []
    next_offset = from_offset
    prefix = (topic, partition)
    for pos, header in split_batches(data):
        if header.next_offset <= from_offset:
            continue
        if header.is_control:
            next_offset = max(next_offset, header.next_offset)
            continue
        try:
            records = decode_batch(data, pos, make=Message, prefix=prefix).records
        except KafkaError as exc:
            if messages or next_offset > from_offset:
                return messages, max(from_offset, header.base_offset)
            raise corrupt_batch_error(topic, partition, data, pos, header, exc) from exc
        next_offset = max(next_offset, header.next_offset)
        if header.base_offset < from_offset:
            records = [m for m in records if m.offset >= from_offset]
        messages += records
    return messages, next_offset


class Block:
    """A run of one partition's records as parallel lists, in offset order: what
    ``Consumer(columnar=True)`` returns instead of one Message per record."""

    __slots__ = ("keys", "offsets", "partition", "timestamps", "topic", "values")

    def __init__(
        self, topic: str, partition: int, offsets: list, timestamps: list, keys: list, values: list
    ):
        self.topic, self.partition = topic, partition
        self.offsets, self.timestamps, self.keys, self.values = offsets, timestamps, keys, values

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: slice) -> Block:
        return Block(
            self.topic,
            self.partition,
            self.offsets[index],
            self.timestamps[index],
            self.keys[index],
            self.values[index],
        )

    @classmethod
    def of(cls, messages: list) -> Block:
        """The block of Messages of one partition."""
        first = messages[0]
        return cls(
            first.topic,
            first.partition,
            [m.offset for m in messages],
            [m.timestamp for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
        )


def decode_block(topic: str, partition: int, data, from_offset: int) -> tuple[Block | None, int]:
    """The records in fetched bytes at or after ``from_offset`` as a Block (None if there are
    none), and the offset to fetch next; a batch that cannot be decoded is met as in
    ``decode_messages``."""
    columns = RecordColumns()
    next_offset = from_offset
    for pos, header in split_batches(data):
        if header.next_offset <= from_offset:
            continue
        if not header.is_control:
            kept = len(columns)
            try:
                decode_batch_columns(data, pos, columns)
            except KafkaError as exc:
                if next_offset == from_offset:
                    raise corrupt_batch_error(topic, partition, data, pos, header, exc) from exc
                for column in (columns.offsets, columns.timestamps, columns.keys, columns.values):
                    del column[kept:]
                next_offset = max(from_offset, header.base_offset)
                break
        next_offset = max(next_offset, header.next_offset)
    if not columns.offsets:
        return None, next_offset
    block = Block(
        topic, partition, columns.offsets, columns.timestamps, columns.keys, columns.values
    )
    if block.offsets[0] < from_offset:
        block = block[bisect.bisect_left(block.offsets, from_offset) :]
    return (block if len(block) else None), next_offset


class Consumer:
    """Fetches assigned partitions from their leaders; see the module docstring.  With
    ``columnar=True``, poll() returns Blocks (one partition's records as lists) instead of
    Messages; ``columnar`` may also be a function like ``decode_block`` making Block
    subclasses of its own (the loaders' JSON lines)."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        zookeeper: str | None = None,
        *,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_wait_ms: int = 500,
        fetch_min_bytes: int = 1,
        auto_offset_reset: str = "latest",
        client_id: str = "headrace-consumer",
        cluster: ClusterClient | None = None,
        columnar=False,
        zookeeper_credentials: ZkCredentials | None = None,
        security: ClientSecurity = PLAINTEXT,
    ):
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be earliest, latest or none")
        self.cluster = cluster or ClusterClient(
            bootstrap_servers,
            zookeeper,
            client_id=client_id,
            zookeeper_credentials=zookeeper_credentials,
            security=security,
        )
        self._own_cluster = cluster is None
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.max_wait_ms = fetch_max_wait_ms
        self.min_bytes = fetch_min_bytes
        self.auto_offset_reset = auto_offset_reset
        self.columnar = columnar
        self.positions: dict[tuple[str, int], int] = {}
        self.high_watermarks: dict[tuple[str, int], int] = {}
        self._paused: set[tuple[str, int]] = set()
        self._buffer: deque[list[Message]] = deque()  # chunks of messages, one per fetch
        self._conns: dict[int, BrokerConnection] = {}
        self._inflight: dict[int, tuple[int, dict]] = {}  # leader -> (correlation id, positions)
        self._corrupt: dict[tuple[str, int], CorruptBatchError] = {}  # raised until sought past

    # --- assignment ----------------------------------------------------------------------

    def assign(self, assignments: Iterable[tuple[str, int, int]]) -> None:
        """Read these (topic, partition, offset) triples; offset EARLIEST (-2) or LATEST (-1)
        is resolved now."""
        self.positions.clear()
        self._buffer.clear()
        self._corrupt.clear()
        for topic, partition, offset in assignments:
            self.cluster.partitions(topic)
            self.positions[(topic, partition)] = self._resolve(topic, partition, offset)

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self.positions)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.positions[(topic, partition)] = self._resolve(topic, partition, offset)
        self._corrupt.pop((topic, partition), None)
        self._buffer = deque(
            chunk for chunk in self._buffer if _partition_of(chunk) != (topic, partition)
        )

    def position(self, topic: str, partition: int) -> int:
        return self.positions[(topic, partition)]

    def pause(self, *partitions: tuple[str, int]) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: tuple[str, int]) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[tuple[str, int]]:
        return set(self._paused)

    def buffered(self, topic: str, partition: int) -> bool:
        """Whether fetched messages of this partition wait to be returned by poll()."""
        return any(_partition_of(chunk) == (topic, partition) for chunk in self._buffer)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        return self.cluster.list_offset(topic, partition, timestamp_ms)

    def _resolve(self, topic: str, partition: int, offset: int) -> int:
        if offset in (EARLIEST, LATEST):
            return self.cluster.list_offset(topic, partition, offset)
        return offset

    # --- reading -------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_messages: int = 100_000) -> list[Message]:
        """The next messages from any assigned partition, waiting up to ``timeout`` seconds.
        CorruptBatchError when a partition's next batch cannot be decoded (see the module
        docstring); it is raised again until the caller seeks past it."""
        deadline = time.monotonic() + timeout
        while not self._buffer:
            if self._corrupt:
                raise next(iter(self._corrupt.values()))
            left = deadline - time.monotonic()
            if left <= 0 or not self.positions:
                return []
            self._fetch(max(0, min(self.max_wait_ms, int(left * 1000))))
        out: list[Message] = []
        buffer = self._buffer
        if self.columnar:  # whole blocks, at least one
            taken = 0
            while buffer and (not out or taken < max_messages):
                out.append(buffer.popleft())
                taken += len(out[-1])
            return out
        while buffer and len(out) < max_messages:
            chunk = buffer.popleft()
            room = max_messages - len(out)
            if len(chunk) > room:
                buffer.appendleft(chunk[room:])
                chunk = chunk[:room]
            out += chunk
        return out

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self.poll(1.0)

    def _fetch(self, max_wait_ms: int) -> None:
        by_leader: dict[int, list[tuple[str, int]]] = {}
        for key in self.positions:
            if key in self._paused:
                continue
            leader = self.cluster.leader(*key)
            if leader < 0:
                self.cluster.refresh([key[0]])
                leader = self.cluster.leader(*key)
            if leader >= 0:
                by_leader.setdefault(leader, []).append(key)
        if not by_leader:
            time.sleep(min(0.2, max_wait_ms / 1000))
            return
        # With several leaders, each waits only briefly, so one idle broker cannot hold up the
        # others; a single leader gets the whole wait.
        wait = max_wait_ms if len(by_leader) == 1 else min(max_wait_ms, 100)
        for leader, keys in by_leader.items():
            self._fetch_from(leader, keys, wait)

    def _fetch_body(self, keys, positions, wait_ms: int) -> dict:
        topics: dict[str, list] = {}
        for topic, partition in keys:
            topics.setdefault(topic, []).append(
                {
                    "partition": partition,
                    "current_leader_epoch": -1,
                    "fetch_offset": positions[(topic, partition)],
                    "log_start_offset": -1,
                    "partition_max_bytes": self.max_partition_fetch_bytes,
                }
            )
        return {
            "replica_id": -1,
            "max_wait_ms": wait_ms,
            "min_bytes": self.min_bytes,
            "max_bytes": self.fetch_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": p} for t, p in topics.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }

    def _connection(self, leader: int) -> BrokerConnection:
        """The consumer's own connection to a broker (requests may be left in flight on it)."""
        conn = self._conns.get(leader)
        if conn is None:
            address = self.cluster.brokers.get(leader)
            if address is None:  # the metadata forgot it (every broker was away): refetched
                raise NoBrokersError(f"broker {leader} is not known")
            host, port = address
            conn = self._conns[leader] = BrokerConnection(
                host,
                port,
                self.cluster.request_timeout,
                self.cluster.client_id,
                security=self.cluster.security,
            )
        return conn

    def _drop_connection(self, leader: int) -> None:
        self._inflight.pop(leader, None)
        conn = self._conns.pop(leader, None)
        if conn is not None:
            conn.close()

    def _fetch_from(self, leader: int, keys: list[tuple[str, int]], wait_ms: int) -> None:
        """One Fetch to a leader.  The answer's batch headers tell where the next fetch starts,
        so that fetch is sent before this answer is decoded: the broker prepares it while we
        decode (a pipeline of one request)."""
        wanted = {key: self.positions[key] for key in keys}
        try:
            inflight = self._inflight.pop(leader, None)
            if inflight is not None and inflight[1] == wanted:
                correlation_id = inflight[0]
            else:
                if inflight is not None:  # positions changed: that answer is of no use
                    self._drop_connection(leader)
                correlation_id = self._connection(leader).send(
                    ApiKey.FETCH, self._fetch_body(keys, wanted, wait_ms)
                )
            response = self._connection(leader).receive(ApiKey.FETCH, correlation_id)
        except (OSError, ValueError, KafkaError) as exc:
            log.warning("fetch from broker %d failed: %s; refreshing metadata", leader, exc)
            self._drop_connection(leader)
            self._refresh_quietly([t for t, _ in keys])
            time.sleep(0.1)
            return
        partitions = [(t["topic"], p) for t in response["responses"] for p in t["partitions"]]
        ahead = dict(wanted)
        clean = True
        for topic, p in partitions:
            key = (topic, p["partition_index"])
            if p["error_code"] or key not in ahead:
                clean = False
                break
            try:
                batches = list(split_batches(p["records"])) if p["records"] else []
            except CorruptMessageError:
                clean = False
                break
            if batches:
                ahead[key] = max(ahead[key], batches[-1][1].next_offset)
        if clean and not self._paused.intersection(keys):
            try:
                next_id = self._connection(leader).send(
                    ApiKey.FETCH, self._fetch_body(keys, ahead, wait_ms)
                )
                self._inflight[leader] = (next_id, ahead)
            except OSError:
                self._drop_connection(leader)
        for topic, p in partitions:
            self._take(topic, p)

    def _take(self, topic: str, p: dict) -> None:
        key = (topic, p["partition_index"])
        if key not in self.positions:
            return
        code = p["error_code"]
        if code == OffsetOutOfRangeError.code:
            self._reset_out_of_range(topic, p["partition_index"], p)
            return
        if code:
            error = error_for_code(code)
            if not error.retriable and error.code not in (6,):
                raise error(f"fetch {topic}-{p['partition_index']}")
            self._refresh_quietly([topic])
            return
        self.high_watermarks[key] = p["high_watermark"]
        records = p["records"]
        if not records:
            return
        decode = (
            (self.columnar if callable(self.columnar) else decode_block)
            if self.columnar
            else decode_messages
        )
        try:
            messages, next_offset = decode(
                topic, p["partition_index"], bytes(records), self.positions[key]
            )
        except CorruptBatchError as exc:
            log.error("CORRUPT BATCH: %s", exc)
            self._corrupt[key] = exc
            return
        self.positions[key] = next_offset
        if messages:
            self._buffer.append(messages)

    def _reset_out_of_range(self, topic: str, partition: int, p: dict) -> None:
        position = self.positions[(topic, partition)]
        if self.auto_offset_reset == "none":
            error = OffsetOutOfRangeError(
                f"offset {position} of {topic}-{partition} is out of range "
                f"(log start {p['log_start_offset']}, end {p['high_watermark']})"
            )
            error.topic, error.partition, error.position = topic, partition, position
            error.log_start, error.log_end = p["log_start_offset"], p["high_watermark"]
            raise error
        new = self._resolve(
            topic, partition, EARLIEST if self.auto_offset_reset == "earliest" else LATEST
        )
        log.error(
            "OFFSET OUT OF RANGE: %s-%d offset %d is outside [%d, %d]; reset to %s offset %d%s",
            topic,
            partition,
            position,
            p["log_start_offset"],
            p["high_watermark"],
            self.auto_offset_reset,
            new,
            f" ({new - position} messages skipped)" if new > position else "",
        )
        self.positions[(topic, partition)] = new

    def _refresh_quietly(self, topics: list[str]) -> None:
        try:
            self.cluster.refresh(sorted(set(topics)), allow_auto_create=False)
        except OSError as exc:
            log.warning("metadata refresh failed: %s", exc)

    def close(self) -> None:
        for leader in list(self._conns):
            self._drop_connection(leader)
        if self._own_cluster:
            self.cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _partition_of(chunk) -> tuple[str, int]:
    """(topic, partition) of a buffered chunk: a Block or a list of Messages."""
    if isinstance(chunk, Block):
        return chunk.topic, chunk.partition
    return chunk[0].topic, chunk[0].partition
