"""Record keys seen from a batch's bytes: whether a batch holds a record without a key.

A compacted topic keeps the latest record per key, so Kafka refuses records without one
(INVALID_RECORD).  The check runs on every produce to such a topic after ``check_records``
has accepted the framing, on the record section it decompressed: a short walk of four
varints per record for small batches, numpy over all records at once for larger ones
(``columns.record_fields``), the walk again where numpy cannot (records with headers).
"""

from __future__ import annotations

from .columns import record_fields
from .records import BatchHeader, records_section
from .varint import decode_varint

_SMALL = 24  # up to this many records a walk in Python costs less than numpy's set-up


def keyless_records(buf, pos: int, header: BatchHeader, section=None) -> bool:
    """True if a record of the batch at ``pos`` has a null key (its framing already
    checked); ``section``: its record section if already decompressed."""
    if header.record_count <= 0:
        return False
    data = records_section(buf, pos, verify_crc=False)[1] if section is None else section
    count = header.record_count
    if count > _SMALL:
        fields = record_fields(data, count)
        if fields is not None:
            return bool((fields.key_len < 0).any())
    p = 0  # a walk of four varints per record (records with headers too)
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
