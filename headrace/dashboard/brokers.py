"""Blocking requests the dashboard's samplers send to the brokers (in a thread, never on the
reactor): end and start offsets by ListOffsets to each partition's leader, log sizes by
DescribeLogDirs to every live broker, and the brokers' own consumer groups.  A broker that
does not answer leaves its values out (the views show null), it never stops the others.
"""

from __future__ import annotations

import logging

from broker.protocol.errors import KafkaError
from broker.protocol.records import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from broker.protocol.registry import ApiKey
from consumers.cluster import list_offsets_body

from ..kafka_groups import assigned_partitions, describe_group, list_groups

log = logging.getLogger(__name__)

__all__ = ["list_offsets", "log_sizes", "protocol_groups"]


def _list_offsets_at(cluster, leader: int, partitions: list[tuple[str, int]], timestamp: int):
    body = cluster.request(leader, ApiKey.LIST_OFFSETS, list_offsets_body(partitions, timestamp))
    return {
        (t["name"], p["partition_index"]): p["offset"]
        for t in body["topics"]
        for p in t["partitions"]
        if p["error_code"] == 0
    }


def list_offsets(cluster, leaders: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple]:
    """(log start offset, log end offset) of each partition, asked of its ``leaders`` (one
    request per leader and kind); partitions whose leader failed to answer are left out.
    The end is what consumers can read (the high watermark)."""
    by_leader: dict[int, list[tuple[str, int]]] = {}
    for key, leader in leaders.items():
        if leader >= 0:
            by_leader.setdefault(leader, []).append(key)
    found = {}
    for leader, partitions in sorted(by_leader.items()):
        try:
            ends = _list_offsets_at(cluster, leader, partitions, LATEST_TIMESTAMP)
            starts = _list_offsets_at(cluster, leader, partitions, EARLIEST_TIMESTAMP)
        except (KafkaError, OSError, ValueError) as exc:
            log.debug("ListOffsets to broker %d failed: %r", leader, exc)
            continue
        for key, end in ends.items():
            found[key] = (starts.get(key), end)
    return found


def log_sizes(cluster, brokers) -> dict[tuple[int, str, int], int]:
    """DescribeLogDirs at each of ``brokers`` (ids): the size in bytes of every partition's
    log each holds, keyed by (broker, topic, partition)."""
    found = {}
    for broker in sorted(brokers):
        try:
            body = cluster.request(broker, ApiKey.DESCRIBE_LOG_DIRS, {"topics": None})
        except (KafkaError, OSError, ValueError) as exc:
            log.debug("DescribeLogDirs to broker %d failed: %r", broker, exc)
            continue
        for result in body["results"]:
            if result["error_code"]:
                continue
            for t in result["topics"]:
                for p in t["partitions"]:
                    if not p["is_future_key"]:
                        found[(broker, t["name"], p["partition_index"])] = p["partition_size"]
    return found


def protocol_groups(cluster) -> dict[str, dict]:
    """The groups the brokers coordinate for Kafka clients: name -> {"state", "members":
    [{"id", "host"}], "owners": {(topic, partition): member id}}."""
    found = {}
    for name in sorted(list_groups(cluster)):
        described = describe_group(cluster, name)
        if described is None:
            continue
        members, owners = [], {}
        for m in described["members"]:
            members.append({"id": m["member_id"], "host": m["client_host"] or None})
            for tp in assigned_partitions(m["member_assignment"]):
                owners[tp] = m["member_id"]
        found[name] = {"state": described["group_state"], "members": members, "owners": owners}
    return found
