"""``headrace mirror`` between two real clusters (each its own ZooKeeper chroot): a steady
producer on the source, mirrors killed with SIGKILL and restarted, a topic created mid-run, the
source broker restarted; every source record is in the target once, in per-partition order,
with its key, value, headers and timestamp."""

from __future__ import annotations

import subprocess

from command_lines import HEADRACE
from conftest import create_topic, free_port, metadata, wait_for
from metrics_scrape import scrape
from mirror_helpers import (
    MirrorProcess,
    SteadyProducer,
    as_copied,
    as_found,
    end_offsets,
    read_partition,
)

from broker.protocol.offsets import read_offset


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


def _groups_describe(source, group: str) -> str:
    return subprocess.run(
        [*HEADRACE, "groups", "describe", group, "--zookeeper", source.zookeeper_connect],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_mirror_killed_twice_and_a_broker_restart_copies_every_record_once(make_cluster, tmp_path):
    source, target = make_cluster(1), make_cluster(1)
    cluster_id = metadata(source.brokers[0].port)["cluster_id"]
    create_topic(source.brokers[0].port, "clicks", 3, {"retention.ms": "86400000"})
    clicks = SteadyProducer(source.bootstrap, "clicks", 3000)
    clicks.start()
    mirror = MirrorProcess(tmp_path / "mirror.log", source, target, "mirror", "clicks|views")

    # 1: commits nothing (a long commit interval), so its restart must resume from the target
    mirror.start("--offset-commit-interval-ms", "600000")
    wait_for(lambda: _target_count(target, "clicks", 3) >= 400, 60)
    mirror.kill()
    copied_before = _target_count(target, "clicks", 3)

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

    def committed() -> list:
        from conftest import zk_session

        with zk_session(source.zookeeper_connect) as zk:
            return [read_offset(zk, "mirror", "clicks", p)[0] for p in range(3)]

    wait_for(lambda: committed() == ends, 30)
    described = _groups_describe(source, "mirror")
    rows = [line.split() for line in described.splitlines() if line.startswith("clicks")]
    assert len(rows) == 3, described
    page = scrape(f"http://127.0.0.1:{port}/metrics")
    assert page["headrace_mirror_copied_total"] > 0
    assert page["headrace_mirror_lag", {"topic": "clicks"}] == 0
    assert mirror.terminate() == 0, mirror.log()
