"""Metrics as deployed: ``headrace cluster up`` gives every broker a metrics page and says
where; ``deploy/grafana-dashboard.json`` is a Grafana dashboard whose every expression names
metrics that a live broker, loader and shipper export; ``deploy/prometheus.yml`` scrapes the
ports the example broker configurations serve."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from command_lines import HEADRACE, ROOT, kcat_produce, load_cmd
from conftest import create_topic, wait_for
from metrics_scrape import scrape
from request_bodies import produce_to
from test_loader_exactly_once import events
from test_metrics_clients import stopped

from broker.config import BrokerConfig
from broker.protocol.records import build_batch
from consumers.client import BrokerConnection
from headrace.devcluster import free_port

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
# The series each kind of family exports, by the suffix of their names.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


class UpCluster:
    """What ``headrace cluster up`` printed and the state file it left."""

    def __init__(self, directory, zookeeper: str):
        self.directory = directory
        self.up = self.run("up", "--brokers", "2", "--zookeeper", zookeeper, "--base-port", "0")
        assert self.up.returncode == 0, self.up.stdout + self.up.stderr
        self.state = json.loads((directory / "cluster.json").read_text())

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*HEADRACE, "cluster", *args, "--dir", str(self.directory)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def metrics_url(self, entry: dict) -> str:
        return f"http://127.0.0.1:{entry['metrics_port']}/metrics"


@pytest.fixture(scope="module")
def up(zookeeper, tmp_path_factory):
    directory = tmp_path_factory.mktemp("up")
    cluster = UpCluster(directory, f"{zookeeper.connect}/metrics-up")
    yield cluster
    down = cluster.run("down")
    assert down.returncode == 0, down.stderr


def test_cluster_up_gives_each_broker_a_metrics_port_and_prints_it(up):
    brokers = up.state["brokers"]
    ports = [b["metrics_port"] for b in brokers]
    assert len(set(ports)) == 2 and all(ports)
    pages = ", ".join(f"{b['id']} {up.metrics_url(b)}" for b in brokers)
    assert f"metrics of brokers {pages}" in up.up.stdout
    for entry in brokers:
        assert BrokerConfig.from_file(entry["config"])["metrics.port"] == entry["metrics_port"]
    controllers = [scrape(up.metrics_url(b))["headrace_controller_active"] for b in brokers]
    assert sorted(controllers) == [0, 1]


def exported(page) -> set[str]:
    """Every series name a page exports or would export once its families have samples."""
    names = set(page.names())
    for family in page.families.values():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def charted(chart: dict) -> set[str]:
    """The headrace series a chart's expressions name."""
    return {
        name
        for target in chart["targets"]
        for name in re.findall(r"\bheadrace_[a-z_]+\b", target["expr"])
    }


def test_the_grafana_dashboard_charts_only_metrics_that_are_exported(up, tmp_path):
    bootstrap = up.state["bootstrap"]
    first = up.state["brokers"][0]
    create_topic(first["port"], "charted", 2)
    with BrokerConnection("127.0.0.1", first["port"]) as conn:  # an error, so errors show
        produce_to(conn, "not-charted", 0, build_batch([(None, b"x")]))
    kcat_produce(bootstrap, "charted", events(20))
    log = tmp_path / "app.log"
    log.write_bytes(b"shipped\n" * 5)
    ship_port, load_port = free_port(), free_port()
    shipper = subprocess.Popen(
        [*HEADRACE, "ship", "--bootstrap-server", bootstrap, "--topic", "charted",
         "--from-beginning", "--state-file", str(tmp_path / "state.json"),
         "--metrics-port", str(ship_port), str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip

    class Connect:  # what load_cmd needs of a cluster
        zookeeper_connect = up.state["connect"]

    loader = subprocess.Popen(
        load_cmd(Connect, "charted", "charts", str(tmp_path / "wh"), "--follow",
                 "--metrics-port", str(load_port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        ship_url = f"http://127.0.0.1:{ship_port}/metrics"
        load_url = f"http://127.0.0.1:{load_port}/metrics"
        wait_for(lambda: scrape(ship_url)["headrace_shipper_lines_acked_total"] == 5, 30)
        wait_for(lambda: scrape(load_url)["headrace_loader_rows_total"] == 20, 60)
        pages = [scrape(up.metrics_url(b)) for b in up.state["brokers"]]
        pages += [scrape(ship_url), scrape(load_url)]
    finally:
        stopped(shipper)
        stopped(loader)
    live = set().union(*map(exported, pages))

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    assert dashboard["schemaVersion"] >= 36 and dashboard["title"]
    charts = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    named = set()
    for chart in charts:
        assert chart["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert chart["targets"], chart["title"]
        named.update(charted(chart))
    assert {n for n in named if not n.startswith("headrace_mirror_")} - live == set()
    for needed in (
        "headrace_messages_in_total",
        "headrace_request_seconds_bucket",
        "headrace_request_errors_total",
        "headrace_under_replicated_partitions",
        "headrace_loader_lag_messages",
        "headrace_shipper_lines_acked_total",
    ):
        assert needed in named


def test_the_prometheus_example_scrapes_the_example_brokers():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        "headrace-brokers",
        "headrace-loaders",
        "headrace-shippers",
        "headrace-mirrors",
        "headrace-schema-registries",
    }
    targets = jobs["headrace-brokers"]["static_configs"][0]["targets"]
    ports = [
        BrokerConfig.from_file(path)["metrics.port"]
        for path in sorted((ROOT / "deploy").glob("server-*.properties"))
    ]
    assert targets == [f"127.0.0.1:{port}" for port in ports]


def test_the_grafana_mirror_row_charts_what_a_live_mirror_exports(up, cluster1, tmp_path):
    """A mirror from ``cluster1`` into the ``cluster up`` cluster, scraped once it copied."""
    create_topic(cluster1.brokers[0].port, "mirror-charted", 1)
    kcat_produce(cluster1.bootstrap, "mirror-charted", events(10))
    port = free_port()
    mirror = subprocess.Popen(
        [*HEADRACE, "mirror", "--from-zookeeper", cluster1.zookeeper_connect,
         "--to-bootstrap-server", up.state["bootstrap"], "--include", "mirror-charted",
         "--group", "charted-mirror", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: scrape(url)["headrace_mirror_copied_total"] == 10, 60)
        live = exported(scrape(url))
    finally:
        stopped(mirror)
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    start = next(r["gridPos"]["y"] for r in rows if r["title"] == "Mirrors")
    charts = [p for p in dashboard["panels"] if p["type"] != "row" and p["gridPos"]["y"] > start]
    named = set().union(*map(charted, charts))
    assert named == {
        "headrace_mirror_copied_total",
        "headrace_mirror_lag",
        "headrace_mirror_partition_stopped",
        "headrace_mirror_topic_stopped",
    }
    assert named - live == set()
