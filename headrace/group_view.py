"""``headrace groups list|describe`` over the Kafka APIs alone, for a cluster reached by
``--bootstrap-server`` without our ZooKeeper (any Kafka cluster, or a mirror reading one):
ListGroups at every broker, DescribeGroups and OffsetFetch at the group's coordinator,
ListOffsets at the leaders.  Also the partition table ``describe`` prints in both modes,
where partitions of subscribed topics that have no committed offset yet have a row too."""

from __future__ import annotations

import sys
from collections.abc import Callable

from broker.protocol.consumer_protocol import decode_subscription
from broker.protocol.errors import KafkaError, error_for_code
from broker.protocol.registry import ApiKey
from broker.protocol.schema import ProtocolError

from .kafka_groups import assigned_partitions, describe_group, list_groups

NO_COMMIT_NOTE = (
    "COMMITTED -: no offset committed yet; its LAG is what the partition holds (end - log "
    "start), all a member starting from the earliest offset would read"
)


def subscribed_topics(described: dict | None) -> set[str]:
    """The topics a Kafka consumer group's members subscribe to (their JoinGroup metadata
    in DescribeGroups); none for another protocol type."""
    if described is None or described.get("protocol_type") not in ("consumer", ""):
        return set()
    topics: set[str] = set()
    for member in described["members"]:
        try:
            topics.update(decode_subscription(member["member_metadata"] or b"").topics)
        except (ProtocolError, ValueError):
            continue
    return topics


def coordinator(cluster, group: str) -> int:
    """The node id of ``group``'s coordinator (FindCoordinator at any broker)."""
    answer = cluster.request(
        next(iter(sorted(cluster.brokers))), ApiKey.FIND_COORDINATOR, {"key": group, "key_type": 0}
    )
    if answer["error_code"]:
        raise error_for_code(answer["error_code"])(f"FindCoordinator {group}")
    return answer["node_id"]


def committed_offsets(cluster, group: str) -> dict[tuple[str, int], int]:
    """Every committed offset of ``group`` (OffsetFetch of all topics at its coordinator)."""
    answer = cluster.request(
        coordinator(cluster, group),
        ApiKey.OFFSET_FETCH,
        {"group_id": group, "topics": None},
        version=5,
    )
    if answer.get("error_code"):
        raise error_for_code(answer["error_code"])(f"OffsetFetch {group}")
    return {
        (t["name"], p["partition_index"]): p["committed_offset"]
        for t in answer["topics"]
        for p in t["partitions"]
        if not p["error_code"] and p["committed_offset"] >= 0
    }


def print_partitions(
    cluster,
    committed: dict[tuple[str, int], int],
    subscribed: set[str],
    owner_of: Callable[[str, int], str],
) -> None:
    """One row per partition with a committed offset, and per partition of a subscribed
    topic without one (COMMITTED ``-``, LAG end - log start, and a note under the table)."""
    rows = set(committed)
    if subscribed:
        try:
            cluster.refresh(sorted(subscribed), allow_auto_create=False)
        except (KafkaError, OSError):
            pass
        for topic in subscribed:
            rows.update((topic, p) for p in cluster.topics.get(topic, {}))
    print(f"{'TOPIC':<24} {'PARTITION':>9} {'COMMITTED':>12} {'END':>12} {'LAG':>10}  OWNER")
    refreshed: set[str] = set(subscribed)
    uncommitted = False
    for topic, p in sorted(rows):
        if topic not in refreshed:
            refreshed.add(topic)
            try:
                cluster.refresh([topic], allow_auto_create=False)
            except (KafkaError, OSError):
                pass
        offset = committed.get((topic, p))
        try:
            end = cluster.list_offset(topic, p, -1)
            start = end if offset is not None else cluster.list_offset(topic, p, -2)
            lag = str(max(0, end - (offset if offset is not None else start)))
        except (KafkaError, OSError):
            end, lag = "?", "?"
        uncommitted = uncommitted or offset is None
        shown = "-" if offset is None else offset
        print(f"{topic:<24} {p:>9} {shown!s:>12} {end!s:>12} {lag:>10}  {owner_of(topic, p)}")
    if uncommitted:
        print(NO_COMMIT_NOTE)


def _owners(described: dict | None) -> dict[tuple[str, int], str]:
    owners = {}
    for m in described["members"] if described is not None else []:
        for tp in assigned_partitions(m["member_assignment"]):
            owners[tp] = f"{m['client_id']} {m['client_host']}"
    return owners


def print_kafka_group(described: dict, kind: str) -> dict[tuple[str, int], str]:
    """The heading line of a group the brokers coordinate; its owners by partition."""
    print(
        f"GROUP {described['group_id']}: kind {kind}, {described['group_state']}, protocol "
        f"{described['protocol_data'] or '-'}, {len(described['members'])} members"
    )
    return _owners(described)


def groups_by_bootstrap(args) -> int:
    """``headrace groups list|describe`` without ``--zookeeper``."""
    from consumers.cluster import ClusterClient

    if args.reset_offsets or args.action == "delete":
        what = "--reset-offsets" if args.reset_offsets else "delete"
        print(
            f"headrace groups: {what} needs --zookeeper (the groups' offsets are written there)",
            file=sys.stderr,
        )
        return 2
    if args.action is None:
        print("headrace groups: say list, describe G, delete G or --reset-offsets", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap_server or "127.0.0.1:9092"
    cluster = ClusterClient(bootstrap, client_id="headrace-groups", security=args.security)
    try:
        try:
            cluster.refresh([], allow_auto_create=False)
        except (KafkaError, OSError) as exc:
            print(
                f"headrace groups: cannot reach the brokers at {bootstrap}: {exc}", file=sys.stderr
            )
            return 1
        if args.action == "list":
            print(f"{'GROUP':<32} KIND")
            for name, protocol in sorted(list_groups(cluster).items()):
                print(f"{name:<32} {f'kafka ({protocol})' if protocol else 'kafka'}")
            return 0
        if not args.group:
            print(f"headrace groups {args.action}: name the group", file=sys.stderr)
            return 2
        group = args.group
        described = describe_group(cluster, group)
        try:
            committed = committed_offsets(cluster, group)
        except (KafkaError, OSError) as exc:
            print(f"headrace groups: the offsets of {group}: {exc}", file=sys.stderr)
            return 1
        if described is None and not committed:
            print(f"headrace groups: no group {group}", file=sys.stderr)
            return 1
        if described is not None:
            owners = print_kafka_group(described, "kafka")
        else:
            owners = {}
            print(f"GROUP {group}: offsets only (no live members)")
        print_partitions(
            cluster, committed, subscribed_topics(described), lambda t, p: owners.get((t, p), "-")
        )
        return 0
    finally:
        cluster.close()
