"""At-least-once for the paper's group consumer, against a real ZooKeeper and a real broker:
only messages the application finished are committed (iteration, poll, close after an
exception, ``headrace consume`` into a closed pipe), a member killed in the middle of a batch
loses nothing, and a member whose session expired never moves offsets it no longer owns."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from command_lines import group_args
from conftest import create_topic, wait_for, zk_session
from kazoo.client import KazooClient

from broker.protocol.offsets import read_offset
from consumers.group import GroupConsumer
from consumers.producer import Producer


@pytest.fixture
def zk(cluster1):
    with zk_session(cluster1.zookeeper_connect) as client:
        yield client


def produce(
    cluster, topic: str, count: int, *, start: int = 0, size: int = 0, partitions: int = 1
) -> None:
    with Producer(cluster.bootstrap) as producer:
        for i in range(start, start + count):
            producer.send(topic, (b"%d " % i).ljust(size, b"x"), partition=i % partitions)


def committed(zk, group: str, topic: str, partitions=(0,)) -> list[int | None]:
    return [read_offset(zk, group, topic, p)[0] for p in partitions]


def member(cluster, group: str, topic: str, **kw) -> GroupConsumer:
    options = {"auto_offset_reset": "smallest", "session_timeout_ms": 4000} | kw
    return GroupConsumer(group, [topic], cluster.zookeeper_connect, **options)


def poll_until(consumer: GroupConsumer, count: int, timeout: float = 20) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        got = consumer.poll(0.5, count)
    assert got, "nothing consumed"
    return got


# --- poll, iteration, close ----------------------------------------------------------------


def test_auto_commit_in_poll_commits_what_the_previous_poll_returned_never_this_one(cluster1, zk):
    topic, group = "alo-poll", "alo-poll-g"
    create_topic(cluster1.brokers[0].port, topic, 2)
    produce(cluster1, topic, 40, partitions=2)
    with member(cluster1, group, topic, auto_commit_interval_ms=0) as consumer:
        first = poll_until(consumer, 15)
        # auto-commit ran inside that poll: nothing it returned is committed yet
        assert committed(zk, group, topic, (0, 1)) == [0, 0]
        ends = {m.partition: m.offset + 1 for m in first}
        second = consumer.poll(0.5, 15)  # the first batch is finished now and committed
        assert committed(zk, group, topic, (0, 1)) == [ends.get(0, 0), ends.get(1, 0)]
        consumer.commit(second[0])  # commit(message): the offset after it, in its partition
        after = committed(zk, group, topic, (0, 1))
        assert after[second[0].partition] == second[0].offset + 1
        consumer.commit()  # everything handed over
        for m in second:
            ends[m.partition] = m.offset + 1
        assert committed(zk, group, topic, (0, 1)) == [ends.get(0, 0), ends.get(1, 0)]


def test_iteration_commits_a_message_once_the_next_is_requested(cluster1, zk):
    topic, group = "alo-iter", "alo-iter-g"
    create_topic(cluster1.brokers[0].port, topic, 1)
    produce(cluster1, topic, 30, size=20)
    with member(cluster1, group, topic) as consumer:
        seen = []
        for m in consumer:
            seen.append(m.offset)
            if m.offset == 9:
                break  # finished with 9, then left normally: 0..9 are committed
    assert seen == list(range(10)) and committed(zk, group, topic) == [10]

    with (
        pytest.raises(RuntimeError, match="bad message"),
        member(cluster1, group, topic) as consumer,
    ):
        for m in consumer:
            if m.offset == 14:
                raise RuntimeError("bad message")
    assert committed(zk, group, topic) == [14]  # 10..13 finished; 14 raised, so it comes again

    with member(cluster1, group, topic) as consumer:
        it = iter(consumer)
        assert next(it).offset == 14
        consumer.commit()  # the message being processed is handed over: committed too
        assert committed(zk, group, topic) == [15]

    with member(cluster1, group, topic, auto_commit_interval_ms=0) as consumer:  # commit at once
        it = iter(consumer)
        assert next(it).offset == 15 and committed(zk, group, topic) == [15]  # 15 is not finished
        assert next(it).offset == 16 and committed(zk, group, topic) == [16]  # now it is
        assert next(it).offset == 17 and committed(zk, group, topic) == [17]


def test_close_after_an_exception_in_poll_processing_commits_only_earlier_polls(cluster1, zk):
    topic, group = "alo-close", "alo-close-g"
    create_topic(cluster1.brokers[0].port, topic, 1)
    produce(cluster1, topic, 20, size=20)
    with pytest.raises(ValueError), member(cluster1, group, topic) as consumer:
        first = poll_until(consumer, 5)
        second = poll_until(consumer, 5)  # the first 5 are finished
        int(second[0].value)  # processing the second batch fails
    assert [m.offset for m in first + second] == list(range(10))
    assert committed(zk, group, topic) == [5]


# --- crashes ---------------------------------------------------------------------------------

MEMBER = textwrap.dedent(
    """
    import os, sys, time
    from consumers.group import GroupConsumer
    zk, group, topic, out, mode, crash_after = sys.argv[1:7]
    crash_after = int(crash_after)
    consumer = GroupConsumer(group, [topic], zk, auto_offset_reset="smallest",
                             auto_commit_interval_ms=0, session_timeout_ms=4000)
    log = open(out, "a")
    done = 0

    def process(m):
        global done
        log.write("%d %d\\n" % (m.partition, m.offset))
        log.flush()
        done += 1
        if done == crash_after:
            os._exit(3)  # dies in the middle of a batch, committing nothing more

    if mode == "iterate":
        with consumer:
            for m in consumer:
                process(m)
    else:
        consumer.start()
        last = None  # stop 3 s after the last message
        started = time.monotonic()
        while time.monotonic() - (last or started) < (3 if last else 60):
            batch = consumer.poll(0.5)
            if batch:
                last = time.monotonic()
            for m in batch:
                process(m)
        consumer.close()
    """
)


@pytest.mark.parametrize("mode", ["iterate", "poll"])
def test_a_member_killed_in_the_middle_of_a_batch_loses_nothing(cluster1, zk, tmp_path, mode):
    topic, group = f"alo-crash-{mode}", f"alo-crash-{mode}-g"
    create_topic(cluster1.brokers[0].port, topic, 1)
    produce(cluster1, topic, 3000, size=30)
    out = tmp_path / "processed"

    def run(crash_after: int) -> int:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMBER,
                cluster1.zookeeper_connect,
                group,
                topic,
                str(out),
                mode if crash_after else "poll",
                str(crash_after),
            ],
            check=False,
            timeout=120,
            capture_output=True,
            text=True,
        )
        return proc.returncode

    assert run(700) == 3  # killed after 700 of a batch of (many) more
    assert committed(zk, group, topic)[0] <= 700
    assert run(0) == 0  # a new member takes over from the commits and runs until idle
    processed = [int(line.split()[1]) for line in out.read_text().splitlines()]
    assert set(processed) == set(range(3000))  # every message at least once
    assert committed(zk, group, topic) == [3000]


def test_a_member_whose_session_expired_never_moves_offsets_it_lost(cluster1, zk):
    topic, group = "alo-expired", "alo-expired-g"
    create_topic(cluster1.brokers[0].port, topic, 2)
    produce(cluster1, topic, 100, partitions=2)
    old = member(cluster1, group, topic, auto_commit_interval_ms=60_000).start()
    new = None
    try:
        got = []
        while len(got) < 100:
            got += old.poll(0.5)  # delivered, not committed yet
        session = old.zk.client_id
        # Expire its session: another client takes the session over and closes it.
        thief = KazooClient(hosts=cluster1.zookeeper_connect, client_id=session, timeout=10)
        thief.start(timeout=15)
        thief.stop()
        thief.close()
        wait_for(lambda: old.zk.connected and old.zk.client_id[0] != session[0], 30)
        # Meanwhile another member owns every partition, consumes and commits further.
        new = member(cluster1, group, topic, auto_commit_interval_ms=60_000).start()
        produce(cluster1, topic, 100, start=100, partitions=2)
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 200 and time.monotonic() < deadline:
            seen += len(new.poll(0.5))
        new.commit()
        assert committed(zk, group, topic, (0, 1)) == [100, 100]
        # The old member notices, registers again, and the two share the topic; new keeps
        # polling in a thread so it releases a partition for the old one to claim.
        stop = threading.Event()

        def keep_polling():
            while not stop.is_set():
                new.poll(0.2)

        thread = threading.Thread(target=keep_polling)
        thread.start()
        try:
            wait_for(
                lambda: old.poll(0.2) is not None and sum(map(len, old.owned.values())) == 1, 60
            )
        finally:
            stop.set()
            thread.join()
        assert committed(zk, group, topic, (0, 1)) == [100, 100]
    finally:
        old.close()
        if new is not None:
            new.close()
    assert committed(zk, group, topic, (0, 1)) == [100, 100]


# --- headrace consume ------------------------------------------------------------------------


def test_consume_into_head_commits_at_most_what_was_written(cluster1, zk):
    topic, group = "alo-pipe", "alo-pipe-g"
    create_topic(cluster1.brokers[0].port, topic, 1)
    produce(cluster1, topic, 2000, size=1000)
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # the pipe holds at most 4 lines
    head = subprocess.Popen(["head", "-n", "5"], stdin=read, stdout=subprocess.PIPE)
    os.close(read)
    consume = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headrace.cli",
            "--log-level",
            "WARNING",
            *group_args("consume", cluster1.zookeeper_connect, topic, group),
            "--from-beginning",
        ],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    shown = head.communicate(timeout=60)[0]
    _, errors = consume.communicate(timeout=60)
    assert len(shown.splitlines()) == 5
    # head read 5 lines and at most one buffer (8 KiB) more; the pipe held 4 more lines
    assert committed(zk, group, topic)[0] <= 5 + 9 + 4
    assert consume.returncode == 0 and "Traceback" not in errors, errors
