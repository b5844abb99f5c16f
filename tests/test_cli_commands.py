"""The headrace command: the demos, dump-log, cluster up and down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from headrace.cli import main


def test_demo_appends_reads_crashes_and_recovers(tmp_path, capsys):
    assert (
        main(
            [
                "--log-level",
                "WARNING",
                "storage-demo",
                "--log-dir",
                str(tmp_path),
                "--messages",
                "3000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "appended 3,000 log lines" in out and "read back 3,000" in out and "demo passed" in out


def test_dump_log_lists_batches_and_flags_corruption(tmp_path, capsys):
    main(
        ["--log-level", "WARNING", "storage-demo", "--log-dir", str(tmp_path), "--messages", "1500"]
    )
    capsys.readouterr()
    partition = tmp_path / "access-log-0"
    assert main(["dump-log", str(partition), "--print-data"]) == 0
    out = capsys.readouterr().out
    assert "baseOffset 0 lastOffset 499 count 500" in out and "valid" in out
    assert "key b'host-0'" in out
    segment = sorted(partition.glob("*.log"))[0]
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert main(["dump-log", str(segment)]) == 1
    assert "INVALID" in capsys.readouterr().out


@pytest.mark.integration
def test_console_script_reports_errors_cleanly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "dump-log", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "No such file" in result.stderr and "Traceback" not in result.stderr


def test_demo_generates_json_access_logs(tmp_path):
    import json

    from headrace.accesslog import generate_logs

    now = 1_700_000_000.0
    (tmp_path / "web-9.log").write_text("left by an earlier run\n")
    paths = generate_logs(tmp_path, 1000, 3, seed=7, now=now)
    assert [p.name for p in paths] == ["web-1.log", "web-2.log", "web-3.log"]
    assert not (tmp_path / "web-9.log").exists()
    events = [[json.loads(line) for line in p.read_text().splitlines()] for p in paths]
    assert sum(map(len, events)) == 1000 and all(events)
    for per_file in events:
        stamps = [e["ts"] for e in per_file]
        assert stamps == sorted(stamps)  # a log file is in time order
    every = [e for per_file in events for e in per_file]
    assert set(every[0]) >= {
        "ts",
        "ip",
        "method",
        "path",
        "status",
        "bytes",
        "latency_ms",
        "user_agent",
    }
    from datetime import datetime

    times = [datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() for e in every]
    assert now - 3 * 3600 <= min(times) and max(times) <= now
    assert {e["status"] for e in every} >= {200, 404}
    assert generate_logs(tmp_path, 1000, 3, seed=7, now=now)[0].read_text() == paths[0].read_text()


def demo_burst(address: str) -> dict:
    """The demo's windowed counts of status classes over three hours of event time, once
    they hold the events (but those at the window's old edge), from the dashboard the demo
    started; the burst of 5xx stands out (its busiest ten minutes hold a third of the 5xx)."""
    from dashboard_client import EventReader

    url = f"{address}api/aggregate?topic=access&field=status&window=10800&step=600"
    with EventReader(url + "&time_field=ts&classes=1") as reader:
        window = reader.wait_for(lambda r: [w for w in r.of("window") if w["events"] > 2500], 20)
    five = window[-1]["series"]["5xx"]
    assert max(five) * 3 > sum(five), five
    return window[-1]


@pytest.mark.integration
def test_demo_runs_the_pipeline_twice_then_cluster_down(tmp_path):
    """Cluster up, logs, ship, load, DuckDB; a second run reuses the cluster and adds to the
    warehouse; `cluster down` stops it.  Everything under tmp_path (the demo also runs there)."""
    import duckdb

    from headrace import devcluster

    cluster, work, warehouse = tmp_path / "cluster", tmp_path / "demo", tmp_path / "warehouse"

    def demo(events: int) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "headrace.cli",
                "demo",
                "--events",
                str(events),
                "--dir",
                str(cluster),
                "--work-dir",
                str(work),
                "--to",
                str(warehouse),
                "--zookeeper-port",
                "0",
                "--base-port",
                "0",
                "--workers",
                "2",
                "--files",
                "2",
                "--timeout",
                "40",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},  # this tree
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def warehouse_rows() -> int:
        files = f"{warehouse}/access/dt=*/hour=*/*.parquet"
        return duckdb.execute(
            f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning=true)"
        ).fetchall()[0][0]

    try:
        out = demo(3000)
        assert "created the topic access with 6 partitions, replication factor 3" in out
        assert (
            sum(len(p.read_text().splitlines()) for p in (work / "logs").glob("web-*.log")) == 3000
        )
        assert "the brokers acknowledged all 3,000 lines" in out
        assert "$ " in out and " ship --zookeeper " in out and " load --zookeeper " in out
        assert "loaded 3,000 events" in out  # the loader's summary
        assert "SELECT dt, hour, status, count(*)" in out and "│ status │" in out
        assert "3,000 of them are the 3,000 lines of this run" in out and "demo passed" in out
        assert "cluster down --dir" in out
        assert warehouse_rows() == 3000
        assert (cluster / "cluster.json").exists()  # left running
        [address] = re.findall(r"dashboard   (http://\S+)#tail=access&", out)
        assert "#tail=access&aggregate=access:status:10800:ts:classes" in out
        burst = demo_burst(address)
        assert burst["totals"]["5xx"] > 0 and burst["events"] + burst["late"] <= 3000

        out = demo(2000)
        assert "reusing the cluster already running" in out
        assert "the topic access exists (6 partitions, 3,000 messages)" in out
        assert "loaded 2,000 events" in out and "demo passed" in out
        assert "the warehouse holds 5,000 events" in out
        assert warehouse_rows() == 5000

        down = subprocess.run(
            [sys.executable, "-m", "headrace.cli", "cluster", "down", "--dir", str(cluster)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            down.returncode == 0 and "stopped 5 processes" in down.stdout
        )  # the dashboard, 3 brokers, ZooKeeper
        assert not (cluster / "cluster.json").exists()
        assert not devcluster.port_in_use(int(address.rsplit(":", 1)[1].strip("/")))
    finally:
        devcluster.cluster_down(cluster)


@pytest.mark.integration
def test_kill_demo_ships_kills_restarts_and_loses_nothing(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace.cli",
            "--log-level",
            "WARNING",
            "kill-demo",
            "--messages",
            "20000",
            "--dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kcat read back 20,000 lines" in result.stdout
    assert "after the restart: 20,000 lines, order kept" in result.stdout
    assert "demo passed" in result.stdout
    assert not list((tmp_path / "demo").glob("cluster.json"))  # the cluster was stopped


def test_deploy_examples_are_valid_configurations():
    from pathlib import Path

    from broker.config import BrokerConfig

    for path in sorted(Path(__file__).parent.parent.glob("deploy/server-*.properties")):
        config = BrokerConfig.from_file(path)
        assert config.unknown == [] and config["broker.id"] > 0


def test_cluster_up_and_down_with_an_existing_zookeeper(zookeeper, tmp_path):
    from conftest import metadata

    from headrace.devcluster import free_port_run

    base = free_port_run(2)

    def run(*a):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "headrace.cli",
                "cluster",
                *a,
                "--dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    up = run(
        "up",
        "--brokers",
        "2",
        "--zookeeper",
        f"{zookeeper.connect}/cli-{base}",
        "--base-port",
        str(base),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"bootstrap servers 127.0.0.1:{base},127.0.0.1:{base + 1}" in up.stdout
    assert [b["node_id"] for b in metadata(base)["brokers"]] == [1, 2]
    again = run("up", "--brokers", "2", "--zookeeper", zookeeper.connect)
    assert again.returncode == 1 and "already running" in again.stderr
    down = run("down")
    assert down.returncode == 0 and "stopped 2 processes" in down.stdout
    for i in (1, 2):
        assert (tmp_path / f"broker-{i}-logs" / ".clean-shutdown").exists()
        assert "stopped cleanly" in (tmp_path / f"broker-{i}.out").read_text()
