"""``headrace dashboard`` against a live 3-broker cluster, over real HTTP: the cluster and
topic snapshots, the live tail, the windowed counts (rebuilt the same by a restarted
dashboard), and the answers to bad requests."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import create_topic, wait_for
from dashboard_client import DashboardProcess, EventReader, get_json

from consumers.producer import Producer


@pytest.fixture(scope="module")
def dashboard(cluster3, tmp_path_factory):
    process = DashboardProcess(cluster3.zookeeper_connect, tmp_path_factory.mktemp("dash"))
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def layout(dashboard, cluster3):
    """A topic of six partitions, three replicas each, that the dashboard has seen."""
    new_topic(dashboard, cluster3, "layout", 6, replication_factor=3)
    return "layout"


@pytest.fixture(scope="module")
def producer(cluster3):
    with Producer(bootstrap_servers=cluster3.bootstrap, linger_ms=0) as p:
        yield p


def new_topic(dashboard, cluster3, name: str, partitions: int, **options) -> None:
    """Create a topic and wait until the dashboard's sampler has seen it."""
    create_topic(cluster3.brokers[0].port, name, partitions, **options)
    wait_for(lambda: topic_view(dashboard, name), 15)


def topic_view(dashboard, name: str) -> dict | None:
    return next(
        (t for t in get_json(dashboard.url + "/api/topics")[1]["topics"] if t["name"] == name), None
    )


def listening_addresses(port: int) -> set[str]:
    """The addresses listening on ``port`` (TCP, IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_default_bind_is_loopback(dashboard):
    assert listening_addresses(dashboard.port) == {"127.0.0.1"}


def test_the_dashboard_runs_at_a_lower_cpu_priority_than_the_brokers(dashboard, cluster3):
    def niceness(pid: int) -> int:  # field 19 of /proc/<pid>/stat, after the command's ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    assert niceness(dashboard.process.pid) == min(19, niceness(os.getpid()) + 19)
    assert niceness(cluster3.brokers[0].process.pid) == niceness(os.getpid())


def test_cluster_lists_brokers_controller_and_partitions(dashboard, cluster3, layout):

    def ready():
        body = get_json(dashboard.url + "/api/cluster")[1]
        return body if body["partitions"]["total"] >= 6 else None

    body = wait_for(ready, 15)
    assert body["zookeeper"] == {"connect": cluster3.zookeeper_connect, "state": "connected"}
    assert [b["id"] for b in body["brokers"]] == [1, 2, 3]
    assert all(b["up"] and b["host"] == "127.0.0.1" for b in body["brokers"])
    assert {b["port"] for b in body["brokers"]} == {b.port for b in cluster3.brokers}
    assert [b["id"] for b in body["brokers"] if b["controller"]] == [body["controller"]]
    assert sum(b["leader_partitions"] for b in body["brokers"]) == body["partitions"]["total"]
    assert body["partitions"]["offline"] == 0 and body["partitions"]["under_replicated"] == 0
    assert body["cluster_id"]


def test_topic_rates_move_while_producing_and_fall_to_zero(dashboard, cluster3, producer):
    create_topic(
        cluster3.brokers[0].port,
        "rates",
        3,
        configs={"retention.ms": "3600000"},
        replication_factor=3,
    )
    stop = threading.Event()

    def produce():
        while not stop.is_set():
            for i in range(50):
                producer.send("rates", b'{"status": 200, "path": "/%d"}' % i)
            producer.flush()
            time.sleep(0.05)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        moving = wait_for(
            lambda: (t := topic_view(dashboard, "rates")) and t["messages_per_s"] > 0 and t, 15
        )
        assert moving["bytes_per_s"] > 0
        assert any(p["messages_per_s"] > 0 for p in moving["partition_detail"])
    finally:
        stop.set()
        thread.join()
    still = wait_for(lambda: (t := topic_view(dashboard, "rates"))["messages_per_s"] == 0 and t, 10)
    assert still["bytes_per_s"] == 0
    assert still["retention_ms"] == 3_600_000 and still["retention_bytes"] is None
    assert still["cleanup_policy"] == "delete" and still["replication_factor"] == 3
    assert still["end_offset_total"] == sum(p["log_end_offset"] for p in still["partition_detail"])
    assert still["size_bytes"] == sum(p["size_bytes"] for p in still["partition_detail"]) > 0
    assert any(s["messages_per_s"] > 0 for s in still["history"])
    assert still["history"][-1]["messages_per_s"] == 0


def test_a_produced_message_reaches_the_tail_within_two_seconds(dashboard, cluster3, producer):
    new_topic(dashboard, cluster3, "tailed", 3)
    with EventReader(dashboard.url + "/api/tail?topic=tailed") as tail:
        tail.wait_for(lambda r: r.of("status"), 10)  # reading from the end now
        producer.send("tailed", b'{"status": 503, "path": "/x"}', key=b"10.0.0.7").result(10)
        [message] = tail.wait_for(lambda r: r.of("message"), 2.0)
    assert message["topic"] == "tailed" and message["key"] == "10.0.0.7"
    assert message["json"] == {"status": 503, "path": "/x"}
    assert message["value"] == '{"status": 503, "path": "/x"}'


def test_tail_filter_keeps_matching_messages_and_counts_the_rest(dashboard, cluster3, producer):
    new_topic(dashboard, cluster3, "filtered", 2)
    url = dashboard.url + "/api/tail?topic=filtered&filter=ERROR"
    with EventReader(url) as tail:
        tail.wait_for(lambda r: r.of("status"), 10)
        for i in range(20):
            producer.send("filtered", b"ERROR %d" % i if i % 4 == 0 else b"ok %d" % i)
        producer.send("filtered", b"\xff\xfe ERROR not utf-8").result(10)
        tail.wait_for(lambda r: len(r.of("message")) == 6, 5)
        status = tail.wait_for(lambda r: [s for s in r.of("status") if s["skipped"] == 15], 5)
    values = sorted(m["value"] for m in tail.of("message"))
    assert values[:5] == sorted(f"ERROR {i}" for i in range(0, 20, 4))
    assert values[5] == "\\xff\\xfe ERROR not utf-8" and status[-1]["partitions"] == 2


def test_tail_from_earliest_offset_and_time(dashboard, cluster3, producer):
    new_topic(dashboard, cluster3, "history", 1)
    base = int(time.time() * 1000) - 60_000
    for i in range(10):
        producer.send("history", b"m%d" % i, partition=0, timestamp=base + i * 1000)
    producer.flush()

    def offsets(query: str, count: int) -> list[int]:
        with EventReader(dashboard.url + "/api/tail?topic=history&" + query) as tail:
            tail.wait_for(lambda r: len(r.of("message")) >= count and r.of("status"), 5)
            return [m["offset"] for m in tail.of("message")]

    assert offsets("from=earliest", 10) == list(range(10))
    assert offsets("from=7", 3) == [7, 8, 9]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((base + 4000) / 1000)) + "Z"
    assert offsets(f"from={iso}", 6) == [4, 5, 6, 7, 8, 9]
    assert offsets("from=positions:0=8", 2) == [8, 9]
    assert offsets("from=999", 0) == []  # clamped to the end: nothing yet


def aggregate_url(dashboard, topic: str) -> str:
    return (
        f"{dashboard.url}/api/aggregate?topic={topic}&field=http.status&window=600&step=60"
        "&time_field=ts&classes=1"
    )


def test_a_burst_of_5xx_is_counted_in_its_buckets_and_rebuilt_after_a_restart(
    dashboard, cluster3, producer, tmp_path
):
    new_topic(dashboard, cluster3, "web", 3)
    now = time.time()
    burst_at = int(now - 300) // 60 * 60 + 10  # 10 s into the minute five minutes ago
    quiet_at = int(now - 120) // 60 * 60 + 10
    for i in range(40):
        event = {"ts": burst_at + i % 20, "http": {"status": 500 + i % 4}}
        producer.send("web", json.dumps(event).encode(), key=b"%d" % i)
    for _ in range(25):
        producer.send("web", json.dumps({"ts": quiet_at, "http": {"status": 200}}).encode())
    producer.send("web", b"not json")
    producer.send("web", json.dumps({"ts": now - 7200, "http": {"status": 200}}).encode())
    producer.flush()

    def counted(reader):
        return [w for w in reader.of("window") if w["events"] == 66]

    with EventReader(aggregate_url(dashboard, "web")) as reader:
        window = reader.wait_for(counted, 30)[-1]
    buckets = window["buckets"]
    assert window["window_s"] == 600 and window["step_s"] == 60 and len(buckets) == 10
    assert window["totals"] == {"2xx": 25, "5xx": 40, "null": 1}
    assert window["late"] == 1  # the event two hours old
    five = window["series"]["5xx"]
    assert five[buckets.index(burst_at // 60 * 60 * 1000)] == 40 and sum(five) == 40
    assert window["series"]["2xx"][buckets.index(quiet_at // 60 * 60 * 1000)] == 25

    again = DashboardProcess(cluster3.zookeeper_connect, tmp_path).start()
    try:
        # It serves before its ZooKeeper session is up, and answers 503 (retriable) for a
        # topic it cannot look up yet; the stream is opened once its sampler knows the topic.
        wait_for(lambda: topic_view(again, "web"), 15)
        with EventReader(aggregate_url(again, "web")) as reader:
            rebuilt = reader.wait_for(counted, 30)[-1]
    finally:
        again.stop()
    assert rebuilt["totals"] == window["totals"]
    assert rebuilt["series"]["5xx"][rebuilt["buckets"].index(burst_at // 60 * 60 * 1000)] == 40


@pytest.mark.parametrize(
    "query, status",
    [
        ("tail", 400),
        ("tail?topic=nosuch", 404),
        ("tail?topic=layout&from=yesterday", 400),
        ("tail?topic=layout&from=positions:0=x", 400),
        ("aggregate?topic=layout", 400),
        ("aggregate?topic=nosuch&field=status&window=60", 404),
        ("aggregate?topic=layout&field=status", 400),
        ("aggregate?topic=layout&field=status&window=-5", 400),
        ("aggregate?topic=layout&field=status&window=%C2%B2", 400),
        ("aggregate?topic=layout&field=status&window=60&step=61", 400),
        ("aggregate?topic=layout&field=status&window=60&classes=maybe", 400),
        ("nosuch", 404),
    ],
)
def test_bad_requests_get_a_json_error(dashboard, layout, query, status):
    code, body = get_json(f"{dashboard.url}/api/{query}")
    assert code == status and isinstance(body["error"], str) and "\n" not in body["error"]
    assert get_json(dashboard.url + "/api/cluster")[0] == 200  # and it serves on


def test_the_page_and_its_static_files_are_served(dashboard):
    import urllib.request

    with urllib.request.urlopen(dashboard.url + "/") as response:
        page = response.read()
    assert response.headers["content-type"].startswith("text/html") and b"<html" in page
    with urllib.request.urlopen(dashboard.url + "/static/index.html") as response:
        assert response.read() == page


def test_a_tail_sends_at_most_200_messages_a_second_and_counts_the_rest(
    dashboard, cluster3, producer
):
    new_topic(dashboard, cluster3, "busy", 2)
    with EventReader(dashboard.url + "/api/tail?topic=busy") as tail:
        tail.wait_for(lambda r: r.of("status"), 10)
        for i in range(2000):
            producer.send("busy", b"line %d" % i)
        producer.flush()

        def accounted(reader):
            statuses = [s for s in reader.of("status") if s["dropped"]]
            return statuses and len(reader.of("message")) + statuses[-1]["dropped"] == 2000

        tail.wait_for(accounted, 10)
    assert 0 < len(tail.of("message")) < 2000


@pytest.mark.parametrize(
    "args, said",
    [
        (["--port", "70000"], "--port 70000: give 0-65535"),
        (["--nice", "20"], "--nice 20: give 0-19 or idle"),
        (["--nice", "lazy"], "--nice lazy: give 0-19 or idle"),
        (["--zookeeper", "127.0.0.1:notaport"], "--zookeeper 127.0.0.1:notaport"),
        ([], "cannot listen on 127.0.0.1:"),  # the port the dashboard of this module holds
    ],
)
def test_dashboard_command_refuses_bad_options_in_one_line(dashboard, cluster3, args, said):
    import subprocess
    import sys

    command = [sys.executable, "-m", "headrace.cli", "dashboard"]
    command += ["--zookeeper", cluster3.zookeeper_connect, "--port", str(dashboard.port), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_event_stream_pushes_the_three_snapshots_every_second(dashboard, layout):
    with EventReader(dashboard.url + "/api/events") as events:
        events.wait_for(
            lambda r: all(len(r.of(n)) >= 3 for n in ("cluster", "topics", "groups")), 10
        )
    for name in ("cluster", "topics", "groups"):
        stamps = [view["sampled_at"] for view in events.of(name)]
        assert stamps == sorted(stamps) and len(set(stamps)) >= 2
    assert layout in {t["name"] for t in events.of("topics")[-1]["topics"]}
    assert events.of("cluster")[-1]["zookeeper"]["state"] == "connected"


@pytest.mark.parametrize("nice, policy", [("idle", os.SCHED_IDLE), ("0", os.SCHED_OTHER)])
def test_dashboard_takes_the_cpu_priority_it_is_given(cluster3, tmp_path, nice, policy):
    """``--nice idle`` puts the dashboard (every thread) in SCHED_IDLE at nice 19; ``--nice 0``
    leaves it as it was started."""
    process = DashboardProcess(cluster3.zookeeper_connect, tmp_path, "--nice", nice).start()
    try:
        pid = process.process.pid
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert len(tids) > 1  # the reactor's thread pool and ZooKeeper's threads
        assert {os.sched_getscheduler(t) for t in tids} == {policy}
        expected = 19 if nice == "idle" else os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in tids} == {expected}
    finally:
        process.stop()
