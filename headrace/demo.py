"""``headrace demo``: the whole pipeline on this machine, from application logs to SQL.

    headrace demo [--events 50000] [--dir var/cluster] [--work-dir var/demo] [--to warehouse]

1. starts ZooKeeper (Debian's package) and three brokers as ``headrace cluster up`` does, with
   its state in ``--dir`` (or reuses the cluster already running from there);
2. creates the topic ``access`` (six partitions, three replicas) unless it exists;
3. writes JSON access-log lines (``ts``, ``ip``, ``method``, ``path``, ``status``, ``bytes``,
   ``latency_ms``, ``user_agent``, ``host``) spread over the last three hours into one file
   per web server under ``--work-dir``/logs;
4. ships them with ``headrace ship`` (keyed by client address) and waits until the brokers
   have every line, then stops the shipper;
5. loads the topic into Parquet files under ``--to`` with ``headrace load --until-caught-up``;
6. counts events per hour and status code over the Parquet files with DuckDB, and checks
   that the lines of this run are in the warehouse once each.

The cluster is left running (``headrace cluster down`` stops it).  Running the demo again
adds new lines to the same topic and loads just those: the warehouse grows.

The log lines come from ``headrace.accesslog``; ``headrace kill-demo`` (the older demo) is
``headrace.kill_demo``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import devcluster
from .accesslog import HOURS, generate_logs

STANDARD_ZOOKEEPER_PORT = 2181  # the ports `headrace cluster up` uses
STANDARD_BASE_PORT = 9092
STANDARD_CLUSTER_DIR = Path("var/cluster")  # and the directory it keeps its cluster in


def _headrace() -> list[str]:
    """How to run the ``headrace`` command of this installation."""
    script = Path(sys.executable).with_name("headrace")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "headrace.cli"]


def _shown(arg: str) -> str:
    """A path as the user would type it: relative to the current directory if inside it."""
    if os.path.isabs(arg):
        try:
            rel = os.path.relpath(arg)
        except ValueError:
            return arg
        if rel != ".." and not rel.startswith("../"):
            return rel
    return arg


def _show(command: list[str]) -> None:
    print("$ " + shlex.join(_shown(a) for a in command), flush=True)


def _say(text: str = "") -> None:
    print(text, flush=True)


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and what to do."""


def _running_cluster(directory: Path) -> dict | None:
    """The state of a cluster already running from ``directory`` (broker processes that died
    are started again), or None if none runs there."""
    state_path = directory / devcluster.STATE_FILE
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    if not any(devcluster._alive(pid) for pid in state.get("pids", [])):
        return None  # left by a cluster that is gone: start a new one
    where = "" if directory == STANDARD_CLUSTER_DIR else f" --dir {directory}"
    stop = f"`headrace cluster down{where}`"
    zk_pid = state.get("zookeeper_pid")
    if (
        (zk_pid and not devcluster._alive(zk_pid))
        or not state.get("connect")
        or not state.get("brokers")
    ):
        raise DemoError(
            f"the cluster in {directory} is partly down (or still starting); stop it "
            f"with {stop} and run the demo again"
        )
    for entry in state["brokers"]:
        if devcluster._alive(entry["pid"]):
            broker = devcluster.BrokerProcess(
                directory, entry["id"], state["connect"], entry["port"]
            )
            try:
                broker.wait_ready(timeout=20)
                continue
            except RuntimeError as exc:
                if devcluster._alive(entry["pid"]):
                    raise DemoError(
                        f"broker {entry['id']} of the cluster in {directory} does not "
                        f"answer ({exc}); stop the cluster with {stop} and run the demo "
                        "again"
                    ) from None
        _say(
            f"broker {entry['id']} of the cluster in {directory} is not running: starting it again"
        )
        try:
            devcluster.restart_broker(directory, state, entry)
        except RuntimeError as exc:
            raise DemoError(
                f"cannot restart broker {entry['id']}: {exc}; stop the cluster with "
                f"{stop} and run the demo again"
            ) from None
    state["bootstrap"] = ",".join(f"127.0.0.1:{b['port']}" for b in state["brokers"])
    return state


def _start_cluster(
    directory: Path, brokers: int, zookeeper_port: int | None, base_port: int | None
) -> dict:
    """``headrace cluster up``: the standard ports when free (or given), else free ones."""
    if zookeeper_port is None:
        zookeeper_port = STANDARD_ZOOKEEPER_PORT
        if devcluster.port_in_use(zookeeper_port):
            _say(f"port {zookeeper_port} is in use: ZooKeeper goes on a free port")
            zookeeper_port = 0
    if base_port is None:
        base_port = STANDARD_BASE_PORT
        if any(devcluster.port_in_use(base_port + i) for i in range(brokers)):
            _say(
                f"ports {base_port}-{base_port + brokers - 1} are not all free: the brokers go on "
                "free ports"
            )
            base_port = 0
    try:
        return devcluster.cluster_up(directory, brokers, None, base_port, zookeeper_port)
    except RuntimeError as exc:
        raise DemoError(f"cannot start the cluster: {exc}") from None


def _ensure_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int):
    """Create the topic unless it exists; wait until each partition has a leader. Returns
    (a ClusterClient, the partitions, created?)."""
    from broker.protocol.errors import KafkaError
    from consumers.cluster import ClusterClient
    from consumers.security import PLAINTEXT

    from .topics import create_topic_simple

    created = True
    try:
        create_topic_simple(bootstrap, topic, partitions, replication_factor=replication_factor)
    except KafkaError as exc:
        if exc.name != "TOPIC_ALREADY_EXISTS":
            raise DemoError(f"cannot create the topic {topic}: {exc}") from None
        created = False
    # the demo's own cluster (devcluster.py) listens on PLAINTEXT only
    cluster = ClusterClient(
        bootstrap_servers=bootstrap, client_id="headrace-demo", security=PLAINTEXT
    )
    parts = cluster.partitions(topic, wait=30)
    deadline = time.monotonic() + 30
    while len(cluster.available_partitions(topic)) < len(parts):
        if time.monotonic() > deadline:
            raise DemoError(f"partitions of {topic} have no leader after 30 s")
        time.sleep(0.2)
        cluster.refresh([topic])
    return cluster, parts, created


def _end_offsets(cluster, topic: str, parts: list[int]) -> dict[int, int]:
    return {p: cluster.list_offset(topic, p, -1) for p in parts}


def _ship(
    command: list[str],
    log_path: Path,
    cluster,
    topic: str,
    parts: list[int],
    target: int,
    timeout: float,
) -> tuple[int, float]:
    """Run the shipper until the topic's end offsets add up to ``target``; stop it (SIGTERM).
    Returns (messages in the topic, seconds)."""
    _show(command)
    tty = sys.stdout.isatty()
    began = time.monotonic()
    with open(log_path, "ab") as out:
        shipper = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        total = 0
        while True:
            try:
                total = sum(_end_offsets(cluster, topic, parts).values())
            except (OSError, RuntimeError) as exc:  # a broker being slow, or metadata moving
                print(f"(ListOffsets failed, retrying: {exc})", file=sys.stderr)
                cluster.refresh([topic])
            if tty:
                print(f"\r  in the topic: {total:,} / {target:,} lines", end="", flush=True)
            if total >= target:
                break
            if shipper.poll() is not None:
                raise DemoError(
                    f"headrace ship exited with status {shipper.returncode} before every "
                    f"line was acknowledged; its log: {_shown(str(log_path))}\n" + _tail(log_path)
                )
            if time.monotonic() - began > timeout:
                raise DemoError(
                    f"only {total:,} of {target:,} lines reached the topic in {timeout:.0f} "
                    f"s; the shipper's log: {_shown(str(log_path))}\n" + _tail(log_path)
                )
            time.sleep(0.2)
        elapsed = time.monotonic() - began
        if tty:
            print()
    finally:
        if shipper.poll() is None:
            shipper.send_signal(signal.SIGTERM)  # it delivers what it sent, commits, exits 0
            try:
                shipper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                shipper.kill()
                shipper.wait()
    if shipper.returncode != 0:
        raise DemoError(
            f"headrace ship exited with status {shipper.returncode}; its log: "
            f"{_shown(str(log_path))}\n" + _tail(log_path)
        )
    return total, elapsed


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_demo(**options) -> int:
    """``pipeline(**options)``, its failure told in one line, and a word on the cluster it
    leaves running; returns the exit status."""
    directory = options.get("directory", STANDARD_CLUSTER_DIR)
    try:
        return pipeline(**options)
    except DemoError as exc:
        print(f"headrace demo: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nheadrace demo: interrupted", file=sys.stderr)
        status = 130
    if (directory / devcluster.STATE_FILE).exists():
        print(
            f"the cluster in {_shown(str(directory.absolute()))} is still running; stop it with "
            f"`headrace cluster down{_dir_option(directory)}`",
            file=sys.stderr,
        )
    return status


def _dir_option(directory: Path) -> str:
    """``cluster down``'s ``--dir`` for the cluster in ``directory`` ("" for the default)."""
    return (
        "" if directory == STANDARD_CLUSTER_DIR else f" --dir {_shown(str(directory.absolute()))}"
    )


def pipeline(
    events: int = 50_000,
    directory: Path = STANDARD_CLUSTER_DIR,
    work_dir: Path = Path("var/demo"),
    warehouse: Path = Path("warehouse"),
    topic: str = "access",
    partitions: int = 6,
    replication_factor: int | None = None,
    brokers: int = 3,
    files: int = 3,
    workers: int = 2,
    zookeeper_port: int | None = None,
    base_port: int | None = None,
    timeout: float = 300.0,
    seed: int | None = None,
    log_level: str = "INFO",
) -> int:
    """The pipeline end to end; returns the exit status (0: every line of this run was loaded
    once)."""
    import duckdb

    if events < 1 or files < 1 or brokers < 1 or partitions < 1 or workers < 1:
        raise DemoError(
            "--events, --files, --brokers, --partitions and --workers must be at least 1"
        )
    started = time.monotonic()
    headrace = _headrace()
    cli = shlex.join([_shown(headrace[0]), *headrace[1:]])
    down = f"{cli} cluster down{_dir_option(directory)}"

    # 1. the cluster
    _say(
        f"== 1. cluster: ZooKeeper and {brokers} brokers, "
        f"state in {_shown(str(directory.absolute()))}"
    )
    state = _running_cluster(directory)
    if state is not None:
        _say(f"reusing the cluster already running from {_shown(str(directory.absolute()))}")
    else:
        began = time.monotonic()
        state = _start_cluster(directory, brokers, zookeeper_port, base_port)
        _say(f"started in {time.monotonic() - began:.1f} s")
    bootstrap, connect = state["bootstrap"], state["connect"]
    _say(
        f"ZooKeeper {state['zookeeper']} (chroot {connect[len(state['zookeeper']) :] or '/'}); "
        f"brokers {bootstrap}"
    )
    if devcluster.metrics_pages(state):  # a cluster started before metrics has none
        _say(f"Prometheus metrics of brokers {devcluster.metrics_pages(state)}")
    try:
        dashboard = devcluster.start_dashboard(directory, state, warehouse)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None
    _say(f"dashboard at {dashboard} (it stops with the cluster)")

    # 2. the topic
    if replication_factor is None:
        replication_factor = min(3, brokers)
    cluster, parts, created = _ensure_topic(bootstrap, topic, partitions, replication_factor)
    try:
        before = _end_offsets(cluster, topic, parts)
        already = sum(before.values())
        if created:
            _say(
                f"created the topic {topic} with {len(parts)} partitions, "
                f"replication factor {replication_factor}"
            )
        else:
            _say(
                f"the topic {topic} exists ({len(parts)} partitions, {already:,} messages): this "
                "run adds to it"
            )

        # 3. application logs
        _say()
        logs = work_dir / "logs"
        _say(
            f"== 2. application logs: {events:,} JSON access-log lines over the last {HOURS} hours"
        )
        began = time.monotonic()
        paths = generate_logs(logs, events, files, seed)
        size = sum(p.stat().st_size for p in paths)
        _say(
            f"wrote {', '.join(_shown(str(p.absolute())) for p in paths)} ({size / 1e6:.1f} MB) in "
            f"{time.monotonic() - began:.1f} s; the first line:"
        )
        with open(paths[0]) as first:
            _say("  " + first.readline().rstrip("\n"))

        # 4. ship them
        _say()
        _say(
            f"== 3. ship: follow the files like tail -F and send each line to {topic}, keyed by "
            "client address"
        )
        state_file = work_dir / "ship-state.json"
        state_file.unlink(missing_ok=True)  # the files are new: start them from the beginning
        command = (
            headrace
            + [
                "ship",
                "--zookeeper",
                connect,
                "--topic",
                topic,
                "--key-field",
                "ip",
                "--from-beginning",
                "--state-file",
                str(state_file),
            ]
            + [str(p) for p in paths]
        )
        target = already + events
        total, seconds = _ship(
            command, work_dir / "ship.log", cluster, topic, parts, target, timeout
        )
        _say(
            f"the brokers acknowledged all {events:,} lines in {seconds:.1f} s "
            f"({events / max(seconds, 1e-9):,.0f} lines/s); shipper stopped "
            f"(log: {_shown(str((work_dir / 'ship.log').absolute()))})"
        )
        if total > target:
            _say(f"(the topic got {total - target:,} more messages from elsewhere meanwhile)")
        after = _end_offsets(cluster, topic, parts)
    finally:
        cluster.close()

    # 5. load them into the warehouse
    _say()
    _say(f"== 4. load: {topic} into Parquet files, one directory per event hour")
    command = (
        headrace
        + (["--log-level", log_level] if log_level.upper() != "INFO" else [])
        + [
            "load",
            "--zookeeper",
            connect,
            "--topic",
            topic,
            "--group",
            "warehouse",
            "--to",
            str(warehouse),
            "--workers",
            str(workers),
            "--time-field",
            "ts",
            "--until-caught-up",
        ]
    )
    _show(command)
    sys.stdout.flush()
    status = subprocess.run(command, stdin=subprocess.DEVNULL).returncode
    if status != 0:
        raise DemoError(f"headrace load exited with status {status}")
    if not created:
        _say("(events of hours an earlier run marked _SUCCESS count as late: loaded all the same)")

    # 6. query them
    _say()
    _say("== 5. query: events per hour and status code, with DuckDB over the Parquet files")
    files_glob = f"{_shown(str(warehouse.absolute()))}/{topic}/dt=*/hour=*/*.parquet"
    source = f"read_parquet({_sql_literal(files_glob)}, hive_partitioning=true)"
    sql = f"SELECT dt, hour, status, count(*) AS events FROM {source} GROUP BY ALL ORDER BY ALL"
    _say(sql + ";")
    con = duckdb.connect()
    con.sql(sql).show(max_rows=10_000)
    sys.stdout.flush()

    # the check: each line of this run once in the warehouse
    run_offsets = ", ".join(f"({p}, {before[p]}, {after[p]})" for p in parts)
    rows, distinct, ours, parquet_files = con.execute(
        f"SELECT count(*), count(DISTINCT (_partition, _offset)), "
        f"count(*) FILTER (WHERE _offset >= run.lo AND _offset < run.hi), "
        f"count(DISTINCT filename) "
        f"FROM (SELECT * FROM read_parquet({_sql_literal(files_glob)}, hive_partitioning=true, "
        f"filename=true) WHERE _topic = {_sql_literal(topic)}) t "
        f"JOIN (VALUES {run_offsets}) run(part, lo, hi) ON t._partition = run.part"
    ).fetchall()[0]
    shipped = sum(after.values()) - sum(before.values())
    _say(
        f"the warehouse holds {rows:,} events in {parquet_files:,} Parquet files; {ours:,} of them "
        f"are the {shipped:,} lines of this run"
    )
    ok = ours == shipped >= events and rows == distinct
    if rows != distinct:
        _say(f"DUPLICATES: {rows - distinct:,} events are in the warehouse more than once")
    if ours != shipped:
        _say(f"MISSING: {shipped - ours:,} lines of this run are not in the warehouse")

    # 7. what is left running, and where things are
    _say()
    _say(
        f"demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s. "
        f"Still running: ZooKeeper and {len(state['brokers'])} brokers."
    )
    _say(
        f"  cluster     {_shown(str(directory.absolute()))}/ (broker-N.out: broker logs; "
        f"broker-N-logs/: their data)"
    )
    _say(
        f"  app logs    {_shown(str(logs.absolute()))}/web-*.log; shipper log and state in "
        f"{_shown(str(work_dir.absolute()))}/"
    )
    _say(
        f"  warehouse   {_shown(str(warehouse.absolute()))}/{topic}/dt=YYYY-MM-DD/hour=HH/*.parquet"
    )
    _say(
        f"  dashboard   {dashboard}#tail={topic}&aggregate={topic}:status:{HOURS * 3600}:ts:classes"
    )
    _say("  look around:")
    first = bootstrap.split(",")[0]
    server = "" if first == f"127.0.0.1:{STANDARD_BASE_PORT}" else f" --bootstrap-server {first}"
    _say(f"    {cli} topics{server} describe --topic {topic}")
    _say(f"    {cli} groups describe warehouse --zookeeper {connect}")
    _say(
        f"    {cli} consume --bootstrap-server {first} --topic {topic} "
        "--from-beginning --max-messages 3"
    )
    _say(f"  run the demo again to add more events; stop the cluster with: {down}")
    return 0 if ok else 1
