"""The Prometheus pages of ``headrace ship --metrics-port`` and ``headrace load --follow
--metrics-port``, scraped over HTTP and parsed with ``prometheus_client``'s parser: lines
shipped and rows loaded match exactly what the test wrote."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from command_lines import HEADRACE, kcat_produce, load_cmd
from conftest import create_topic, wait_for, zk_session
from metrics_scrape import scrape
from test_loader_exactly_once import events

from broker.protocol import zookeeper as layout
from headrace.devcluster import free_port


def stopped(proc: subprocess.Popen) -> str:
    """SIGTERM, wait, and the process's stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def test_shipper_counts_the_lines_and_bytes_it_shipped(cluster1, tmp_path):
    create_topic(cluster1.brokers[0].port, "shipped-metrics", 2)
    log = tmp_path / "app.log"
    lines = [b"line %d %s" % (i, b"x" * i) for i in range(40)]
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    ship = [
        *HEADRACE,
        "ship",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "shipped-metrics",
        "--from-beginning",
        "--state-file",
        str(tmp_path / "state.json"),
        "--metrics-port",
        str(port),
        str(log),
    ]
    proc = subprocess.Popen(ship, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    topic = {"topic": "shipped-metrics"}
    try:
        page = wait_for(
            lambda: (p := scrape(url))["headrace_shipper_lines_acked_total", topic] == 40 and p,
            30,
        )
        assert page["headrace_shipper_lines_sent_total", topic] == 40
        assert page["headrace_shipper_bytes_acked_total", topic] == sum(map(len, lines))
        assert page["headrace_shipper_lines_failed_total", topic] == 0
        assert page["headrace_shipper_files", topic] == 1
        with log.open("ab") as out:
            out.write(b"one more\n")
        page = wait_for(
            lambda: (p := scrape(url))["headrace_shipper_lines_acked_total", topic] == 41 and p,
            30,
        )
        page = wait_for(
            lambda: (p := scrape(url))["headrace_shipper_lag_bytes", topic] == 0 and p, 10
        )
        assert page["headrace_shipper_last_commit_timestamp_seconds", topic] > 0
    finally:
        err = stopped(proc)
    assert proc.returncode == 0, err


def test_a_metrics_port_in_use_is_a_one_line_error(cluster1, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *HEADRACE,
                "ship",
                "--bootstrap-server",
                cluster1.bootstrap,
                "--topic",
                "t",
                "--state-file",
                str(tmp_path / "state.json"),
                "--metrics-port",
                str(port),
                str(tmp_path / "none.log"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


def test_loader_counts_rows_dead_letters_files_and_lag(cluster1, tmp_path):
    topic, group = "loaded-metrics", "wh-metrics"
    create_topic(cluster1.brokers[0].port, topic, 2)
    kcat_produce(cluster1.bootstrap, topic, [*events(120), b"not json"])
    warehouse = tmp_path / "wh"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    command = load_cmd(
        cluster1, topic, group, str(warehouse), "--follow", "--interval", "0.5",
        "--metrics-port", str(port),
    )  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    labels = {"group": group, "topic": topic}
    try:
        page = wait_for(
            lambda: (p := scrape(url))["headrace_loader_rows_total", labels] == 120 and p, 60
        )
        assert page["headrace_loader_dead_letters_total", labels] == 1
        assert page["headrace_loader_failures_total", {"group": group}] == 0
        assert page["headrace_loader_last_commit_timestamp_seconds", {"group": group}] > 0
        kcat_produce(cluster1.bootstrap, topic, events(30, start=120))
        page = wait_for(
            lambda: (
                (p := scrape(url))["headrace_loader_rows_total", labels] == 150
                and p["headrace_loader_lag_messages", labels] == 0
                and p
            ),
            60,
        )
        files = [p for p in Path(warehouse).rglob("*.parquet")]
        assert page["headrace_loader_files_total", labels] == len(files) > 0
        assert page["headrace_loader_written_bytes_total", labels] == sum(
            f.stat().st_size for f in files
        )
        measured = [s.labels for s in page.samples if s.name == "headrace_loader_lag_messages"]
        assert sorted(m["partition"] for m in measured) == ["0", "1"]
        # The following loader records its run so far for the dashboard, while it runs.
        with zk_session(cluster1.zookeeper_connect) as zk:

            def recorded():
                data, _ = zk.get(layout.last_run_path(group))
                run = layout.decode_last_run(data)
                return run if run["rows"] == 150 else None

            run = wait_for(recorded, 30)
        assert proc.poll() is None
        assert (run["dead_letters"], run["files"]) == (1, len(files))
        assert run["warehouse"] == warehouse.as_uri()
    finally:
        stopped(proc)
