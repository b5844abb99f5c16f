"""Where a follower cuts its log before fetching from a leader (Kafka's KIP-101 and KIP-279),
and the OffsetForLeaderEpoch request it asks the leader with.  Pure: decisions over numbers
and a ``FollowerLog``; the request goes through a client handed in.

    >>> truncation_for(log, leader_epoch=4, leader_end_offset=120)
    Truncation(offset=120, complete=True)

The follower sends its latest epoch; the leader answers with the largest epoch it has that is
not above it and where that epoch ends in the leader's log.  Then:

- no answer for the epoch (``end_offset`` UNDEFINED): the leader knows no epoch this early;
  cut to the high watermark, the one offset known to be committed;
- an answer without an epoch (a leader that keeps none, KIP-101 only): cut to the smaller of
  the leader's end offset and our own log end;
- the follower knows the answered epoch: cut to the smaller of where it ends here and there;
- the follower has epochs but not that one (it missed the epoch the leader answered): cut to
  where our largest epoch below it ends, and ask again (``complete`` False), so diverging
  histories are found epoch by epoch;
- the follower knows no epoch at or below it: cut to the leader's end offset.

A log with no epochs at all, or a leader that does not serve OffsetForLeaderEpoch, cuts to
the high watermark (Kafka's ``truncateToHighWatermark``).
"""

from __future__ import annotations

from typing import NamedTuple

from ..protocol.registry import ApiKey, client_version
from .log import FollowerLog

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

# The version the follower asks OffsetForLeaderEpoch with (v3: the asker's replica id).
OFFSET_FOR_LEADER_EPOCH_VERSION = client_version(ApiKey.OFFSET_FOR_LEADER_EPOCH)


class Truncation(NamedTuple):
    """Cut the log to ``offset``; ``complete`` False means ask the leader again after."""

    offset: int
    complete: bool


class EpochEndOffset(NamedTuple):
    """One partition's answer to OffsetForLeaderEpoch."""

    error_code: int
    leader_epoch: int
    end_offset: int


def truncation_for(log: FollowerLog, leader_epoch: int, leader_end_offset: int) -> Truncation:
    """Where to cut ``log`` given the leader's answer (see the module docstring)."""
    leo = log.log_end_offset
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET:
        return Truncation(min(log.high_watermark, leo), True)
    if leader_epoch == UNDEFINED_EPOCH:
        return Truncation(min(leader_end_offset, leo), True)
    local_epoch, local_end = log.end_offset_for_epoch(leader_epoch)
    if local_end == UNDEFINED_EPOCH_OFFSET:
        return Truncation(min(leader_end_offset, leo), True)
    if local_epoch != leader_epoch:
        return Truncation(min(local_end, leo), False)
    return Truncation(min(local_end, leader_end_offset, leo), True)


def truncation_without_epochs(log: FollowerLog) -> Truncation:
    """Where to cut a log that has no epochs, or whose leader serves no epochs."""
    return Truncation(min(log.high_watermark, log.log_end_offset), True)


def out_of_range_action(log_end_offset: int, leader_start: int, leader_end: int) -> tuple[str, int]:
    """What a follower does when the leader answered OFFSET_OUT_OF_RANGE to a fetch at its
    log end (Kafka's follower ``fetchOffsetAndTruncate``): ``("truncate_to", end)`` when the
    leader's log ends before ours (it lost data in an unclean election), ``("start_at",
    start)`` when the leader's log starts after ours ends (retention moved on: truncate fully
    and start there), else ``("fetch", log_end_offset)`` (a stale answer: fetch again)."""
    if leader_end < log_end_offset:
        return "truncate_to", leader_end
    if leader_start > log_end_offset:
        return "start_at", leader_start
    return "fetch", log_end_offset


def apply_truncation(log: FollowerLog, truncation: Truncation) -> bool:
    """Cut ``log`` as decided (only ever backwards); True if bytes were cut."""
    if truncation.offset < log.log_end_offset:
        log.truncate_to(truncation.offset)
        return True
    return False


async def epoch_end_offsets(
    client,
    replica_id: int,
    partitions: dict[tuple[str, int], tuple[int, int]],
    version: int = OFFSET_FOR_LEADER_EPOCH_VERSION,
) -> dict[tuple[str, int], EpochEndOffset]:
    """Ask the leader where each epoch ends: ``partitions`` maps (topic, partition) to
    (current leader epoch, the follower's latest epoch)."""
    by_topic: dict[str, list[dict]] = {}
    for (topic, partition), (current, latest) in partitions.items():
        by_topic.setdefault(topic, []).append(
            {"partition": partition, "current_leader_epoch": current, "leader_epoch": latest}
        )
    body = {
        "replica_id": replica_id,
        "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
    }
    response = await client.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, body, version)
    return {
        (t["topic"], p["partition"]): EpochEndOffset(
            p["error_code"], p["leader_epoch"], p["end_offset"]
        )
        for t in response["topics"]
        for p in t["partitions"]
    }
