"""Faults on purpose: kill -9 mid-stream, a broker of three stopping and coming back, a
ZooKeeper session expiring, and thousands of malformed requests while a consumer reads."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time

from conftest import create_topic, metadata, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_bodies import produce_body, produce_to

from broker.protocol import frames
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection


def consume_all(bootstrap, topic, partitions, expected_count, timeout=60):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < expected_count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        got[(msg.partition(), msg.offset())] = msg.value()
    consumer.close()
    return got


def test_kill_9_mid_stream_loses_no_acknowledged_message(make_cluster):
    from confluent_kafka import Producer

    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    create_topic(broker.port, "survive", 2)
    acked = {}
    lock = threading.Lock()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked[(msg.partition(), msg.offset())] = msg.value()

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        }
    )
    stop = threading.Event()

    def produce_loop():
        i = 0
        while not stop.is_set() and i < 40_000:
            try:
                producer.produce(
                    "survive",
                    key=b"%d" % (i % 13),
                    value=b"message %d" % i,
                    on_delivery=on_delivery,
                )
                i += 1
            except BufferError:
                producer.poll(0.05)
            producer.poll(0)
            if i % 500 == 0:
                time.sleep(0.01)
        while not stop.is_set():  # delivery reports arrive only through poll()
            producer.poll(0.1)

    thread = threading.Thread(target=produce_loop)
    thread.start()
    wait_for(lambda: len(acked) > 3000, 30)
    broker.kill()  # kill -9 with messages in flight
    acked_before_kill = len(acked)
    time.sleep(1)
    broker.start()  # same port, same log dir: recovery runs
    wait_for(lambda: len(acked) > acked_before_kill + 3000, 90)
    stop.set()
    thread.join(30)
    assert producer.flush(60) == 0
    assert "not shut down cleanly" in broker.log_path.read_text()

    got = consume_all(broker.bootstrap, "survive", 2, len(acked))
    missing = [key for key, value in acked.items() if got.get(key) != value]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"


def test_a_stopped_broker_leaves_its_partitions_leaderless_until_it_returns(make_cluster):
    cluster = make_cluster(3)
    first = cluster.brokers[0]
    create_topic(first.port, "six", 6)
    placement = {
        p["partition_index"]: p["leader_id"]
        for p in metadata(first.port, ["six"])["topics"][0]["partitions"]
    }
    for partition, leader in placement.items():
        with BrokerConnection("127.0.0.1", cluster.broker(leader).port) as conn:
            produce_to(
                conn, "six", partition, build_batch([(b"k", b"before %d" % partition)]), acks=-1
            )
    victim = cluster.broker(2)
    victim.stop()  # SIGTERM: a clean shutdown that deregisters at once

    def leaderless():
        parts = metadata(first.port, ["six"])["topics"][0]["partitions"]
        return {
            p["partition_index"] for p in parts if p["leader_id"] == -1 and p["error_code"] == 5
        }

    victim_partitions = {p for p, leader in placement.items() if leader == 2}
    assert wait_for(lambda: leaderless() == victim_partitions, 15)
    for partition, leader in placement.items():  # the rest of the cluster keeps taking writes
        if leader == 2:
            continue
        with BrokerConnection("127.0.0.1", cluster.broker(leader).port) as conn:
            result = produce_to(conn, "six", partition, build_batch([(b"k", b"during")]), acks=-1)
            assert result["error_code"] == 0

    victim.start()
    wait_for(lambda: leaderless() == set(), 20)
    got = consume_all(cluster.bootstrap, "six", 6, 6 + len(placement) - len(victim_partitions))
    for partition in victim_partitions:
        assert got[(partition, 0)] == b"before %d" % partition  # its data is served again


def test_a_broker_registers_again_after_its_zookeeper_session_expires(make_cluster):
    cluster = make_cluster(2)
    paused = cluster.broker(2)
    os.kill(paused.process.pid, signal.SIGSTOP)  # a long pause: the 6 s session expires
    try:
        wait_for(
            lambda: [b["node_id"] for b in metadata(cluster.broker(1).port)["brokers"]] == [1], 30
        )
    finally:
        os.kill(paused.process.pid, signal.SIGCONT)
    wait_for(lambda: len(metadata(cluster.broker(1).port)["brokers"]) == 2, 30)
    with BrokerConnection("127.0.0.1", paused.port) as conn:
        assert conn.request(ApiKey.API_VERSIONS, {})["error_code"] == 0


# --- malformed input while a consumer reads ----------------------------------------------------

_HEADER = struct.Struct(">hhi")


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _valid_produce(topic: str, corrupt_at: int | None) -> bytes:
    batch = bytearray(build_batch([(b"k", b"fuzz")]))
    if corrupt_at is not None:
        batch[corrupt_at % len(batch)] ^= 0x5A
    body = produce_body(topic, 0, bytes(batch), timeout_ms=1000)
    return frames.encode_request(ApiKey.PRODUCE, 8, 1, "fuzz", body)


bad_frames = st.one_of(
    st.binary(max_size=200),  # random bytes, size prefix and all
    st.binary(max_size=200).map(_framed),  # a well-framed random payload
    st.tuples(st.integers(-5, 40), st.integers(-3, 20), st.binary(max_size=120)).map(
        lambda t: _framed(_HEADER.pack(t[0], t[1], 7) + t[2])
    ),  # any api key/version, junk body
    st.integers(-(2**31), 2**31 - 1).map(
        lambda n: struct.pack(">i", n) + b"\x00" * 16
    ),  # huge sizes
    st.tuples(st.integers(0, 200), st.booleans()).map(
        lambda t: _valid_produce("fuzzed", t[0] if t[1] else None)[: 4 + t[0] * 3]
    ),  # truncated
    st.integers(0, 200).map(lambda i: _valid_produce("fuzzed", i)),  # corrupt batches
)


class _Reader:
    """kcat consuming the topic in the background for the whole fuzz run."""

    def __init__(self, bootstrap):
        self.process = subprocess.Popen(
            [
                "kcat",
                "-b",
                bootstrap,
                "-C",
                "-t",
                "fuzzed",
                "-o",
                "beginning",
                "-q",
                "-u",
                "-f",
                "%s\n",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace").strip())

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def test_malformed_requests_never_disturb_a_concurrent_consumer(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "fuzzed", 1)
    reader = _Reader(cluster1.brokers[0].bootstrap)
    sent = []
    producer = BrokerConnection("127.0.0.1", port)
    calls = [0]

    @settings(
        max_examples=2500,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(bad_frames)
    def hammer(frame):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(frame)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(0.2)
            try:
                while s.recv(65536):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
        calls[0] += 1
        if calls[0] % 50 == 0:  # a real message now and then, read by kcat
            value = b"good %d" % len(sent)
            result = produce_to(
                producer, "fuzzed", 0, build_batch([(b"k", value)]), timeout_ms=1000
            )
            assert result["error_code"] == 0
            sent.append(value.decode())

    try:
        hammer()
        assert calls[0] >= 2000
        try:
            wait_for(lambda: set(sent) <= set(reader.lines), 30)
        except AssertionError as exc:
            raise AssertionError(
                f"sent {len(sent)}, kcat read {len(reader.lines)}: {reader.lines[:5]}"
                f" (kcat exit {reader.process.poll()})"
            ) from exc
    finally:
        reader.stop()
        producer.close()
    assert [line for line in reader.lines if line.startswith("good")] == sent  # in order, once each
    assert "Traceback" not in cluster1.brokers[0].log_path.read_text()
