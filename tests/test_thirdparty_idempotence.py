"""Idempotent produce end to end: real clients behind a proxy that loses Produce responses
(the broker appended the batch, the client never heard), and a broker killed with SIGKILL.
Every message must be in the log exactly once, in the order sent per partition."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest
from conftest import Cluster, create_topic, wait_for
from kafka_proxy import ProduceResponseDropper
from request_bodies import produce_to

from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer
from headrace.devcluster import free_port

PARTITIONS = 3
MESSAGES = 6000
DROP_EVERY = 3  # every third Produce response is lost...
MAX_DROPS = 200  # ...up to this many times per run
MIN_DROPS = 50


class ProxiedBroker:
    """One broker that advertises the proxy's port, so every client goes through it."""

    def __init__(self, workdir, zookeeper_connect):
        self.proxy_port = free_port()
        self.cluster = Cluster(
            workdir,
            zookeeper_connect,
            1,
            {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.proxy_port}"},
        )
        self.broker = self.cluster.brokers[0]
        self.proxy = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def start(self, drop_every: int, max_drops: int) -> ProxiedBroker:
        self.cluster.start()
        self.proxy = ProduceResponseDropper(
            self.broker.port, port=self.proxy_port, drop_every=drop_every, max_drops=max_drops
        ).start()
        return self

    def reset_proxy(self, drop_every: int, max_drops: int, **corrupt) -> ProduceResponseDropper:
        self.proxy.stop()
        self.proxy = ProduceResponseDropper(
            self.broker.port,
            port=self.proxy_port,
            drop_every=drop_every,
            max_drops=max_drops,
            **corrupt,
        ).start()
        return self.proxy

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.cluster.kill()  # teardown: nothing is checked after it


@pytest.fixture(scope="module")
def proxied(zookeeper, tmp_path_factory):
    broker = ProxiedBroker(
        tmp_path_factory.mktemp("idem"), f"{zookeeper.connect}/idem-{time.monotonic_ns()}"
    )
    broker.start(drop_every=DROP_EVERY, max_drops=MAX_DROPS)
    yield broker
    broker.stop()


def numbered(i: int) -> bytes:
    return b"%08d" % i


def read_back(
    bootstrap: str, topic: str, expected: int, timeout: float = 60
) -> dict[int, list[int]]:
    """Every message of the topic, per partition, as the numbers they carry."""
    consumer = Consumer(bootstrap_servers=bootstrap)
    consumer.assign([(topic, p, EARLIEST) for p in range(PARTITIONS)])
    got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + timeout
    total = 0
    while total < expected and time.monotonic() < deadline:
        for message in consumer.poll(0.5):
            got[message.partition].append(int(message.value))
            total += 1
    for message in consumer.poll(0.5):  # anything beyond is a duplicate
        got[message.partition].append(int(message.value))
    consumer.close()
    return got


def assert_exactly_once_in_order(got: dict[int, list[int]], count: int) -> None:
    everything = sorted(n for numbers in got.values() for n in numbers)
    duplicates = len(everything) - len(set(everything))
    assert duplicates == 0, f"{duplicates} duplicates"
    assert everything == list(range(count)), f"{count - len(everything)} missing"
    for partition, numbers in got.items():
        assert numbers == sorted(numbers), f"partition {partition} is out of order"


def new_topic(proxied: ProxiedBroker, name: str) -> str:
    create_topic(proxied.broker.port, name, PARTITIONS)
    return name


def produce_confluent(bootstrap: str, topic: str) -> None:
    import confluent_kafka

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.num.messages": 10,
            "retry.backoff.ms": 20,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 5,
            "reconnect.backoff.max.ms": 50,
        }
    )
    failures = []
    for i in range(MESSAGES):
        producer.produce(
            topic,
            numbered(i),
            partition=i % PARTITIONS,
            on_delivery=lambda err, msg: err and failures.append(err),
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []


def produce_kafka_python(bootstrap: str, topic: str) -> None:
    import kafka

    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=1,
        batch_size=250,
        retry_backoff_ms=20,
        reconnect_backoff_ms=5,
    )
    futures = [producer.send(topic, numbered(i), partition=i % PARTITIONS) for i in range(MESSAGES)]
    producer.flush(60)
    for future in futures:
        future.get(10)
    producer.close()


def produce_aiokafka(bootstrap: str, topic: str) -> None:
    import aiokafka

    async def produce():
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=250,
            retry_backoff_ms=20,
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, numbered(i), partition=i % PARTITIONS)
                for i in range(MESSAGES)
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(produce())


def produce_ours(bootstrap: str, topic: str) -> None:
    with Producer(
        bootstrap_servers=bootstrap, linger_ms=1, batch_size=200, retry_backoff_ms=20
    ) as producer:  # idempotent by default
        futures = [
            producer.send(topic, numbered(i), partition=i % PARTITIONS) for i in range(MESSAGES)
        ]
        producer.flush(60)
    for future in futures:
        future.result(0)


PRODUCERS = {
    "confluent-kafka": produce_confluent,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
    "headrace": produce_ours,
}
# Lost responses: the broker appended the batch, the client retries it.  Corrupted requests:
# a batch is refused (CORRUPT_MESSAGE, retriable) and the batches of its partition pipelined
# behind it meet a gap (OUT_OF_ORDER_SEQUENCE_NUMBER): they must be sent again after it.
FAULTS = {
    "lost-responses": {"drop_every": DROP_EVERY, "max_drops": MAX_DROPS},
    "corrupted-requests": {
        "drop_every": 1,
        "max_drops": 0,
        "corrupt_every": 4,
        "max_corruptions": MAX_DROPS // 3,
    },
}


# kafka-python and aiokafka take CORRUPT_MESSAGE as final (Kafka's clients retry it).
CASES = [
    (client, fault)
    for fault in FAULTS
    for client in PRODUCERS
    if fault == "lost-responses" or client in ("confluent-kafka", "headrace")
]


@pytest.mark.parametrize(("client", "fault"), CASES)
def test_idempotent_producer_stores_each_message_once_in_order(proxied, client, fault):
    topic = new_topic(proxied, f"idem-{client}-{fault}")
    proxy = proxied.reset_proxy(**FAULTS[fault])
    PRODUCERS[client](proxied.bootstrap, topic)
    assert proxy.drops + proxy.corruptions >= MIN_DROPS  # the faults did happen
    assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)


def test_a_batch_retried_after_kill_9_is_still_deduplicated(make_cluster):
    """The producer state is rebuilt from the batch headers after a crash (no snapshot)."""
    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    create_topic(broker.port, "again", 1)
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        answer = conn.request(
            ApiKey.INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout_ms": -1}
        )
    pid, epoch = answer["producer_id"], answer["producer_epoch"]
    batches = [
        build_batch(
            [(None, numbered(i)) for i in range(first, first + n)],
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=first,
        )
        for first, n in ((0, 3), (3, 2))
    ]

    def produce(data):
        with BrokerConnection("127.0.0.1", broker.port) as conn:
            answer = produce_to(conn, "again", 0, data, acks=-1)
        return answer["error_code"], answer["base_offset"]

    assert [produce(b) for b in batches] == [(0, 0), (0, 3)]
    broker.kill()
    broker.start()
    assert "not shut down cleanly" in broker.log_path.read_text()
    assert [produce(b) for b in reversed(batches)] == [(0, 3), (0, 0)]  # answered, not stored
    gap = build_batch([(None, b"x")], producer_id=pid, producer_epoch=epoch, base_sequence=9)
    assert produce(gap)[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    following = build_batch(
        [(None, numbered(5))], producer_id=pid, producer_epoch=epoch, base_sequence=5
    )
    assert produce(following) == (0, 5)
    consumer = Consumer(bootstrap_servers=broker.bootstrap)
    consumer.assign([("again", 0, EARLIEST)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 6 and time.monotonic() < deadline:
        got += [int(m.value) for m in consumer.poll(0.5)]
    got += [int(m.value) for m in consumer.poll(0.5)]
    consumer.close()
    assert got == list(range(6))


def test_idempotent_producers_store_each_message_once_across_a_kill_9(zookeeper, tmp_path):
    import confluent_kafka

    proxied = ProxiedBroker(tmp_path, f"{zookeeper.connect}/idem-kill-{time.monotonic_ns()}")
    proxied.start(drop_every=DROP_EVERY, max_drops=MAX_DROPS // 2)
    try:
        ours_topic = new_topic(proxied, "kill-headrace")
        rd_topic = new_topic(proxied, "kill-confluent")
        delivered = {"ours": 0, "confluent": 0}
        errors = []

        def count(name, error):
            if error:
                errors.append((name, error))
            else:
                delivered[name] += 1

        def ours():
            with Producer(
                bootstrap_servers=proxied.bootstrap,
                linger_ms=1,
                batch_size=200,
                retry_backoff_ms=50,
            ) as producer:
                for i in range(MESSAGES):
                    producer.send(
                        ours_topic, numbered(i), partition=i % PARTITIONS
                    ).add_done_callback(lambda f: count("ours", f.exception()))
                    if i % 100 == 0:
                        time.sleep(0.01)
                producer.flush(90)

        def confluent():
            producer = confluent_kafka.Producer(
                {
                    "bootstrap.servers": proxied.bootstrap,
                    "enable.idempotence": True,
                    "linger.ms": 1,
                    "batch.num.messages": 10,
                    "retry.backoff.ms": 50,
                    "message.timeout.ms": 90000,
                    "reconnect.backoff.ms": 5,
                    "reconnect.backoff.max.ms": 200,
                }
            )
            for i in range(MESSAGES):
                producer.produce(
                    rd_topic,
                    numbered(i),
                    partition=i % PARTITIONS,
                    on_delivery=lambda err, msg: count("confluent", err),
                )
                producer.poll(0)
                if i % 100 == 0:
                    time.sleep(0.01)
            producer.flush(90)

        threads = [threading.Thread(target=ours), threading.Thread(target=confluent)]
        for thread in threads:
            thread.start()
        wait_for(lambda: min(delivered.values()) > MESSAGES // 4, 60)
        proxied.broker.kill()  # kill -9 with requests in flight
        time.sleep(0.5)
        proxied.broker.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert delivered == {"ours": MESSAGES, "confluent": MESSAGES}
        assert "not shut down cleanly" in proxied.broker.log_path.read_text()
        for topic in (ours_topic, rd_topic):
            assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)
    finally:
        proxied.stop()


def test_headrace_produce_takes_the_idempotence_switch(proxied):
    topic = new_topic(proxied, "idem-cli")
    proxied.reset_proxy(drop_every=1, max_drops=1)  # the first answer is lost: a retry
    command = [
        sys.executable,
        "-m",
        "headrace.cli",
        "produce",
        "--topic",
        topic,
        "--bootstrap-server",
        proxied.bootstrap,
    ]
    lines = b"".join(numbered(i) + b"\n" for i in range(PARTITIONS * 100))
    refused = subprocess.run(
        [*command, "--acks", "1", "--idempotence"],
        input=lines,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert b"enable_idempotence needs acks='all'" in refused.stderr
    done = subprocess.run(command, input=lines, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = read_back(proxied.bootstrap, topic, PARTITIONS * 100)
    everything = sorted(n for numbers in got.values() for n in numbers)
    assert everything == list(range(PARTITIONS * 100))
