"""The client's view of a cluster: brokers, topics, leaders, and one connection per broker.

    >>> cluster = ClusterClient(bootstrap_servers="127.0.0.1:9092")
    >>> cluster.partitions("clicks")           # [0, 1, 2, ...]
    >>> cluster.leader("clicks", 3)            # broker id, or -1 while it has no leader
    >>> cluster.request(1, ApiKey.METADATA, body)   # a request to broker 1, thread-safe

Brokers are found from ``bootstrap_servers`` (``host:port,...``) or from ZooKeeper's broker
registry (``zookeeper="host:port/chroot"``).  Metadata is refreshed on demand and when a caller
reports a stale leader; each broker connection is used by one thread at a time.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
from collections import deque

from broker.protocol import frames
from broker.protocol import zookeeper as layout
from broker.protocol.errors import KafkaError, LeaderNotAvailableError, error_for_code
from broker.protocol.registry import ApiKey, client_version
from broker.protocol.schema import DECODE_ERRORS
from broker.protocol.zk_client import zookeeper_client
from broker.protocol.zk_security import ZkCredentials

from .client import BrokerConnection, ConnectionClosed, parse_bootstrap
from .security import PLAINTEXT, ClientSecurity

log = logging.getLogger(__name__)


class NoBrokersError(ConnectionError):
    """No broker answered."""


def registered_address(reg, security_protocol: str = "PLAINTEXT") -> tuple[str, int] | None:
    """Where a client speaking ``security_protocol`` reaches a registered broker: the first of
    its endpoints whose listener speaks that protocol; for PLAINTEXT, or when none does, its
    default (PLAINTEXT) address."""
    if security_protocol != "PLAINTEXT":
        for name, address in reg.endpoint_map().items():
            if reg.protocol_of(name) == security_protocol:
                return address
    return reg.address_for()


def brokers_from_zookeeper(
    connect: str,
    timeout: float = 10.0,
    credentials: ZkCredentials | None = None,
    security_protocol: str = "PLAINTEXT",
) -> list[tuple[str, int]]:
    """(host, port) of every broker registered under ``/brokers/ids`` in ZooKeeper, logged in
    as ``credentials`` if given (the registrations are world-readable either way): each
    broker's endpoint for ``security_protocol`` (``registered_address``)."""
    from kazoo.exceptions import NoNodeError

    client = zookeeper_client(connect, credentials, timeout=timeout)
    client.start(timeout=timeout)
    try:
        found = []
        try:
            children = client.get_children(layout.BROKER_IDS)
        except NoNodeError:  # not a cluster's root: the chroot is wrong or missing
            chroot = "/" + connect.partition("/")[2] if "/" in connect else "/"
            raise NoBrokersError(
                f"no brokers registered under {chroot} in ZooKeeper {connect}: "
                "is this the cluster's zookeeper.connect?"
            ) from None
        for child in children:
            path = layout.broker_path(child)
            try:
                reg = layout.decode_broker(client.get(path)[0], path)
            except NoNodeError:  # gone since it was listed
                continue
            address = registered_address(reg, security_protocol)
            if address is not None:
                found.append(address)
        return found
    finally:
        client.stop()
        client.close()


class _Pooled:
    def __init__(self, host, port, timeout, client_id, security: ClientSecurity = PLAINTEXT):
        self.host, self.port = host, port
        self.timeout, self.client_id = timeout, client_id
        self.security = security
        self.lock = threading.Lock()
        self.conn: BrokerConnection | None = None

    def get(self) -> BrokerConnection:
        if self.conn is None:
            self.conn = BrokerConnection(
                self.host, self.port, self.timeout, self.client_id, security=self.security
            )
        return self.conn

    def reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None


_SIZE = struct.Struct(">i")

# Answers meaning the partition's leader is elsewhere (or not yet elected, or new and not yet
# sure of its high watermark): ask for metadata and try again, as Kafka's clients do.
# NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, REPLICA_NOT_AVAILABLE, KAFKA_STORAGE_ERROR,
# FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE.
LEADER_MOVED_CODES = frozenset({6, 5, 9, 56, 74, 75, 78})
LEADER_MOVED_BACKOFF_S = 0.1


class InFlightConnection:
    """A connection to one broker with many requests in flight (Kafka's
    ``max.in.flight.requests.per.connection``), used by one thread.

        >>> conn = cluster.connect(1)
        >>> conn.send(ApiKey.PRODUCE, [(body, token), ...])   # written at once, no waiting
        >>> answers, error = conn.read()              # once select() finds it readable

    The broker answers in order; ``read`` returns the answers that have fully arrived, each
    with the token it was sent with.  After an error (``read``'s second value, or an OSError
    from ``send``) the caller closes the connection: ``close`` returns the tokens of the
    requests still unanswered, oldest first.
    """

    # The most one recv asks for.  Over TLS one recv returns at most one record's bytes, and
    # a smaller ask leaves the rest of the record decrypted in the SSL object (see ``read``).
    read_bytes = 1 << 20

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        client_id: str,
        security: ClientSecurity = PLAINTEXT,
    ):
        self.host, self.port, self.timeout, self.client_id = host, port, timeout, client_id
        self.sock = BrokerConnection(host, port, timeout, client_id, security=security).sock
        self.pending: deque = deque()  # (correlation id, api key, version, token, sent at)
        self._ids = itertools.count(1)
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(
        self,
        api_key: ApiKey,
        requests: list,
        version: int | None = None,
        expect_answer: bool = True,
    ) -> None:
        """Write ``(body, token)`` requests in one go (by default at the version our clients
        ask for); with ``expect_answer=False`` (Produce with acks=0) the broker sends nothing
        back and nothing is remembered."""
        version = client_version(api_key, version)
        out, sent = [], []
        now = time.monotonic()
        for body, token in requests:
            correlation_id = next(self._ids)
            out.append(
                frames.encode_request(api_key, version, correlation_id, self.client_id, body)
            )
            sent.append((correlation_id, api_key, version, token, now))
        self.sock.sendall(b"".join(out))
        if expect_answer:  # only once written: after an OSError the caller has them all back
            self.pending.extend(sent)

    def expired(self, now: float) -> bool:
        """True when the oldest request has waited longer than the request timeout."""
        return bool(self.pending) and now - self.pending[0][4] > self.timeout

    def deadline(self) -> float | None:
        return self.pending[0][4] + self.timeout if self.pending else None

    def read(self) -> tuple[list, Exception | None]:
        """``([(token, body), ...], error)``: the answers complete in what the socket holds
        now (call it when readable), and the error that broke the connection, if one did."""
        answers: list = []
        try:
            data = self.sock.recv(self.read_bytes)
        except OSError as exc:
            return answers, exc
        if not data:
            return answers, ConnectionClosed(f"{self.host}:{self.port} closed the connection")
        buf = self._buffer
        buf += data
        # TLS: bytes already decrypted wait in the SSL object, where select() cannot see
        # them; take them now, or their answers would wait for more bytes on the wire.
        pending = getattr(self.sock, "pending", None)
        while pending is not None and pending():
            try:
                buf += self.sock.recv(max(pending(), self.read_bytes))
            except OSError as exc:
                return answers, exc
        pos, end = 0, len(buf)
        error = None
        while end - pos >= 4:
            size = _SIZE.unpack_from(buf, pos)[0]
            if end - pos - 4 < size:
                break
            if not self.pending:
                error = ConnectionError(f"{self.host}:{self.port} answered a request never sent")
                break
            correlation_id, api_key, version, token, _ = self.pending[0]
            try:
                got, body = frames.decode_response(
                    api_key, version, bytes(buf[pos + 4 : pos + 4 + size])
                )
            except DECODE_ERRORS as exc:
                error = exc
                break
            if got != correlation_id:
                error = ConnectionError(f"response {got} arrived for request {correlation_id}")
                break
            self.pending.popleft()
            answers.append((token, body))
            pos += 4 + size
        del buf[:pos]
        return answers, error

    def close(self) -> list:
        """Close the socket; the tokens of the requests left unanswered."""
        try:
            self.sock.close()
        except OSError:
            pass
        tokens = [entry[3] for entry in self.pending]
        self.pending.clear()
        return tokens


def list_offsets_body(partitions, timestamp: int) -> dict:
    """A consumer's ListOffsets request for ``partitions`` ((topic, partition) pairs) at one
    ``timestamp`` (-2 earliest, -1 latest, or a time in ms)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": p, "current_leader_epoch": -1, "timestamp": timestamp}
                    for p in ps
                ],
            }
            for topic, ps in by_topic.items()
        ],
    }


class ClusterClient:
    """Metadata and connections for producers and consumers; safe to share between threads."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        zookeeper: str | None = None,
        client_id: str = "headrace",
        request_timeout: float = 30.0,
        metadata_max_age: float = 300.0,
        security: ClientSecurity = PLAINTEXT,
        zookeeper_credentials: ZkCredentials | None = None,
    ):
        if not bootstrap_servers and not zookeeper:
            raise ValueError("give bootstrap_servers or zookeeper")
        self.security = security  # how every connection is made (TLS, SASL)
        self.bootstrap_servers = bootstrap_servers
        self.zookeeper = zookeeper
        self.zookeeper_credentials = zookeeper_credentials
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.metadata_max_age = metadata_max_age
        self.brokers: dict[int, tuple[str, int]] = {}
        self.topics: dict[str, dict[int, int]] = {}  # topic -> partition -> leader id
        self.topic_errors: dict[str, int] = {}
        self._pool: dict[int, _Pooled] = {}
        self._lock = threading.RLock()
        self._refreshed = 0.0

    # --- metadata ------------------------------------------------------------------------

    def _seeds(self) -> list[tuple[str, int]]:
        seeds = list(self.brokers.values())
        if self.bootstrap_servers:
            seeds += parse_bootstrap(self.bootstrap_servers)
        if self.zookeeper and not seeds:
            seeds += brokers_from_zookeeper(
                self.zookeeper,
                credentials=self.zookeeper_credentials,
                security_protocol=self.security.security_protocol,
            )
        return seeds

    def refresh(self, topics: list[str] | None = None, allow_auto_create: bool = True) -> dict:
        """Fetch Metadata for ``topics`` (None: all) from any reachable broker."""
        last = None
        seeds = self._seeds()
        if not seeds and self.zookeeper:
            seeds = brokers_from_zookeeper(
                self.zookeeper,
                credentials=self.zookeeper_credentials,
                security_protocol=self.security.security_protocol,
            )
        for host, port in seeds:
            try:
                with BrokerConnection(
                    host,
                    port,
                    timeout=self.request_timeout,
                    client_id=self.client_id,
                    security=self.security,
                ) as conn:
                    body = conn.request(
                        ApiKey.METADATA,
                        {
                            "topics": None if topics is None else [{"name": t} for t in topics],
                            "allow_auto_topic_creation": allow_auto_create,
                        },
                    )
            except OSError as exc:
                last = exc
                continue
            self._apply(body, topics)
            return body
        if self.zookeeper:
            self.brokers = {}
        raise NoBrokersError(f"no broker reachable (last error: {last})")

    def _apply(self, body: dict, topics: list[str] | None) -> None:
        with self._lock:
            self.brokers = {b["node_id"]: (b["host"], b["port"]) for b in body["brokers"]}
            for pooled_id in list(self._pool):
                if self._pool[pooled_id].conn is not None and pooled_id not in self.brokers:
                    self._pool[pooled_id].reset()
            for t in body["topics"]:
                self.topic_errors[t["name"]] = t["error_code"]
                if t["error_code"] == 0 or t["partitions"]:
                    self.topics[t["name"]] = {
                        p["partition_index"]: p["leader_id"] for p in t["partitions"]
                    }
                else:
                    self.topics.pop(t["name"], None)
            self._refreshed = time.monotonic()

    def partitions(self, topic: str, wait: float = 10.0) -> list[int]:
        """The topic's partitions (auto-created if the brokers allow it); waits for leaders
        of a topic that was just created."""
        deadline = time.monotonic() + wait
        while True:
            if (
                topic not in self.topics
                or time.monotonic() - self._refreshed > self.metadata_max_age
            ):
                self.refresh([topic])
            parts = self.topics.get(topic)
            if parts:
                return sorted(parts)
            if time.monotonic() > deadline:
                code = self.topic_errors.get(topic, 3)
                raise error_for_code(code)(f"topic {topic} is not available")
            time.sleep(0.1)
            self.refresh([topic])

    def leader(self, topic: str, partition: int) -> int:
        return self.topics.get(topic, {}).get(partition, -1)

    def available_partitions(self, topic: str) -> list[int]:
        """Partitions with a live leader (the paper: skip a dead broker's partitions)."""
        parts = self.topics.get(topic, {})
        return sorted(p for p, leader in parts.items() if leader >= 0)

    # --- requests ------------------------------------------------------------------------

    def _pooled(self, node_id: int) -> _Pooled:
        with self._lock:
            pooled = self._pool.get(node_id)
            if pooled is None:
                if node_id not in self.brokers:
                    raise NoBrokersError(f"broker {node_id} is not known")
                host, port = self.brokers[node_id]
                pooled = self._pool[node_id] = _Pooled(
                    host, port, self.request_timeout, self.client_id, self.security
                )
            return pooled

    def request(
        self, node_id: int, api_key: ApiKey, body: dict, version: int | None = None
    ) -> dict:
        """Send a request to a broker (by default at the version our clients ask for) and
        wait for its answer; a broken connection is closed and the error raised (the next
        request reconnects)."""
        pooled = self._pooled(node_id)
        with pooled.lock:
            try:
                return pooled.get().request(api_key, body, version)
            except (OSError, ValueError):
                pooled.reset()
                raise

    def connect(self, node_id: int) -> InFlightConnection:
        """A new connection to a broker of its own, for requests pipelined by one thread."""
        with self._lock:
            if node_id not in self.brokers:
                raise NoBrokersError(f"broker {node_id} is not known")
            host, port = self.brokers[node_id]
        return InFlightConnection(
            host, port, self.request_timeout, self.client_id, security=self.security
        )

    def list_offset(self, topic: str, partition: int, timestamp: int) -> int:
        """ListOffsets: -2 earliest, -1 latest, or the first offset at or after a time
        (-1: none).  While the partition has no leader, its leader moved (a retriable error)
        or the leader cannot be reached, metadata is refreshed and the request sent again,
        for up to ``request_timeout`` seconds."""
        deadline = time.monotonic() + self.request_timeout
        while True:
            try:
                return self._list_offset_once(topic, partition, timestamp)
            except (OSError, ValueError, KafkaError) as exc:
                moved = not isinstance(exc, KafkaError) or exc.code in LEADER_MOVED_CODES
                if not moved or time.monotonic() > deadline:
                    raise
                log.debug("ListOffsets %s-%d: %r; refreshing metadata", topic, partition, exc)
            time.sleep(LEADER_MOVED_BACKOFF_S)
            try:
                self.refresh([topic])
            except Exception as exc:  # brokers unreachable: try again until the deadline
                log.debug("metadata refresh failed: %r", exc)

    def _list_offset_once(self, topic: str, partition: int, timestamp: int) -> int:
        leader = self.leader(topic, partition)
        if leader < 0:
            self.refresh([topic])
            leader = self.leader(topic, partition)
        if leader < 0:
            raise LeaderNotAvailableError(f"{topic}-{partition} has no leader")
        body = self.request(
            leader, ApiKey.LIST_OFFSETS, list_offsets_body([(topic, partition)], timestamp)
        )
        p = body["topics"][0]["partitions"][0]
        if p["error_code"]:
            raise error_for_code(p["error_code"])(f"ListOffsets {topic}-{partition}")
        return p["offset"]

    def close(self) -> None:
        with self._lock:
            for pooled in self._pool.values():
                pooled.reset()
            self._pool.clear()
