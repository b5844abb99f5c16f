"""``headrace audit`` against a real cluster and a real loader: a clean ship-and-load run
matches; a deleted Parquet file makes exactly its windows missing and a copied one exactly its
windows duplicated (exit 1), open windows do not fail; kcat's messages are unaudited; the
audit of an idempotent producer killed with SIGKILL after acknowledgements it never published
is explained in a note."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from command_lines import HEADRACE, ROOT, kcat_produce, load_cmd
from conftest import create_topic, wait_for

from consumers.audit import AUDIT_TOPIC, window_start
from consumers.cluster import ClusterClient

pytestmark = pytest.mark.integration

SECOND = 1000
LINES_PER_STEP, STEPS = 60, 5


def end_offsets(bootstrap: str, topic: str) -> int:
    cluster = ClusterClient(bootstrap)
    try:
        return sum(cluster.list_offset(topic, p, -1) for p in cluster.partitions(topic))
    finally:
        cluster.close()


def audit(cluster, topic: str, *options: str) -> tuple[int, dict]:
    """``headrace audit --json`` with 1 s windows; its exit status and report."""
    done = subprocess.run(
        [
            *HEADRACE,
            "audit",
            "--zookeeper",
            cluster.zookeeper_connect,
            "--topic",
            topic,
            "--window",
            "1s",
            "--json",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def windows_of(parquet: Path) -> Counter:
    """Rows of one warehouse file per 1 s window of ``_timestamp``."""
    stamps = pq.read_table(parquet, columns=["_timestamp"]).column("_timestamp")
    return Counter(window_start(ts, SECOND) for ts in stamps.cast("int64").to_pylist())


def bad_windows(report: dict) -> dict:
    return {
        r["window_start"]: (r["missing"], r["duplicated"]) for r in report["rows"] if not r["ok"]
    }


@pytest.fixture(scope="module")
def shipped(cluster1, tmp_path_factory):
    """JSON lines shipped (audit on, 1 s windows) over several seconds and loaded into a
    warehouse in files of at most 40 rows: (topic, warehouse, lines)."""
    work = tmp_path_factory.mktemp("audit")
    topic = "audited"
    create_topic(cluster1.brokers[0].port, topic, 3)
    log = work / "access.log"
    log.touch()
    shipper = subprocess.Popen(
        [
            *HEADRACE,
            "ship",
            "--bootstrap-server",
            cluster1.bootstrap,
            "--topic",
            topic,
            "--state-file",
            str(work / "ship.json"),
            "--from-beginning",  # lines written before it opened the file are shipped too
            "--audit-window",
            "1s",
            str(log),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    total = 0
    try:
        for _step in range(STEPS):
            with log.open("a") as f:
                for i in range(LINES_PER_STEP):
                    f.write(json.dumps({"ts": "2026-12-07T14:00:00Z", "n": total + i}) + "\n")
            total += LINES_PER_STEP
            wait_for(lambda n=total: end_offsets(cluster1.bootstrap, topic) == n, 30)
            time.sleep(0.6)  # five steps over more than 2 s: at least three 1 s windows
    finally:
        shipper.send_signal(signal.SIGTERM)
        _, err = shipper.communicate(timeout=60)
    assert shipper.returncode == 0, err
    warehouse = work / "warehouse"
    load = subprocess.run(
        load_cmd(cluster1, topic, "wh", str(warehouse), "--until-caught-up", "--max-rows", "40"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert load.returncode == 0, load.stderr
    time.sleep(1.1)  # the last window has ended
    return topic, warehouse, total


def test_the_dashboard_serves_the_same_table_and_finds_the_loaders_warehouse(
    cluster1, shipped, tmp_path
):
    """``/api/audit`` answers what ``headrace audit --json`` prints: for the given warehouse,
    and without one for the warehouse the topic's loader recorded with its last run; a copy
    with a file deleted shows its windows missing; bad queries get 400, unknown topics 404."""
    from dashboard_client import DashboardProcess, get_json

    topic, warehouse, total = shipped
    dashboard = DashboardProcess(cluster1.zookeeper_connect, tmp_path).start()
    try:
        query = f"{dashboard.url}/api/audit?topic={topic}&window=1s&grace=0s"
        _, expected = audit(cluster1, topic, "--warehouse", str(warehouse), "--grace", "0s")
        status, body = get_json(f"{query}&warehouse={warehouse}")
        assert status == 200 and body["ok"] and body["rows"] == expected["rows"]

        def loader_seen():  # the sampler's groups view names the loader's warehouse
            status, body = get_json(query, timeout=60)
            return body if status == 200 and body["rows"][0]["loaded"] is not None else None

        body = wait_for(loader_seen, 30)
        assert body["rows"] == expected["rows"]
        assert sum(r["loaded"] for r in body["rows"]) == total

        copy = tmp_path / "warehouse"
        shutil.copytree(warehouse, copy)
        gone = sorted((copy / topic).rglob("*.parquet"))[0]
        lost = windows_of(gone)
        gone.unlink()
        status, body = get_json(f"{query}&warehouse={copy}", timeout=60)
        assert status == 200 and not body["ok"]
        assert bad_windows(body) == {w: (n, 0) for w, n in lost.items()}

        assert get_json(f"{dashboard.url}/api/audit?topic=no-such-topic")[0] == 404
        assert get_json(f"{dashboard.url}/api/audit?topic={topic}&window=soon")[0] == 400
        assert get_json(f"{dashboard.url}/api/audit")[0] == 400
    finally:
        dashboard.stop()


def test_a_clean_ship_and_load_matches_in_every_window(cluster1, shipped):
    topic, warehouse, total = shipped
    status, report = audit(cluster1, topic, "--warehouse", str(warehouse), "--grace", "0s")
    assert status == 0 and report["ok"], report
    rows = report["rows"]
    assert len(rows) >= 3  # lines shipped over several seconds
    assert all(r["closed"] and r["ok"] for r in rows)
    assert sum(r["produced"] for r in rows) == sum(r["brokered"] for r in rows) == total
    assert sum(r["loaded"] for r in rows) == total
    assert sum(r["unaudited"] + r["missing"] + r["duplicated"] for r in rows) == 0
    assert set(report) == {"topic", "window_ms", "grace_ms", "rows", "ok", "notes"}
    assert set(rows[0]) == {
        "window_start",
        "window_start_iso",
        "closed",
        "produced",
        "brokered",
        "loaded",
        "unaudited",
        "missing",
        "duplicated",
        "ok",
    }


def test_a_deleted_parquet_file_makes_exactly_its_windows_missing(cluster1, shipped, tmp_path):
    topic, warehouse, _ = shipped
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    files = sorted((copy / topic).rglob("*.parquet"))
    assert len(files) >= 3
    victim = files[len(files) // 2]
    lost = windows_of(victim)
    victim.unlink()
    status, report = audit(cluster1, topic, "--warehouse", str(copy), "--grace", "1h")
    assert status == 0, "windows still open do not fail"
    assert all(not r["closed"] for r in report["rows"])
    assert {w: m for w, (m, _) in bad_windows(report).items()} == dict(lost)
    status, report = audit(cluster1, topic, "--warehouse", str(copy), "--grace", "0s")
    assert status == 1 and not report["ok"]
    assert bad_windows(report) == {w: (n, 0) for w, n in lost.items()}


def test_a_copied_parquet_file_makes_exactly_its_windows_duplicated(cluster1, shipped, tmp_path):
    topic, warehouse, _ = shipped
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    original = sorted((copy / topic).rglob("*.parquet"))[0]
    shutil.copy(original, original.with_name("copied-" + original.name))
    status, report = audit(cluster1, topic, "--warehouse", str(copy), "--grace", "0s")
    assert status == 1
    assert bad_windows(report) == {w: (0, n) for w, n in windows_of(original).items()}


def headrace_produce(cluster, topic: str, lines: list[str], *options: str) -> None:
    done = subprocess.run(
        [*HEADRACE, "produce", "--bootstrap-server", cluster.bootstrap, "--topic", topic, *options],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_messages_from_kcat_are_unaudited_not_a_mismatch(cluster1):
    topic = "mixed"
    create_topic(cluster1.brokers[0].port, topic, 2)
    headrace_produce(
        cluster1, topic, [f"audited {i}" for i in range(70)], "--audit", "--audit-window", "1s"
    )
    kcat_produce(cluster1.bootstrap, topic, [b"kcat %d" % i for i in range(30)])
    headrace_produce(cluster1, topic, [f"not audited {i}" for i in range(10)])  # off by default
    time.sleep(1.1)
    status, report = audit(cluster1, topic, "--grace", "0s")
    assert status == 0, report
    rows = report["rows"]
    assert sum(r["produced"] for r in rows) == 70
    assert sum(r["brokered"] for r in rows) == 110
    assert sum(r["unaudited"] for r in rows) == 40
    assert all(r["loaded"] is None and r["ok"] for r in rows)
    assert report["notes"] == []


CRASHING_PRODUCER = """
import sys, time
from consumers.producer import Producer
producer = Producer(sys.argv[1], audit=True, audit_window_ms=1000, audit_interval_ms=600_000)
for i in range(500):
    producer.send(sys.argv[2], b"before %d" % i)
producer.flush()  # acknowledged and published to _audit
futures = [producer.send(sys.argv[2], b"after %d" % i) for i in range(300)]
for future in futures:
    future.result(30)  # acknowledged, never published
print(producer.audit.name, flush=True)
time.sleep(600)
"""


def test_an_idempotent_producer_killed_with_sigkill_is_explained_not_silent(cluster1):
    topic = "crashed"
    create_topic(cluster1.brokers[0].port, topic, 2)
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PRODUCER, cluster1.bootstrap, topic],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        name = child.stdout.readline().strip()
        assert name, "the producer did not get its messages acknowledged"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    time.sleep(1.1)
    status, report = audit(cluster1, topic, "--grace", "0s")
    rows = report["rows"]
    assert sum(r["produced"] for r in rows) == 500
    assert sum(r["brokered"] for r in rows) == 800
    assert sum(r["unaudited"] for r in rows) == 300
    assert status == 0 and sum(r["missing"] + r["duplicated"] for r in rows) == 0
    [note] = report["notes"]
    assert name in note and "published no final audit record" in note
    assert "300 of its messages" in note


def test_audit_records_are_never_audited_and_bad_options_get_one_line(cluster1):
    status, report = audit(cluster1, AUDIT_TOPIC, "--grace", "0s")
    assert status == 0 and report["rows"]
    assert sum(r["produced"] for r in report["rows"]) == 0  # nobody counts _audit itself
    bad = subprocess.run(
        [*HEADRACE, "audit", "--zookeeper", cluster1.zookeeper_connect, "--topic", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "headrace audit: topic nope does not exist"
    bad = subprocess.run(
        [
            *HEADRACE,
            "audit",
            "--zookeeper",
            cluster1.zookeeper_connect,
            "--topic",
            "x",
            "--window",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "--window '5' is not a duration" in bad.stderr


def test_counts_are_published_on_a_timer_and_marked_final_on_close(cluster1):
    from consumers.producer import Producer
    from headrace.audit.sources import audit_records

    topic = "timer"
    create_topic(cluster1.brokers[0].port, topic, 1)
    producer = Producer(cluster1.bootstrap, audit=True, audit_interval_ms=200)
    cluster = ClusterClient(cluster1.bootstrap)
    try:
        for future in [producer.send(topic, b"m %d" % i) for i in range(25)]:
            future.result(30)

        def mine():
            return [r for r in audit_records(cluster)[0] if r.producer == producer.audit.name]

        published = wait_for(lambda: sum(r.count for r in mine()) == 25 and mine(), 20)
        assert not any(r.final for r in published)  # from the timer: the producer runs on
        assert {(r.topic, r.window_ms, r.producer_id) for r in published} == {
            (topic, 60_000, published[0].producer_id)
        }
        assert published[0].producer_id >= 0  # idempotent: batches carry a producer id
        producer.close()
        closed = mine()
        assert sum(r.count for r in closed) == 25 and [r.final for r in closed][-1]
    finally:
        producer.close()
        cluster.close()
