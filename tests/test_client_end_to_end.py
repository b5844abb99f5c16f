"""The client side against real brokers: producer, consumer, the ZooKeeper group consumer,
and the console tools."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import pytest
from command_lines import group_args
from conftest import create_topic, wait_for, zk_session

from broker.protocol import zookeeper as layout
from broker.protocol.errors import MessageTooLargeError, RequestTimedOutError
from consumers.consumer import EARLIEST, Consumer
from consumers.partitioner import partition_for_key
from consumers.producer import BufferFullError, Producer, ProducerClosedError

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def read_all(bootstrap, topic, partitions, count, timeout=60):
    consumer = Consumer(bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, p, EARLIEST) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(1.0)
    consumer.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_producer_and_consumer_round_trip(cluster3, codec):
    topic = f"ours-{codec}"
    create_topic(cluster3.brokers[0].port, topic, 6)
    with Producer(cluster3.bootstrap, compression=codec, acks="all") as producer:
        futures = [
            producer.send(topic, b"%s|%d" % (k.encode(), i), key=k.encode())
            for i in range(300)
            for k in ("alpha", "beta", "gamma", "delta")
        ]
        producer.flush()
        results = [f.result(10) for f in futures]
    assert all(r.offset >= 0 for r in results)
    got = read_all(cluster3.bootstrap, topic, 6, 1200)
    assert sorted(m.value for m in got) == sorted(
        b"%s|%d" % (k.encode(), i) for i in range(300) for k in ("alpha", "beta", "gamma", "delta")
    )
    last = defaultdict(lambda: -1)
    for m in sorted(got, key=lambda m: (m.partition, m.offset)):
        key, seq = m.value.split(b"|")
        assert m.key == key and int(seq) > last[key]
        last[key] = int(seq)
        assert m.partition == partition_for_key(key, 6)


def test_keys_land_where_confluent_kafka_puts_them_and_kcat_reads_ours(cluster1):
    from confluent_kafka import Producer as CKProducer

    port = cluster1.brokers[0].port
    create_topic(port, "keys-ck", 7)
    create_topic(port, "keys-ours", 7)
    keys = [f"user-{i}".encode() for i in range(200)]
    ck = CKProducer({"bootstrap.servers": cluster1.bootstrap, "partitioner": "murmur2_random"})
    placed = {}
    for key in keys:
        ck.produce(
            "keys-ck",
            key=key,
            value=key,
            on_delivery=lambda err, msg: placed.__setitem__(msg.key(), msg.partition()),
        )
    assert ck.flush(30) == 0
    with Producer(cluster1.bootstrap) as producer:
        ours = {key: producer.send("keys-ours", key, key=key) for key in keys}
        producer.flush()
    assert {k: f.result().partition for k, f in ours.items()} == placed
    out = subprocess.run(
        [
            "kcat",
            "-b",
            cluster1.bootstrap,
            "-C",
            "-t",
            "keys-ours",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %k\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert sorted(out.split("\n")[:-1]) == sorted(f"{placed[k]} {k.decode()}" for k in keys)
    subprocess.run(
        ["kcat", "-b", cluster1.bootstrap, "-P", "-t", "keys-ck", "-K", ":"],
        input="from:kcat\n",
        text=True,
        timeout=30,
        check=True,
    )
    got = read_all(cluster1.bootstrap, "keys-ck", 7, 201)
    assert b"kcat" in {m.value for m in got} and len(got) == 201


def test_producer_reports_errors_per_message(cluster1):
    create_topic(cluster1.brokers[0].port, "errs", 1)
    producer = Producer(
        cluster1.bootstrap,
        max_request_size=10_000,
        buffer_memory=5_000,
        block_on_full=False,
        linger_ms=1000,
    )
    too_big = producer.send("errs", b"x" * 20_000)
    with pytest.raises(MessageTooLargeError):
        too_big.result(5)
    with pytest.raises(BufferFullError):
        for _ in range(100):
            producer.send("errs", b"y" * 500)
    producer.close()
    with pytest.raises(ProducerClosedError):
        producer.send("errs", b"late")


def test_undeliverable_messages_fail_after_the_delivery_timeout(make_cluster):
    cluster = make_cluster(1)
    create_topic(cluster.brokers[0].port, "lost", 1)
    producer = Producer(
        cluster.bootstrap, delivery_timeout_ms=1500, retry_backoff_ms=100, request_timeout_ms=1000
    )
    assert producer.send("lost", b"before").result(10).offset == 0
    cluster.brokers[0].kill()
    future = producer.send("lost", b"nobody takes this")
    with pytest.raises(RequestTimedOutError):
        future.result(20)
    producer.close(1)


def test_consumer_resets_an_out_of_range_offset_loudly(cluster1, caplog):
    create_topic(cluster1.brokers[0].port, "reset", 1)
    with Producer(cluster1.bootstrap) as producer:
        for i in range(10):
            producer.send("reset", b"%d" % i)
    consumer = Consumer(cluster1.bootstrap, auto_offset_reset="earliest")
    consumer.assign([("reset", 0, 500)])
    with caplog.at_level("ERROR"):
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            got += consumer.poll(0.5)
    assert [m.value for m in got] == [b"%d" % i for i in range(10)]
    assert "OFFSET OUT OF RANGE" in caplog.text
    strict = Consumer(cluster1.bootstrap, auto_offset_reset="none")
    strict.assign([("reset", 0, 500)])
    with pytest.raises(Exception, match="out of range"):
        strict.poll(5)
    consumer.close()
    strict.close()


# --- the paper's group consumer ------------------------------------------------------------

MEMBER = textwrap.dedent(
    """
    import json, sys, logging
    logging.basicConfig(level=logging.WARNING)
    from consumers.group import GroupConsumer
    zk, group, topic, name = sys.argv[1:5]
    consumer = GroupConsumer(group, [topic], zk, consumer_id=name, auto_offset_reset="smallest",
                             auto_commit_interval_ms=500, session_timeout_ms=4000)
    consumer.start()
    while True:
        for m in consumer.poll(0.3):
            sys.stdout.write("M %d %d %s\\n" % (m.partition, m.offset, m.value.decode()))
        sys.stdout.flush()
    """
)


class Member:
    def __init__(self, zk, group, topic, name, logdir):
        self.name = name
        self.out = logdir / f"{name}.out"
        with open(self.out, "w") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-c", MEMBER, zk, group, topic, name],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def consumed(self) -> list[tuple[int, int, str]]:
        with open(self.out) as f:
            return [
                (int(p), int(o), v)
                for _, p, o, v in (
                    line.rstrip("\n").split(" ", 3) for line in f if line.startswith("M ")
                )
            ]

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def owners(zk, group, topic) -> dict[int, str]:
    """Current owner of each partition (a node may vanish between listing and reading)."""
    from kazoo.exceptions import NoNodeError

    result = {}
    try:
        children = zk.get_children(layout.topic_owners_path(group, topic))
    except NoNodeError:
        return {}
    for p in children:
        try:
            result[int(p)] = layout.decode_owner(zk.get(layout.owner_path(group, topic, p))[0])
        except NoNodeError:
            continue
    return result


def settled(zk, group, topic, live: list[str], partitions: int) -> bool:
    """Every partition owned, by a live member, and the owners agree with the range rule."""
    from consumers.group import range_assignment

    current = owners(zk, group, topic)
    if sorted(current) != list(range(partitions)):
        return False
    expected = {p: m for m in live for p in range_assignment(list(range(partitions)), live, m)}
    return current == expected


@pytest.fixture
def zk(cluster3):
    """A ZooKeeper session on the three-broker cluster's chroot, closed after the test."""
    with zk_session(cluster3.zookeeper_connect) as zk:
        yield zk


def test_group_members_share_partitions_and_survive_kill_9(cluster3, zk, tmp_path):
    topic, group = "grouped", "g-rebalance"
    create_topic(cluster3.brokers[0].port, topic, 8)
    zk_connect = cluster3.zookeeper_connect
    members: list[Member] = []
    produced = []
    producer = Producer(cluster3.bootstrap)

    def produce(n):
        for _ in range(n):
            value = f"v{len(produced)}"
            produced.append(value)
            producer.send(topic, value.encode())
        producer.flush()

    try:
        produce(2000)
        for i in range(5):  # 1..5 members, the group settling after each joins
            members.append(Member(zk_connect, group, topic, f"m{i}", tmp_path))
            live = [m.name for m in members]
            wait_for(lambda live=live: settled(zk, group, topic, live, 8), 30)
            produce(300)
        victim = members.pop(2)
        victim_partitions = [p for p, o in owners(zk, group, topic).items() if o == victim.name]
        victim.kill()  # its session expires in 4 s; the others take its partitions
        started = time.monotonic()
        live = [m.name for m in members]
        wait_for(lambda: settled(zk, group, topic, live, 8), 30)
        assert time.monotonic() - started < 4 + 10
        produce(500)

        def all_consumed():
            seen = {v for m in [*members, victim] for _, _, v in m.consumed()}
            return seen >= set(produced)

        wait_for(all_consumed, 60)
        counts = defaultdict(list)
        for m in [*members, victim]:
            for partition, offset, _value in m.consumed():
                counts[(partition, offset)].append(m.name)
        duplicated = {key for key, who in counts.items() if len(who) > 1}
        # Duplicates only where the killed member had not committed what it had read.
        assert all(p in victim_partitions and victim.name in counts[(p, o)] for p, o in duplicated)
    finally:
        producer.close()
        for m in members:
            m.stop()


def test_a_member_whose_session_expires_stops_and_rejoins(cluster3, zk, tmp_path):
    topic, group = "expiring", "g-expiry"
    create_topic(cluster3.brokers[0].port, topic, 4)
    zk_connect = cluster3.zookeeper_connect
    members = [Member(zk_connect, group, topic, f"e{i}", tmp_path) for i in range(2)]
    try:
        wait_for(lambda: settled(zk, group, topic, ["e0", "e1"], 4), 30)
        os.kill(members[1].process.pid, signal.SIGSTOP)
        try:  # the stopped member's session expires; e0 takes everything
            wait_for(lambda: settled(zk, group, topic, ["e0"], 4), 30)
        finally:
            os.kill(members[1].process.pid, signal.SIGCONT)
        # e1 notices its lost session, registers again, and the group settles on two members.
        wait_for(lambda: settled(zk, group, topic, ["e0", "e1"], 4), 30)
        with Producer(cluster3.bootstrap) as producer:
            for i in range(200):
                producer.send(topic, b"after %d" % i)
        wait_for(
            lambda: (
                {v for m in members for _, _, v in m.consumed()}
                >= {f"after {i}" for i in range(200)}
            ),
            30,
        )
    finally:
        for m in members:
            m.stop()


# --- console tools ---------------------------------------------------------------------------


def test_produce_consume_and_groups_commands(cluster1):
    create_topic(cluster1.brokers[0].port, "console", 3)

    def cli(*args, stdin=None):
        return subprocess.run(
            [sys.executable, "-m", "headrace.cli", "--log-level", "WARNING", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    lines = "".join(json.dumps({"user": f"u{i % 5}", "n": i}) + "\n" for i in range(500))
    made = cli(
        "produce",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "console",
        "--key-field",
        "user",
        "--compression",
        "zstd",
        stdin=lines,
    )
    assert made.returncode == 0, made.stderr
    read = cli(
        "consume",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "console",
        "--from-beginning",
        "--timeout",
        "2",
        "--print-key",
    )
    rows = read.stdout.splitlines()
    assert len(rows) == 500 and all(
        r.split("\t")[0] == json.loads(r.split("\t")[1])["user"] for r in rows
    )
    grouped = cli(
        *group_args("consume", cluster1.zookeeper_connect, "console", "console-g"),
        "--from-beginning",
        "--max-messages",
        "300",
    )
    assert len(grouped.stdout.splitlines()) == 300, grouped.stderr
    described = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "describe", "console-g")
    assert described.returncode == 0, described.stderr
    committed = sum(int(line.split()[2]) for line in described.stdout.splitlines()[2:])
    lag = sum(int(line.split()[4]) for line in described.stdout.splitlines()[2:])
    assert committed == 300 and lag == 200
    assert "console-g" in cli("groups", "--zookeeper", cluster1.zookeeper_connect, "list").stdout


def test_every_future_reports_its_own_offset(cluster1):
    create_topic(cluster1.brokers[0].port, "offsets", 1)
    with Producer(cluster1.bootstrap, batch_size=4096, linger_ms=50) as producer:
        futures = [producer.send("offsets", b"%d" % i) for i in range(20_000)]
        producer.flush()
    assert [f.result().offset for f in futures] == list(range(20_000))
    got = read_all(cluster1.bootstrap, "offsets", 1, 20_000)
    assert [(m.offset, m.value) for m in got] == [(i, b"%d" % i) for i in range(20_000)]


def test_acks_0_and_many_threads_sending_at_once(cluster1):
    import threading

    create_topic(cluster1.brokers[0].port, "threads", 3)
    producer = Producer(cluster1.bootstrap, acks=0)
    futures = []

    def work(n):
        futures.extend(producer.send("threads", b"%d-%d" % (n, i)) for i in range(2000))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.flush()
    producer.close()
    assert all(f.result(5).offset == -1 for f in futures)  # acks=0: no offsets come back
    got = read_all(cluster1.bootstrap, "threads", 3, 8000)
    assert sorted(m.value for m in got) == sorted(
        b"%d-%d" % (n, i) for n in range(4) for i in range(2000)
    )


def test_unkeyed_messages_skip_partitions_without_a_leader(make_cluster):
    cluster = make_cluster(3)
    create_topic(cluster.brokers[0].port, "skip", 6)
    cluster.broker(3).stop()
    survivors = f"{cluster.brokers[0].bootstrap},{cluster.brokers[1].bootstrap}"
    wait_for(lambda: len(Consumer(survivors).cluster.refresh(["skip"])["brokers"]) == 2, 20)
    with Producer(survivors, linger_ms=1, batch_size=2000, delivery_timeout_ms=10_000) as producer:
        futures = [producer.send("skip", b"x" * 100) for _ in range(600)]
        producer.flush()
        placed = [f.result(5).partition for f in futures]
    leaders = producer.cluster.topics["skip"]
    assert {p for p in placed} == {p for p, leader in leaders.items() if leader in (1, 2)}


def test_control_batches_and_records_before_the_offset_are_skipped():
    from broker.protocol.records import build_batch
    from consumers.consumer import decode_messages

    data = (
        build_batch([(b"k", b"a"), (b"k", b"b"), (b"k", b"c")], base_offset=10)
        + build_batch([(None, b"marker")], base_offset=13, control=True)
        + build_batch([(b"k", b"d")], base_offset=14)
    )
    messages, next_offset = decode_messages("t", 0, data, 11)
    assert [(m.offset, m.value) for m in messages] == [(11, b"b"), (12, b"c"), (14, b"d")]
    assert next_offset == 15


def test_offsets_for_times(cluster1):
    create_topic(cluster1.brokers[0].port, "when", 1)
    with Producer(cluster1.bootstrap) as producer:
        for i in range(5):
            producer.send("when", b"%d" % i, timestamp=1_000_000 + 1000 * i)
    consumer = Consumer(cluster1.bootstrap)
    assert consumer.offset_for_time("when", 0, 1_002_500) == 3
    assert consumer.offset_for_time("when", 0, 9_000_000) == -1
    consumer.close()
