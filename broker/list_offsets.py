"""ListOffsets: per partition, the offset of the first record at or after a timestamp, the log
start (-2, earliest), the latest offset (-1), or (-3, v7's MAX_TIMESTAMP, KIP-734) the offset
and timestamp of the record with the largest timestamp - the first such record, found as the
first at or after the largest timestamp any segment holds.

    >>> list_offsets(body, local_log, replicas)    # the response body

As Kafka's ``Partition.fetchOffsetForTimestamp``: a consumer (``replica_id`` < 0, either
isolation level, as there are no transactions) sees only up to the high watermark, so latest
is the high watermark and an offset found by timestamp at or above it is not answered (offset
and timestamp -1, as when no record is that recent).  A replica or a debugging client
(``replica_id`` >= 0) reads to the log end.  Errors in one partition become its error code.
"""

from __future__ import annotations

from .protocol.errors import NONE, KafkaError

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3


def list_offsets(body: dict, local_log, replicas) -> dict:
    """The ListOffsets response for ``body``: ``local_log(topic, partition, epoch)`` is the log
    of a partition this broker leads (or raises), ``replicas`` the ``ReplicaManager``."""
    consumer = body["replica_id"] < 0
    topics = []
    for topic_data in body["topics"]:
        topic = topic_data["name"]
        partitions = []
        for p in topic_data["partitions"]:
            index, timestamp = p["partition_index"], p["timestamp"]
            entry = {
                "partition_index": index,
                "error_code": NONE,
                "timestamp": -1,
                "offset": -1,
                "leader_epoch": 0,
            }
            try:
                plog = local_log(topic, index, p["current_leader_epoch"])
                found = _lookup(plog, topic, index, timestamp, consumer, replicas)
                if found is not None:
                    entry["offset"], entry["timestamp"] = found
                entry["leader_epoch"] = replicas.epoch_at(plog, entry["offset"], timestamp)
            except KafkaError as exc:
                entry["error_code"] = exc.code
                entry["leader_epoch"] = -1
            partitions.append(entry)
        topics.append({"name": topic, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


def _lookup(plog, topic: str, index: int, timestamp: int, consumer: bool, replicas):
    """The (offset, timestamp) answered for ``timestamp``, or None if there is none."""
    if consumer and timestamp == LATEST_TIMESTAMP:
        return replicas.latest_for_consumers(topic, index, plog), -1
    if timestamp == MAX_TIMESTAMP:
        live = [s for s in plog.segments if s.next_offset > plog.log_start_offset]
        timestamp = max((s.max_timestamp for s in live), default=-1)
        if timestamp < 0:  # no record has a timestamp
            return None
    found = plog.offset_for_timestamp(timestamp)
    if consumer and found is not None and timestamp != EARLIEST_TIMESTAMP:
        # At or above the high watermark: not committed, so not a consumer's to read yet.
        return found if found[0] < replicas.high_watermark(topic, index, plog) else None
    return found


__all__ = ["list_offsets"]
