"""Helpers of the admin API tests: a confluent-kafka AdminClient for a test cluster, the
error code a future of one fails with, and raw admin requests over our own connection."""

from __future__ import annotations

from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection


def confluent_admin(cluster):
    """A confluent-kafka AdminClient bootstrapped from ``cluster``."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def error_code(future) -> int:
    """The Kafka error code ``future`` (of a confluent-kafka admin call) fails with, or 0."""
    from confluent_kafka import KafkaException

    try:
        future.result(timeout=30)
    except KafkaException as exc:
        return exc.args[0].code()
    return 0


def request(port: int, key: ApiKey, body: dict, version: int | None = None) -> dict:
    """One request to the broker on ``port`` over our connection; its response body."""
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        return conn.request(key, body, version=version)
