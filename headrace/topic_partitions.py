"""``headrace topics alter --topic T --partitions N``: more partitions for a topic, through
CreatePartitions (placed by the brokers as Kafka places them; never fewer)."""

from __future__ import annotations

from broker.protocol.registry import ApiKey


def alter_partitions(conn, topic: str, count: int, report) -> int:
    """Ask for ``count`` partitions of ``topic`` over ``conn``; ``report(code, message,
    success)`` prints the outcome and gives the exit status."""
    body = conn.request(
        ApiKey.CREATE_PARTITIONS,
        {
            "topics": [{"name": topic, "count": count, "assignments": None}],
            "timeout_ms": 30000,
            "validate_only": False,
        },
    )
    [result] = body["results"]
    return report(
        result["error_code"], result["error_message"], f"topic {topic} now has {count} partitions"
    )
