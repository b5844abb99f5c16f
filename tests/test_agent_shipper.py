"""The log shipper against a real cluster: lines in order, rotation by rename and by truncation,
a restart that finds a file rotated while it was down, kill -9 of the shipper and of a broker
(at least once, duplicates only in the unacknowledged windows), failed deliveries read again,
and keys from a JSON field."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import create_topic, wait_for

from consumers.consumer import Consumer
from consumers.partitioner import partition_for_key
from consumers.shipper import Shipper, load_state

ROOT = Path(__file__).resolve().parent.parent


# --- helpers -----------------------------------------------------------------------------


def append(path, lines, rng=None, fd=None):
    """Append ``lines`` (+ newline each) in pieces of random size, so the shipper also sees
    partial lines; through ``fd`` if given (a writer that keeps its file open)."""
    data = b"".join(line + b"\n" for line in lines)
    rng = rng or random.Random(len(data))
    own = fd is None
    if own:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 4096)
            os.write(fd, data[pos : pos + n])
            pos += n
    finally:
        if own:
            os.close(fd)


def consume(bootstrap, topic, partitions, expected, timeout=60, settle=1.0):
    """Every message of the topic: until ``expected`` arrived, then ``settle`` s more to see
    extra ones (duplicates)."""
    consumer = Consumer(bootstrap_servers=bootstrap)
    try:
        consumer.assign([(topic, p, -2) for p in range(partitions)])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            got += consumer.poll(0.5)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            got += consumer.poll(0.2)
        return got
    finally:
        consumer.close()


@contextmanager
def running(shipper):
    """The shipper's loop in a thread; started here (so files made later count as new)."""
    shipper.start()
    thread = threading.Thread(target=shipper.run, name="shipper", daemon=True)
    thread.start()
    try:
        yield shipper
    finally:
        shipper.stop()
        thread.join(60)
        assert not thread.is_alive(), "the shipper did not stop"


def committed(shipper, path):
    return next((e["offset"] for e in shipper.positions() if e["path"] == str(path)), -1)


def lines_of(messages, prefix):
    return [m.value for m in messages if m.value.startswith(prefix)]


# --- in order, new files, partial lines --------------------------------------------------


@pytest.mark.timeout(180)
def test_lines_appended_to_two_files_arrive_in_order(cluster1, tmp_path):
    broker = cluster1.brokers[0]
    create_topic(broker.port, "ship-order", 1)
    logs = tmp_path / "logs"
    logs.mkdir()
    old = logs / "c.log"  # there before the start: only what is appended later is shipped
    old.write_bytes(b"c old 1\nc old 2\nc-par")
    shipper = Shipper(
        "ship-order",
        [str(logs / "*.log")],
        bootstrap_servers=broker.bootstrap,
        state_file=tmp_path / "state.json",
        poll_interval=0.05,
        scan_interval=0.2,
    )
    expected = {b"a": [], b"b": [], b"c": [b"c-partial"]}
    rng = random.Random(7)
    with running(shipper):
        append(old, [b"tial"])
        for round_ in range(6):  # a.log and b.log appear after the start: read from 0
            for name in (b"a", b"b", b"c"):
                lines = [
                    b"%s %d %d %s" % (name, round_, i, b"x" * rng.randint(0, 300))
                    for i in range(rng.randint(50, 400))
                ]
                expected[name] += lines
                append(logs / f"{name.decode()}.log", lines, rng)
            with open(logs / "a.log", "ab") as f:  # half a line, finished next round
                f.write(b"a half %d " % round_)
            time.sleep(rng.uniform(0, 0.3))
            with open(logs / "a.log", "ab") as f:
                f.write(b"and the rest\n")
            expected[b"a"].append(b"a half %d and the rest" % round_)
        total = sum(map(len, expected.values()))
        wait_for(lambda: shipper.lines_acked >= total, 60)
        wait_for(
            lambda: all(
                committed(shipper, logs / f"{n}.log") == (logs / f"{n}.log").stat().st_size
                for n in "abc"
            ),
            30,
        )
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(e["path"] for e in state["files"]) == [str(logs / f"{n}.log") for n in "abc"]

    got = consume(broker.bootstrap, "ship-order", 1, total)
    assert len(got) == total
    for name, lines in expected.items():
        assert lines_of(got, name) == lines, f"{name} out of order, lost or duplicated"
    assert all(m.key is None for m in got)


# --- rotation ----------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_rotation_by_rename_and_by_truncation_ships_every_line_once(cluster1, tmp_path):
    broker = cluster1.brokers[0]
    create_topic(broker.port, "ship-rotate", 1)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    shipper = Shipper(
        "ship-rotate",
        [str(a), str(b)],
        bootstrap_servers=broker.bootstrap,
        state_file=tmp_path / "state.json",
        poll_interval=0.05,
        scan_interval=0.2,
        rotate_wait=1.0,
    )
    sent = []

    def lines(prefix, first, count):
        out = [b"%s %06d" % (prefix, i) for i in range(first, first + count)]
        sent.extend(out)
        return out

    def following(path):
        ino = os.stat(path).st_ino
        return any(e["path"] == str(path) and e["ino"] == ino for e in shipper.positions())

    with running(shipper):
        # logrotate's rename: the application keeps writing to its open file for a while
        # (the shipper must have found a file before it is rotated: a file that is created
        # and rotated away between two scans is never seen)
        writer = os.open(a, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        append(a, lines(b"a1", 0, 300), fd=writer)
        wait_for(lambda: following(a), 30)
        append(a, lines(b"a1", 300, 300), fd=writer)
        os.rename(a, tmp_path / "a.log.1")
        append(a, lines(b"a1", 600, 200), fd=writer)  # not reopened yet: the old file
        new_writer = os.open(a, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        append(a, lines(b"a2", 0, 200), fd=new_writer)
        append(a, lines(b"a1", 800, 50), fd=writer)  # a late write to the old file
        os.close(writer)
        append(a, lines(b"a2", 200, 200), fd=new_writer)
        wait_for(lambda: following(a), 30)
        # and again, while the first old file may still be read: a.log.1 -> a.log.2,
        # a.log -> a.log.1, a new a.log
        os.rename(tmp_path / "a.log.1", tmp_path / "a.log.2")
        os.rename(a, tmp_path / "a.log.1")
        append(a, lines(b"a2", 400, 100), fd=new_writer)
        os.close(new_writer)
        append(a, lines(b"a3", 0, 300))

        # copytruncate: copy, then truncate in place; the shipper must be at the end by then
        # (lines written between the copy and the truncation are lost by design)
        append(b, lines(b"b1", 0, 400))
        wait_for(lambda: committed(shipper, b) == b.stat().st_size, 30)
        shutil.copy(b, tmp_path / "b.log.1")
        os.truncate(b, 0)
        append(b, lines(b"b2", 0, 100))  # fewer bytes than before: the truncation shows
        wait_for(lambda: committed(shipper, b) == b.stat().st_size, 30)
        # removed and created again: a new file
        os.unlink(b)
        time.sleep(0.5)
        append(b, lines(b"b3", 0, 150))

        wait_for(lambda: shipper.lines_acked >= len(sent), 60)
        wait_for(
            lambda: (
                committed(shipper, b) == b.stat().st_size
                and committed(shipper, a) == a.stat().st_size
            ),
            30,
        )
        # the rotated files are closed once read, acknowledged and quiet for rotate_wait
        wait_for(lambda: sorted(e["path"] for e in shipper.positions()) == [str(a), str(b)], 30)
    state = json.loads((tmp_path / "state.json").read_text())
    assert {e["path"]: e["offset"] for e in state["files"]} == {
        str(a): a.stat().st_size,
        str(b): b.stat().st_size,
    }

    got = consume(broker.bootstrap, "ship-rotate", 1, len(sent))
    counts = Counter(m.value for m in got)
    missing = [line for line in sent if line not in counts]
    twice = [line for line, n in counts.items() if n > 1]
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:3]}"
    assert not twice, f"{len(twice)} lines shipped more than once, e.g. {twice[:3]}"
    assert len(got) == len(sent)
    for prefix in (b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"):  # in order within each file
        assert lines_of(got, prefix) == [line for line in sent if line.startswith(prefix)]


@pytest.mark.timeout(180)
def test_a_restart_resumes_and_reads_a_file_rotated_while_stopped(cluster1, tmp_path):
    broker = cluster1.brokers[0]
    create_topic(broker.port, "ship-restart", 1)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    state = tmp_path / "state" / "positions.json"  # its directory is made
    append(a, [b"before the first start"])
    sent = []

    def lines(prefix, first, count):
        out = [b"%s %06d" % (prefix, i) for i in range(first, first + count)]
        sent.extend(out)
        return out

    def shipper():
        return Shipper(
            "ship-restart",
            [str(a), str(b)],
            bootstrap_servers=broker.bootstrap,
            state_file=state,
            poll_interval=0.05,
            scan_interval=0.2,
            rotate_wait=0.5,
        )

    with running(shipper()) as first:  # a.log: from its end; b.log: new, from its start
        append(a, lines(b"a1", 0, 200))
        append(b, lines(b"b1", 0, 200))
        wait_for(lambda: first.lines_acked >= 400, 60)
    # while stopped: more lines, then a.log is rotated and b.log is truncated
    append(a, lines(b"a1", 200, 100))
    os.rename(a, tmp_path / "a.log.1")
    append(a, lines(b"a2", 0, 100))
    os.truncate(b, 0)
    append(b, lines(b"b2", 0, 50))
    second = shipper()
    second.start()
    assert len(second.positions()) == 3  # a.log.1 is read to its end, then dropped
    with running(second):
        wait_for(lambda: second.lines_acked >= 250, 60)
        wait_for(lambda: len(second.positions()) == 2, 30)
    saved = {e["path"]: e["offset"] for e in load_state(state)}
    assert saved == {str(a): a.stat().st_size, str(b): b.stat().st_size}

    got = consume(broker.bootstrap, "ship-restart", 1, len(sent))
    assert sorted(m.value for m in got) == sorted(sent)  # each once, nothing from before


# --- kill -9 -----------------------------------------------------------------------------

LINE = len(b"a 0000000\n")


class Writer(threading.Thread):
    """Appends numbered fixed-size lines to each file, a few hundred a second."""

    def __init__(self, paths):
        super().__init__(daemon=True)
        self.paths = paths
        self.halt = threading.Event()
        self.count = 0

    def run(self):
        fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in self.paths]
        try:
            while not self.halt.is_set():
                for path, fd in zip(self.paths, fds):
                    os.write(fd, b"%s %07d\n" % (path.stem.encode(), self.count))
                self.count += 1
                time.sleep(0.004)
        finally:
            for fd in fds:
                os.close(fd)


@pytest.mark.timeout(400)
def test_kill_9_of_the_shipper_and_of_a_broker_loses_nothing(make_cluster, tmp_path):
    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    create_topic(broker.port, "ship-kill", 2)
    paths = [tmp_path / "a.log", tmp_path / "b.log"]
    for p in paths:
        p.touch()
    state = tmp_path / "state.json"
    log_path = tmp_path / "shipper.out"

    def start():
        with open(log_path, "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "consumers.shipper",
                    "--topic",
                    "ship-kill",
                    "--bootstrap-server",
                    broker.bootstrap,
                    "--state-file",
                    str(state),
                    "--from-beginning",
                    "--poll-interval",
                    "0.1",
                    *map(str, paths),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def positions():
        return {Path(e["path"]).name: e["offset"] for e in load_state(state)}

    def sizes():
        return {p.name: p.stat().st_size for p in paths}

    def past(mark):
        now = positions()
        return all(now.get(name, -1) > offset for name, offset in mark.items())

    # Where duplicates may be: for each restart, the bytes between the committed position
    # just before it and the end of the file just after it (the unacknowledged window).
    zones = []

    def kill(victim):
        low = positions()
        victim()
        zones.append((low, sizes()))

    writer = Writer(paths)
    writer.start()
    shippers = [start()]
    try:
        wait_for(lambda: past({"a.log": 40 * LINE, "b.log": 40 * LINE}), 60)
        time.sleep(0.5)
        kill(lambda: (shippers[-1].kill(), shippers[-1].wait()))  # kill -9 of the shipper
        time.sleep(0.5)
        shippers.append(start())
        wait_for(lambda: past(zones[-1][1]), 60)

        kill(broker.kill)  # kill -9 of the broker under the second shipper
        time.sleep(1)
        broker.start()
        mark = sizes()
        wait_for(lambda: past(mark), 90)

        time.sleep(0.5)
        kill(lambda: (shippers[-1].kill(), shippers[-1].wait()))
        shippers.append(start())
        wait_for(lambda: past(zones[-1][1]), 60)
        time.sleep(0.5)
    finally:
        writer.halt.set()
        writer.join(10)
    try:
        final = sizes()
        wait_for(lambda: positions() == final, 60)
        shippers[-1].send_signal(signal.SIGTERM)
        assert shippers[-1].wait(60) == 0
    finally:
        for child in shippers:
            if child.poll() is None:
                child.kill()
                child.wait()
    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]

    expected = {(p.name, i) for p in paths for i in range(final[p.name] // LINE)}
    got = consume(broker.bootstrap, "ship-kill", 2, len(expected), timeout=90)
    counts = Counter()
    for m in got:
        name, number = m.value.split()
        counts[(name.decode() + ".log", int(number))] += 1
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:5]}"
    assert set(counts) == expected
    duplicates = {line: n - 1 for line, n in counts.items() if n > 1}
    for (name, number), extra in duplicates.items():
        offset = number * LINE
        inside = sum(1 for low, high in zones if low.get(name, 0) <= offset < high[name])
        assert extra <= inside, (
            f"{name} line {number} (offset {offset}) came {extra + 1} times, "
            f"outside the unacknowledged windows {zones}"
        )
    window = sum(high[name] - low.get(name, 0) for low, high in zones for name in high) // LINE
    assert sum(duplicates.values()) <= window
    print(
        f"{len(expected)} lines, {sum(duplicates.values())} duplicates, "
        f"unacknowledged windows held {window} lines"
    )


@pytest.mark.timeout(240)
def test_failed_deliveries_are_read_again_from_the_committed_position(make_cluster, tmp_path):
    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    create_topic(broker.port, "ship-fail", 1)
    path = tmp_path / "app.log"
    path.touch()
    shipper = Shipper(
        "ship-fail",
        [str(path)],
        bootstrap_servers=broker.bootstrap,
        state_file=tmp_path / "state.json",
        poll_interval=0.05,
        retry_backoff=0.2,
        max_retry_backoff=1.0,
        producer_config={"delivery_timeout_ms": 1500, "request_timeout_ms": 2000},
    )
    sent = [b"line %05d" % i for i in range(900)]
    with running(shipper):
        append(path, sent[:300])
        wait_for(lambda: committed(shipper, path) == path.stat().st_size, 30)
        before = path.stat().st_size
        broker.stop()
        append(path, sent[300:600])  # the producer gives up on these: they fail
        wait_for(lambda: shipper.lines_failed > 0, 60)
        assert committed(shipper, path) == before  # nothing unacknowledged is committed
        assert json.loads((tmp_path / "state.json").read_text())["files"][0]["offset"] == before
        broker.start()
        append(path, sent[600:])
        wait_for(lambda: committed(shipper, path) == path.stat().st_size, 90)

    got = consume(broker.bootstrap, "ship-fail", 1, len(sent))
    counts = Counter(m.value for m in got)
    assert set(counts) == set(sent)
    assert all(counts[line] == 1 for line in sent[:300])  # acknowledged before the outage
    assert lines_of(got, b"line")[:300] == sent[:300]


@pytest.mark.timeout(60)
def test_an_unusable_state_file_stops_the_shipper_with_status_2(tmp_path):
    from argparse import Namespace

    from consumers.shipper import run

    state = tmp_path / "state.json"
    state.write_text("{not json")
    args = Namespace(
        topic="t",
        files=[str(tmp_path / "*.log")],
        bootstrap_server="127.0.0.1:1",
        zookeeper=None,
        state_file=str(state),
        key_field=None,
        from_beginning=False,
        poll_interval=0.1,
        compression="none",
    )
    assert run(args) == 2
    assert state.read_text() == "{not json"  # left for the operator
    args.compression = "brotli"
    assert run(args) == 2


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_lines_keyed_by_a_json_field_land_on_the_murmur2_partition(cluster1, tmp_path):
    broker = cluster1.brokers[0]
    create_topic(broker.port, "ship-keys", 4)
    path = tmp_path / "events.log"
    lines = []
    for i in range(600):
        if i % 15 == 0:
            lines.append(b"not json {%d" % i)
        elif i % 20 == 0:
            lines.append(json.dumps({"other": i}).encode())
        elif i % 25 == 0:
            lines.append(json.dumps({"user": None, "n": i}).encode())
        elif i % 10 == 0:
            lines.append(json.dumps({"user": i % 7, "n": i}).encode())
        else:
            lines.append(json.dumps({"user": f"user-{i % 23}", "n": i}).encode())
    append(path, lines)  # before the start, shipped with from_beginning
    shipper = Shipper(
        "ship-keys",
        [str(path)],
        zookeeper=cluster1.zookeeper_connect,
        key_field="user",
        from_beginning=True,
        poll_interval=0.05,
        compression="lz4",
    )
    with running(shipper):
        wait_for(lambda: shipper.lines_acked >= len(lines), 60)

    got = consume(broker.bootstrap, "ship-keys", 4, len(lines))
    assert sorted(m.value for m in got) == sorted(lines)
    keyed = 0
    should_be_keyed = sum(
        1 for line in lines if line.startswith(b"{") and json.loads(line).get("user") is not None
    )
    for m in got:
        try:
            doc = json.loads(m.value)
        except ValueError:
            doc = {}
        user = doc.get("user")
        if user is None:
            assert m.key is None, m
            continue
        keyed += 1
        assert m.key == str(user).encode()
        assert m.partition == partition_for_key(m.key, 4), m
    assert keyed == should_be_keyed
    assert len({m.partition for m in got if m.key is not None}) > 1
