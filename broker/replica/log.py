"""The follower's side of a partition log, as the replica fetcher reaches it.

``broker/log``'s ``PartitionLog`` provides these under the same names (mypy checks it, below);
tests use a list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol


class FollowerLog(Protocol):
    """A partition log a follower appends the leader's batches to."""

    @property
    def log_end_offset(self) -> int:
        """The offset the next batch will have."""
        ...

    @property
    def log_start_offset(self) -> int:
        """The first offset the log serves."""
        ...

    @property
    def high_watermark(self) -> int:
        """The follower's high watermark: the leader's, capped at this log's end."""
        ...

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None: ...

    def latest_epoch(self) -> int | None:
        """The largest leader epoch stamped in this log, or None if it has none."""
        ...

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """``(e, end)``: the largest epoch ``e <= epoch`` in this log and the offset where
        it ends (the next epoch's start offset, or the log end for the latest); ``(-1, -1)``
        (UNDEFINED, Kafka's answer) if the log has no epoch at or below ``epoch``."""
        ...

    def append_as_follower(self, records: bytes) -> object:
        """Append the leader's batches as they are: offsets and epochs already assigned."""
        ...

    def delete_records_before(self, offset: int) -> bool:
        """Raise the log start to ``offset`` (capped at the log end), as the leader's did."""
        ...

    def truncate_to(self, offset: int) -> bool:
        """Remove every batch at or after ``offset`` (and the epochs starting there); True if
        anything was removed."""
        ...

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log; the next batch appended has offset ``offset``."""
        ...


if TYPE_CHECKING:
    from ..log import PartitionLog

    def _partition_log_is_a_follower_log(log: PartitionLog) -> FollowerLog:
        return log
