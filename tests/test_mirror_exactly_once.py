"""``headrace mirror`` between two real clusters (each its own ZooKeeper chroot): a steady
producer on the source, mirrors killed with SIGKILL and restarted, a topic created mid-run, the
source broker restarted; every source record is in the target once, in per-partition order,
with its key, value, headers and timestamp.  Also: two mirror processes sharing a group, one
SIGKILLed; a target topic with too few partitions stopped alone (metrics, log, the source's
dashboard showing the group's lag); records deleted at the source before they were copied."""

from __future__ import annotations

import subprocess

import pytest
from command_lines import HEADRACE
from conftest import create_topic, free_port, metadata, wait_for, zk_session
from dashboard_client import DashboardProcess, get_json
from metrics_scrape import scrape
from mirror_helpers import (
    MirrorProcess,
    SteadyProducer,
    as_copied,
    as_found,
    end_offsets,
    read_partition,
)

from broker.protocol.offsets import read_offset, read_owner


@pytest.fixture
def mirrors():
    """Make MirrorProcesses; any still running after the test is killed."""
    made: list[MirrorProcess] = []

    def make(*args) -> MirrorProcess:
        made.append(MirrorProcess(*args))
        return made[-1]

    yield make
    for mirror in made:
        if mirror.process is not None and mirror.process.poll() is None:
            mirror.kill()


def _target_count(target, topic: str, partitions: int) -> int:
    try:
        return sum(end_offsets(target.bootstrap, topic, partitions))
    except Exception:
        return 0


def _assert_mirrored_once(source, target, topic: str, partitions: int, cluster_id: str) -> int:
    ends = end_offsets(source.bootstrap, topic, partitions)
    for p, end in enumerate(ends):
        wanted = as_copied(read_partition(source.bootstrap, topic, p, end), cluster_id)
        assert len(wanted) == end
        target_end = end_offsets(target.bootstrap, topic, partitions)[p]
        found = as_found(read_partition(target.bootstrap, topic, p, target_end))
        assert found == wanted, f"{topic}-{p}: {len(found)} records in the target, {end} wanted"
    return sum(ends)


def _committed(source, group: str, topic: str, partitions: int) -> list:
    with zk_session(source.zookeeper_connect) as zk:
        return [read_offset(zk, group, topic, p)[0] for p in range(partitions)]


def _groups_describe(source, group: str) -> str:
    return subprocess.run(
        [*HEADRACE, "groups", "describe", group, "--zookeeper", source.zookeeper_connect],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_mirror_killed_twice_and_a_broker_restart_copies_every_record_once(
    make_cluster, mirrors, tmp_path
):
    source, target = make_cluster(1), make_cluster(1)
    cluster_id = metadata(source.brokers[0].port)["cluster_id"]
    create_topic(source.brokers[0].port, "clicks", 3, {"retention.ms": "86400000"})
    clicks = SteadyProducer(source.bootstrap, "clicks", 3000)
    clicks.start()
    mirror = mirrors(tmp_path / "mirror.log", source, target, "mirror", "clicks|views")

    # 1: commits nothing (a long commit interval), so its restart must resume from the target
    mirror.start("--offset-commit-interval-ms", "600000")
    wait_for(lambda: _target_count(target, "clicks", 3) >= 400, 60)
    mirror.kill()
    copied_before = _target_count(target, "clicks", 3)
    # the target has more than the group committed: only the resume scan can avoid repeats
    assert sum(o or 0 for o in _committed(source, "mirror", "clicks", 3)) < copied_before

    # 2: a topic appears while it runs, the source broker restarts, then it is killed too
    mirror.start("--offset-commit-interval-ms", "200")
    wait_for(lambda: _target_count(target, "clicks", 3) > copied_before + 200, 60)
    create_topic(source.brokers[0].port, "views", 2)
    views = SteadyProducer(source.bootstrap, "views", 600)
    views.start()
    wait_for(lambda: _target_count(target, "views", 2) >= 100, 60)
    source.brokers[0].stop()
    source.brokers[0].start()
    wait_for(lambda: _target_count(target, "views", 2) >= 300, 60)
    mirror.kill()

    # 3: runs to the end
    mirror.start("--offset-commit-interval-ms", "200", "--metrics-port", str(port := free_port()))
    clicks.join(120)
    views.join(120)
    assert clicks.error is None and views.error is None
    wait_for(lambda: _target_count(target, "clicks", 3) >= 3000, 60)
    wait_for(lambda: _target_count(target, "views", 2) >= 600, 60)

    assert _assert_mirrored_once(source, target, "clicks", 3, cluster_id) == 3000
    assert _assert_mirrored_once(source, target, "views", 2, cluster_id) == 600
    target_configs = subprocess.run(
        [
            *HEADRACE,
            "topics",
            "--bootstrap-server",
            target.bootstrap,
            "describe",
            "--topic",
            "clicks",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "retention.ms=86400000" in target_configs

    # the group's offsets catch up with the source's ends: no lag in groups describe
    ends = end_offsets(source.bootstrap, "clicks", 3)

    wait_for(lambda: _committed(source, "mirror", "clicks", 3) == ends, 30)
    described = _groups_describe(source, "mirror")
    rows = [line.split() for line in described.splitlines() if line.startswith("clicks")]
    assert len(rows) == 3 and all(row[4] == "0" for row in rows), described
    page = scrape(f"http://127.0.0.1:{port}/metrics")
    assert page["headrace_mirror_copied_total"] > 0
    assert page["headrace_mirror_lag", {"topic": "clicks"}] == 0
    assert mirror.terminate() == 0, mirror.log()


def test_a_target_topic_with_fewer_partitions_stops_only_that_topic(
    make_cluster, mirrors, tmp_path
):
    from admin_clients import request

    from broker.protocol.registry import ApiKey

    source, target = make_cluster(1), make_cluster(1)
    port = source.brokers[0].port
    create_topic(port, "orders", 2)
    create_topic(port, "events", 3)
    create_topic(target.brokers[0].port, "events", 1)  # too small for the source's three
    for topic, count in (("orders", 200), ("events", 300)):
        producer = SteadyProducer(source.bootstrap, topic, count, per_second=100_000)
        producer.run()
        assert producer.error is None
    mirror = mirrors(tmp_path / "mirror.log", source, target, "mirror2", "orders|events")
    mirror.start("--offset-commit-interval-ms", "200", "--metrics-port", str(page := free_port()))
    dashboard = DashboardProcess(source.zookeeper_connect, tmp_path).start()
    try:
        wait_for(lambda: _target_count(target, "orders", 2) >= 200, 60)
        cluster_id = metadata(port)["cluster_id"]
        assert _assert_mirrored_once(source, target, "orders", 2, cluster_id) == 200
        assert _target_count(target, "events", 1) == 0
        url = f"http://127.0.0.1:{page}/metrics"
        wait_for(lambda: scrape(url)["headrace_mirror_copied_total"] == 200, 30)
        metrics = scrape(url)
        assert metrics["headrace_mirror_topic_stopped", {"topic": "events"}] == 1
        assert metrics["headrace_mirror_lag", {"topic": "orders"}] == 0
        assert "the target topic has 1 partitions, the source 3" in mirror.log()

        def mirror_group():  # the source's dashboard shows the mirror's group and its lag
            groups = get_json(dashboard.url + "/api/groups")[1]["groups"]
            group = next((g for g in groups if g["name"] == "mirror2"), None)
            return group if group is not None and group["lag"] == 0 else None

        group = wait_for(mirror_group, 30)
        assert {(p["topic"], p["partition"]) for p in group["partitions"]} == {
            ("orders", 0),
            ("orders", 1),
        }

        # the source topic grows past its target: it stops too, and nothing else is stuck
        grown = {"topics": [{"name": "orders", "count": 3, "assignments": None}]}
        body = request(
            port, ApiKey.CREATE_PARTITIONS, {**grown, "timeout_ms": 10000, "validate_only": False}
        )
        assert body["results"][0]["error_code"] == 0
        wait_for(lambda: scrape(url)["headrace_mirror_topic_stopped", {"topic": "orders"}] == 1, 30)
        assert (
            "orders: not mirrored: the target topic has 2 partitions, the source 3" in mirror.log()
        )
    finally:
        dashboard.stop()
    assert mirror.terminate() == 0, mirror.log()


def test_two_mirror_processes_share_the_group_and_one_survives_the_others_sigkill(
    make_cluster, mirrors, tmp_path
):
    source, target = make_cluster(1), make_cluster(1)
    port = source.brokers[0].port
    create_topic(port, "shared", 4)
    producer = SteadyProducer(source.bootstrap, "shared", 2000, per_second=300)
    producer.start()
    first = mirrors(tmp_path / "first.log", source, target, "pair", "shared").start(
        "--workers", "2", "--offset-commit-interval-ms", "300"
    )
    second = mirrors(tmp_path / "second.log", source, target, "pair", "shared").start(
        "--workers", "2", "--offset-commit-interval-ms", "300"
    )

    def owners() -> set:
        with zk_session(source.zookeeper_connect) as zk:
            return {
                read_owner(zk, "pair", "shared", p).split("-")[-2] for p in range(4)
            }  # the member ids' pids

    # four members in two processes: each process owns some partitions
    wait_for(lambda: len(owners()) == 2, 60)
    wait_for(lambda: _target_count(target, "shared", 4) >= 600, 60)
    first.kill()
    producer.join(120)
    assert producer.error is None
    wait_for(lambda: _target_count(target, "shared", 4) >= 2000, 60)
    cluster_id = metadata(port)["cluster_id"]
    assert _assert_mirrored_once(source, target, "shared", 4, cluster_id) == 2000
    assert owners() == {str(second.process.pid)}
    assert second.terminate() == 0, second.log()


def test_records_deleted_at_the_source_before_they_were_copied_are_counted_and_logged(
    make_cluster, mirrors, tmp_path
):
    from admin_clients import request

    from broker.protocol.registry import ApiKey

    source, target = make_cluster(1), make_cluster(1)
    port = source.brokers[0].port
    create_topic(port, "trim", 1)
    SteadyProducer(source.bootstrap, "trim", 100, per_second=100_000).run()
    mirror = mirrors(tmp_path / "mirror.log", source, target, "trimmed", "trim")
    mirror.start("--offset-commit-interval-ms", "200")
    wait_for(lambda: _target_count(target, "trim", 1) >= 100, 60)
    assert mirror.terminate() == 0, mirror.log()

    SteadyProducer(source.bootstrap, "trim", 100, per_second=100_000).run()  # offsets 100..199
    wanted = [{"name": "trim", "partitions": [{"partition_index": 0, "offset": 150}]}]
    body = request(port, ApiKey.DELETE_RECORDS, {"topics": wanted, "timeout_ms": 10000})
    assert body["topics"][0]["partitions"][0]["error_code"] == 0
    mirror.start("--offset-commit-interval-ms", "200", "--metrics-port", str(page := free_port()))
    wait_for(lambda: _target_count(target, "trim", 1) >= 150, 60)
    wait_for(
        lambda: scrape(f"http://127.0.0.1:{page}/metrics")["headrace_mirror_deleted_total"] == 50,
        30,
    )
    assert "deleted offsets 100..149 before they were mirrored (50 records)" in mirror.log()
    copied = as_found(read_partition(target.bootstrap, "trim", 0, 150))
    assert [offset for offset, *_ in copied] == [*range(100), *range(150, 200)]
    assert mirror.terminate() == 0, mirror.log()
