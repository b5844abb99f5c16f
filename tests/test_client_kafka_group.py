"""Our member of broker-coordinated Kafka consumer groups (``KafkaGroupConsumer``), against real
brokers: groups of ours that split, grow and shrink; groups shared with confluent-kafka and
kafka-python (either one leading); a member stopped past its session fenced, and one stopped
mid-stream while the other reads on; the coordinator killed; ``headrace consume --group``
without ZooKeeper.  Every message counted."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from command_lines import HEADRACE, ROOT
from conftest import Cluster, wait_for, zk_session
from test_coordinator_clients import (
    OVERRIDES,
    aiokafka_member,
    committed,
    confluent_member,
    coordinator_of,
    kafka_python_member,
    make_topic,
    produce,
)

from broker.protocol.offsets import claim_kind
from broker.protocol.zookeeper import ZOOKEEPER
from consumers.coordinator import CommitFailedError
from consumers.kafka_group import KafkaGroupConsumer

FAST = {
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 10000,
}


@pytest.fixture(scope="module")
def brokers(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("kgroup"),
        f"{zookeeper.connect}/kg-{time.monotonic_ns()}",
        1,
        OVERRIDES,
    ).start()
    yield cluster
    cluster.stop()


class Ours:
    """Our member polling in a thread of its own: it records (partition, value), commits
    after each poll, and commits in ``on_revoke``, before its partitions are handed over."""

    def __init__(self, cluster, group: str, topic: str, seen: list | None = None, **options):
        self.seen = [] if seen is None else seen
        self.revokes = 0
        self.refused = 0  # commits refused to a fenced member
        self.member = KafkaGroupConsumer(
            group,
            [topic],
            cluster.bootstrap,
            auto_commit=False,
            on_revoke=self._revoked,
            **{**FAST, **options},
        )
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _revoked(self, owned) -> None:
        self.revokes += 1
        self.member.commit()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                messages = self.member.poll(0.2)
                self.seen.extend((m.partition, int(m.value)) for m in messages)
                if messages:
                    try:
                        self.member.commit()
                    except CommitFailedError:  # fenced: the next poll rejoins
                        self.refused += 1
        except BaseException as exc:  # shown by the test
            self.error = exc

    def owns(self) -> list[int]:
        return [p for ps in self.member.owned.values() for p in ps]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.member.close()
        assert self.error is None, repr(self.error)


def values(seen) -> Counter:
    return Counter(v for _, v in seen)


def split(*members: Ours, partitions: int = 6) -> bool:
    """Whether the members own disjoint non-empty shares covering every partition."""
    owned = [m.owns() for m in members]
    flat = [p for o in owned for p in o]
    return all(owned) and sorted(flat) == list(range(partitions))


def test_our_members_split_rebalance_take_over_and_resume(brokers):
    topic, group = "kg-ours", "kg-ours"
    make_topic(brokers, topic)
    produce(brokers, topic, 0, 300)
    seen: list = []
    a = Ours(brokers, group, topic, seen)
    b = Ours(brokers, group, topic, seen)
    try:
        wait_for(lambda: split(a, b), 30)
        wait_for(lambda: len(seen) >= 300, 30)
        c = Ours(brokers, group, topic, seen)  # a third joins: two partitions each
        wait_for(lambda: split(a, b, c) and all(len(m.owns()) == 2 for m in (a, b, c)), 30)
        produce(brokers, topic, 300, 300)
        wait_for(lambda: len(seen) >= 600, 30)
        b.close()  # one leaves: the others take its partitions over
        wait_for(lambda: split(a, c), 30)
        produce(brokers, topic, 600, 300)
        wait_for(lambda: len(seen) >= 900, 30)
    finally:
        for m in (a, b, c):
            m.close()
    got = values(seen)
    assert set(got) == set(range(900)) and max(got.values()) == 1  # committed before handover
    assert a.revokes >= 2 and c.revokes >= 1
    assert sum(committed(brokers, group, topic).values()) == 900
    produce(brokers, topic, 900, 50)  # a restarted member resumes from the commits
    again = Ours(brokers, group, topic)
    try:
        wait_for(lambda: len(again.seen) >= 50, 30)
        time.sleep(0.5)  # a duplicate would show
    finally:
        again.close()
    assert sorted(values(again.seen)) == list(range(900, 950))


@pytest.mark.parametrize("other", ["confluent-kafka", "kafka-python", "aiokafka"])
def test_a_group_shared_with_another_client_consumes_each_message_once(brokers, other):
    topic, group = f"kg-mixed-{other}", f"kg-mixed-{other}"
    make_topic(brokers, topic)
    seen: list = []
    stop = threading.Event()
    if other == "confluent-kafka":
        run, conf = confluent_member, {"partition.assignment.strategy": "range"}
    elif other == "kafka-python":
        run, conf = kafka_python_member, {}
    else:
        run, conf = aiokafka_member, {}
    theirs_seen: list = []
    theirs = threading.Thread(
        target=run, args=(brokers, group, topic, theirs_seen, stop), kwargs=conf, daemon=True
    )
    # confluent-kafka joins second (ours leads), the others first (they lead)
    ours = None
    if other != "confluent-kafka":
        theirs.start()
        time.sleep(1.5)
    ours = Ours(brokers, group, topic, seen)
    if other == "confluent-kafka":
        wait_for(lambda: len(ours.owns()) == 6, 30)
        theirs.start()
    try:
        wait_for(lambda: len(ours.owns()) == 3, 30)  # the group is stable, split in two
        time.sleep(1.0)
        produce(brokers, topic, 0, 600)
        wait_for(lambda: len(seen) + len(theirs_seen) >= 600, 30)
        assert seen and theirs_seen, "both members consumed"
        stop.set()  # the other client leaves, having committed: ours takes everything
        theirs.join(30)
        wait_for(lambda: len(ours.owns()) == 6, 30)
        produce(brokers, topic, 600, 300)
        wait_for(lambda: len(seen) + len(theirs_seen) >= 900, 30)
        time.sleep(0.5)
    finally:
        stop.set()
        ours.close()
    got = values(seen) + Counter(int(v) for _, _, v in theirs_seen)
    duplicates = sum(n - 1 for n in got.values())
    assert set(got) == set(range(900)) and duplicates == 0


FENCED_MEMBER = """
import json, sys
from broker.protocol.offsets import claim_kind
from broker.protocol.zookeeper import ZOOKEEPER
from consumers.coordinator import CommitFailedError
from consumers.kafka_group import KafkaGroupConsumer
group, topic, bootstrap = sys.argv[1:4]
member = KafkaGroupConsumer(group, [topic], bootstrap, auto_commit=False,
                            auto_offset_reset="earliest", session_timeout_ms=2000,
                            heartbeat_interval_ms=200, rebalance_timeout_ms=30000).start()
print(json.dumps(member.owned), flush=True)
sys.stdin.readline()   # not polling meanwhile: the heartbeat thread keeps the membership
try:
    member.commit_offsets({(t, p): 999999 for t, ps in member.owned.items() for p in ps})
    print("committed", flush=True)
except CommitFailedError as exc:
    print("fenced", exc.code, flush=True)
member.poll(0.2)   # rejoins
while not member.owned:
    member.poll(0.2)
print(json.dumps(member.owned), flush=True)
sys.stdin.readline()
member.close()
"""


def read_line(proc, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the member said nothing"
    return proc.stdout.readline().strip()


def test_a_member_stopped_past_its_session_is_fenced_and_rejoins(brokers):
    topic, group = "kg-fenced", "kg-fenced"
    make_topic(brokers, topic)
    produce(brokers, topic, 0, 60)
    ours = Ours(brokers, group, topic)
    wait_for(lambda: len(ours.owns()) == 6, 30)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", FENCED_MEMBER, group, topic, brokers.bootstrap],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        child_owned = json.loads(read_line(child, 30))[topic]
        assert len(child_owned) == 3
        time.sleep(3)  # past its session timeout without polling: still a member
        assert sorted(ours.owns() + child_owned) == list(range(6))
        child.send_signal(signal.SIGSTOP)
        wait_for(lambda: len(ours.owns()) == 6, 30)  # its session expired: ours took all
        wait_for(lambda: len(ours.seen) >= 60, 30)
        child.send_signal(signal.SIGCONT)
        child.stdin.write("commit\n")
        child.stdin.flush()
        assert read_line(child, 30).split()[0] == "fenced"
        assert 999999 not in committed(brokers, group, topic).values()  # nothing moved
        assert json.loads(read_line(child, 30))[topic]  # it rejoined and got partitions
        wait_for(lambda: len(ours.owns()) == 3, 30)
        child.stdin.write("close\n")
        child.stdin.flush()
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        ours.close()
    assert sorted(values(ours.seen)) == list(range(60))


def test_a_fenced_commit_raises_the_typed_error(brokers):
    topic, group = "kg-fenced-pure", "kg-fenced-pure"
    make_topic(brokers, topic, partitions=2)
    member = KafkaGroupConsumer(group, [topic], brokers.bootstrap, **FAST).start()
    try:
        member.heartbeats.paused.set()  # a member that stops heartbeating...
        other = Ours(brokers, group, topic)
        wait_for(lambda: len(other.owns()) == 2, 30)  # ...is dropped from the group
        with pytest.raises(CommitFailedError) as info:
            member.commit_offsets({(topic, 0): 5})
        assert info.value.code in (22, 25)
        assert committed(brokers, group, topic).get(0) != 5
        member.heartbeats.paused.clear()
        member.poll(0.5)
        wait_for(lambda: member.poll(0.1) is not None and member.owned, 30)
        other.close()
    finally:
        member.close()


def test_the_member_goes_on_when_its_coordinator_dies(make_cluster):
    cluster = make_cluster(3, **{k.replace(".", "_"): v for k, v in OVERRIDES.items()})
    group, topic = "kg-move", "kg-move"
    node = coordinator_of(cluster, group)
    make_topic(
        cluster, topic, on_brokers=[b.broker_id for b in cluster.brokers if b.broker_id != node]
    )
    produce(cluster, topic, 0, 300)
    ours = Ours(cluster, group, topic)
    try:
        wait_for(lambda: len(ours.seen) >= 300, 30)
        cluster.broker(node).kill()  # SIGKILL
        wait_for(lambda: coordinator_of(cluster, group) != node, 30)
        produce(cluster, topic, 300, 200)
        wait_for(lambda: {v for _, v in ours.seen} >= set(range(500)), 60)
        wait_for(lambda: sum(committed(cluster, group, topic).values()) == 500, 30)
    finally:
        ours.close()
    assert ours.member.link.node is None or ours.member.link.node[0] != node


def test_headrace_consume_joins_a_kafka_group_without_zookeeper(brokers):
    topic, group = "kg-cli", "kg-cli"
    make_topic(brokers, topic, partitions=3)
    produce(brokers, topic, 0, 40)
    cmd = [*HEADRACE, "consume", "--bootstrap-server", brokers.bootstrap, "--topic", topic]
    cmd += ["--group", group, "--from-beginning", "--timeout", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert sorted(int(v) for v in first.stdout.split()) == list(range(40))
    produce(brokers, topic, 40, 5)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert sorted(int(v) for v in again.stdout.split()) == list(range(40, 45))  # resumed


def test_headrace_consume_group_with_no_broker_says_so(brokers):
    cmd = [*HEADRACE, "consume", "--bootstrap-server", "127.0.0.1:1", "--topic", "t"]
    done = subprocess.run([*cmd, "--group", "g"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "headrace consume: group g:" in done.stderr and "Traceback" not in done.stderr


def test_a_static_member_restarted_within_its_session_keeps_its_partitions(brokers):
    topic, group = "kg-static", "kg-static"
    make_topic(brokers, topic)
    seen: list = []
    a = Ours(brokers, group, topic, seen, group_instance_id="a")
    wait_for(lambda: len(a.owns()) == 6, 30)
    b = Ours(brokers, group, topic, seen, group_instance_id="b")
    try:
        wait_for(lambda: split(a, b), 30)
        revokes, owned_b = a.revokes, b.owns()
        b.close()  # a static member does not leave the group
        time.sleep(0.5)
        b = Ours(brokers, group, topic, seen, group_instance_id="b")
        wait_for(lambda: b.owns(), 30)
        assert b.owns() == owned_b and sorted(a.owns() + owned_b) == list(range(6))
        assert a.revokes == revokes  # no rebalance: the other member never gave anything up
        produce(brokers, topic, 0, 100)
        wait_for(lambda: len(seen) >= 100, 30)
        time.sleep(0.5)
    finally:
        a.close()
        b.close()
    assert sorted(values(seen)) == list(range(100))


@pytest.mark.parametrize(
    "args, options, says",
    [
        (("", ["t"]), {}, "name"),
        (("g", "t"), {}, "list of topic names"),
        (("g", []), {}, "list of topic names"),
        (("g", ["t"]), {"auto_offset_reset": "smallest-ish"}, "auto_offset_reset"),
        (("g", ["t"]), {"heartbeat_interval_ms": 10000}, "heartbeat_interval_ms"),
        (("g", ["t"]), {"partition_assignment_strategy": ("sticky",)}, "sticky"),
        (("g", ["t"]), {"partition_assignment_strategy": ()}, "strategy"),
    ],
)
def test_bad_settings_are_value_errors_naming_the_setting(args, options, says):
    with pytest.raises(ValueError, match=says):
        KafkaGroupConsumer(*args, "127.0.0.1:9092", **options)


def test_a_member_that_stops_polling_leaves_and_rejoins_when_it_polls(brokers):
    topic, group = "kg-stuck", "kg-stuck"
    make_topic(brokers, topic)
    other = Ours(brokers, group, topic)
    wait_for(lambda: len(other.owns()) == 6, 30)
    stuck = KafkaGroupConsumer(
        group, [topic], brokers.bootstrap, **{**FAST, "rebalance_timeout_ms": 1500}
    )
    try:
        joined = threading.Thread(target=stuck.start)
        joined.start()
        wait_for(lambda: len(other.owns()) == 3, 30)
        joined.join(30)
        assert sum(len(ps) for ps in stuck.owned.values()) == 3
        # no poll for longer than its rebalance timeout: the heartbeat thread leaves the group
        wait_for(lambda: len(other.owns()) == 6, 30)
        stuck.poll(0.5)  # rejoins
        wait_for(lambda: stuck.poll(0.1) is not None and len(other.owns()) == 3, 30)
    finally:
        stuck.close()
        other.close()


def test_a_group_name_of_the_papers_groups_is_refused_with_a_message(brokers):
    topic = "kg-kind"
    make_topic(brokers, topic, partitions=1)
    with zk_session(brokers.zookeeper_connect) as zk:
        claim_kind(zk, "kg-zk-owned", ZOOKEEPER)
    cmd = [*HEADRACE, "consume", "--bootstrap-server", brokers.bootstrap, "--topic", topic]
    done = subprocess.run(
        [*cmd, "--group", "kg-zk-owned"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr
    assert "INCONSISTENT_GROUP_PROTOCOL" in done.stderr and "another kind" in done.stderr
    assert "Traceback" not in done.stderr


# A member that reads on and commits after each poll, printing "partition offset" per message
# and its partitions at each assignment.
READING_MEMBER = """
import sys
from consumers.kafka_group import KafkaGroupConsumer
group, topic, bootstrap = sys.argv[1:4]
say = lambda *words: print(" ".join(map(str, words)), flush=True)  # one write a line
member = KafkaGroupConsumer(group, [topic], bootstrap, auto_offset_reset="earliest",
                            auto_commit_interval_ms=100, session_timeout_ms=2000,
                            heartbeat_interval_ms=500,
                            on_assign=lambda owned: say("owns", *owned.get(topic, [])))
while True:
    for m in member.poll(0.2):
        say("got", m.partition, m.offset)
"""


def test_a_member_stopped_mid_stream_leaves_the_other_reading_and_rejoins_on_waking(
    brokers, tmp_path
):
    from mirror_helpers import SteadyProducer

    topic = group = "kg-stopped-reader"
    make_topic(brokers, topic, partitions=2)
    stream = SteadyProducer(brokers.bootstrap, topic, 2000, per_second=400)
    stream.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = {name: tmp_path / f"{name}.log" for name in ("stopped", "survivor")}
    members = {
        name: subprocess.Popen(
            [sys.executable, "-c", READING_MEMBER, group, topic, brokers.bootstrap],
            stdout=open(path, "w"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        for name, path in logs.items()
    }

    def said(name: str) -> list[list[str]]:
        return [line.split() for line in logs[name].read_text().splitlines()]

    def owns(name: str) -> list[int] | None:
        assignments = [words[1:] for words in said(name) if words[:1] == ["owns"]]
        return [int(p) for p in assignments[-1]] if assignments else None

    def got(name: str) -> list[tuple[int, int]]:
        return [(int(w[1]), int(w[2])) for w in said(name) if w[:1] == ["got"] and len(w) == 3]

    try:
        wait_for(lambda: owns("stopped") and owns("survivor") == [1 - owns("stopped")[0]], 30)
        stopped_partition = owns("stopped")[0]
        # stopped once it has committed some (auto-commit every 100 ms)
        wait_for(lambda: committed(brokers, group, topic).get(stopped_partition, 0) >= 100, 30)
        members["stopped"].send_signal(signal.SIGSTOP)
        # where the survivor starts: the stopped member cannot commit any more
        resumed_at = committed(brokers, group, topic)[stopped_partition]
        try:
            wait_for(lambda: owns("survivor") == [0, 1], 20)  # its session (2 s) expired
            taken_over = len(got("survivor"))
            wait_for(lambda: len(got("survivor")) >= taken_over + 200, 10)  # reading on
        finally:
            members["stopped"].send_signal(signal.SIGCONT)
        wait_for(lambda: owns("stopped") and owns("survivor") == [1 - owns("stopped")[0]], 20)
        stream.join(60)
        assert stream.error is None
        wait_for(lambda: len(set(got("stopped") + got("survivor"))) == 2000, 30)
    finally:
        for member in members.values():
            member.send_signal(signal.SIGCONT)
            member.kill()
            member.wait(10)
    every = Counter(got("stopped") + got("survivor"))
    assert sorted(every) == sorted(
        (p, o) for p in (0, 1) for o in range(max(o for q, o in every if q == p) + 1)
    )
    # read twice: only what the stopped member had read past its last commit (handovers on
    # a rebalance commit first)
    twice = sorted(k for k, n in every.items() if n > 1)
    assert all(p == stopped_partition and o >= resumed_at for p, o in twice), twice[:20]
