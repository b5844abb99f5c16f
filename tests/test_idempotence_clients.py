"""Idempotent produce end to end: real clients behind a proxy that loses Produce responses
(the broker appended the batch, the client never heard), and a broker killed with SIGKILL.
Every message must be in the log exactly once, in the order sent per partition."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import Cluster, create_topic
from kafka_proxy import ProduceResponseDropper

from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer
from headrace.devcluster import free_port

PARTITIONS = 3
MESSAGES = 6000
DROP_EVERY = 3  # every third Produce response is lost...
MAX_DROPS = 300  # ...up to this many times per run
MIN_DROPS = 50


class ProxiedBroker:
    """One broker that advertises the proxy's port, so every client goes through it."""

    def __init__(self, workdir, zookeeper_connect):
        self.proxy_port = free_port()
        self.cluster = Cluster(workdir, zookeeper_connect, 1,
                               {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.proxy_port}"})
        self.broker = self.cluster.brokers[0]
        self.proxy = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def start(self, drop_every: int, max_drops: int) -> ProxiedBroker:
        self.cluster.start()
        self.proxy = ProduceResponseDropper(self.broker.port, port=self.proxy_port,
                                            drop_every=drop_every, max_drops=max_drops).start()
        return self

    def reset_proxy(self, drop_every: int, max_drops: int) -> ProduceResponseDropper:
        self.proxy.stop()
        self.proxy = ProduceResponseDropper(self.broker.port, port=self.proxy_port,
                                            drop_every=drop_every, max_drops=max_drops).start()
        return self.proxy

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.cluster.stop()


@pytest.fixture(scope="module")
def proxied(zookeeper, tmp_path_factory):
    broker = ProxiedBroker(tmp_path_factory.mktemp("idem"), f"{zookeeper.connect}/idem-{time.monotonic_ns()}")
    broker.start(drop_every=DROP_EVERY, max_drops=MAX_DROPS)
    yield broker
    broker.stop()


def numbered(i: int) -> bytes:
    return b"%08d" % i


def read_back(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> dict[int, list[int]]:
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


def test_confluent_kafka_idempotent_producer_stores_each_message_once(proxied):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    topic = new_topic(proxied, "idem-confluent")
    proxy = proxied.reset_proxy(drop_every=DROP_EVERY, max_drops=MAX_DROPS)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": proxied.bootstrap, "enable.idempotence": True, "linger.ms": 1,
        "batch.num.messages": 10, "retry.backoff.ms": 20, "message.timeout.ms": 60000,
        "reconnect.backoff.ms": 5, "reconnect.backoff.max.ms": 50})
    failures = []
    for i in range(MESSAGES):
        producer.produce(topic, numbered(i), partition=i % PARTITIONS,
                         on_delivery=lambda err, msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    print("drops", proxy.drops, "of", proxy.produce_responses)
    assert proxy.drops >= MIN_DROPS
    assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)


def test_kafka_python_idempotent_producer_stores_each_message_once(proxied):
    kafka = pytest.importorskip("kafka")
    topic = new_topic(proxied, "idem-kafka-python")
    proxy = proxied.reset_proxy(drop_every=DROP_EVERY, max_drops=MAX_DROPS)
    producer = kafka.KafkaProducer(bootstrap_servers=proxied.bootstrap, enable_idempotence=True,
                                   linger_ms=1, batch_size=250, retry_backoff_ms=20,
                                   reconnect_backoff_ms=5)
    futures = [producer.send(topic, numbered(i), partition=i % PARTITIONS) for i in range(MESSAGES)]
    producer.flush(60)
    for future in futures:
        future.get(10)
    producer.close()
    print("drops", proxy.drops, "of", proxy.produce_responses)
    assert proxy.drops >= MIN_DROPS
    assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)


def test_aiokafka_idempotent_producer_stores_each_message_once(proxied):
    aiokafka = pytest.importorskip("aiokafka")
    topic = new_topic(proxied, "idem-aiokafka")
    proxy = proxied.reset_proxy(drop_every=DROP_EVERY, max_drops=MAX_DROPS)

    async def produce():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=proxied.bootstrap,
                                             enable_idempotence=True, linger_ms=2,
                                             max_batch_size=250, retry_backoff_ms=20)
        await producer.start()
        try:
            futures = [await producer.send(topic, numbered(i), partition=i % PARTITIONS)
                       for i in range(MESSAGES)]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(produce())
    print("drops", proxy.drops, "of", proxy.produce_responses)
    assert proxy.drops >= MIN_DROPS
    assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)



def test_our_producer_stores_each_message_once(proxied):
    topic = new_topic(proxied, "idem-headrace")
    proxy = proxied.reset_proxy(drop_every=DROP_EVERY, max_drops=MAX_DROPS)
    with Producer(bootstrap_servers=proxied.bootstrap, acks="all", linger_ms=1, batch_size=200,
                  retry_backoff_ms=20) as producer:
        futures = [producer.send(topic, numbered(i), partition=i % PARTITIONS) for i in range(MESSAGES)]
        producer.flush(60)
    for future in futures:
        future.result(0)
    print("drops", proxy.drops, "of", proxy.produce_responses)
    assert proxy.drops >= MIN_DROPS
    assert_exactly_once_in_order(read_back(proxied.bootstrap, topic, MESSAGES), MESSAGES)
