"""The headrace command: the storage demo and dump-log."""

from __future__ import annotations

import subprocess
import sys

from headrace.cli import main


def test_demo_appends_reads_crashes_and_recovers(tmp_path, capsys):
    assert main(["--log-level", "WARNING", "storage-demo", "--log-dir", str(tmp_path), "--messages", "3000"]) == 0
    out = capsys.readouterr().out
    assert "appended 3,000 log lines" in out and "read back 3,000" in out and "demo passed" in out


def test_dump_log_lists_batches_and_flags_corruption(tmp_path, capsys):
    main(["--log-level", "WARNING", "storage-demo", "--log-dir", str(tmp_path), "--messages", "1500"])
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


def test_console_script_reports_errors_cleanly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "dump-log", str(tmp_path / "nope.log")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "No such file" in result.stderr and "Traceback" not in result.stderr


def test_pipeline_demo_ships_kills_restarts_and_loses_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "--log-level", "WARNING", "demo", "--messages",
         "20000", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300,
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
    run = lambda *a: subprocess.run([sys.executable, "-m", "headrace.cli", "cluster", *a,  # noqa: E731
                                     "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    up = run("up", "--brokers", "2", "--zookeeper", f"{zookeeper.connect}/cli-{base}",
             "--base-port", str(base))
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
