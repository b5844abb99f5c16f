"""The loader's exactly-once guarantees on two more warehouses: s3:// and memory://.

- s3://: s3fs against moto's standalone S3 server on loopback.  The real ``headrace load``
  command (worker processes) gets the endpoint and the credentials only through
  ``--storage-option`` (AWS variables and config files are hidden from it), and is killed
  with SIGKILL - the whole process group, sometimes one worker first - at random moments
  while it loads; reruns then finish the plan.  The objects are read back with s3fs and
  checked with DuckDB: every event once, no gap, no manifest left, every object published
  whole, and a rerun with nothing new writes nothing.
- memory://: fsspec's in-memory filesystem lives in one process, so ``loaders.run.load``
  runs its workers as threads; faults are injected by monkeypatching (a ``Crash`` raised by
  ``Storage.publish`` or by the commit after publishing), several rounds, then the load is
  run until complete and the files are read back with pyarrow.

Real ZooKeeper and a real one-broker cluster (``cluster1``), events produced with kcat.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from command_lines import kcat_produce, load_cmd
from conftest import create_topic, free_port, wait_for
from kazoo.client import KazooClient
from test_loader_exactly_once import events

from broker.protocol import zookeeper as layout
from loaders import run as loader_run
from loaders import worker as loader_worker
from loaders.config import LoaderConfig
from loaders.layout import parse_data_file_name
from loaders.storage import Storage, parse_storage_options

HOUR = 3600
# Every event falls in an hour that ended at least two hours ago, so the first complete run
# marks every hour _SUCCESS and a later run has no reason to write anything.
BASE_TS = time.time() - 5 * HOUR
PARTITIONS = 6
REGION = "us-east-1"
KEY, SECRET = "headrace-test-key", "headrace-test-secret"


# --- helpers -----------------------------------------------------------------------------


class S3(NamedTuple):
    endpoint: str
    bucket: str

    def storage_args(self) -> list[str]:
        """The command line options that reach s3fs (dotted key: a nested dict)."""
        out = []
        for item in (
            f"endpoint_url={self.endpoint}",
            f"key={KEY}",
            f"secret={SECRET}",
            f"client_kwargs.region_name={REGION}",
        ):
            out += ["--storage-option", item]
        return out

    def options(self) -> dict:
        return parse_storage_options(self.storage_args()[1::2])

    def fs(self):
        """A client of the test's own, with no listing cache (never the loader's instance)."""
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint,
            key=KEY,
            secret=SECRET,
            client_kwargs={"region_name": REGION},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def boto(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )


def loader_env() -> dict:
    """The environment of ``headrace load``: no AWS credentials but the command line's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


class Offsets:
    """Committed offsets of a group, read with one ZooKeeper session (polled often)."""

    def __init__(self, connect: str, group: str, topic: str):
        self.zk = KazooClient(hosts=connect, timeout=10)
        self.zk.start(timeout=15)
        self.group, self.topic = group, topic

    def get(self) -> list[int | None]:
        out = []
        for p in range(PARTITIONS):
            try:
                node = layout.offset_path(self.group, self.topic, p)
                out.append(layout.decode_offset(self.zk.get(node)[0]))
            except Exception:
                out.append(None)
        return out

    def total(self) -> int:
        return sum(c or 0 for c in self.get())

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


def log_ends(cluster, topic: str) -> list[int]:
    from consumers.cluster import ClusterClient

    client = ClusterClient(cluster.bootstrap)
    try:
        return [client.list_offset(topic, p, -1) for p in range(PARTITIONS)]
    finally:
        client.close()


def parse_published(objects: dict[str, bytes]) -> pa.Table:
    """Every published data file parses and holds exactly the offsets its name says; returns
    their (_partition, _offset, id) rows."""
    tables = []
    for path, data in sorted(objects.items()):
        parsed = parse_data_file_name(path)
        assert parsed is not None, path
        _, partition, first, last = parsed
        table = pq.read_table(pa.BufferReader(data), columns=["_partition", "_offset", "id"])
        offsets = table.column("_offset").to_pylist()
        assert table.num_rows > 0 and (min(offsets), max(offsets)) == (first, last), path
        assert set(table.column("_partition").to_pylist()) == {partition}, path
        tables.append(table)
    if not tables:
        return pa.table(
            {
                "_partition": pa.array([], pa.int32()),
                "_offset": pa.array([], pa.int64()),
                "id": pa.array([], pa.int64()),
            }
        )
    return pa.concat_tables(tables, promote_options="permissive")


def check_exactly_once(rows: pa.Table, expected: int) -> None:
    """Every event once, and each partition's offsets 0..n-1 with no gap (DuckDB)."""
    n, distinct, ids, lo, hi = duckdb.sql(
        "SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT id), "
        "min(id), max(id) FROM rows"
    ).fetchall()[0]
    assert (n, distinct, ids) == (expected, expected, expected)
    assert (lo, hi) == (0, expected - 1)
    per_partition = duckdb.sql(
        "SELECT _partition, count(*), min(_offset), max(_offset) FROM rows GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(per_partition) == PARTITIONS, per_partition
    for p, count, first, last in per_partition:
        assert (first, last) == (0, count - 1), p


# --- s3:// through s3fs against moto's server ------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's standalone S3 server on 127.0.0.1 with a bucket; stopped at the end."""
    logfile = tmp_path_factory.mktemp("moto") / "moto_server.log"
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    port = free_port()
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited ({proc.returncode}): {logfile.read_text()}")
            try:
                with opener.open(endpoint + "/", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server does not answer on {endpoint}: {logfile.read_text()}")
            time.sleep(0.1)
        server = S3(endpoint, "headrace-wh")
        server.boto().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.integration
def test_s3_storage_primitives(s3):
    """Options from the command line reach s3fs; publishing, listing, existence and deletion
    see what other processes (another client) did, whatever the listing cache holds."""
    assert s3.options() == {
        "endpoint_url": s3.endpoint,
        "key": KEY,
        "secret": SECRET,
        "client_kwargs": {"region_name": REGION},
    }
    store = Storage(f"s3://{s3.bucket}/prim/", s3.options())
    assert (store.protocol, store.rename_based, store.local) == ("s3", False, False)
    assert store.list_dirs("") == [] and store.list_names("t/nothing") == []
    hour = "t/dt=2026-01-01/hour=01"
    data = b"PAR1" + os.urandom(5000) + b"PAR1"
    store.publish(f"{hour}/a.parquet", data, "_headrace/g/tmp/w")
    assert store.read(f"{hour}/a.parquet") == data
    assert store.list_dirs("") == ["t"] and store.list_dirs("t") == ["dt=2026-01-01"]
    assert store.list_dirs("t/dt=2026-01-01") == ["hour=01"]
    assert store.list_names(hour) == ["a.parquet"]  # the listing is now in s3fs's cache
    other = s3.fs()  # another worker, another process
    other.pipe_file(f"{s3.bucket}/prim/{hour}/b.parquet", b"b")
    assert store.exists(f"{hour}/b.parquet")
    assert store.list_names(hour) == ["a.parquet", "b.parquet"]
    other.rm_file(f"{s3.bucket}/prim/{hour}/b.parquet")
    assert not store.exists(f"{hour}/b.parquet")
    assert store.list_names(hour) == ["a.parquet"]
    store.delete(f"{hour}/a.parquet")
    store.delete(f"{hour}/a.parquet")  # deleting what is gone is not an error
    assert not store.exists(f"{hour}/a.parquet")
    store.remove_dir(hour)  # no directories on S3: nothing to do, no error
    # nothing was staged anywhere: an object store publishes with one whole-object write
    assert other.find(f"{s3.bucket}/prim") == []


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a ``headrace load`` (not multiprocessing's resource tracker)."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    out = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.append(int(child))
    return out


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _s3_objects(fs, prefix: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.find(prefix))


def _s3_data(fs, prefix: str) -> dict[str, bytes]:
    names = [p for p in _s3_objects(fs, prefix) if p.endswith(".parquet")]
    return fs.cat(names) if names else {}


@pytest.mark.slow
def test_s3_exactly_once_while_the_load_is_killed(cluster1, s3, tmp_path):
    topic, group = "access-s3", "wh-s3"
    create_topic(cluster1.brokers[0].port, topic, PARTITIONS)
    prefix = f"{s3.bucket}/wh"
    cmd = load_cmd(
        cluster1,
        topic,
        group,
        f"s3://{prefix}",
        "--workers",
        "2",
        "--max-rows",
        "150",
        "--session-timeout-ms",
        "1500",
        *s3.storage_args(),
    )
    env = loader_env()
    fs = s3.fs()
    rng = random.Random(11)
    offsets = Offsets(cluster1.zookeeper_connect, group, topic)
    produced = mid_load_kills = 0
    try:
        for round_no in range(6):
            kcat_produce(
                cluster1.bootstrap,
                topic,
                events(3000, start=produced, base_ts=BASE_TS),
                ("gzip", "snappy", "lz4", "zstd")[round_no % 4],
            )
            produced += 3000
            before = offsets.total()
            with open(tmp_path / f"round{round_no}.log", "wb") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            try:
                deadline = time.monotonic() + 30  # kill once the load is under way
                while (
                    proc.poll() is None
                    and time.monotonic() < deadline
                    and offsets.total() <= before
                ):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.5))
                how = "too late: the load had ended"
                if proc.poll() is None:
                    workers = _workers_of(proc.pid)
                    how = "killed the load"
                    if round_no % 2 and workers:
                        os.kill(rng.choice(workers), signal.SIGKILL)  # one worker dies
                        how = "killed one worker, then the load"
                        time.sleep(rng.uniform(0.1, 0.6))
                    _killpg(proc.pid)  # then the whole load
            finally:
                _killpg(proc.pid)
                proc.wait(timeout=30)
            after = offsets.total()
            mid_load_kills += before < after < produced
            print(f"round {round_no}: {how}; committed {before} -> {after} of {produced}")
            # whatever the moment of the kill, only whole objects were published, nothing staged
            objects = _s3_objects(fs, prefix)
            assert not [o for o in objects if o.endswith(".tmp") or "/_headrace/wh-s3/tmp/" in o]
            parse_published(_s3_data(fs, prefix))
        assert mid_load_kills >= 3, mid_load_kills

        for _ in range(4):
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL
            )
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr
        assert offsets.get() == log_ends(cluster1, topic)
        assert _s3_objects(fs, f"{prefix}/_headrace") == []  # no manifest, no temporary file
        check_exactly_once(parse_published(_s3_data(fs, prefix)), produced)
        # the hours (all ended) were found by listing S3 prefixes and marked
        objects = _s3_objects(fs, prefix)
        hours = {o.rsplit("/", 1)[0] for o in objects if o.endswith(".parquet")}
        assert hours and all(f"{h}/_SUCCESS" in objects for h in hours), objects

        # nothing new: nothing written (same keys, ETags and times), exit 0
        def snapshot():
            pages = (
                s3.boto().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="wh/")
            )
            return {
                o["Key"]: (o["ETag"], o["LastModified"], o["Size"])
                for page in pages
                for o in page.get("Contents", [])
            }

        before_rerun = snapshot()
        time.sleep(1.0)  # S3 times have one-second resolution: a rewrite would show
        again = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL
        )
        assert again.returncode == 0, again.stderr
        assert "loaded 0 events" in again.stdout, again.stdout
        assert snapshot() == before_rerun
    finally:
        offsets.close()


# --- memory://: workers are threads; faults injected by monkeypatching ----------------------


class Crash(BaseException):
    """Stands for the worker dying at this point."""


@pytest.mark.slow
def test_memory_exactly_once_with_injected_crashes(cluster1, monkeypatch, caplog):
    """Rounds in which, from a random call on, every publish (or every commit after a
    publish) of the worker threads raises Crash - the threads die one after the other, each
    closing its group - then loads without faults until complete."""
    topic, group = "access-mem", "wh-mem"
    create_topic(cluster1.brokers[0].port, topic, PARTITIONS)
    root = f"/headrace-test-{uuid.uuid4().hex}"
    mem = fsspec.filesystem("memory")
    config = LoaderConfig(
        zookeeper=cluster1.zookeeper_connect,
        topics=[topic],
        group=group,
        url=f"memory://{root.lstrip('/')}",
        workers=2,
        time_field="ts",
        max_rows=100,
        session_timeout_ms=2000,
    )
    assert Storage(config.url).root == root

    real_publish, real_commit = Storage.publish, loader_worker.commit_offset
    fault = {"kind": None, "at": 0, "calls": 0}
    lock = threading.Lock()
    crashed: list[str] = []

    def due(kind: str) -> bool:
        if not threading.current_thread().name.startswith("loader-worker-"):
            return False  # only the workers die; the supervising thread goes on
        with lock:
            if fault["kind"] != kind:
                return False
            fault["calls"] += 1
            return fault["calls"] >= fault["at"]

    def faulty_publish(self, rel, data, tmp_rel):
        if due("publish"):
            raise Crash(f"publish {rel}")
        return real_publish(self, rel, data, tmp_rel)

    def faulty_commit(*args):
        # Only the commit that follows publishing.  The commits of reconciling run inside
        # GroupConsumer.start(), which Worker.run() calls before its try/finally: a thread
        # dying there would leave its ZooKeeper session and claims behind, and the next load
        # in this process would wait for them forever.
        if sys._getframe(1).f_code.co_name == "_publish_and_commit" and due("commit"):
            raise Crash("commit")
        return real_commit(*args)

    previous_hook = threading.excepthook

    def hook(args):
        if isinstance(args.exc_value, Crash):
            crashed.append(args.thread.name if args.thread else "?")
        else:
            previous_hook(args)

    monkeypatch.setattr(threading, "excepthook", hook)
    monkeypatch.setattr(Storage, "publish", faulty_publish)
    monkeypatch.setattr(loader_worker, "commit_offset", faulty_commit)
    rng = random.Random(5)
    offsets = Offsets(cluster1.zookeeper_connect, group, topic)
    produced = interrupted = 0
    printed = []
    baseline = sorted(t.name for t in threading.enumerate())
    try:
        for round_no in range(6):
            kcat_produce(cluster1.bootstrap, topic, events(1200, start=produced, base_ts=BASE_TS))
            produced += 1200
            kind = ("publish", "commit")[round_no % 2]
            fault.update(kind=kind, at=rng.randint(2, 30 if kind == "publish" else 10), calls=0)
            before = offsets.total()
            out, err = io.StringIO(), io.StringIO()
            status = loader_run.load(config, out, err)
            after = offsets.total()
            printed.append(out.getvalue())
            print(
                f"round {round_no}: {fault['kind']} crash at call {fault['at']}: exit {status}, "
                f"committed {before} -> {after} of {produced}, crashed {crashed}"
            )
            # every worker thread ended, and with it its ZooKeeper session (the group was
            # closed even by the threads that crashed): no thread is left behind
            wait_for(lambda: sorted(t.name for t in threading.enumerate()) == baseline, 10)
            if status:
                assert (
                    "did not finish its plan" in err.getvalue()
                    or "worker 0 died" in err.getvalue()
                    or "worker 1 died" in err.getvalue()
                ), err.getvalue()
                interrupted += before <= after < produced
            else:
                assert after == produced
            crashed.clear()
            names = [p for p in mem.find(root) if p.endswith(".parquet")]
            parse_published({p: mem.cat_file(p) for p in names})  # only whole files
            assert not [p for p in mem.find(root) if p.endswith(".tmp")]
        assert interrupted >= 3, interrupted

        fault["kind"] = None
        for _ in range(3):
            out, err = io.StringIO(), io.StringIO()
            status = loader_run.load(config, out, err)
            printed.append(out.getvalue())
            if status == 0:
                break
        assert status == 0, err.getvalue()
        assert any("recovered:" in text for text in printed), printed  # a commit crash was healed
        assert "of unfinished chunk" in caplog.text  # a publish crash's files were removed
        assert offsets.get() == log_ends(cluster1, topic)
        assert mem.find(f"{root}/_headrace") == []
        names = [p for p in mem.find(root) if p.endswith(".parquet")]
        check_exactly_once(parse_published({p: mem.cat_file(p) for p in names}), produced)

        # nothing new: no file is written again, exit 0
        snapshot = {p: (id(f), f.created) for p, f in mem.store.items() if p.startswith(root + "/")}
        out, err = io.StringIO(), io.StringIO()
        assert loader_run.load(config, out, err) == 0, err.getvalue()
        assert "loaded 0 events" in out.getvalue()
        assert {
            p: (id(f), f.created) for p, f in mem.store.items() if p.startswith(root + "/")
        } == snapshot
    finally:
        offsets.close()
        if mem.exists(root):
            mem.rm(root, recursive=True)
        for p in [p for p in mem.store if p.startswith(root + "/")]:
            mem.store.pop(p, None)
        mem.pseudo_dirs[:] = [
            d for d in mem.pseudo_dirs if d != root and not d.startswith(root + "/")
        ]
