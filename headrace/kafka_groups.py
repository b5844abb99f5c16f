"""The consumer groups the brokers coordinate for Kafka clients, as tools see them: every
group named by ListGroups at each broker, one described by DescribeGroups at its coordinator,
and the partitions in a member's consumer-protocol assignment.  Blocking, over a
``ClusterClient``; used by ``headrace groups`` and the dashboard."""

from __future__ import annotations

import struct

from broker.protocol.errors import KafkaError
from broker.protocol.registry import ApiKey


def list_groups(cluster) -> dict[str, str]:
    """Groups that brokers coordinate for Kafka clients (ListGroups at every broker):
    name -> protocol type."""
    found = {}
    for node in list(cluster.brokers):
        try:
            body = cluster.request(node, ApiKey.LIST_GROUPS, {})
        except (KafkaError, OSError):
            continue
        for g in body["groups"]:
            found[g["group_id"]] = g["protocol_type"]
    return found


def describe_group(cluster, group: str) -> dict | None:
    """DescribeGroups at the group's coordinator (None if no broker knows the group)."""
    try:
        node = cluster.request(
            next(iter(cluster.brokers)), ApiKey.FIND_COORDINATOR, {"key": group, "key_type": 0}
        )
        if node["error_code"]:
            return None
        body = cluster.request(
            node["node_id"],
            ApiKey.DESCRIBE_GROUPS,
            {"groups": [group], "include_authorized_operations": False},
        )
    except (KafkaError, OSError, StopIteration):
        return None
    described = body["groups"][0]
    return None if described["error_code"] or described["group_state"] == "Dead" else described


def assigned_partitions(assignment: bytes) -> list[tuple[str, int]]:
    """The partitions in a consumer-protocol assignment (any version: the fields we read
    come first)."""
    out = []
    try:
        pos = 2  # version
        (topics,) = struct.unpack_from(">i", assignment, pos)
        pos += 4
        for _ in range(max(topics, 0)):
            (n,) = struct.unpack_from(">h", assignment, pos)
            topic = assignment[pos + 2 : pos + 2 + n].decode()
            pos += 2 + n
            (count,) = struct.unpack_from(">i", assignment, pos)
            pos += 4
            for _ in range(max(count, 0)):
                out.append((topic, struct.unpack_from(">i", assignment, pos)[0]))
                pos += 4
    except (struct.error, UnicodeDecodeError):
        pass
    return out
