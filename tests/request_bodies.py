"""Produce and Fetch request bodies for tests that speak to a broker with ``BrokerConnection``:
one partition's batch in, one partition's answer out; a consumer joining a group."""

from __future__ import annotations

from broker.protocol.registry import ApiKey


def produce_body(topic: str, partition: int, records: bytes, acks=1, timeout_ms=5000) -> dict:
    """A Produce request body carrying ``records`` (one or more batches) to one partition."""
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": timeout_ms,
        "topic_data": [
            {"name": topic, "partition_data": [{"index": partition, "records": records}]}
        ],
    }


def produce_to(conn, topic: str, partition: int, records: bytes, version=None, **options) -> dict:
    """Produce ``records`` to one partition (``options``: ``acks``, ``timeout_ms``) and return
    that partition's response."""
    body = produce_body(topic, partition, records, **options)
    response = conn.request(ApiKey.PRODUCE, body, version=version)
    return response["responses"][0]["partition_responses"][0]


def fetch_body(
    partitions, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, partition_max_bytes=1 << 20
) -> dict:
    """A Fetch request body (read committed) for ``partitions``: (topic, partition, offset)."""
    topics: dict[str, list[dict]] = {}
    for topic, partition, offset in partitions:
        topics.setdefault(topic, []).append(
            {
                "partition": partition,
                "current_leader_epoch": -1,
                "fetch_offset": offset,
                "log_start_offset": -1,
                "partition_max_bytes": partition_max_bytes,
            }
        )
    return {
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "isolation_level": 1,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def join_group_body(group: str, metadata: bytes = b"") -> dict:
    """A JoinGroup request body of a new consumer-protocol member offering the range assignor
    with ``metadata``; 10 s session and rebalance timeouts."""
    return {
        "group_id": group,
        "session_timeout_ms": 10000,
        "rebalance_timeout_ms": 10000,
        "member_id": "",
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": metadata}],
    }


def offset_commit_body(group: str, topic: str, offset: int, partition: int = 0) -> dict:
    """An OffsetCommit request body of a member outside any generation (as a standalone
    consumer commits): ``offset`` for one partition of ``topic``."""
    return {
        "group_id": group,
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "group_instance_id": None,
        "retention_time_ms": -1,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {
                        "partition_index": partition,
                        "committed_offset": offset,
                        "committed_metadata": "",
                    }
                ],
            }
        ],
    }
