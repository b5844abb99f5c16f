"""CreatePartitions: more partitions for a topic, checked and placed as Kafka does
(``AdminZkClient.addPartitions``), then written to the topic's placement node.

    >>> new_partitions(3, 5, None, {0: [1, 2], 1: [2, 3], 2: [3, 1]}, [1, 2, 3])
    {3: [1, 3], 4: [2, 1]}

Without assignments the new partitions are placed by Kafka's rack-unaware assignment
(``election.assign_replicas``) starting where partition 0's first replica stands among the
sorted brokers, at partition id ``current``, so the topic reads as if it had been created
with the larger count.  Explicit assignments are checked: one per new partition, known
brokers, no duplicates, the topic's replication factor.  The controller sees the grown
placement through its watch and gives the new partitions their first states; brokers then
lead and follow them as they do any partition.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from kazoo.exceptions import BadVersionError

from .election import InvalidReplicationFactor, assign_replicas
from .protocol import errors
from .protocol import zookeeper as layout

MAX_PARTITIONS_PER_TOPIC = 10_000  # keeps the placement znode well under ZooKeeper's 1 MB


def new_partitions(
    current: int,
    count: int,
    assignments: Sequence[Sequence[int]] | None,
    placement: Mapping[int, Sequence[int]],
    brokers: Collection[int],
) -> dict[int, list[int]]:
    """The partitions to add to a topic of ``current`` partitions (``placement``) to reach
    ``count``: each new partition id -> its replicas.  Raises INVALID_PARTITIONS,
    INVALID_REPLICA_ASSIGNMENT or INVALID_REPLICATION_FACTOR with Kafka's messages."""
    if count < current:
        raise errors.InvalidPartitionsError(
            f"Topic currently has {current} partitions, which is higher than the requested {count}."
        )
    if count == current:
        raise errors.InvalidPartitionsError(f"Topic already has {current} partitions.")
    if count > MAX_PARTITIONS_PER_TOPIC:
        raise errors.InvalidPartitionsError(
            f"{count} partitions; at most {MAX_PARTITIONS_PER_TOPIC} per topic"
        )
    factor = len(placement[0]) if placement else 1
    added = count - current
    if assignments is None:
        ordered = sorted(brokers)
        first = placement[0][0] if placement else -1
        start = ordered.index(first) if first in ordered else -1
        try:
            return assign_replicas(added, factor, ordered, start, start_partition=current)
        except InvalidReplicationFactor as exc:
            raise errors.InvalidReplicationFactorError(str(exc)) from None
    if len(assignments) != added:
        raise errors.InvalidReplicaAssignmentError(
            f"Increasing the number of partitions by {added} but {len(assignments)} "
            "assignments provided."
        )
    result = {}
    for partition, ids in enumerate(assignments, start=current):
        ids = check_replicas(partition, ids, brokers)
        if len(ids) != factor:
            raise errors.InvalidReplicaAssignmentError(
                f"Inconsistent replication factor between partitions, partition 0 has "
                f"{factor} while partition {partition} has {len(ids)}."
            )
        result[partition] = ids
    return result


def check_replicas(partition: int, ids: Sequence[int], brokers: Collection[int]) -> list[int]:
    """One partition's replicas as a list, checked as Kafka checks an explicit assignment:
    at least one, no broker twice, every broker known (INVALID_REPLICA_ASSIGNMENT)."""
    ids = list(ids)
    if not ids:
        raise errors.InvalidReplicaAssignmentError(f"partition {partition} has no replicas")
    if len(set(ids)) != len(ids):
        raise errors.InvalidReplicaAssignmentError(
            f"Duplicate brokers not allowed in replica assignment: "
            f"{', '.join(map(str, ids))} for partition id {partition}."
        )
    unknown = [b for b in ids if b not in brokers]
    if unknown:
        raise errors.InvalidReplicaAssignmentError(
            f"Unknown broker(s) in replica assignment: {', '.join(map(str, unknown))}."
        )
    return ids


def add_partitions(client, topic: str, current: int, added: dict[int, list[int]], timeout: float):
    """Write the grown placement of ``topic`` (blocking, in a thread): a compare-and-set of
    its placement node, which must still hold ``current`` partitions (else INVALID_PARTITIONS:
    someone else changed it meanwhile); the topic id is kept."""
    path = layout.topic_path(topic)
    data, stat = client.get_async(path).get(timeout=timeout)
    placement = layout.decode_topic(data, path)
    if len(placement.partitions) != current:
        raise errors.InvalidPartitionsError(
            f"Topic {topic} now has {len(placement.partitions)} partitions; ask again"
        )
    grown = layout.TopicPlacement({**placement.partitions, **added}, placement.topic_id)
    try:
        client.set_async(path, layout.encode_topic(grown), stat.version).get(timeout=timeout)
    except BadVersionError:
        raise errors.InvalidPartitionsError(
            f"Topic {topic}'s placement changed meanwhile; ask again"
        ) from None
