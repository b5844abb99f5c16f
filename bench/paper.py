"""The paper's section 5 as a command: headrace against RabbitMQ and ActiveMQ.

    python bench/paper.py                          # 100,000 messages per test, a few minutes
    python bench/paper.py --quick                  # 2,000: checks that everything runs
    python bench/paper.py --systems headrace --messages 50000 --out /tmp/paper

One system at a time (headrace: ZooKeeper and one broker through headrace.devcluster;
RabbitMQ and ActiveMQ from Debian's packages, started by hand on 127.0.0.1 with their own data
dirs: bench/paper_peers.py), each stopped after its tests.  With each system's standard client
and 200-byte messages: one producer sends N messages with batches of 1 and of 50, then one
consumer reads N back.  A produce phase ends when the broker holds all N; storage overhead is
the bytes the store grew by per message, minus 200; broker CPU is utime + stime of the broker's
processes over each phase.  Writes a table (stdout), ``paper.json`` and the figures
``paper-producer.png`` and ``paper-consumer.png`` (the paper's figures 4 and 5) to ``--out``.
Peers that are not installed are skipped with a message (``deploy/setup.sh --peers``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from benchlib import (
    SATURATED,
    VALUE_BYTES,
    BenchmarkError,
    add_output_args,
    check_log,
    close_rdkafka_producer,
    create_topic,
    machine_busy,
    main_in_tmp_dir,
    partition_dir,
    payload,
    print_table,
    running_broker,
    self_cpu,
    signals_ignored,
    step,
    wait_for_leader,
)
from paper_peers import (
    ActiveMQ,
    PeerMissing,
    RabbitMQ,
    allocated_bytes,
    package_version,
    settled_bytes,
    stop_tree,
    tree_cpu,
)

from headrace.devcluster import free_port

BENCH_DIR = Path(__file__).resolve().parent
SYSTEMS = ("headrace", "rabbitmq", "activemq")
MARKS = 50  # progress marks per phase, for the figures
WINDOW = 5  # marks per point of a figure (a tenth of the run)
PREFETCH = 1000  # the peers' consumer prefetch, as in the paper
FETCH_BYTES = 1 << 20  # headrace's consumers: up to 1 MiB per fetch
RECORD_BYTES = 61  # a record batch's header; our Producer counts 24 more per record


class Meter:
    """Wall clock, a broker's CPU (its process tree) and this process's CPU over one phase."""

    def __init__(self, broker_pid: int):
        self.broker_pid = broker_pid

    def start(self) -> None:
        self.t0, self.broker0, self.client0 = (
            time.perf_counter(),
            tree_cpu(self.broker_pid),
            self_cpu(),
        )
        self.machine0 = machine_busy()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stop(self, messages: int, marks: list[float]) -> dict:
        return {
            "seconds": self.elapsed(),
            "messages": messages,
            "marks": marks,
            "broker_cpu_s": tree_cpu(self.broker_pid) - self.broker0,
            "client_cpu_s": self_cpu() - self.client0,
            "machine_cpu_s": machine_busy() - self.machine0,
        }


class Marks:
    """Seconds since the start after every N/50 messages (acknowledged or received)."""

    def __init__(self, count: int, meter: Meter):
        self.every = max(1, count // MARKS)
        self.meter = meter
        self.done = 0
        self.times: list[float] = []

    def add(self, n: int = 1) -> None:
        before = self.done // self.every
        self.done += n
        for _ in range(self.done // self.every - before):
            self.times.append(self.meter.elapsed())


# --- headrace ------------------------------------------------------------------------------


def rdkafka_produce(bootstrap: str, topic: str, count: int, batch: int, meter: Meter) -> dict:
    """confluent-kafka: batch.num.messages=batch, linger.ms=0, acks=1; ends when every
    delivery report is in (flush)."""
    from confluent_kafka import Producer as RdProducer

    producer = RdProducer(
        {
            "bootstrap.servers": bootstrap,
            "acks": 1,
            "linger.ms": 0,
            "batch.num.messages": batch,
            "enable.idempotence": False,
            "compression.type": "none",
            "queue.buffering.max.messages": min(count + 1000, 2_000_000_000),
        }
    )
    finished = False
    try:
        producer.list_topics(topic, timeout=30)
        value = payload()
        errors: list = []
        marks = Marks(count, meter)

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)
            else:
                marks.add()

        meter.start()
        for i in range(count):
            while True:
                try:
                    producer.produce(topic, value, partition=0, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
            if i & 1023 == 0:
                producer.poll(0)
        left = producer.flush(120)
        result = meter.stop(count, marks.times)
        if left or errors:
            raise BenchmarkError(
                f"confluent-kafka: {left} undelivered, {len(errors)} errors (first: {errors[:1]})"
            )
        finished = True
        return result
    finally:
        close_rdkafka_producer(producer, finished)


def producer_batch_bytes(batch: int) -> int:
    """Our Producer seals a batch at ``batch_size`` bytes, counting 61 for the batch and the
    value plus 24 per record: this size holds exactly ``batch`` 200-byte messages."""
    return 1 if batch == 1 else RECORD_BYTES + batch * (VALUE_BYTES + 24)


def headrace_produce(
    bootstrap: str, topic: str, count: int, batch: int, meter: Meter, acks: int | str = 1
) -> dict:
    """consumers.producer.Producer: ``acks`` (idempotence follows Kafka's rule: on only with
    acks=all), linger_ms=0, batch_size holding ``batch`` messages; ends when flush() returns."""
    from consumers.producer import Producer

    producer = Producer(bootstrap, acks=acks, linger_ms=0, batch_size=producer_batch_bytes(batch))
    finished = False
    try:
        producer.cluster.partitions(topic, wait=30)
        value = payload()
        errors: list = []
        marks = Marks(count, meter)

        def delivered(future):
            if future.exception() is not None:
                errors.append(future.exception())
            else:
                marks.add()

        meter.start()
        for _ in range(count):
            producer.send(topic, value, partition=0).add_done_callback(delivered)
        producer.flush()
        result = meter.stop(count, marks.times)
        if errors or marks.done != count:
            raise BenchmarkError(
                f"headrace Producer: {count - marks.done} not delivered, "
                f"{len(errors)} errors (first: {errors[:1]})"
            )
        finished = True
        return result
    finally:
        producer.close(None if finished else 1)  # after an error or a signal: drop the rest


def read_all(name: str, count: int, meter: Meter, begin, fetch) -> dict:
    """The consume phase: ``begin()`` after the clock starts, then ``fetch(left)`` (a list of
    values) until ``count`` values arrived, which must add up to ``count`` x 200 bytes."""
    marks = Marks(count, meter)
    received = size = 0
    meter.start()
    begin()
    while received < count:
        values = fetch(count - received)
        if not values and meter.elapsed() > 120:
            raise BenchmarkError(f"{name}: {received} of {count} after 120 s")
        size += sum(map(len, values))
        received += len(values)
        marks.add(len(values))
    result = meter.stop(received, marks.times)
    if size != count * VALUE_BYTES:
        raise BenchmarkError(f"{name}: {size} bytes, not {count} x {VALUE_BYTES}")
    return result


def rdkafka_consume(bootstrap: str, topic: str, count: int, meter: Meter) -> dict:
    """confluent-kafka: assign partition 0 from offset 0, consume() until ``count``."""
    from confluent_kafka import Consumer as RdConsumer
    from confluent_kafka import TopicPartition

    consumer = RdConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "paper-bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": FETCH_BYTES,
            "max.partition.fetch.bytes": FETCH_BYTES,
        }
    )

    def fetch(left: int) -> list:
        messages = consumer.consume(min(10_000, left), 1.0)
        for message in messages:
            if message.error() is not None:
                raise BenchmarkError(f"confluent-kafka consumer: {message.error()}")
        return [message.value() for message in messages]

    try:
        consumer.list_topics(topic, timeout=30)
        return read_all(
            "confluent-kafka consumer",
            count,
            meter,
            lambda: consumer.assign([TopicPartition(topic, 0, 0)]),
            fetch,
        )
    finally:
        consumer.close()


def headrace_consume(bootstrap: str, topic: str, count: int, meter: Meter) -> dict:
    """consumers.consumer.Consumer: assign (topic, 0, 0), poll() until ``count``."""
    from consumers.consumer import Consumer

    consumer = Consumer(
        bootstrap,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    try:
        consumer.cluster.partitions(topic, wait=30)
        return read_all(
            "headrace Consumer",
            count,
            meter,
            lambda: consumer.assign([(topic, 0, 0)]),
            lambda _left: [message.value for message in consumer.poll(1.0)],
        )
    finally:
        consumer.close()


RDKAFKA_SETTING = "batch.num.messages={batch}, linger.ms=0, acks=1, idempotence off"
OURS_SETTING = (
    "batch_size={bytes} B (= {batch} msgs), linger_ms=0, acks=1, so "
    "enable_idempotence off; up to 5 requests in flight (the default)"
)
OURS_ALL_SETTING = (
    "batch_size={bytes} B (= {batch} msgs), linger_ms=0, acks=all, so "
    "enable_idempotence on (the default); up to 5 requests in flight"
)


def run_headrace(
    workdir: Path, count: int, rows: list[dict], meta: dict, ceiling: Path | None
) -> None:
    with running_broker(workdir, meta) as broker:
        pid = broker.process.pid
        tests = [
            ("confluent-kafka", "rdkafka", rdkafka_produce, RDKAFKA_SETTING),
            ("headrace Producer", "ours", headrace_produce, OURS_SETTING),
            (
                "headrace Producer, acks=all",
                "ours-all",
                partial(headrace_produce, acks="all"),
                OURS_ALL_SETTING,
            ),
        ]
        first_topic = None
        for client, slug, produce, setting in tests:
            for batch in (1, 50):
                topic = f"paper-{slug}-b{batch}"
                create_topic(broker.port, topic)
                wait_for_leader(broker.port, topic)
                result = step(
                    f"headrace, {client}, produce batch {batch}",
                    lambda produce=produce, topic=topic, batch=batch: produce(
                        broker.bootstrap, topic, count, batch, Meter(pid)
                    ),
                )
                stats = check_log(broker, topic, topic, count)
                stored = allocated_bytes(partition_dir(broker, topic))
                rows.append(
                    row(
                        "headrace",
                        client,
                        "produce",
                        batch,
                        result,
                        setting.format(batch=batch, bytes=producer_batch_bytes(batch))
                        + f"; {count / stats['batches']:.1f} msgs per stored batch",
                        stored=stored,
                        log_bytes=stats["log_bytes"],
                    )
                )
                first_topic = first_topic or topic
        for client, consume, setting in (
            (
                "confluent-kafka",
                rdkafka_consume,
                "assign offset 0, consume(10000), fetch.max.bytes=1 MiB",
            ),
            (
                "headrace Consumer",
                headrace_consume,
                "assign offset 0, poll(), fetch_max_bytes=1 MiB",
            ),
        ):
            result = step(
                f"headrace, {client}, consume",
                lambda consume=consume: consume(broker.bootstrap, first_topic, count, Meter(pid)),
            )
            rows.append(row("headrace", client, "consume", None, result, setting))
    if ceiling is None:
        return
    with ceiling_server(ceiling, workdir) as (port, pid):
        result = step(
            "ceiling server, confluent-kafka, produce batch 1",
            lambda: rdkafka_produce(f"127.0.0.1:{port}", "paper-ceiling", count, 1, Meter(pid)),
        )
        rows.append(
            row(
                "ceiling",
                "confluent-kafka",
                "produce",
                1,
                result,
                RDKAFKA_SETTING.format(batch=1) + "; server answers without storing",
            )
        )


@contextmanager
def ceiling_server(script: Path, workdir: Path):
    """bench/ceiling_server.py as a process: a Twisted server that answers every Produce with
    a fixed success without storing (the framework's own cost)."""
    port = free_port()
    log = workdir / "ceiling.out"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(script), "--port", str(port), "--partitions", "1"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        line = process.stdout.readline().strip()
        if line != "ready":
            raise BenchmarkError(
                f"{script} did not print 'ready' (got {line!r}): "
                f"{log.read_text(errors='replace')[-1000:]}"
            )
        yield port, process.pid
    finally:
        with signals_ignored():
            stop_tree(process, 10)


# --- the peers -----------------------------------------------------------------------------

PEERS = {
    "rabbitmq": (
        RabbitMQ,
        "librabbitmq (C)",
        {
            1: "persistent (delivery_mode 2), durable classic queue, one basic.publish per "
            "message, no confirms; ends when queue depth = N",
            50: "persistent, durable classic queue, one basic.publish per message, AMQP "
            "transaction committed every 50 (commit-ok once on disk)",
        },
        f"basic.qos prefetch {PREFETCH}, basic.consume auto-ack",
    ),
    "activemq": (
        ActiveMQ,
        "JMS (activemq-client)",
        {
            1: "persistent, async send (useAsyncSend), the last send sync; KahaDB "
            "journalDiskSyncStrategy=periodic",
            50: "persistent, transacted session, commit every 50; KahaDB "
            "journalDiskSyncStrategy=periodic",
        },
        f"queuePrefetch {PREFETCH}, AUTO_ACKNOWLEDGE, receive()",
    ),
}


def run_peer(name: str, workdir: Path, count: int, rows: list[dict], timeout: float) -> None:
    cls, client, produce_settings, consume_setting = PEERS[name]
    with cls(workdir) as broker:
        step(f"{broker.name} started on 127.0.0.1:{broker.port}", lambda: None)
        for batch in (1, 50):
            queue = f"paper-b{batch}"
            before = settled_bytes(broker.store_dir) if broker.store_dir.exists() else 0
            result = step(
                f"{broker.name}, produce batch {batch}",
                lambda queue=queue, batch=batch: broker.produce(
                    queue, count, VALUE_BYTES, batch, timeout
                ),
            )
            stored = settled_bytes(broker.store_dir) - before
            rows.append(
                row(
                    broker.name,
                    client,
                    "produce",
                    batch,
                    result,
                    produce_settings[batch],
                    stored=stored,
                )
            )
        result = step(
            f"{broker.name}, consume",
            lambda: broker.consume("paper-b1", count, VALUE_BYTES, PREFETCH, timeout),
        )
        rows.append(row(broker.name, client, "consume", None, result, consume_setting))
        step(f"stopping {broker.name}", broker.stop)


# --- results -------------------------------------------------------------------------------


def limited_by(broker_share: float, client_share: float, machine_share: float) -> str:
    """Which side limited a phase: a side using most of a core; else both CPUs busy (with
    the share other processes took); else neither (round trips, the disk)."""
    cpus = os.cpu_count() or 1
    if broker_share >= SATURATED and broker_share >= client_share:
        return "broker CPU"
    if client_share >= SATURATED:
        return "client CPU"
    if max(machine_share, broker_share + client_share) >= SATURATED * cpus:
        others = max(0.0, machine_share - broker_share - client_share)
        return f"CPUs busy ({others:.1f} cores others)"
    return "neither CPU (waits)"


def marks_of(system: str, test: str, batch: int | None) -> str:
    """What the progress marks count: messages the broker acknowledged, committed, only sent
    (the peers' batch-1 producers do not wait: the broker held all N only at the phase's end),
    or received."""
    if test == "consume":
        return "received"
    if system in ("headrace", "ceiling"):
        return "acknowledged"
    return "sent" if batch == 1 else "committed"


def row(
    system: str,
    client: str,
    test: str,
    batch: int | None,
    result: dict,
    setting: str,
    stored: int | None = None,
    log_bytes: int | None = None,
) -> dict:
    seconds, count = result["seconds"], result["messages"]
    broker_share = result["broker_cpu_s"] / seconds
    client_share = result["client_cpu_s"] / seconds
    machine_share = result["machine_cpu_s"] / seconds
    entry = {
        "system": system,
        "client": client,
        "test": test,
        "batch": batch,
        "setting": setting,
        "messages": count,
        "seconds": seconds,
        "msgs_per_s": count / seconds,
        "broker_cpu_pct": 100 * broker_share,
        "client_cpu_pct": 100 * client_share,
        "machine_cpu_pct": 100 * machine_share,
        "limited_by": limited_by(broker_share, client_share, machine_share),
        "marks": result["marks"],
        "marks_of": marks_of(system, test, batch),
    }
    if stored is not None:
        entry["stored_bytes"] = stored
        entry["overhead_bytes_per_msg"] = stored / count - VALUE_BYTES
    if log_bytes is not None:
        entry["log_bytes"] = log_bytes
        entry["log_overhead_bytes_per_msg"] = log_bytes / count - VALUE_BYTES
    return entry


def print_results(rows: list[dict]) -> None:
    table = []
    for r in rows:
        test = r["test"] + (f" b{r['batch']}" if r["batch"] else "")
        overhead = f"{r['overhead_bytes_per_msg']:.1f}" if "overhead_bytes_per_msg" in r else ""
        table.append(
            [
                r["system"],
                r["client"],
                test,
                f"{r['msgs_per_s']:,.0f}",
                f"{r['seconds']:.2f}",
                f"{r['broker_cpu_pct']:.0f}",
                f"{r['client_cpu_pct']:.0f}",
                r["limited_by"],
                overhead,
            ]
        )
    print_table(
        "Results (200-byte messages; CPU in % of one core; overhead = stored bytes per "
        "message - 200)",
        [
            "system",
            "client",
            "test",
            "msgs/s",
            "s",
            "broker %",
            "client %",
            "limited by",
            "overhead B/msg",
        ],
        table,
    )
    print("\nSettings:")
    for r in rows:
        test = r["test"] + (f" batch {r['batch']}" if r["batch"] else "")
        print(f"  {r['system']}, {r['client']}, {test}: {r['setting']}")


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": os.getloadavg(),
    }


def versions(systems: list[str]) -> dict:
    found = {}
    if "headrace" in systems:
        try:
            import confluent_kafka

            found["confluent-kafka"] = confluent_kafka.__version__
            found["librdkafka"] = confluent_kafka.libversion()[0]
        except ImportError:
            pass
    packages = {
        "rabbitmq": ["rabbitmq-server", "librabbitmq-dev", "erlang-base"],
        "activemq": ["activemq", "default-jre-headless"],
    }
    for system in systems:
        for package in packages.get(system, []):
            version = package_version(package)
            if version:
                found[package] = version
    return found


LABELS = {
    "confluent-kafka": "headrace, confluent-kafka",
    "headrace Producer": "headrace, our Producer",
    "headrace Producer, acks=all": "headrace, our Producer, acks=all",
    "headrace Consumer": "headrace, our Consumer",
}


def label(r: dict) -> str:
    if r["system"] == "headrace":
        name = LABELS[r["client"]]
    elif r["system"] == "ceiling":
        name = "ceiling server (no storage), confluent-kafka"
    else:
        name = f"{r['system']}, {r['client']}"
    return f"{name}: {r['msgs_per_s']:,.0f}/s"


def plot(rows: list[dict], out: Path, title_note: str) -> list[Path]:
    """Figures 4 and 5 of the paper: throughput against messages so far, one line per system
    and client (producers: batch 1 and batch 50 side by side)."""
    try:
        import matplotlib
    except ImportError:
        print("\nmatplotlib not installed: no figures (run deploy/setup.sh --peers)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour per system and client in every panel and figure.
    palette = plt.get_cmap("tab10").colors
    colours: dict[tuple, tuple] = {}
    for r in rows:
        colours.setdefault((r["system"], r["client"]), palette[len(colours) % len(palette)])

    def draw(ax, selected: list[dict], title: str) -> None:
        for r in selected:
            every = max(1, r["messages"] // MARKS)
            points = [(0, 0.0)] + [((i + 1) * every, t) for i, t in enumerate(r["marks"])]
            if r["messages"] > points[-1][0]:
                points.append((r["messages"], r["seconds"]))
            else:  # the phase's end (the broker holds all N) may come after the last mark
                points[-1] = (points[-1][0], max(points[-1][1], r["seconds"]))
            span = r["seconds"] / 20
            xs, ys = [], []
            for j in range(1, len(points)):
                # A moving window, of at least five marks and a twentieth of the phase,
                # smooths answers that come in bursts.
                k = max(0, j - WINDOW)
                while k > 0 and points[j][1] - points[k][1] < span:
                    k -= 1
                if points[j][1] > points[k][1]:
                    xs.append(points[j][0] / 1000)
                    ys.append((points[j][0] - points[k][0]) / (points[j][1] - points[k][1]))
            sent = r.get("marks_of") == "sent"
            ax.plot(
                xs,
                ys,
                marker="o",
                markersize=2.5,
                linewidth=1.2,
                color=colours[(r["system"], r["client"])],
                linestyle="--" if sent else "-",
                label=label(r) + (" (dashed: sent, held at the end)" if sent else ""),
            )
        ax.set_yscale("log")
        ax.set_xlabel("messages so far (thousands)")
        ax.set_ylabel("throughput (messages/s, log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(
            fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False
        )

    written = []
    producers = [r for r in rows if r["test"] == "produce"]
    if producers:
        fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharey=True)
        draw(axes[0], [r for r in producers if r["batch"] == 1], "Producer, batch 1")
        draw(axes[1], [r for r in producers if r["batch"] == 50], "Producer, batch 50")
        fig.suptitle(
            f"Producer performance (the paper's figure 4), 200-byte messages; {title_note}",
            fontsize=9,
        )
        fig.tight_layout()
        path = out / "paper-producer.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    consumers = [r for r in rows if r["test"] == "consume"]
    if consumers:
        fig, ax = plt.subplots(figsize=(7, 6))
        draw(ax, consumers, "Consumer")
        fig.suptitle(f"Consumer performance (the paper's figure 5); {title_note}", fontsize=9)
        fig.tight_layout()
        path = out / "paper-consumer.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def figure_note(meta: dict) -> str:
    return (
        f"N = {meta['messages']:,}, {meta['nproc']} CPUs ({meta['cpu_model']}), "
        f"{meta['date_utc'][:10]}"
    )


def run(args, workdir: Path) -> dict:
    count = args.messages
    meta = machine()
    meta.update(
        {
            "messages": count,
            "value_bytes": VALUE_BYTES,
            "systems": args.systems,
            "skipped": {},
            "failed": {},
        }
    )
    print(
        f"headrace paper benchmark: {count:,} messages of {VALUE_BYTES} bytes per test; "
        f"{meta['nproc']} CPUs ({meta['cpu_model']}), load {meta['load_average_at_start'][0]:.2f}"
    )
    rows: list[dict] = []
    ceiling = Path(args.ceiling_server) if args.ceiling_server else BENCH_DIR / "ceiling_server.py"
    if not ceiling.exists():
        print(f"no {ceiling}: no ceiling row (pass --ceiling-server PATH)")
        meta["skipped"]["ceiling"] = f"{ceiling} not found"
        ceiling = None
    for system in args.systems:
        print(f"\n{system}:")
        try:
            if system == "headrace":
                run_headrace(workdir, count, rows, meta, ceiling)
            else:
                run_peer(system, workdir, count, rows, args.client_timeout)
        except PeerMissing as exc:
            print(f"  {exc}; skipping {system}")
            meta["skipped"][system] = str(exc)
        except (BenchmarkError, subprocess.CalledProcessError, OSError) as exc:
            print(f"  {system} failed: {exc}; its rows are missing")
            meta["failed"][system] = str(exc)
    meta["load_average_at_end"] = os.getloadavg()
    meta["versions"] = versions(args.systems)
    print_results(rows) if rows else print("\nno results")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(rows, out, figure_note(meta)) if rows else []
    results = {"meta": meta, "rows": rows, "figures": [str(p) for p in figures]}
    json_path = Path(args.json) if args.json else out / "paper.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nload average {meta['load_average_at_start'][0]:.2f} at the start, "
        f"{meta['load_average_at_end'][0]:.2f} at the end"
    )
    print(f"results written to {json_path}" + "".join(f", {p}" for p in figures))
    if meta["failed"]:
        raise BenchmarkError(f"failed: {', '.join(meta['failed'])}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="N per test (100,000)")
    parser.add_argument("--quick", action="store_true", help="N = 2,000: a check that it runs")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, in order (default {','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--out",
        help="directory for paper.json and the figures (bench/results;"
        " with --quick, paper-quick in the temp dir)",
    )
    parser.add_argument(
        "--ceiling-server",
        metavar="PATH",
        help="bench/ceiling_server.py to run for the ceiling row (default: the "
        "one beside this script, if there is one)",
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=600,
        help="seconds a peer's client process may take per phase",
    )
    parser.add_argument(
        "--replot",
        metavar="JSON",
        help="only draw the figures again from a results file, into --out",
    )
    add_output_args(parser)
    args = parser.parse_args()
    if args.replot:
        args.out = args.out or str(BENCH_DIR / "results")
        results = json.loads(Path(args.replot).read_text())
        meta = results["meta"]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for path in plot(results["rows"], out, figure_note(meta)):
            print(f"wrote {path}")
        return 0
    if args.quick:
        args.messages = 2_000
    if args.out is None:  # a quick run leaves the committed results alone
        args.out = (
            str(Path(args.tmp_dir) / "paper-quick") if args.quick else str(BENCH_DIR / "results")
        )
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown or args.messages < 1:
        parser.error(
            f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}"
            if unknown
            else "--messages must be at least 1"
        )
    return main_in_tmp_dir(args, "paper-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
