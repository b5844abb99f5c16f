"""Raising a partition's log start offset, as DeleteRecords asks of a leader and a follower
learns from its leader's fetch responses (Kafka's ``UnifiedLog.maybeIncrementLogStartOffset``
followed by the deletion of segments wholly below the new start).

``PartitionLog.delete_records_before`` is this function.  Offsets below the new start are no
longer served (a Fetch there answers OFFSET_OUT_OF_RANGE, ListOffsets earliest answers the new
start); the segments that hold only such offsets are renamed ``.deleted`` and removed after
``file.delete.delay.ms``, like segments retention deletes.  The batch holding the new start
stays whole on disk (a log is cut at segment boundaries only); its records below the start
are skipped by consumers as records before a fetch offset always are.  The log manager's
``log-start-offset-checkpoint`` keeps the new start across restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .partition import PartitionLog


def delete_records_before(plog: PartitionLog, offset: int) -> bool:
    """Make ``offset`` (capped at the log end) the log start if it is above the current one,
    and delete the segments wholly below it (never the active one).  True if the start
    moved."""
    offset = min(offset, plog.log_end_offset)
    if offset <= plog.log_start_offset:
        return False
    plog.log_start_offset = offset
    plog.recovery_point = max(plog.recovery_point, offset)
    plog.high_watermark = max(plog.high_watermark, offset)
    plog.leader_epochs.truncate_from_start(offset)
    below = 0
    while below + 1 < len(plog.segments) and plog.segments[below + 1].base_offset <= offset:
        below += 1
    if below:
        plog._delete_oldest(below, f"records deleted before offset {offset}")
    return True
