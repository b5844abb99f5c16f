"""``headrace topics``: create, list, describe and delete topics over the Kafka protocol."""

from __future__ import annotations

import sys

from broker.protocol.errors import error_for_code
from broker.protocol.registry import ApiKey
from consumers.client import connect_any
from consumers.security import PLAINTEXT, ClientSecurity

from . import configs
from .topic_partitions import alter_partitions


def run(args) -> int:
    if args.action == "alter":
        return _alter(args)
    with connect_any(args.bootstrap_server, security=args.security) as conn:
        if args.action == "create":
            return _create(conn, args)
        if args.action == "delete":
            body = conn.request(
                ApiKey.DELETE_TOPICS, {"topic_names": [args.topic], "timeout_ms": 30000}
            )
            return _report(body["responses"][0]["error_code"], None, f"deleted topic {args.topic}")
        names = None if args.action == "list" or not args.topic else [{"name": args.topic}]
        body = conn.request(ApiKey.METADATA, {"topics": names, "allow_auto_topic_creation": False})
        topics = sorted(body["topics"], key=lambda t: t["name"])
        if args.action == "list":
            for topic in topics:
                print(topic["name"])
            return 0
        status = 0
        filtered = args.under_replicated_partitions or args.unavailable_partitions
        texts = {} if filtered else configs.topic_configs_texts(conn, [t["name"] for t in topics])
        for topic in topics:
            if topic["error_code"]:
                status = _report(topic["error_code"], None, "")
                continue
            partitions = sorted(topic["partitions"], key=lambda p: p["partition_index"])
            if not filtered:
                print(
                    f"Topic: {topic['name']}\tPartitionCount: {len(partitions)}"
                    "\tReplicationFactor: "
                    f"{len(partitions[0]['replica_nodes']) if partitions else 0}"
                    f"\tConfigs: {texts.get(topic['name'], '')}"
                )
            for p in partitions:
                if _shown(p, args):
                    print(partition_line(topic["name"], p))
        return status


def _alter(args) -> int:
    """``topics alter``: more partitions and config changes, the partitions first."""
    change_configs = bool(args.config or args.delete_config)
    if args.partitions is None and not change_configs:
        print(
            "headrace topics alter: say what to change "
            "(--partitions N, --config KEY=VALUE, --delete-config KEY)",
            file=sys.stderr,
        )
        return 2
    if args.partitions is not None:
        with connect_any(args.bootstrap_server, security=args.security) as conn:
            code = alter_partitions(conn, args.topic, args.partitions, _report)
        if code or not change_configs:
            return code
    return configs.run_topics_alter(args.bootstrap_server, args)


def _shown(partition: dict, args) -> bool:
    """Whether a partition passes describe's filters (kafka-topics' meanings): under-replicated
    is an ISR smaller than the replicas, unavailable a partition without a live leader."""
    if args.under_replicated_partitions and len(partition["isr_nodes"]) >= len(
        partition["replica_nodes"]
    ):
        return False
    return not (args.unavailable_partitions and partition["leader_id"] >= 0)


def partition_line(topic: str, p: dict) -> str:
    """One partition as kafka-topics describes it; a partition without a leader is offline."""
    leader = p["leader_id"] if p["leader_id"] >= 0 else "none (offline)"
    line = (
        f"\tTopic: {topic}\tPartition: {p['partition_index']}\tLeader: {leader}"
        f"\tReplicas: {_ids(p['replica_nodes'])}\tIsr: {_ids(p['isr_nodes'])}"
    )
    if p.get("offline_replicas"):
        line += f"\tOffline: {_ids(p['offline_replicas'])}"
    return line


def _ids(brokers) -> str:
    return ",".join(map(str, brokers))


def _create(conn, args) -> int:
    configs = []
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"headrace topics: --config {item!r} is not key=value", file=sys.stderr)
            return 2
        configs.append({"name": key.strip(), "value": value.strip()})
    body = conn.request(
        ApiKey.CREATE_TOPICS,
        {
            "topics": [
                {
                    "name": args.topic,
                    "num_partitions": args.partitions,
                    "replication_factor": args.replication_factor,
                    "assignments": [],
                    "configs": configs,
                }
            ],
            "timeout_ms": 30000,
            "validate_only": False,
        },
    )
    result = body["topics"][0]
    return _report(result["error_code"], result["error_message"], f"created topic {args.topic}")


def _report(code: int, message: str | None, success: str) -> int:
    if code == 0:
        if success:
            print(success)
        return 0
    error = error_for_code(code)
    print(f"headrace topics: {error.name}: {message or error.description}", file=sys.stderr)
    return 1


def create_topic_simple(
    bootstrap: str,
    name: str,
    partitions: int,
    configs: dict | None = None,
    replication_factor: int = -1,
    check: bool = True,
    security: ClientSecurity = PLAINTEXT,
) -> dict:
    """Create a topic (replication factor -1: the broker's default.replication.factor); its
    CreateTopics result. A refusal raises the matching KafkaError, or with ``check`` false is
    returned like a success."""
    with connect_any(bootstrap, security=security) as conn:
        body = conn.request(
            ApiKey.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": partitions,
                        "replication_factor": replication_factor,
                        "assignments": [],
                        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
                    }
                ],
                "timeout_ms": 30000,
                "validate_only": False,
            },
        )
    result = body["topics"][0]
    if check and result["error_code"]:
        raise error_for_code(result["error_code"])(result["error_message"])
    return result
