"""DescribeCluster and DescribeProducers, two APIs that only describe (KIP-700, KIP-664).

    >>> ClusterHandlers(request_handlers).table[ApiKey.DESCRIBE_CLUSTER](body, 1)

- **DescribeCluster** answers the cluster id, the controller and the live brokers with their
  racks, as Metadata does; the cluster's authorized operations only when asked (there is no
  authorizer yet, so, as Kafka without one, every operation a cluster has). Asked for the
  controllers (v1 endpoint type 2) it answers MISMATCHED_ENDPOINT_TYPE, for an unknown type
  UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker does.
- **DescribeProducers** answers, at each partition's leader, the idempotent producers its
  producer state holds: id, epoch, last sequence and the time of their last append; without
  transactions the coordinator epoch and transaction start offset are always -1.
"""

from __future__ import annotations

from .protocol import errors
from .protocol.cluster_apis import (
    CLUSTER_OPERATIONS,
    ENDPOINT_BROKERS,
    ENDPOINT_CONTROLLERS,
)
from .protocol.errors import NONE, KafkaError
from .protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from .protocol.registry import ApiKey


class ClusterHandlers:
    """DescribeCluster and DescribeProducers over a broker's ``RequestHandlers``."""

    def __init__(self, broker):
        self.broker = broker
        self.metadata = broker.metadata
        self.table = {
            ApiKey.DESCRIBE_CLUSTER: self.describe_cluster,
            ApiKey.DESCRIBE_PRODUCERS: self.describe_producers,
        }

    def describe_cluster(self, body, version, listener: str = "PLAINTEXT"):
        answer = {"throttle_time_ms": 0, "error_code": NONE, "error_message": None}
        answer |= {"endpoint_type": ENDPOINT_BROKERS, "cluster_id": "", "brokers": []}
        answer |= {
            "controller_id": -1,
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        }
        asked = body.get("endpoint_type", ENDPOINT_BROKERS)
        if asked != ENDPOINT_BROKERS:  # only v1 can ask: v0 reads as brokers
            if asked == ENDPOINT_CONTROLLERS:
                error = errors.MismatchedEndpointTypeError
                message = "The request was sent to an endpoint of type BROKER, "
                message += "but we wanted an endpoint of type CONTROLLER"
            else:
                error = errors.UnsupportedEndpointTypeError
                message = f"Unsupported endpoint type {asked}"
            return answer | {"error_code": error.code, "error_message": message}
        answer["brokers"] = [
            {"broker_id": b.node_id, "host": host, "port": port, "rack": b.rack}
            for b, host, port in self.metadata.brokers_on(listener)
        ]
        controller = self.broker._controller_id()
        answer["controller_id"] = controller if controller in self.metadata.brokers else -1
        answer["cluster_id"] = self.metadata.cluster_id or ""
        if body["include_cluster_authorized_operations"]:
            answer["cluster_authorized_operations"] = CLUSTER_OPERATIONS
        return answer

    def describe_producers(self, body, version):
        topics = []
        for topic in body["topics"]:
            partitions = []
            for index in topic["partition_indexes"]:
                entry = {"partition_index": index, "error_code": NONE, "error_message": None}
                try:
                    plog = self.broker._local_log(topic["name"], index)
                    entry["active_producers"] = active_producers(plog.producer_state)
                except KafkaError as exc:
                    entry |= {"error_code": exc.code, "error_message": str(exc.args[0])}
                    entry["active_producers"] = []
                partitions.append(entry)
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"throttle_time_ms": 0, "topics": topics}


def active_producers(state) -> list[dict]:
    """The DescribeProducers entries of a partition's ``ProducerStateTable``, by id."""
    return [
        {
            "producer_id": pid,
            "producer_epoch": entry.epoch,
            "last_sequence": entry.last_seq,
            "last_timestamp": entry.last_ms,
            "coordinator_epoch": -1,
            "current_txn_start_offset": -1,
        }
        for pid, entry in sorted(list(state.producers.items()))
    ]


__all__ = ["ClusterHandlers", "active_producers"]
