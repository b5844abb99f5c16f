"""What does TLS cost our clients?  Produce and consume the same bytes over PLAINTEXT and
over SSL (a client certificate, ssl.client.auth=required) on one broker, side by side.

    python bench/tls_bench.py [--mib 64] [--value-bytes 1000] [--reps 3]

One broker with a PLAINTEXT and an SSL listener (certificates made by ``tests/certs.py``);
per run, our Producer (acks=1, batched) writes ``--mib`` MiB to a fresh topic and our
Consumer reads it back, over one listener; runs alternate between the two.  Reported: each
way's best MB/s for produce and consume, and the ratios SSL / PLAINTEXT.  The machine is
shared: read the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import repo_root  # noqa: F401 (this tree first on sys.path)

from consumers.cluster import ClusterClient
from consumers.consumer import Consumer
from consumers.producer import Producer
from consumers.security import ClientSecurity
from headrace.devcluster import BrokerProcess, ZooKeeperProcess
from headrace.topics import create_topic_simple
from tests.certs import make_certs


def produce(bootstrap: str, security: ClientSecurity, topic: str, count: int, value: bytes):
    cluster = ClusterClient(bootstrap, security=security)
    producer = Producer(cluster=cluster, acks=1, linger_ms=5, compression="none")
    began = time.perf_counter()
    for _ in range(count):
        producer.send(topic, value, partition=0)
    if producer.flush(timeout=300):
        raise RuntimeError("produce did not finish")
    elapsed = time.perf_counter() - began
    producer.close()
    return elapsed


def consume(bootstrap: str, security: ClientSecurity, topic: str, count: int) -> float:
    consumer = Consumer(
        cluster=ClusterClient(bootstrap, security=security), auto_offset_reset="earliest"
    )
    consumer.assign([(topic, 0, 0)])
    began = time.perf_counter()
    got = 0
    while got < count:
        got += len(consumer.poll(1.0))
    elapsed = time.perf_counter() - began
    consumer.close()
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--value-bytes", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    count = args.mib * (1 << 20) // args.value_bytes
    value = bytes(i % 251 for i in range(args.value_bytes))
    work = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    certs = make_certs(work / "certs")
    zookeeper = ZooKeeperProcess(work / "zookeeper")
    zookeeper.start()
    props = {**certs.broker_properties(client_auth="required"), "num.partitions": "1"}
    broker = BrokerProcess(
        work, 1, f"{zookeeper.connect}/tls-bench", overrides=props, listeners={"SSL": "SSL"}
    )
    ways = {
        "PLAINTEXT": (broker.bootstrap, ClientSecurity()),
        "SSL": (
            broker.bootstrap_for("SSL"),
            ClientSecurity.from_properties(certs.client_properties("alice")),
        ),
    }
    best: dict[tuple[str, str], float] = {}
    try:
        broker.start()
        for rep in range(args.reps):
            for way, (bootstrap, security) in ways.items():
                topic = f"t-{way.lower()}-{rep}"
                create_topic_simple(broker.bootstrap, topic, 1)
                time.sleep(0.5)
                seconds = produce(bootstrap, security, topic, count, value)
                key = (way, "produce")
                best[key] = min(best.get(key, seconds), seconds)
                seconds = consume(bootstrap, security, topic, count)
                key = (way, "consume")
                best[key] = min(best.get(key, seconds), seconds)
    finally:
        broker.stop()
        zookeeper.stop()
    megabytes = count * args.value_bytes / 1e6
    print(f"{count} records of {args.value_bytes} bytes ({megabytes:.0f} MB), best of {args.reps}")
    for what in ("produce", "consume"):
        plain = megabytes / best[("PLAINTEXT", what)]
        tls = megabytes / best[("SSL", what)]
        ratio = tls / plain
        print(f"{what:8} PLAINTEXT {plain:7.1f} MB/s   SSL {tls:7.1f} MB/s   ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
