"""What does a dashboard cost?  Three brokers, one ZooKeeper: batched produce with a
``headrace dashboard`` open (its event stream, a live tail and a windowed aggregate all
streaming to a reader) against without one, alternating runs on the same cluster; then the
aggregate consumer's own rate over a backlog, and the dashboard process's CPU.

    .venv/bin/python bench/dashboard_bench.py [--quick] [--reps 3] [--json out.json]

One ZooKeeper and brokers 1, 2 and 3 on free ports of 127.0.0.1; topics have six partitions
(replication factor ``--replication-factor``, default 1).  Every message is one of 1,000
JSON access-log events (``headrace.accesslog``, as the demo writes them) cut to 200 bytes.

1. produce: confluent-kafka, librdkafka's batching (``linger.ms`` 5), to a fresh topic
   ``access-N`` per run, with and without a dashboard, alternating which goes first.  "With"
   starts ``python -m headrace.cli dashboard`` and a reader process (``dashboard_streams.py``)
   holding ``/api/events``, ``/api/tail?topic=T`` and
   ``/api/aggregate?topic=T&field=status&window=60&classes=1`` open, waits until each stream
   sent an event and the aggregate's group owns every partition, measures the dashboard's CPU
   for a few seconds idle, then produces; the dashboard is stopped after the run.  Target:
   with / without >= 0.9 (the median of the per-rep ratios).
2. aggregate rate: N events are produced to ``backlog``; a fresh dashboard is asked for
   ``/api/aggregate?topic=backlog&field=status&window=3600&classes=1`` and the time runs
   until its ``events`` count reaches N (it must not pass it): N / that time, including the
   group's start, and the steady rate between the first and the last partial count; each rep
   also with the aggregate counting as it first did (an orjson document per message), for
   the dashboard's CPU per event on both paths in one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchlib import (
    SATURATED,
    VALUE_BYTES,
    BenchmarkError,
    add_output_args,
    check_delivery,
    close_rdkafka_producer,
    finish,
    header,
    machine_busy,
    main_in_tmp_dir,
    new_meta,
    print_table,
    rdkafka_produce_timed,
    running_cluster,
    sized_parser,
    stat_cpu,
    step,
    with_meta,
)
from dashboard_streams import StreamReaders, events, open_stream
from repo_root import ROOT

from broker.protocol.errors import KafkaError
from headrace.accesslog import generate_logs
from headrace.dashboard.feeds import SIMPLE_AGGREGATE_ENV
from headrace.devcluster import BrokerProcess, free_port
from headrace.topics import create_topic_simple

BROKERS = 3
PARTITIONS = 6
TOPIC = "access"
BACKLOG_TOPIC = "backlog"
FIELD = "status"
WINDOW_S = 60  # the aggregate open while producing
BACKLOG_WINDOW_S = 3600  # covers the whole backlog
# What a page of the dashboard holds open, and the event each must have sent after a run.
STREAMS = {"events": "topics", "tail": "message", "aggregate": "window"}
IDLE_S = 3.0  # the dashboard's CPU measured with its streams open and nothing produced
DISTINCT_EVENTS = 1000
TARGET_RATIO = 0.9
QUICK = {"messages": 100_000, "backlog": 50_000, "reps": 1}
DEFAULT = {"messages": 1_000_000, "backlog": 2_000_000, "reps": 3}


def access_events(workdir: Path, count: int = DISTINCT_EVENTS) -> list[bytes]:
    """``count`` JSON access-log events of exactly VALUE_BYTES bytes each: the demo's events,
    their user agent cut (or repeated) to fit."""
    (path,) = generate_logs(workdir / "logs", count, 1, seed=7)
    values = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        agent = doc.pop("user_agent")
        room = VALUE_BYTES - len(compact({**doc, "user_agent": ""}))
        if room < 0:
            raise BenchmarkError(f"an access-log event is over {VALUE_BYTES} bytes: {line}")
        values.append(compact({**doc, "user_agent": (agent * 3)[:room]}))
    return values


def compact(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    """``check()``'s first truthy value, or a BenchmarkError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


class CpuMarks:
    """CPU seconds of named processes (``/proc``) and of the whole machine, marked before and
    after a run (``mark`` is what ``rdkafka_produce_timed`` calls on its meter)."""

    def __init__(self, pids: dict[str, list[int]]):
        self.pids = pids

    def mark(self) -> dict[str, float]:
        marks = {"wall": time.perf_counter(), "machine": machine_busy()}
        for name, pids in self.pids.items():
            marks[name] = sum(stat_cpu(f"/proc/{pid}/stat") for pid in pids)
        return marks

    @staticmethod
    def shares(before: dict, after: dict) -> dict[str, float]:
        """Each process's (and the machine's) CPU as a share of one core between two marks."""
        wall = after["wall"] - before["wall"]
        return {
            f"{name}_cpu_share": (after[name] - before[name]) / wall
            for name in before
            if name != "wall"
        }


class Cluster:
    """The brokers by id, their bootstrap list, and topics made on them."""

    def __init__(self, brokers: dict[int, BrokerProcess], replication_factor: int):
        self.brokers = brokers
        self.replication_factor = replication_factor
        self.bootstrap = ",".join(b.bootstrap for b in brokers.values())
        self.zookeeper = next(iter(brokers.values())).zookeeper_connect
        self.pids = [b.process.pid for b in brokers.values() if b.process is not None]

    def create(self, topic: str) -> None:
        """A topic of PARTITIONS partitions, once each has a leader."""
        from confluent_kafka.admin import AdminClient

        try:
            create_topic_simple(
                self.bootstrap, topic, PARTITIONS, replication_factor=self.replication_factor
            )
        except KafkaError as exc:
            raise BenchmarkError(f"CreateTopics {topic}: {exc!r}") from exc
        admin = AdminClient({"bootstrap.servers": self.bootstrap})

        def led() -> bool:
            found = admin.list_topics(topic, timeout=10).topics.get(topic)
            return (
                found is not None
                and found.error is None
                and len(found.partitions) == PARTITIONS
                and all(p.leader >= 0 for p in found.partitions.values())
            )

        wait_until(led, 30, f"leaders for every partition of {topic}")

    def produce(self, topic: str, values: list[bytes], count: int, meter: CpuMarks) -> dict:
        """``count`` messages with librdkafka's batching; the rate and CPU shares."""
        from confluent_kafka import Producer

        errors: list = []
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                "on_delivery": lambda err, _msg: err and errors.append(err),
            }
        )
        finished = False
        try:
            producer.list_topics(topic, timeout=10)  # connect before timing
            timed = rdkafka_produce_timed(producer, topic, values, count, meter, pause_gc=True)
            finished = True
        finally:
            close_rdkafka_producer(producer, finished)
        check_delivery(f"produce to {topic}", timed.left, errors)
        seconds = timed.end - timed.start
        return {
            "seconds": seconds,
            "msgs_per_s": count / seconds,
            "brokers_cpu_us_per_msg": (timed.after["brokers"] - timed.before["brokers"])
            / count
            * 1e6,
            **CpuMarks.shares(timed.before, timed.after),
        }


class Dashboard:
    """``python -m headrace.cli dashboard`` (this tree's) on a free port, its output in the
    work dir."""

    def __init__(
        self, cluster: Cluster, workdir: Path, niceness: int | str = 0, simple: bool = False
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"dashboard-{self.port}.log"
        command = [sys.executable, "-m", "headrace.cli", "dashboard", "--nice", str(niceness)]
        command += ["--zookeeper", cluster.zookeeper, "--port", str(self.port)]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(  # from the root: this tree's headrace
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, SIMPLE_AGGREGATE_ENV: "simple" if simple else "fast"},
            )
        try:
            wait_until(self._answers, 30, f"the dashboard on {self.url} (see {self.log_path})")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the dashboard exited; its log: {self.log_path}")
        try:
            with urllib.request.urlopen(self.url + "/api/cluster", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def lists(self, topic: str) -> None:
        """Until the dashboard's topics view lists ``topic``: before that, a dashboard whose
        ZooKeeper session is still being made answers 404 for it."""

        def listed() -> bool:
            with urllib.request.urlopen(self.url + "/api/topics", timeout=10) as response:
                return any(t["name"] == topic for t in json.load(response)["topics"])

        wait_until(listed, 30, f"{topic} in the dashboard's topics", every=0.2)

    def aggregate_url(self, topic: str, window_s: int) -> str:
        return f"{self.url}/api/aggregate?topic={topic}&field={FIELD}&window={window_s}&classes=1"

    def stream_url(self, name: str, topic: str) -> str:
        """The URL of one of STREAMS (a page's three streams) for ``topic``."""
        if name == "aggregate":
            return self.aggregate_url(topic, WINDOW_S)
        return f"{self.url}/api/tail?topic={topic}" if name == "tail" else f"{self.url}/api/events"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def aggregate_assigned(dashboard: Dashboard, topic: str) -> bool:
    """Whether the dashboard's groups show its aggregate of ``topic`` owning every partition
    (its consumer has started)."""
    with urllib.request.urlopen(dashboard.url + "/api/groups", timeout=10) as response:
        groups = json.load(response)["groups"]
    return any(
        g["kind"] == "zookeeper"
        and sum(p["topic"] == topic and p["owner"] is not None for p in g["partitions"])
        == PARTITIONS
        for g in groups
    )


# --- 1. produce with and without a dashboard -----------------------------------------------


class ProducePart:
    """Runs with and without a dashboard, each to a fresh topic (so a dashboard's aggregate
    has no window of earlier runs to read back before it streams)."""

    def __init__(self, cluster: Cluster, workdir: Path, values: list[bytes], count: int, args):
        self.cluster, self.workdir, self.values, self.count = cluster, workdir, values, count
        self.streams = [] if args.streams == "none" else args.streams.split(",")
        self.niceness = args.dashboard_nice
        self.simple = args.simple_aggregate
        self.topics = 0

    def new_topic(self) -> str:
        self.topics += 1
        topic = f"{TOPIC}-{self.topics}"
        self.cluster.create(topic)
        return topic

    def without(self) -> dict:
        topic = self.new_topic()
        return self.cluster.produce(topic, self.values, self.count, CpuMarks(self._pids()))

    def with_dashboard(self) -> dict:
        topic = self.new_topic()
        dashboard = Dashboard(self.cluster, self.workdir, self.niceness, self.simple)
        readers = None
        try:
            dashboard.lists(topic)
            readers = StreamReaders(
                {dashboard.stream_url(name, topic): STREAMS[name] for name in self.streams}
            )
            if "aggregate" in self.streams:
                wait_until(
                    lambda: aggregate_assigned(dashboard, topic),
                    60,
                    f"the dashboard's aggregate of {topic} owning its partitions",
                    every=0.25,
                )
            meter = CpuMarks(
                self._pids(dashboard=[dashboard.process.pid], readers=[readers.process.pid])
            )
            before = meter.mark()
            time.sleep(IDLE_S)
            idle = CpuMarks.shares(before, meter.mark())
            run = self.cluster.produce(topic, self.values, self.count, meter)
            run["idle_dashboard_cpu_share"] = idle["dashboard_cpu_share"]
            run["streams"] = {url: seen["events"] for url, seen in readers.stop().items()}
            readers = None
            return run
        finally:
            if readers is not None:
                readers.process.kill()
                readers.process.wait()
            dashboard.stop()

    def _pids(self, **more: list[int]) -> dict[str, list[int]]:
        return {"brokers": self.cluster.pids, "producer": [os.getpid()], **more}

    def run(self, reps: int) -> dict:
        sides = {"without": self.without, "with": self.with_dashboard}
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for rep in range(reps):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                runs[side].append(
                    step(
                        f"#{rep + 1}: {self.count:,} messages to a new topic, {side} a dashboard",
                        sides[side],
                    )
                )
        pairs = list(zip(runs["with"], runs["without"]))
        ratios = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in pairs]
        cpu = [  # a short run may show no clock tick of CPU
            a["brokers_cpu_us_per_msg"] / b["brokers_cpu_us_per_msg"]
            for a, b in pairs
            if b["brokers_cpu_us_per_msg"] > 0
        ]
        return {
            "messages": self.count,
            **runs,
            "ratios": ratios,
            "ratio_median": statistics.median(ratios),
            "brokers_cpu_ratio_median": statistics.median(cpu) if cpu else None,
            "ratio_best": max(r["msgs_per_s"] for r in runs["with"])
            / max(r["msgs_per_s"] for r in runs["without"]),
        }


# --- 2. the aggregate consumer's rate ------------------------------------------------------


def aggregate_run(cluster: Cluster, workdir: Path, backlog: int, simple: bool) -> dict:
    """A fresh dashboard's aggregate over the whole backlog: time until it counted all
    (``simple``: counting as it first did, an orjson document per message)."""
    dashboard = Dashboard(cluster, workdir, simple=simple)
    try:
        dashboard.lists(BACKLOG_TOPIC)
        meter = CpuMarks({"dashboard": [dashboard.process.pid], "brokers": cluster.pids})
        ticks: list[tuple[float, int]] = []
        before = meter.mark()
        start = time.perf_counter()
        with open_stream(dashboard.aggregate_url(BACKLOG_TOPIC, BACKLOG_WINDOW_S)) as response:
            for name, data in events(response):
                if name != "window":
                    continue
                ticks.append((time.perf_counter() - start, data["events"]))
                if data["events"] > backlog or data["late"]:
                    raise BenchmarkError(f"the aggregate counted {data}, from {backlog} events")
                if data["events"] == backlog:
                    break
                if ticks[-1][0] > 120 + backlog / 1000:
                    raise BenchmarkError(f"the aggregate counted only {data['events']:,}")
        after = meter.mark()
    finally:
        dashboard.stop()
    seconds = ticks[-1][0]
    partial = [(t, n) for t, n in ticks if 0 < n < backlog]
    steady = None
    if len(partial) >= 2 and partial[-1][0] > partial[0][0]:
        steady = (partial[-1][1] - partial[0][1]) / (partial[-1][0] - partial[0][0])
    first = next(t for t, n in ticks if n > 0)
    return {
        "seconds": seconds,
        "first_counted_s": first,
        "events_per_s": backlog / seconds,
        "steady_events_per_s": steady,
        "dashboard_cpu_us_per_event": (after["dashboard"] - before["dashboard"]) / backlog * 1e6,
        **CpuMarks.shares(before, after),
    }


def aggregate_part(cluster: Cluster, workdir: Path, values: list[bytes], backlog, reps) -> dict:
    step(f"creating {BACKLOG_TOPIC}", lambda: cluster.create(BACKLOG_TOPIC))
    filled = step(
        f"{backlog:,} events to {BACKLOG_TOPIC}",
        lambda: cluster.produce(
            BACKLOG_TOPIC, values, backlog, CpuMarks({"brokers": cluster.pids})
        ),
    )
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for rep in range(reps):
        for simple in (False, True) if rep % 2 == 0 else (True, False):
            path = "simple (an orjson document per message)" if simple else "fast"
            runs[simple].append(
                step(
                    f"aggregate #{rep + 1}, {path}: a fresh dashboard counts {backlog:,} events",
                    lambda simple=simple: aggregate_run(cluster, workdir, backlog, simple),
                )
            )
    fast_us, simple_us = (
        statistics.median(r["dashboard_cpu_us_per_event"] for r in runs[simple])
        for simple in (False, True)
    )
    return {
        "events": backlog,
        "produced_msgs_per_s": filled["msgs_per_s"],
        "runs": runs[False],
        "simple_runs": runs[True],
        "events_per_s_median": statistics.median(r["events_per_s"] for r in runs[False]),
        "simple_events_per_s_median": statistics.median(r["events_per_s"] for r in runs[True]),
        "cpu_us_per_event_median": fast_us,
        "simple_cpu_us_per_event_median": simple_us,
        "cpu_per_event_simple_over_fast": simple_us / fast_us if fast_us else None,
    }


# --- the script ----------------------------------------------------------------------------


def percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def report(results: dict) -> None:
    missed = []
    meta = results["meta"]
    produce = results["produce"]
    rows = []
    for side in ("without", "with"):
        for i, r in enumerate(produce[side]):
            rows.append(
                [
                    f"#{i + 1} {side} dashboard",
                    f"{r['msgs_per_s']:,.0f}",
                    f"{r['brokers_cpu_us_per_msg']:.2f}",
                    percent(r["brokers_cpu_share"]),
                    percent(r["producer_cpu_share"]),
                    percent(r["dashboard_cpu_share"]) if "dashboard_cpu_share" in r else "-",
                    percent(r["idle_dashboard_cpu_share"]) if side == "with" else "-",
                    percent(r["machine_cpu_share"] / (os.cpu_count() or 1)),
                ]
            )
    print_table(
        f"Batched produce, {produce['messages']:,} JSON events of {VALUE_BYTES} bytes a run, "
        f"{PARTITIONS} partitions; streams open: {meta['streams']}"
        + (f"; dashboard at nice {meta['dashboard_nice']}" if meta["dashboard_nice"] else ""),
        [
            "run",
            "msgs/s",
            "brokers CPU us/msg",
            "brokers",
            "producer",
            "dashboard",
            "dash. idle",
            "machine",
        ],
        rows,
    )
    print(
        f"ratio with / without a dashboard: {produce['ratio_best']:.3f} (best), "
        f"{produce['ratio_median']:.3f} (median), target >= {TARGET_RATIO}"
    )
    if produce["brokers_cpu_ratio_median"] is not None:
        print(
            f"brokers' CPU per message with / without a dashboard: "
            f"{produce['brokers_cpu_ratio_median']:.3f} (median)"
        )
    busy = max(r["machine_cpu_share"] for r in produce["with"]) / (os.cpu_count() or 1)
    if busy >= SATURATED:
        print(
            f"All CPUs were busy ({percent(busy)}): what the dashboard's process used came out "
            "of the brokers' and the producer's share."
        )
    if produce["ratio_median"] < TARGET_RATIO:
        missed.append(f"produce ratio {produce['ratio_median']:.3f} < {TARGET_RATIO}")

    aggregate = results["aggregate"]
    print_table(
        f"Aggregate consumer over a backlog of {aggregate['events']:,} events "
        f"(window {BACKLOG_WINDOW_S} s, field {FIELD}, classes)",
        ["run", "seconds", "first count s", "events/s", "steady ev/s", "dashboard", "us/event"],
        [
            [
                f"#{i + 1} {path}",
                f"{r['seconds']:.2f}",
                f"{r['first_counted_s']:.2f}",
                f"{r['events_per_s']:,.0f}",
                "-" if r["steady_events_per_s"] is None else f"{r['steady_events_per_s']:,.0f}",
                percent(r["dashboard_cpu_share"]),
                f"{r['dashboard_cpu_us_per_event']:.2f}",
            ]
            for path, key in (("fast", "runs"), ("simple", "simple_runs"))
            for i, r in enumerate(aggregate[key])
        ],
    )
    print(
        f"aggregate consumer: {aggregate['events_per_s_median']:,.0f} events/s (median), "
        f"{aggregate['simple_events_per_s_median']:,.0f} on the simple path"
    )
    if aggregate["cpu_per_event_simple_over_fast"] is not None:
        print(
            f"aggregate's dashboard CPU per event: {aggregate['cpu_us_per_event_median']:.2f} us, "
            f"{aggregate['simple_cpu_us_per_event_median']:.2f} us on the simple path "
            f"({aggregate['cpu_per_event_simple_over_fast']:.2f} x)"
        )
    start, end = meta["load_average_at_start"], meta["load_average_at_end"]
    print(
        f"\nmachine load (uptime, 1/5/15 min): {' '.join(f'{x:.2f}' for x in start)} at the "
        f"start, {' '.join(f'{x:.2f}' for x in end)} at the end, {meta['cpus']} CPUs"
    )
    finish(results, missed, "; ", meta.pop("json_path"))


def run(args, workdir: Path) -> dict:
    sizes = QUICK if args.quick else DEFAULT
    count = args.messages or sizes["messages"]
    backlog = args.backlog or sizes["backlog"]
    reps = args.reps or sizes["reps"]
    meta = new_meta(
        args.quick,
        workdir,
        brokers=BROKERS,
        partitions=PARTITIONS,
        replication_factor=args.replication_factor,
        messages=count,
        backlog=backlog,
        reps=reps,
        window_s=WINDOW_S,
        streams=args.streams,
        dashboard_nice=args.dashboard_nice,
    )
    print(header("dashboard", meta))
    values = access_events(workdir)
    with running_cluster(workdir, meta, BROKERS) as brokers:
        cluster = Cluster(brokers, args.replication_factor)
        results = {
            "produce": ProducePart(cluster, workdir, values, count, args).run(reps),
            "aggregate": aggregate_part(cluster, workdir, values, backlog, reps),
        }
    return with_meta(meta, results, args.json)


def main(argv: list[str] | None = None) -> int:
    parser = sized_parser(
        __doc__, "small sizes and one repetition, about 15 s", backlog="events the aggregate counts"
    )
    parser.add_argument("--replication-factor", type=int, default=1, metavar="N")
    parser.add_argument(
        "--streams",
        default=",".join(STREAMS),
        help=f"the dashboard's streams open while producing: some of {','.join(STREAMS)}, "
        "or none (default: all)",
    )
    parser.add_argument(
        "--dashboard-nice",
        type=lambda text: text if text == "idle" else int(text),
        default="idle",
        metavar="N|idle",
        help="the dashboard's --nice while producing (default idle, its own default: "
        "SCHED_IDLE; 0: the same priority as the brokers and the producer)",
    )
    parser.add_argument(
        "--simple-aggregate",
        action="store_true",
        help="while producing, the dashboard's aggregate counts as it first did (an orjson "
        "document per message); the aggregate part always runs both",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    if min(args.messages, args.backlog, args.reps) < 0 or args.replication_factor not in (1, 2, 3):
        parser.error("counts must not be negative; --replication-factor is 1, 2 or 3")
    if args.streams != "none" and not set(args.streams.split(",")) <= set(STREAMS):
        parser.error(f"--streams {args.streams}: give some of {','.join(STREAMS)}, or none")
    return main_in_tmp_dir(
        args, "dashboard-bench-", lambda workdir: run(args, workdir), report=report
    )


if __name__ == "__main__":
    sys.exit(main())
