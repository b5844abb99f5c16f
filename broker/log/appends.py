"""What every append checks before it writes: the batches of one request, whole and sound.

Shared by the leader's ``PartitionLog.append`` and a replica's ``append_as_follower``: each
batch's header and CRC (``records.check_batch``), its records (``validate.check_records``),
and the whole within one segment.  A bad batch refuses the whole append.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol.errors import InvalidRecordError, RecordListTooLargeError
from ..protocol.keys import keyless_records
from ..protocol.records import LOG_OVERHEAD, BatchHeader, check_batch
from ..protocol.validate import check_records
from .config import LogConfig


def checked_batches(
    view: memoryview, config: LogConfig, records_too: bool = True, replica: bool = False
) -> Sequence[tuple[int, BatchHeader]]:
    """(position, header) of each batch in ``view``, each checked (header, CRC, ``max``
    ``message.bytes``; with ``records_too`` its records), the whole no larger than a
    segment; the KafkaError of the first problem otherwise (CORRUPT_MESSAGE,
    MESSAGE_TOO_LARGE, INVALID_RECORD, RECORD_LIST_TOO_LARGE, ...).

    A ``replica`` copies a leader's log, which the cleaner may have compacted: batches with
    fewer records than offsets (or none) pass on their CRC, their framing unchecked.  In a
    compacted topic (``cleanup.policy`` compact), a producer's record without a key is
    refused (INVALID_RECORD), and so is the whole append."""
    max_size = config.max_message_bytes
    header = check_batch(view, 0, max_size=max_size, compacted=replica)
    total = len(view)
    batches: Sequence[tuple[int, BatchHeader]]
    if header.batch_length + LOG_OVERHEAD == total:
        batches = ((0, header),)
    else:
        several = [(0, header)]
        pos = header.batch_length + LOG_OVERHEAD
        while pos < total:
            more = check_batch(view, pos, max_size=max_size, compacted=replica)
            several.append((pos, more))
            pos += more.batch_length + LOG_OVERHEAD
        batches = several
    sections = {}  # pos -> the batch's record section, decompressed once
    if records_too:
        for pos, h in batches:
            if h.record_count == h.last_offset_delta + 1:
                sections[pos] = check_records(view, pos, h)
    if config.compact and not replica:
        for pos, h in batches:
            if keyless_records(view, pos, h, sections.get(pos)):
                raise InvalidRecordError(
                    f"a compacted topic (cleanup.policy={config.cleanup_policy}) accepts only "
                    "records with a key; this batch has a record without one"
                )
    if total > config.segment_bytes:
        raise RecordListTooLargeError(
            f"{total} bytes of record batches do not fit a segment of "
            f"{config.segment_bytes} bytes (segment.bytes)"
        )
    return batches
