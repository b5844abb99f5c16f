"""The warehouse loader end to end: exactly once under kill -9, reconciling, gaps, markers.

Real ZooKeeper, real brokers, events produced with kcat, the real ``headrace load`` command
(worker processes), Parquet read back with DuckDB.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from command_lines import HEADRACE, kcat_produce, load_cmd
from conftest import create_topic, wait_for
from kazoo.client import KazooClient

from broker.protocol import zookeeper as layout
from headrace import cli
from loaders import reconcile as loader_reconcile
from loaders import run as loader_run
from loaders import worker as loader_worker
from loaders.config import ConfigError, LoaderConfig
from loaders.storage import Storage

HOUR = 3600


def events(n: int, start: int = 0, base_ts: float | None = None) -> list[bytes]:
    """``n`` JSON access-log events with ids start..start+n-1, spread over three hours."""
    base = time.time() - 3 * HOUR if base_ts is None else base_ts
    rng = random.Random(start)
    out = []
    for i in range(start, start + n):
        out.append(
            json.dumps(
                {
                    "id": i,
                    "ts": round(base + rng.random() * 3 * HOUR, 3),
                    "status": rng.choice([200, 200, 200, 301, 404, 500]),
                    "path": f"/page/{rng.randrange(100)}",
                    "bytes": rng.randrange(100_000),
                }
            ).encode()
        )
    return out


def committed(cluster, group: str, topic: str, partitions: int) -> list[int | None]:
    zk = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    zk.start(timeout=15)
    try:
        out = []
        for p in range(partitions):
            try:
                out.append(layout.decode_offset(zk.get(layout.offset_path(group, topic, p))[0]))
            except Exception:
                out.append(None)
        return out
    finally:
        zk.stop()
        zk.close()


def table(path: str) -> str:
    return f"read_parquet('{path}/*/dt=*/hour=*/*.parquet', union_by_name=true)"


def check_exactly_once(path: str, expected_ids: int) -> None:
    rows, distinct, ids, min_id, max_id = duckdb.sql(
        "SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT id), "
        f"min(id), max(id) FROM {table(path)}"
    ).fetchall()[0]
    assert (rows, distinct, ids) == (expected_ids, expected_ids, expected_ids)
    assert (min_id, max_id) == (0, expected_ids - 1)
    # no gaps: each partition's offsets are 0..n-1
    for p, n, lo, hi in duckdb.sql(
        f"SELECT _partition, count(*), min(_offset), max(_offset) FROM {table(path)} GROUP BY 1"
    ).fetchall():
        assert (lo, hi) == (0, n - 1), p


def no_leftovers(path: Path) -> None:
    leftovers = [str(f) for f in path.rglob("*") if f.is_file() and ("_headrace" in f.parts)]
    assert leftovers == [], leftovers


@pytest.mark.slow
def test_exactly_once_while_workers_are_killed(cluster3, tmp_path):
    """kill -9 of the whole load or of one worker at random moments, many times, while new
    events keep arriving in all four codecs; then reruns until caught up.  DuckDB finds every
    event exactly once, and each partition's offsets with no gap."""
    topic, group = "access-kill", "wh-kill"
    create_topic(cluster3.brokers[0].port, topic, 6)
    out = tmp_path / "warehouse"
    rng = random.Random(7)
    cmd = load_cmd(
        cluster3,
        topic,
        group,
        str(out),
        "--workers",
        "2",
        "--max-rows",
        "300",
        "--session-timeout-ms",
        "1500",
    )
    produced = 0
    mid_load_kills = 0
    logs = []
    for round_no in range(8):
        kcat_produce(
            cluster3.bootstrap,
            topic,
            events(12_000, start=produced),
            ("gzip", "snappy", "lz4", "zstd")[round_no % 4],
        )
        produced += 12_000
        before = sum(c or 0 for c in committed(cluster3, group, topic, 6))
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 30  # kill once the load is under way, at a random moment
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and sum(c or 0 for c in committed(cluster3, group, topic, 6)) <= before
        ):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            children = subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
            if round_no % 2 and children:
                os.kill(int(rng.choice(children)), signal.SIGKILL)  # one worker dies
                time.sleep(rng.uniform(0.1, 0.6))
            os.killpg(proc.pid, signal.SIGKILL)  # then the whole load
            after = sum(c or 0 for c in committed(cluster3, group, topic, 6))
            mid_load_kills += before < after < produced
            print(f"round {round_no}: committed {before} -> {after} of {produced}")
        proc.wait(timeout=120)
        logs.append(proc.stderr.read().decode())
        proc.stdout.close()
        proc.stderr.close()
    assert mid_load_kills >= 2, mid_load_kills
    for _ in range(5):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    check_exactly_once(str(out), produced)
    ends = [cluster3_end(cluster3, topic, p) for p in range(6)]
    assert committed(cluster3, group, topic, 6) == ends
    no_leftovers(out)
    # nothing new: nothing written, exit 0
    before_files = {str(f): f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert {str(f): f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == before_files


def cluster3_end(cluster, topic: str, partition: int) -> int:
    from consumers.cluster import ClusterClient

    client = ClusterClient(cluster.bootstrap)
    try:
        return client.list_offset(topic, partition, -1)
    finally:
        client.close()


def _config(cluster, topic, group, url, **kw) -> LoaderConfig:
    return LoaderConfig(
        **{
            "zookeeper": cluster.zookeeper_connect,
            "topics": [topic],
            "group": group,
            "url": url,
            "workers": 1,
            "time_field": "ts",
            "max_rows": 200,
            "session_timeout_ms": 2000,
        }
        | kw
    )


class Crash(BaseException):
    """Stands for the process dying at this point."""


def crashing_on_call(real, n: int, counted=lambda *args: True):
    """``real`` wrapped to raise ``Crash`` on the ``n``-th call that ``counted`` selects."""
    calls = 0

    def dying(*args):
        nonlocal calls
        if counted(*args):
            calls += 1
            if calls == n:
                raise Crash()
        return real(*args)

    return dying


def run_worker_until_it_crashes(config: LoaderConfig, group: str, topic: str) -> None:
    """Plan a run of ``group`` over ``topic`` and run one worker in this process until an
    injected ``Crash`` stops it."""
    from loaders.registry import make_plan

    worker = loader_worker.Worker(config)
    worker.zk.start()
    make_plan(worker.zk, worker.cluster, group, [topic])
    with pytest.raises(Crash):
        worker.run()


def test_publish_without_commit_is_recognised_not_rewritten(
    cluster1, tmp_path, monkeypatch, capsys
):
    """A worker that dies after publishing a chunk but before committing: the next run moves
    the offset past the published files instead of writing them again."""
    topic, group = "access-recon", "wh-recon"
    create_topic(cluster1.brokers[0].port, topic, 2)
    kcat_produce(cluster1.bootstrap, topic, events(3000))
    out = tmp_path / "wh"
    real_commit = loader_worker.commit_offset
    # The sixth commit comes after reconcile's first commits, in the middle of the run.
    dying_commit = crashing_on_call(real_commit, 6)
    monkeypatch.setattr(loader_worker, "commit_offset", dying_commit)
    monkeypatch.setattr(loader_reconcile, "commit_offset", dying_commit)
    run_worker_until_it_crashes(_config(cluster1, topic, group, str(out)), group, topic)
    monkeypatch.setattr(loader_worker, "commit_offset", real_commit)
    monkeypatch.setattr(loader_reconcile, "commit_offset", real_commit)
    manifests = list((out / "_headrace").rglob("*.json"))
    assert len(manifests) == 1  # published, not committed
    published = set(json.loads(manifests[0].read_text())["files"])
    stamps = {f: (out / f).stat().st_mtime_ns for f in published}
    assert loader_run.load(_config(cluster1, topic, group, str(out))) == 0
    printed = capsys.readouterr().out
    assert "recovered:" in printed
    for f, stamp in stamps.items():
        assert (out / f).stat().st_mtime_ns == stamp, f"{f} was written again"
    rows = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM {table(str(out))}").fetchall()[0]
    assert rows == (3000, 3000)
    no_leftovers(out)


def test_partly_published_chunk_is_removed_and_rebuilt(cluster1, tmp_path, monkeypatch):
    """A worker that dies half-way through publishing a chunk's files: the next run deletes
    the files it did publish and builds the chunk again."""
    topic, group = "access-partial", "wh-partial"
    create_topic(cluster1.brokers[0].port, topic, 1)
    kcat_produce(cluster1.bootstrap, topic, events(4000))
    out = tmp_path / "wh"
    real_publish = Storage.publish
    dying_publish = crashing_on_call(
        real_publish, 5, counted=lambda _storage, rel, *_: rel.endswith(".parquet")
    )
    monkeypatch.setattr(Storage, "publish", dying_publish)
    config = _config(cluster1, topic, group, str(out), max_rows=400)
    run_worker_until_it_crashes(config, group, topic)
    monkeypatch.setattr(Storage, "publish", real_publish)
    assert loader_run.load(_config(cluster1, topic, group, str(out), max_rows=400)) == 0
    check_exactly_once(str(out), 4000)
    no_leftovers(out)


def test_commit_is_fenced_by_ownership(cluster1, tmp_path):
    """The offset moves only with the owner's session and the version it read."""
    from loaders.registry import FencedError, commit_offset

    zk = KazooClient(hosts=cluster1.zookeeper_connect, timeout=10)
    zk.start(timeout=15)
    try:
        owner = layout.owner_path("fence", "t", 0)
        zk.create(owner, layout.encode_owner("me"), ephemeral=True, makepath=True)
        version = commit_offset(zk, "fence", "t", 0, 10, None, "me")
        version = commit_offset(zk, "fence", "t", 0, 20, version, "me")
        with pytest.raises(FencedError):
            commit_offset(zk, "fence", "t", 0, 30, version - 1, "me")  # stale version
        with pytest.raises(FencedError):
            commit_offset(zk, "fence", "t", 0, 30, version, "someone-else")
        other = KazooClient(hosts=cluster1.zookeeper_connect, timeout=10)
        other.start(timeout=15)
        try:
            zk.delete(owner)
            other.create(owner, layout.encode_owner("me"), ephemeral=True)  # other session
            with pytest.raises(FencedError):
                commit_offset(zk, "fence", "t", 0, 30, version, "me")
        finally:
            other.stop()
            other.close()
        assert layout.decode_offset(zk.get(layout.offset_path("fence", "t", 0))[0]) == 20
    finally:
        zk.stop()
        zk.close()


def test_gap_fails_loudly_unless_allowed(make_cluster, tmp_path, capsys):
    """Retention removed offsets the group never loaded: the run fails naming the exact gap;
    --allow-gaps skips it and says so."""
    cluster = make_cluster(1, log_retention_check_interval_ms=200)
    topic, group = "access-gap", "wh-gap"
    create_topic(
        cluster.brokers[0].port, topic, 1, {"segment.bytes": "8192", "retention.ms": "500"}
    )
    zk = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    zk.start(timeout=15)
    # loaded nothing yet
    zk.create(layout.offset_path(group, topic, 0), layout.encode_offset(0), makepath=True)
    zk.stop()
    zk.close()
    kcat_produce(cluster.bootstrap, topic, events(2000), "none", "-X", "batch.size=2000")
    start = wait_for(lambda: cluster3_end_start(cluster, topic), 30)
    out = str(tmp_path / "wh")
    assert loader_run.load(_config(cluster, topic, group, out)) == 1
    err = capsys.readouterr().err
    assert f"offsets 0..{start - 1}" in err or "deleted by retention" in err, err
    assert loader_run.load(_config(cluster, topic, group, out, allow_gaps=True)) == 0
    printed = capsys.readouterr().out
    assert "GAP:" in printed


def cluster3_end_start(cluster, topic) -> int:
    from consumers.cluster import ClusterClient

    client = ClusterClient(cluster.bootstrap)
    try:
        return client.list_offset(topic, 0, -2)
    finally:
        client.close()


def test_success_markers_and_summary(cluster1, tmp_path, capsys):
    """Hours that ended before the plan get _SUCCESS; the current hour does not."""
    topic, group = "access-success", "wh-success"
    create_topic(cluster1.brokers[0].port, topic, 3)
    now = time.time()
    lines = [json.dumps({"id": i, "ts": now - 2 * HOUR + i}).encode() for i in range(100)]
    lines += [json.dumps({"id": 100 + i, "ts": now - 1}).encode() for i in range(10)]
    kcat_produce(cluster1.bootstrap, topic, lines)
    out = tmp_path / "wh"
    assert loader_run.load(_config(cluster1, topic, group, str(out))) == 0
    printed = capsys.readouterr().out
    assert "total" in printed and "110" in printed
    hours = sorted(p.parent.name for p in (out / topic).rglob("_SUCCESS"))
    current = time.strftime("hour=%H", time.gmtime(now - 1))
    assert hours and current not in hours
    assert (out / topic / time.strftime("dt=%Y-%m-%d", time.gmtime(now - 1)) / current).is_dir()


def test_bad_configuration_gets_a_clear_message(cluster1, tmp_path, capsys):
    base = _config(cluster1, "no-such-topic", "g", str(tmp_path / "wh"))
    assert loader_run.load(base) == 2
    assert "unknown topic 'no-such-topic'" in capsys.readouterr().err
    schema = tmp_path / "schema.json"
    schema.write_text("{not json")
    assert loader_run.load(base.replace(schema_file=str(schema))) == 2
    assert "schema" in capsys.readouterr().err
    assert loader_run.load(base.replace(url="nosuchproto://x")) == 2
    assert "cannot open warehouse" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--max-open-writers must be at least 1"):
        base.replace(max_open_writers=0)
    command = ["load", "--zookeeper", cluster1.zookeeper_connect, "--topic", "t", "--group", "g"]
    command += ["--to", str(tmp_path / "wh"), "--max-open-writers", "0"]
    assert cli.main(command) == 2
    assert "headrace load: --max-open-writers must be at least 1" in capsys.readouterr().err


def test_follow_mode_loads_new_events(cluster1, tmp_path):
    topic, group = "access-follow", "wh-follow"
    create_topic(cluster1.brokers[0].port, topic, 2)
    kcat_produce(cluster1.bootstrap, topic, events(500))
    out = tmp_path / "wh"
    proc = subprocess.Popen(
        load_cmd(
            cluster1,
            topic,
            group,
            str(out),
            "--follow",
            "--interval",
            "0.5",
            "--workers",
            "2",
            "--session-timeout-ms",
            "1500",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def workers() -> list[str]:
        found = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        return [
            pid
            for pid in found
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    try:
        wait_for(lambda: sum(c or 0 for c in committed(cluster1, group, topic, 2)) == 500, 60, 0.3)
        victim = workers()[0]
        os.kill(int(victim), signal.SIGKILL)  # a dead worker is replaced; loading goes on
        wait_for(lambda: len(workers()) == 2 and victim not in workers(), 30, 0.2)
        kcat_produce(cluster1.bootstrap, topic, events(300, start=500))
        wait_for(lambda: sum(c or 0 for c in committed(cluster1, group, topic, 2)) == 800, 60, 0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    check_exactly_once(str(out), 800)


def test_same_plan_gives_the_same_files_whatever_the_workers(cluster1, tmp_path):
    """Cuts depend only on the data: one worker or two, the same names and the same bytes."""
    topic = "access-determinism"
    create_topic(cluster1.brokers[0].port, topic, 4)
    kcat_produce(cluster1.bootstrap, topic, events(6000))
    trees = []
    for workers in (1, 2):
        out = tmp_path / f"wh{workers}"
        config = _config(
            cluster1, topic, f"wh-det-{workers}", str(out), workers=workers, max_rows=700
        )
        assert loader_run.load(config) == 0
        files = {str(f.relative_to(out)): f.read_bytes() for f in out.rglob("*.parquet")}
        trees.append(files)
    assert trees[0].keys() == trees[1].keys() and len(trees[0]) > 12
    assert all(trees[0][name] == trees[1][name] for name in trees[0])


def test_gap_met_mid_run_is_reported_or_fails(cluster1, tmp_path):
    """Retention overtaking a worker while it loads: with --allow-gaps the gap is reported and
    skipped; without, the worker stops with the exact gap."""
    from broker.protocol.errors import OffsetOutOfRangeError
    from loaders.registry import GapError

    topic, group = "access-midgap", "wh-midgap"
    create_topic(cluster1.brokers[0].port, topic, 1)
    reports = []
    config = _config(cluster1, topic, group, str(tmp_path / "wh"), allow_gaps=True)
    worker = loader_worker.Worker(config, report=reports.append)
    try:
        worker.chunks[(topic, 0)] = loader_worker.Chunk(topic, 0, 5, worker.limits)
        worker.group.consumer.positions[(topic, 0)] = 5
        error = OffsetOutOfRangeError(f"offset 5 of {topic}-0 is out of range")
        error.topic, error.partition, error.position, error.log_start, error.log_end = (
            topic,
            0,
            5,
            40,
            90,
        )
        worker._out_of_range(error)
        assert reports == [{"type": "gap", "topic": topic, "partition": 0, "first": 5, "next": 40}]
        assert worker.group.consumer.position(topic, 0) == 40
        worker.allow_gaps = False
        with pytest.raises(GapError, match=r"offsets 5\.\.39 \(35 messages\)"):
            worker._out_of_range(error)
        error.position, error.log_start = 95, 0  # past the end: the log shrank
        with pytest.raises(loader_worker.LoaderError, match="re-created or truncated"):
            worker._out_of_range(error)
    finally:
        worker.group.close()


def test_loader_lag_shows_in_groups_describe(cluster1, tmp_path):
    topic, group = "access-lag", "wh-lag"
    create_topic(cluster1.brokers[0].port, topic, 2)
    kcat_produce(cluster1.bootstrap, topic, events(300))
    assert loader_run.load(_config(cluster1, topic, group, str(tmp_path / "wh"))) == 0
    kcat_produce(cluster1.bootstrap, topic, events(50, start=300))
    shown = subprocess.run(
        [*HEADRACE, "groups", "--zookeeper", cluster1.zookeeper_connect, "describe", group],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    lags = [int(line.split()[4]) for line in shown.stdout.splitlines() if line.startswith(topic)]
    assert len(lags) == 2 and sum(lags) == 50
