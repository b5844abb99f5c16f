"""``headrace mirror`` meeting what it cannot copy: a record the target refuses for good
(larger than the target topic's ``max.message.bytes``) stops its partition as README
promises (the metric, the log, no commit past it, the record not copied), and a source
ZooKeeper chroot that holds no cluster is named in one line."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from command_lines import HEADRACE, ROOT
from conftest import create_topic, free_port, wait_for, zk_session
from metrics_scrape import scrape
from mirror_helpers import MirrorProcess, end_offsets, read_partition

from broker.protocol.offsets import read_offset
from consumers.mirror import HEADER, parse_source
from consumers.producer import Producer


@pytest.fixture(scope="module")
def clusters(zookeeper, tmp_path_factory):
    from conftest import Cluster

    made = [
        Cluster(tmp_path_factory.mktemp(name), f"{zookeeper.connect}/{name}", 1).start()
        for name in ("refusals-source", "refusals-target")
    ]
    yield made
    for cluster in made:
        cluster.kill()


def test_a_record_the_target_refuses_stops_its_partition_and_nothing_past_is_committed(
    clusters, tmp_path
):
    source, target = clusters
    create_topic(source.brokers[0].port, "big", 1)
    create_topic(target.brokers[0].port, "big", 1, {"max.message.bytes": "2000"})

    def send(*values: bytes) -> None:
        with Producer(source.bootstrap) as producer:
            for value in values:
                producer.send("big", value, partition=0).result(10)

    def committed() -> int | None:
        with zk_session(source.zookeeper_connect) as zk:
            return read_offset(zk, "refusals", "big", 0)[0]

    def copied() -> list[int]:
        end = end_offsets(target.bootstrap, "big", 1)[0]
        records = read_partition(target.bootstrap, "big", 0, end)
        return [parse_source(dict(r.headers).get(HEADER))[1] for r in records]

    send(*(f"small {i}".encode() for i in range(6)))
    mirror = MirrorProcess(tmp_path / "mirror.log", source, target, "refusals", "big")
    mirror.start("--offset-commit-interval-ms", "100", "--metrics-port", str(port := free_port()))
    url = f"http://127.0.0.1:{port}/metrics"
    key = ("headrace_mirror_partition_stopped", {"topic": "big", "partition": "0"})
    try:
        wait_for(lambda: committed() == 6, 30)  # offsets 0-5 copied and committed
        send(b"x" * 5000)  # offset 6: over the target topic's max.message.bytes
        wait_for(lambda: scrape(url)[key] == 1, 30)
        send(*(f"after {i}".encode() for i in range(3)))  # offsets 7-9: never copied
        assert "big-0: the record at source offset 6 " in mirror.log()
        assert "larger than the target topic's max.message.bytes 2000" in mirror.log()
        assert "this partition stops here" in mirror.log()
        assert scrape(url)["headrace_mirror_failed_total"] == 1
        assert scrape(url)["headrace_mirror_copied_total"] == 6
        assert committed() == 6 and copied() == [0, 1, 2, 3, 4, 5]
    finally:
        assert mirror.terminate() == 0, mirror.log()
    # a restart meets the same record and stops there again: nothing skipped, nothing lost
    mirror.start("--offset-commit-interval-ms", "100", "--metrics-port", str(port))
    try:
        wait_for(lambda: scrape(url)[key] == 1, 30)
        assert committed() == 6 and copied() == [0, 1, 2, 3, 4, 5]
    finally:
        assert mirror.terminate() == 0, mirror.log()


def test_records_sent_with_a_too_large_one_are_copied_up_to_it_and_none_after(clusters, tmp_path):
    """Small records arriving in one burst with a record the target cannot take: the mirror
    copies every record before it (none is refused with it in one batch), commits up to it,
    sends nothing after it, and a restart stops at the same record with nothing skipped."""
    source, target = clusters
    create_topic(source.brokers[0].port, "burst", 1)
    create_topic(target.brokers[0].port, "burst", 1, {"max.message.bytes": "3000"})
    with Producer(source.bootstrap, linger_ms=50) as producer:
        values = [f"before {i}".encode() for i in range(40)] + [b"x" * 6000]
        values += [f"after {i}".encode() for i in range(40)]
        for value in values:
            producer.send("burst", value, partition=0)
        assert producer.flush(30) == 0

    def committed() -> int | None:
        with zk_session(source.zookeeper_connect) as zk:
            return read_offset(zk, "burst-group", "burst", 0)[0]

    def copied() -> list[int]:
        end = end_offsets(target.bootstrap, "burst", 1)[0]
        records = read_partition(target.bootstrap, "burst", 0, end)
        return [parse_source(dict(r.headers).get(HEADER))[1] for r in records]

    mirror = MirrorProcess(tmp_path / "burst.log", source, target, "burst-group", "burst")
    stop = "burst-0: the record at source offset 40 "
    for run in (1, 2):  # the restart meets the same record: nothing skipped past it
        mirror.start("--offset-commit-interval-ms", "100")
        try:
            wait_for(lambda run=run: mirror.log().count(stop) == run, 30)
            wait_for(lambda: committed() == 40, 30)
            assert copied() == list(range(40))
        finally:
            assert mirror.terminate() == 0, mirror.log()
    assert copied() == list(range(40)) and committed() == 40


def test_batches_behind_a_refused_one_are_not_sent_again_past_the_gap(clusters, tmp_path):
    """Compressed copies (no size known beforehand): a record over the target's limit travels
    in a batch of its own (it is over the producer's batch size), the records after it in the
    next batch, in flight behind it.  The refusal closes the partition's send gate, so the
    batch behind, refused as out of sequence, is not sent again under a new producer id:
    nothing lands past the gap that a restart's scan would skip."""
    source, target = clusters
    create_topic(source.brokers[0].port, "gap", 1)
    create_topic(target.brokers[0].port, "gap", 1, {"max.message.bytes": "300000"})

    def send(*values: bytes) -> None:
        with Producer(source.bootstrap, linger_ms=50) as producer:
            for value in values:
                producer.send("gap", value, partition=0)
            assert producer.flush(30) == 0

    def committed() -> int | None:
        with zk_session(source.zookeeper_connect) as zk:
            return read_offset(zk, "gap-group", "gap", 0)[0]

    def copied() -> list[int]:
        end = end_offsets(target.bootstrap, "gap", 1)[0]
        records = read_partition(target.bootstrap, "gap", 0, end)
        return [parse_source(dict(r.headers).get(HEADER))[1] for r in records]

    send(*(f"first {i}".encode() for i in range(10)))
    mirror = MirrorProcess(tmp_path / "gap.log", source, target, "gap-group", "gap")
    mirror.start("--offset-commit-interval-ms", "100", "--compression-type", "lz4")
    try:
        wait_for(lambda: committed() == 10, 30)  # the target knows the producer id now
        send(os.urandom(600_000), *(f"after {i}".encode() for i in range(40)))
        wait_for(lambda: "gap-0: the target refused" in mirror.log(), 30)
        time.sleep(1.0)  # time for a batch sent again to land
        assert copied() == list(range(10)) and committed() == 10
    finally:
        assert mirror.terminate() == 0, mirror.log()


def test_a_wrong_source_chroot_is_named_in_one_line(clusters):
    source, target = clusters
    done = subprocess.run(
        [
            *HEADRACE,
            "mirror",
            "--from-zookeeper",
            source.zookeeper_connect + "-nosuch",
            "--to-bootstrap-server",
            target.bootstrap,
            "--include",
            "big",
            "--group",
            "wrong-chroot",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    chroot = "/" + (source.zookeeper_connect + "-nosuch").partition("/")[2]
    assert done.returncode == 2, done.stderr
    assert f"no brokers registered under {chroot}" in done.stderr
    assert "is this the cluster's zookeeper.connect?" in done.stderr
    assert "NoNodeError" not in done.stderr and "Traceback" not in done.stderr
