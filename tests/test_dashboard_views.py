"""The dashboard's pure parts: windowed counts, the tail's start and message fields, rates
and histories, and the cluster and topic views built from a ZooKeeper layout."""

from __future__ import annotations

import itertools
import json

import pytest

from broker.protocol.zookeeper import BrokerRegistration, PartitionState, TopicPlacement
from consumers.consumer import Message
from consumers.feeds import (
    BadStart,
    Start,
    WindowedCounter,
    bucket_starts,
    field_value,
    label,
    message_fields,
    parse_start,
)
from headrace.dashboard.history import Histories, Rates
from headrace.dashboard.views import GroupsView, TopicsView, cluster_view, member_host
from headrace.dashboard.zkread import ClusterLayout, GroupNodes

NOW = 1_796_652_000_000  # 2026-12-07T14:00:00Z


@pytest.mark.parametrize(
    "value, classes, expected",
    [
        (503, True, "5xx"),
        ("404", True, "4xx"),
        (200.0, False, "200"),
        ("GET", True, "GET"),
        (True, True, "true"),
        (None, True, "null"),
        ({"b": 1, "a": 2}, False, '{"a":2,"b":1}'),
    ],
)
def test_labels(value, classes, expected):
    assert label(value, classes) == expected


def test_field_value_follows_dotted_paths():
    doc = {"http": {"status": 500}, "ok": 1}
    assert field_value(doc, "http.status") == 500 and field_value(doc, "ok") == 1
    assert field_value(doc, "http.method") is None and field_value([1], "x") is None


def test_buckets_end_with_the_one_holding_now():
    starts = bucket_starts(NOW + 61_500, 600, 60)
    assert len(starts) == 10 and starts[-1] == NOW + 60_000
    assert all(b - a == 60_000 for a, b in itertools.pairwise(starts))


def test_windowed_counts_by_event_time_class_and_lateness():
    counter = WindowedCounter("http.status", 600, time_field="ts", classes=True)
    for _ in range(10):
        counter.add(
            json.dumps({"http": {"status": 502}, "ts": NOW / 1000 - 125}).encode(), NOW, NOW
        )
    counter.add(b'{"http": {"status": 200}, "ts": "2026-12-07T13:59:30Z"}', NOW, NOW)
    counter.add(b"not json", NOW - 5_000, NOW)  # no field: null, at its message time
    counter.add(b'{"http": {"status": 200}}', NOW - 1_000, NOW)  # no ts: its message time
    counter.add(json.dumps({"http": {"status": 500}, "ts": NOW / 1000 - 3600}).encode(), NOW, NOW)
    window = counter.snapshot(NOW + 1, 600, 60)
    assert window["totals"] == {"2xx": 2, "5xx": 10, "null": 1}
    assert window["events"] == 13 and window["late"] == 1 and counter.read == 14
    buckets = window["buckets"]
    assert window["series"]["5xx"][buckets.index(NOW - 180_000)] == 10
    assert window["series"]["2xx"][buckets.index(NOW - 60_000)] == 2
    shorter = counter.snapshot(NOW + 1, 60, 10)  # a shorter window over the same counts
    assert shorter["totals"] == {"2xx": 2, "null": 1} and len(shorter["buckets"]) == 6
    later = counter.snapshot(NOW + 600_000, 600, 60)  # everything has left the window
    assert later["series"] == {} and later["events"] == 0
    counter.reset(1200)
    assert counter.snapshot(NOW, 1200, 60)["events"] == 0 and counter.window_s == 1200


@pytest.mark.parametrize(
    "text, start",
    [
        (None, Start("latest")),
        ("earliest", Start("earliest")),
        ("42", Start("offset", 42)),
        ("2026-12-07T14:00:00Z", Start("time", NOW)),
        ("2026-12-07T15:00:00+01:00", Start("time", NOW)),
        ("positions:0=17,3=40", Start("positions", positions={0: 17, 3: 40})),
    ],
)
def test_tail_starts(text, start):
    assert parse_start(text) == start


@pytest.mark.parametrize(
    "text",
    ["yesterday", "-3", "positions:0", "positions:a=1", "12:00", "\u00b2", "positions:\u00b2=1"],
)
def test_bad_tail_starts(text):
    with pytest.raises(BadStart, match="from="):
        parse_start(text)


def test_message_fields_show_text_json_and_escaped_bytes():
    message = Message("t", 1, 7, NOW, b"\xffk", b'{"a": [1]}', (("h", b"v"), ("n", None)))
    assert message_fields(message) == {
        "topic": "t",
        "partition": 1,
        "offset": 7,
        "timestamp": NOW,
        "key": "\\xffk",
        "value": '{"a": [1]}',
        "json": {"a": [1]},
        "headers": [["h", "v"], ["n", None]],
    }
    assert message_fields(message._replace(value=b"42"))["json"] is None  # not an object
    assert message_fields(message._replace(value=None))["value"] is None


def test_rates_never_go_negative_and_span_gaps():
    rates = Rates()
    assert rates.update("p", 1.0, 100) is None
    assert rates.update("p", 2.0, 300) == 200.0
    assert rates.update("p", 3.0, None) is None  # unknown: the last sample is kept
    assert rates.update("p", 4.0, 500) == 100.0
    assert rates.update("p", 5.0, 50) == 0.0  # retention cut the log
    history = Histories(3)
    for t in range(5):
        samples = history.add("x", {"t": t})
    assert [s["t"] for s in samples] == [2, 3, 4]


def layout_of_three_brokers() -> ClusterLayout:
    layout = ClusterLayout(cluster_id="c", controller=1)
    layout.brokers = {1: BrokerRegistration("h1", 9092), 3: BrokerRegistration("h3", 9094)}
    layout.topics = {"web": TopicPlacement({0: [1, 2, 3], 1: [2, 3, 1]}, "id")}
    layout.states = {
        ("web", 0): PartitionState(1, 4, (1, 3), 2),
        ("web", 1): PartitionState(-1, 5, (2,), 2),
    }
    layout.configs = {"web": {"retention.ms": "60000", "cleanup.policy": "compact"}}
    return layout


def test_cluster_view_keeps_a_dead_broker_listed_and_counts_partitions():
    known = {2: BrokerRegistration("h2", 9093)}
    view = cluster_view(layout_of_three_brokers(), known, {"connect": "z", "state": "lost"}, NOW)
    by_id = {b["id"]: b for b in view["brokers"]}
    assert by_id[2]["up"] is False and (by_id[2]["host"], by_id[2]["port"]) == ("h2", 9093)
    assert by_id[1]["controller"] and by_id[1]["leader_partitions"] == 1
    assert by_id[1]["under_replicated"] == 1 and by_id[3]["replica_partitions"] == 2
    assert view["partitions"] == {"total": 2, "offline": 1, "under_replicated": 1}
    assert view["zookeeper"]["state"] == "lost"


def test_topics_view_rates_sizes_and_nulls():
    view = TopicsView(history_s=2)
    layout = layout_of_three_brokers()
    first = view.build(layout, {("web", 0): (0, 100)}, {(1, "web", 0): 1000}, NOW)
    second = view.build(layout, {("web", 0): (0, 150)}, {(1, "web", 0): 1800}, NOW + 2000)
    [topic] = second["topics"]
    assert topic["messages_per_s"] == 25.0 and topic["bytes_per_s"] == 400.0
    assert topic["size_bytes"] == 1800 and topic["end_offset_total"] == 150
    assert topic["retention_ms"] == 60_000 and topic["retention_bytes"] is None
    assert topic["cleanup_policy"] == "compact" and topic["replication_factor"] == 3
    p0, p1 = topic["partition_detail"]
    assert p0["offline"] == [2] and p0["leader_epoch"] == 4
    assert p1["leader"] == -1 and p1["log_end_offset"] is None and p1["size_bytes"] is None
    assert p1["messages_per_s"] == 0.0 and p1["bytes_per_s"] is None
    assert len(topic["history"]) == 2 and first["topics"][0]["history"][0]["t"] == NOW


def test_groups_view_of_three_kinds():
    nodes = {
        "paper": GroupNodes(
            "paper",
            "zookeeper",
            {"paper_web-1-42-abc": ("web",)},
            {("web", 0): 90},
            {("web", 0): "paper_web-1-42-abc"},
        ),
        "wh": GroupNodes(
            "wh",
            "loader",
            {},
            {("web", 0): 100},
            {},
            {"finished_at": NOW, "rows": 5, "dead_letters": 0, "files": 1, "seconds": 1.5},
        ),
    }
    protocol = {
        "kc": {
            "state": "Stable",
            "members": [{"id": "m1", "host": "/1.2.3.4"}],
            "owners": {("web", 0): "m1"},
        }
    }
    loaders = {"wh": {"warehouse": "file:///w", "success_hours": ["2026-12-07T13"]}}
    view = GroupsView().build(nodes, protocol, {("web", 0): 100}, loaders, NOW)
    by_name = {g["name"]: g for g in view["groups"]}
    paper = by_name["paper"]
    assert paper["state"] == "Stable" and paper["lag"] == 10
    assert paper["members"] == [{"id": "paper_web-1-42-abc", "host": "web-1"}]
    assert paper["lag_history"] == [{"t": NOW, "lag": 10}] and paper["loader"] is None
    kafka = by_name["kc"]
    assert (
        kafka["kind"] == "kafka"
        and kafka["lag"] is None
        and kafka["partitions"][0]["owner"] == "m1"
    )
    loader = by_name["wh"]
    assert loader["state"] == "Idle" and loader["lag"] == 0
    assert (
        loader["loader"]["last_run"]["rows"] == 5 and loader["loader"]["warehouse"] == "file:///w"
    )
    assert member_host("g", "other") is None
