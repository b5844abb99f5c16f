"""What security costs: batched produce and consume over SASL_SSL (SCRAM-SHA-512) against
PLAINTEXT, and SCRAM-SHA-512 logins over TLS against plain connections, in the same run.

    python bench/security_bench.py [--quick] [--messages N] [--logins N] [--reps 3]
                                   [--clients ours,librdkafka] [--json PATH]

What is started: ZooKeeper and one broker on free ports of 127.0.0.1 with two listeners, a
PLAINTEXT one and a SASL_SSL one (certificates made by ``tests/certs.py``; the bench's SCRAM
user written to ZooKeeper before the broker starts).  Throughput: per rep and per client, the
same ``--messages`` values of ``--value-bytes`` bytes are produced (acks=1, batch.size 64 KiB,
linger.ms 5, no compression) to a fresh topic of one partition and read back from offset 0,
over each listener in turn, the order alternating between reps.  Clients: our Producer and
Consumer (``consumers/``) and confluent-kafka (librdkafka).  Logins: ``--logins`` connections
one after another from this process, each connect + TLS handshake + SaslHandshake + two
SaslAuthenticate round trips (the client's PBKDF2 and the broker's proof check both count) +
ApiVersions + close, against connect + ApiVersions + close on the PLAINTEXT listener,
alternating.  Reported: MB/s per way (median and best of the reps), the ratios SASL_SSL /
PLAINTEXT of the medians (target >= 0.6 for produce and consume), CPU per MB (the broker's,
and the broker's plus this process's: "CPU ratio" is PLAINTEXT's over SASL_SSL's, what the
throughput ratio would be if CPU alone limited both, less swayed by a busy machine), logins
per second and their ratio to plain connections.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path

from benchlib import (
    BenchmarkError,
    add_output_args,
    bench_parser,
    finish,
    header,
    main_in_tmp_dir,
    new_meta,
    print_table,
    signals_ignored,
    stat_cpu,
    step,
)

from broker.protocol.registry import ApiKey
from broker.protocol.security_nodes import scram_credential
from broker.security.credentials import write_credential
from consumers.client import BrokerConnection
from consumers.cluster import ClusterClient
from consumers.consumer import Consumer
from consumers.producer import Producer
from consumers.security import PLAINTEXT, ClientSecurity
from headrace.devcluster import BrokerProcess, ZooKeeperProcess, free_port
from headrace.topics import create_topic_simple
from tests.certs import make_certs

USER, PASSWORD, MECHANISM, ITERATIONS = "bench", "bench-password", "SCRAM-SHA-512", 4096
WAYS = ("PLAINTEXT", "SASL_SSL")
TARGET = 0.6
BATCH_BYTES = 64 * 1024
LINGER_MS = 5


class Way:
    """One listener as a client sees it: our security settings and librdkafka's."""

    def __init__(self, name: str, bootstrap: str, security: ClientSecurity, rdkafka: dict):
        self.name, self.bootstrap, self.security, self.rdkafka = name, bootstrap, security, rdkafka


def ways(broker: BrokerProcess, certs) -> dict[str, Way]:
    sasl = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
    ours = ClientSecurity.from_properties({**certs.client_properties(protocol="SASL_SSL"), **sasl})
    rdkafka = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": MECHANISM,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(certs.ca),
    }
    return {
        "PLAINTEXT": Way("PLAINTEXT", broker.bootstrap, PLAINTEXT, {}),
        "SASL_SSL": Way("SASL_SSL", broker.bootstrap_for("SASL_SSL"), ours, rdkafka),
    }


# --- the clients ---------------------------------------------------------------------------


def ours_produce(way: Way, topic: str, count: int, value: bytes) -> None:
    cluster = ClusterClient(way.bootstrap, security=way.security)
    producer = Producer(
        cluster=cluster, acks=1, linger_ms=LINGER_MS, batch_size=BATCH_BYTES, compression="none"
    )
    try:
        for _ in range(count):
            producer.send(topic, value, partition=0)
        if producer.flush(timeout=300):
            raise BenchmarkError(f"our producer did not finish over {way.name}")
    finally:
        producer.close()


def ours_consume(way: Way, topic: str, count: int) -> None:
    consumer = Consumer(cluster=ClusterClient(way.bootstrap, security=way.security))
    consumer.assign([(topic, 0, 0)])
    got, deadline = 0, time.monotonic() + 300
    try:
        while got < count:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"our consumer read {got} of {count} over {way.name}")
            got += len(consumer.poll(1.0))
    finally:
        consumer.close()


def rdkafka_produce(way: Way, topic: str, count: int, value: bytes) -> None:
    from confluent_kafka import Producer as RdProducer

    producer = RdProducer(
        {
            "bootstrap.servers": way.bootstrap,
            "acks": 1,
            "enable.idempotence": False,
            "linger.ms": LINGER_MS,
            "batch.size": BATCH_BYTES,
            "compression.type": "none",
            **way.rdkafka,
        }
    )
    failed: list = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failed.append(err)

    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=0, on_delivery=delivered)
                break
            except BufferError:  # its queue is full: let it send
                producer.poll(0.01)
    if producer.flush(300) or failed:
        raise BenchmarkError(f"librdkafka over {way.name}: {failed[:3] or 'flush timed out'}")


def rdkafka_consume(way: Way, topic: str, count: int) -> None:
    from confluent_kafka import Consumer as RdConsumer
    from confluent_kafka import TopicPartition

    consumer = RdConsumer(
        {
            "bootstrap.servers": way.bootstrap,
            "group.id": f"bench-{topic}",
            "enable.auto.commit": False,
            **way.rdkafka,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, deadline = 0, time.monotonic() + 300
    try:
        while got < count:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"librdkafka read {got} of {count} over {way.name}")
            batch = consumer.consume(min(10_000, count - got), 1.0)  # not waiting out the end
            got += sum(m.error() is None for m in batch)
    finally:
        consumer.close()


CLIENTS = {
    "ours": (ours_produce, ours_consume),
    "librdkafka": (rdkafka_produce, rdkafka_consume),
}


# --- measuring -----------------------------------------------------------------------------


def own_cpu() -> float:
    """This process's CPU seconds so far, every thread's (librdkafka's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, pid: int) -> tuple[float, float, float]:
    """(wall seconds, broker CPU seconds, client CPU seconds) of ``fn()``."""
    cpu, mine = stat_cpu(f"/proc/{pid}/stat"), own_cpu()
    began = time.perf_counter()
    fn()
    wall = time.perf_counter() - began
    return wall, stat_cpu(f"/proc/{pid}/stat") - cpu, own_cpu() - mine


def logins(way: Way, port: int, count: int) -> float:
    """Connections per second: each set up (logged in on SASL_SSL), asked ApiVersions, closed."""
    began = time.perf_counter()
    for _ in range(count):
        with BrokerConnection("127.0.0.1", port, timeout=10, security=way.security) as conn:
            conn.request(ApiKey.API_VERSIONS, {})
    return count / (time.perf_counter() - began)


def start_broker(workdir: Path, certs) -> tuple[ZooKeeperProcess, BrokerProcess]:
    zookeeper = ZooKeeperProcess(workdir / "zookeeper", free_port())
    step(f"starting ZooKeeper on 127.0.0.1:{zookeeper.port}", lambda: zookeeper.start(60, True))
    connect = f"{zookeeper.connect}/headrace-bench-security"
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zookeeper.connect, timeout=10)
    client.start(timeout=15)
    try:
        client.ensure_path("/headrace-bench-security")
    finally:
        client.stop()
        client.close()
    client = KazooClient(hosts=connect, timeout=10)
    client.start(timeout=15)
    try:
        write_credential(client, USER, scram_credential(MECHANISM, PASSWORD, iterations=ITERATIONS))
    finally:
        client.stop()
        client.close()
    broker = BrokerProcess(
        workdir,
        1,
        connect,
        overrides={
            **certs.broker_properties(),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "sasl.enabled.mechanisms": MECHANISM,
        },
        listeners={"SASL_SSL": "SASL_SSL"},
    )
    step(f"starting the broker on {broker.bootstrap}", lambda: broker.start(60, True))
    return zookeeper, broker


def median_best(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def run(args, workdir: Path) -> dict:
    messages = args.messages or (20_000 if args.quick else 200_000)
    count = args.logins or (50 if args.quick else 300)
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        raise BenchmarkError(f"unknown clients {sorted(unknown)}: choose from {sorted(CLIENTS)}")
    meta = new_meta(
        args.quick,
        workdir,
        messages=messages,
        value_bytes=args.value_bytes,
        logins=count,
        reps=args.reps,
        clients=clients,
        mechanism=MECHANISM,
        iterations=ITERATIONS,
    )
    print(header("security", meta))
    certs = make_certs(workdir / "certs")
    value = bytes(i % 251 for i in range(args.value_bytes))
    megabytes = messages * args.value_bytes / 1e6

    # runs[client][op][way]: MB/s per rep; cpu and client_cpu: CPU seconds per MB of the
    # broker and of this process.
    def table() -> dict:
        return {c: {op: {w: [] for w in WAYS} for op in ("produce", "consume")} for c in clients}

    runs, cpu, client_cpu = table(), table(), table()
    rates: dict[str, list[float]] = {w: [] for w in WAYS}
    zookeeper, broker = start_broker(workdir, certs)
    try:
        pid = broker.process.pid
        by_way = ways(broker, certs)
        ports = {"PLAINTEXT": broker.port, "SASL_SSL": broker.listener_ports["SASL_SSL"]}
        for rep in range(args.reps):
            order = WAYS if rep % 2 == 0 else WAYS[::-1]
            for client in clients:
                produce, consume = CLIENTS[client]
                for name in order:
                    way = by_way[name]
                    topic = f"t-{client}-{name.lower()}-{rep}"
                    create_topic_simple(broker.bootstrap, topic, 1)
                    for op, work in (
                        ("produce", partial(produce, way, topic, messages, value)),
                        ("consume", partial(consume, way, topic, messages)),
                    ):
                        seconds, used, mine = timed(work, pid)
                        runs[client][op][name].append(megabytes / seconds)
                        cpu[client][op][name].append(used / megabytes)
                        client_cpu[client][op][name].append(mine / megabytes)
                    print(
                        f"  rep {rep} {client:10} {name:9} produce "
                        f"{runs[client]['produce'][name][-1]:6.1f} MB/s, consume "
                        f"{runs[client]['consume'][name][-1]:6.1f} MB/s"
                    )
            for name in order:
                rates[name].append(logins(by_way[name], ports[name], count))
                print(f"  rep {rep} {name:9} {rates[name][-1]:8,.0f} connections/s")
    finally:
        with signals_ignored():
            broker.stop()
            zookeeper.stop()

    missed: list[str] = []
    rows = []
    ratios: dict[str, dict[str, float]] = {}
    cpu_ratios: dict[str, dict[str, float]] = {}
    for client in clients:
        ratios[client], cpu_ratios[client] = {}, {}
        for op in ("produce", "consume"):
            plain, plain_best = median_best(runs[client][op]["PLAINTEXT"])
            secure, secure_best = median_best(runs[client][op]["SASL_SSL"])
            ratio = secure / plain
            ratios[client][op] = ratio
            if ratio < TARGET:
                missed.append(f"{client} {op} {ratio:.2f} < {TARGET}")
            plain_cpu = statistics.median(cpu[client][op]["PLAINTEXT"]) * 1e3
            secure_cpu = statistics.median(cpu[client][op]["SASL_SSL"]) * 1e3
            # Both sides' CPU per MB, PLAINTEXT's over SASL_SSL's: the ratio the throughputs
            # would have if CPU were all that limited them (less swayed by a shared machine).
            plain_all = plain_cpu + statistics.median(client_cpu[client][op]["PLAINTEXT"]) * 1e3
            secure_all = secure_cpu + statistics.median(client_cpu[client][op]["SASL_SSL"]) * 1e3
            cpu_ratios[client][op] = plain_all / secure_all
            rows.append(
                [
                    f"{client} {op}",
                    f"{plain:.1f} ({plain_best:.1f})",
                    f"{secure:.1f} ({secure_best:.1f})",
                    f"{ratio:.2f}",
                    f"{plain_cpu:.1f} / {secure_cpu:.1f}",
                    f"{plain_all:.1f} / {secure_all:.1f}",
                    f"{cpu_ratios[client][op]:.2f}",
                ]
            )
    print_table(
        f"{messages:,} x {args.value_bytes} B ({megabytes:.0f} MB), MB/s median (best) of "
        f"{args.reps} reps",
        ["client", "PLAINTEXT", "SASL_SSL", "ratio", "broker ms/MB", "all ms/MB", "CPU ratio"],
        rows,
    )
    login_rate = statistics.median(rates["SASL_SSL"])
    plain_rate = statistics.median(rates["PLAINTEXT"])
    print_table(
        f"{count} connections one after another, median (best) of {args.reps} reps",
        ["set-up", "per second"],
        [
            [f"{MECHANISM} login over TLS", f"{login_rate:,.0f} ({max(rates['SASL_SSL']):,.0f})"],
            ["PLAINTEXT connect", f"{plain_rate:,.0f} ({max(rates['PLAINTEXT']):,.0f})"],
            ["ratio", f"{login_rate / plain_rate:.3f}"],
        ],
    )
    results = {
        "meta": meta,
        "throughput_mb_s": runs,
        "broker_cpu_s_per_mb": cpu,
        "client_cpu_s_per_mb": client_cpu,
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "logins_per_s": login_rate,
        "plain_connections_per_s": plain_rate,
        "login_ratio": login_rate / plain_rate,
        "connections_per_s": rates,
    }
    finish(results, missed, "; ", args.json)
    return results


def main() -> int:
    parser = bench_parser(__doc__, "20,000 messages and 50 logins per run")
    parser.add_argument("--messages", type=int, default=0, metavar="N", help="default 200,000")
    parser.add_argument("--value-bytes", type=int, default=200, metavar="N")
    parser.add_argument("--logins", type=int, default=0, metavar="N", help="default 300")
    parser.add_argument("--reps", type=int, default=3, metavar="N")
    parser.add_argument("--clients", default="ours,librdkafka", help="ours, librdkafka or both")
    add_output_args(parser)
    args = parser.parse_args()
    if args.messages < 0 or args.logins < 0 or args.value_bytes < 1 or args.reps < 1:
        parser.error("counts must be positive")
    return main_in_tmp_dir(args, "security-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
