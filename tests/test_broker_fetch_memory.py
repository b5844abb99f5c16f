"""Fetch memory is bounded: responses are streamed from the segment files in pieces, and
``fetch.max.bytes`` caps a whole response softly, as Kafka does."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from conftest import create_topic
from request_bodies import fetch_body, produce_to

from broker.protocol import frames
from broker.protocol.records import build_batch, check_batch, split_batches
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

INT32_MAX = 2**31 - 1
MIB = 1 << 20


def produce(conn, topic, partition, records):
    result = produce_to(conn, topic, partition, records, timeout_ms=30000)
    assert result["error_code"] == 0, result
    return result


def fetch_request(topic, offset, max_bytes, partition_max_bytes, correlation_id=1) -> bytes:
    body = fetch_body(
        [(topic, 0, offset)], max_bytes=max_bytes, partition_max_bytes=partition_max_bytes
    )
    return frames.encode_request(ApiKey.FETCH, 11, correlation_id, "memory-test", body)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Stream:
    """Exact reads from a socket, without keeping what was read."""

    def __init__(self, sock):
        self.sock = sock

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise ConnectionError(f"closed after {got} of {n} bytes")
            got += k
        return bytes(buf)


def read_fetch_streaming(sock) -> tuple[int, int, int]:
    """Read one Fetch v11 response for one partition batch by batch, checking each batch's
    CRC and that offsets follow on; returns (record bytes, first offset, next offset)."""
    s = _Stream(sock)
    size, _correlation = struct.unpack(">ii", s.read(8))
    _throttle, error, _session, topics = struct.unpack(">ihii", s.read(14))
    assert error == 0 and topics == 1
    (name_len,) = struct.unpack(">h", s.read(2))
    s.read(name_len)
    (partitions,) = struct.unpack(">i", s.read(4))
    assert partitions == 1
    _index, perror, _hw, _lso, _start, aborted, _replica, records_len = struct.unpack(
        ">ihqqqiii", s.read(42)
    )
    assert perror == 0 and aborted == -1
    assert size == 4 + 14 + 2 + name_len + 4 + 42 + records_len
    left = records_len
    first = next_offset = None
    while left:
        head = s.read(12)
        base, length = struct.unpack(">qi", head)
        batch = head + s.read(length)
        header = check_batch(memoryview(batch), 0)
        if first is None:
            first = next_offset = base
        assert base == next_offset
        next_offset = base + header.record_count
        left -= len(batch)
    return records_len, first, next_offset


@pytest.mark.slow
def test_ten_huge_fetches_at_once_are_served_in_bounded_memory(make_cluster):
    cluster = make_cluster(
        1, message_max_bytes=8 * MIB, fetch_max_bytes=INT32_MAX, socket_request_max_bytes=16 * MIB
    )
    broker = cluster.brokers[0]
    create_topic(broker.port, "huge", 1)
    batch = build_batch([(None, bytes([i]) * MIB) for i in range(4)])  # 4 MiB, 4 records
    batches = 75  # about 300 MB
    with BrokerConnection("127.0.0.1", broker.port, timeout=60) as conn:
        for _ in range(batches):
            produce(conn, "huge", 0, batch)
    total = batches * len(batch)
    time.sleep(0.5)
    baseline = rss_bytes(broker.process.pid)

    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(broker.process.pid))
            time.sleep(0.02)

    caps = [INT32_MAX] * 8 + [100 * MIB, 1]  # two clients capped lower: served up to their cap
    results: list = [None] * len(caps)

    def client(i):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=60) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            sock.sendall(fetch_request("huge", 0, caps[i], INT32_MAX, correlation_id=i))
            results[i] = read_fetch_streaming(sock)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(len(caps))]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join(120)
    finally:
        done.set()
        sampler.join()
    per_batch = len(batch)
    expected = [total] * 8 + [(100 * MIB // per_batch) * per_batch, per_batch]
    assert [r[0] if r else None for r in results] == expected
    assert all(r[1] == 0 and r[2] == r[0] // per_batch * 4 for r in results)
    grown = peak[0] - baseline
    assert grown < 200 * MIB, f"resident memory grew by {grown / MIB:.0f} MiB"
    # ... and the broker still serves everyone else.
    with BrokerConnection("127.0.0.1", broker.port, timeout=10) as conn:
        produce(conn, "huge", 0, build_batch([(None, b"after")]))


def test_fetch_max_bytes_caps_a_response_softly(make_cluster):
    cluster = make_cluster(1, fetch_max_bytes=4096)
    port = cluster.brokers[0].port
    create_topic(port, "capped", 2)
    small = build_batch([(None, b"s" * 1000)])
    big = build_batch([(None, b"b" * 10_000)])
    with BrokerConnection("127.0.0.1", port) as conn:
        for p in (0, 1):
            for _ in range(10):
                produce(conn, "capped", p, small)
        produce(conn, "capped", 0, big)
        body = {
            "replica_id": -1,
            "max_wait_ms": 0,
            "min_bytes": 0,
            "max_bytes": INT32_MAX,
            "isolation_level": 1,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [
                {
                    "topic": "capped",
                    "partitions": [
                        {
                            "partition": p,
                            "current_leader_epoch": -1,
                            "fetch_offset": offset,
                            "log_start_offset": -1,
                            "partition_max_bytes": INT32_MAX,
                        }
                        for p, offset in ((0, 0), (1, 0))
                    ],
                }
            ],
            "forgotten_topics_data": [],
            "rack_id": "",
        }
        parts = conn.request(ApiKey.FETCH, body)["responses"][0]["partitions"]
        sizes = [len(bytes(p["records"])) for p in parts]
        assert sizes == [4096 // len(small) * len(small), 0]  # whole batches within the cap
        body["topics"][0]["partitions"][0]["fetch_offset"] = 10
        parts = conn.request(ApiKey.FETCH, body)["responses"][0]["partitions"]
        first = bytes(parts[0]["records"])
        assert len(first) == len(big)  # larger than the cap, yet whole
        assert bytes(parts[1]["records"]) == b""


def test_consumers_read_everything_through_a_small_fetch_max_bytes(make_cluster):
    from confluent_kafka import Consumer

    cluster = make_cluster(1, fetch_max_bytes=2048)
    port = cluster.brokers[0].port
    create_topic(port, "trickle", 3)
    expected = set()
    with BrokerConnection("127.0.0.1", port) as conn:
        for p in range(3):
            for i in range(20):
                value = f"{p}-{i}-".encode() + b"v" * 700
                expected.add(value)
                produce(conn, "trickle", p, build_batch([(None, value)]))
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": "trickle",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 1 << 20,
        }
    )
    consumer.subscribe(["trickle"])
    seen = set()
    deadline = time.monotonic() + 30
    try:
        while seen != expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.add(message.value())
    finally:
        consumer.close()
    assert seen == expected

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        "trickle",
        bootstrap_servers=cluster.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        api_version=(2, 5),
    )
    try:
        assert {m.value for m in consumer} == expected
    finally:
        consumer.close()


def test_a_fetch_response_streams_the_bytes_a_read_would_return(make_cluster):
    cluster = make_cluster(1)
    port = cluster.brokers[0].port
    create_topic(port, "same", 1)
    with BrokerConnection("127.0.0.1", port) as conn:
        for i in range(50):
            produce(conn, "same", 0, build_batch([(None, bytes([i]) * 50_000)]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(fetch_request("same", 0, INT32_MAX, INT32_MAX))
        size, offset_first, offset_next = read_fetch_streaming(sock)
    assert (offset_first, offset_next) == (0, 50)
    segment = next((cluster.brokers[0].workdir / "broker-1-logs" / "same-0").glob("*.log"))
    data = segment.read_bytes()
    assert size == len(data)
    assert [h.base_offset for _, h in split_batches(data)] == list(range(50))


def test_a_queued_fetch_response_survives_the_deletion_of_its_topic(make_cluster):
    cluster = make_cluster(1)
    port = cluster.brokers[0].port
    create_topic(port, "waiting", 1)
    create_topic(port, "doomed", 1)
    with BrokerConnection("127.0.0.1", port) as conn:
        for i in range(20):
            produce(conn, "doomed", 0, build_batch([(None, bytes([i]) * 10_000)]))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        # A long-polled fetch first: the second response waits behind it, holding file ranges.
        body = {
            "replica_id": -1,
            "max_wait_ms": 2000,
            "min_bytes": 1,
            "max_bytes": INT32_MAX,
            "isolation_level": 1,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [
                {
                    "topic": "waiting",
                    "partitions": [
                        {
                            "partition": 0,
                            "current_leader_epoch": -1,
                            "fetch_offset": 0,
                            "log_start_offset": -1,
                            "partition_max_bytes": INT32_MAX,
                        }
                    ],
                }
            ],
            "forgotten_topics_data": [],
            "rack_id": "",
        }
        sock.sendall(frames.encode_request(ApiKey.FETCH, 11, 1, "t", body))
        sock.sendall(fetch_request("doomed", 0, INT32_MAX, INT32_MAX, correlation_id=2))
        time.sleep(0.3)
        with BrokerConnection("127.0.0.1", port) as admin:
            result = admin.request(
                ApiKey.DELETE_TOPICS, {"topic_names": ["doomed"], "timeout_ms": 5000}
            )
        assert result["responses"][0]["error_code"] == 0
        assert not (cluster.brokers[0].workdir / "broker-1-logs" / "doomed-0").exists()
        assert read_fetch_streaming(sock)[0] == 0  # the long poll ends empty
        size, first, following = read_fetch_streaming(sock)  # CRCs checked batch by batch
    assert (first, following) == (0, 20) and size == 20 * len(build_batch([(None, b"x" * 10_000)]))
