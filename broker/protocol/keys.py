"""Record keys seen from a batch's bytes: whether a batch holds a record without a key.

A compacted topic keeps the latest record per key, so Kafka refuses records without one
(INVALID_RECORD).  The check runs on every produce to such a topic after ``check_records``
has accepted the framing: a short walk of four varints per record for small batches, numpy
over all records at once for larger ones (``columns.record_fields``).
"""

from __future__ import annotations

from .columns import record_fields
from .records import BatchHeader, decode_batch, records_section
from .varint import decode_varint

_SMALL = 24  # up to this many records a walk in Python costs less than numpy's set-up


def keyless_records(buf, pos: int, header: BatchHeader) -> bool:
    """True if a record of the batch at ``pos`` has a null key (its framing already
    checked)."""
    if header.record_count <= 0:
        return False
    _, data = records_section(buf, pos, verify_crc=False)
    count = header.record_count
    if count > _SMALL:
        fields = record_fields(data, count)
        if fields is not None:
            return bool((fields.key_len < 0).any())
        return any(r.key is None for r in decode_batch(buf, pos, verify_crc=False).records)
    p = 0
    for _ in range(count):
        length, p = decode_varint(data, p)
        end = p + length
        _, q = decode_varint(data, p + 1)  # timestampDelta, after the attributes byte
        _, q = decode_varint(data, q)  # offsetDelta
        key_length, _ = decode_varint(data, q)
        if key_length < 0:
            return True
        p = end
    return False
