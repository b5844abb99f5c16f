"""The mirror's lease: a mirror process stopped (SIGSTOP) longer than its group session, whose
partitions another member took over meanwhile, sends nothing for them after it wakes, so the
target holds every source record once.  Also the lease's arithmetic (a fake clock) and the
producer's ``send_gate``, which holds batches back and lets ``drop_unsent`` fail them."""

from __future__ import annotations

import signal
import threading

import pytest
from conftest import create_topic, metadata, wait_for, zk_session
from mirror_helpers import (
    MirrorProcess,
    SteadyProducer,
    as_copied,
    as_found,
    end_offsets,
    read_partition,
)

from broker.protocol.offsets import read_owner
from consumers.mirror.lease import Lease, LeaseLapsedError
from consumers.producer import Producer


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_runs_a_fraction_of_the_session_from_the_send_of_a_confirmed_request():
    clock = FakeClock()
    lease = Lease(2.0, fraction=0.6, clock=clock)
    assert not lease.valid()  # nothing claimed
    lease.claim("session-1")
    assert not lease.valid()  # claimed, not yet confirmed
    assert lease.confirm(100.0, "session-1")
    clock.now = 101.19
    assert lease.valid() and lease.allows("t", 0)
    clock.now = 101.2
    assert not lease.valid()  # a stop past this point is seen at once on waking


def test_a_confirmation_on_another_session_does_not_renew_the_lease():
    clock = FakeClock()
    lease = Lease(2.0, clock=clock)
    lease.claim("old")
    assert lease.confirm(100.0, "old")
    lease.claim("new")  # partitions claimed again on a new session: the old lease is gone
    assert not lease.valid()
    assert not lease.confirm(100.5, "old")
    assert not lease.confirm(100.5, None)
    assert not lease.valid()
    assert lease.confirm(100.5, "new") and lease.valid()
    clock.now = 101.5
    assert lease.confirm(99.0, "new")  # an older send never shortens the lease
    assert lease.valid()


@pytest.mark.integration
def test_a_closed_send_gate_holds_batches_until_it_opens_or_they_are_dropped(cluster1):
    create_topic(cluster1.brokers[0].port, "gated", 2)
    open_ = threading.Event()
    producer = Producer(
        cluster1.bootstrap,
        linger_ms=1,
        send_gate=lambda topic, partition: partition == 1 or open_.is_set(),
    )
    try:
        held = [producer.send("gated", b"held-%d" % i, partition=0) for i in range(5)]
        free = producer.send("gated", b"free", partition=1)
        assert free.result(10).offset >= 0  # another partition goes on
        assert producer.flush(0.3) == 5  # held, not dropped
        assert not any(f.done() for f in held)
        open_.set()
        assert producer.flush(10) == 0
        assert [f.result().offset for f in held] == list(
            range(held[0].result().offset, 5 + held[0].result().offset)
        )

        open_.clear()
        dropped = [producer.send("gated", b"dropped-%d" % i, partition=0) for i in range(3)]
        assert producer.flush(0.2) == 3
        assert producer.drop_unsent([("gated", 0)], LeaseLapsedError("lapsed")) == 3
        assert all(isinstance(f.exception(5), LeaseLapsedError) for f in dropped)
        assert producer.flush(5) == 0
        open_.set()  # the producer goes on after a drop (a new producer id if numbered)
        assert producer.send("gated", b"after", partition=0).result(10).offset >= 5
    finally:
        producer.close(5)


def _owner_pids(source, group: str, topic: str, partitions: int) -> set:
    with zk_session(source.zookeeper_connect) as zk:
        owners = [read_owner(zk, group, topic, p) for p in range(partitions)]
    return {int(o.split("-")[-2]) for o in owners if o}


def test_a_mirror_stopped_past_its_session_sends_nothing_its_successor_copied(
    make_cluster, tmp_path
):
    source, target = make_cluster(1), make_cluster(1)
    port = source.brokers[0].port
    create_topic(port, "fenced", 2)
    producer = SteadyProducer(source.bootstrap, "fenced", 2400, per_second=400)
    producer.start()
    # long linger: the stopped mirror has records queued in its producer when it stops
    args = ("--offset-commit-interval-ms", "300", "--linger-ms", "50")
    first = MirrorProcess(tmp_path / "first.log", source, target, "lease", "fenced")
    second = MirrorProcess(tmp_path / "second.log", source, target, "lease", "fenced")

    def both() -> bool:
        pids = {first.process.pid, second.process.pid}
        return _owner_pids(source, "lease", "fenced", 2) == pids

    def second_alone() -> bool:
        return _owner_pids(source, "lease", "fenced", 2) == {second.process.pid}

    first.start(*args)
    second.start(*args)
    try:
        assert first.process is not None and second.process is not None
        wait_for(both, 60)
        wait_for(lambda: sum(end_offsets(target.bootstrap, "fenced", 2)) >= 400, 60)
        first.process.send_signal(signal.SIGSTOP)
        try:
            # its session (2 s) expires; the other member takes its partition and copies on
            wait_for(second_alone, 30)
            copied = sum(end_offsets(target.bootstrap, "fenced", 2))
            wait_for(lambda: sum(end_offsets(target.bootstrap, "fenced", 2)) >= copied + 300, 30)
        finally:
            first.process.send_signal(signal.SIGCONT)
        # the woken mirror joins again and shares the partitions
        wait_for(both, 60)
        producer.join(60)
        assert producer.error is None
        wait_for(lambda: sum(end_offsets(target.bootstrap, "fenced", 2)) >= 2400, 60)
        cluster_id = metadata(port)["cluster_id"]
        for p, end in enumerate(end_offsets(source.bootstrap, "fenced", 2)):
            wanted = as_copied(read_partition(source.bootstrap, "fenced", p, end), cluster_id)
            target_end = end_offsets(target.bootstrap, "fenced", 2)[p]
            found = as_found(read_partition(target.bootstrap, "fenced", p, target_end))
            assert found == wanted, (
                f"fenced-{p}: {len(found)} records in the target, {end} wanted\n" + first.log()
            )
        assert sum(end_offsets(target.bootstrap, "fenced", 2)) == 2400
        assert first.terminate() == 0, first.log()
        assert second.terminate() == 0, second.log()
    finally:
        for mirror in (first, second):
            if mirror.process is not None and mirror.process.poll() is None:
                mirror.process.send_signal(signal.SIGCONT)
                mirror.kill()


def _member_partitions(source, group: str) -> list[int]:
    """How many partitions each member of a Kafka-protocol ``group`` owns (DescribeGroups),
    sorted; empty while the group is rebalancing or unknown."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": source.bootstrap})
    try:
        described = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:  # the group not there yet, or the broker busy: ask again
        return []
    return sorted(len(m.assignment.topic_partitions) for m in described.members)


def test_a_mirror_by_bootstrap_server_stopped_past_its_session_sends_nothing_its_successor_copied(
    make_cluster, tmp_path
):
    source = make_cluster(
        1, group_initial_rebalance_delay_ms=300, group_min_session_timeout_ms=1000
    )
    target = make_cluster(1)
    port = source.brokers[0].port
    create_topic(port, "fenced", 2)
    producer = SteadyProducer(source.bootstrap, "fenced", 2400, per_second=400)
    producer.start()
    args = ("--offset-commit-interval-ms", "300", "--linger-ms", "50")
    first = MirrorProcess(tmp_path / "first.log", source, target, "klease", "fenced")
    second = MirrorProcess(tmp_path / "second.log", source, target, "klease", "fenced")
    for mirror in (first, second):
        at = mirror.args.index("--from-zookeeper")
        mirror.args[at : at + 2] = ["--from-bootstrap-server", source.bootstrap]

    def target_count() -> int:
        return sum(end_offsets(target.bootstrap, "fenced", 2))

    first.start(*args)
    second.start(*args)
    try:
        assert first.process is not None and second.process is not None
        wait_for(lambda: _member_partitions(source, "klease") == [1, 1], 60)
        wait_for(lambda: target_count() >= 400, 60)
        first.process.send_signal(signal.SIGSTOP)
        try:
            # its session (2 s) expires; the other member takes both partitions and copies on
            wait_for(lambda: _member_partitions(source, "klease") == [2], 30)
            copied = target_count()
            wait_for(lambda: target_count() >= copied + 300, 15)
        finally:
            first.process.send_signal(signal.SIGCONT)
        # the woken mirror joins again and shares the partitions
        wait_for(lambda: _member_partitions(source, "klease") == [1, 1], 30)
        producer.join(60)
        assert producer.error is None
        wait_for(lambda: target_count() >= 2400, 30)
        cluster_id = metadata(port)["cluster_id"]
        for p, end in enumerate(end_offsets(source.bootstrap, "fenced", 2)):
            wanted = as_copied(read_partition(source.bootstrap, "fenced", p, end), cluster_id)
            target_end = end_offsets(target.bootstrap, "fenced", 2)[p]
            found = as_found(read_partition(target.bootstrap, "fenced", p, target_end))
            assert found == wanted, (
                f"fenced-{p}: {len(found)} records in the target, {end} wanted\n" + first.log()
            )
        assert target_count() == 2400
        assert first.terminate() == 0, first.log()
        assert second.terminate() == 0, second.log()
    finally:
        for mirror in (first, second):
            if mirror.process is not None and mirror.process.poll() is None:
                mirror.process.send_signal(signal.SIGCONT)
                mirror.kill()
