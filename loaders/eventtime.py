"""Event time: int64 milliseconds since the epoch from numbers, ISO-8601 text or timestamps.

Numbers are seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude; a
string without a zone is UTC; a time that cannot be read is null (the event is quarantined).
One value at a time: ``value_ms`` (``consumers/eventtime.py``, shared with the dashboard).
"""

from __future__ import annotations

import calendar

import pyarrow as pa
import pyarrow.compute as pc

from consumers.eventtime import text_ms as _text_ms
from consumers.eventtime import value_ms

__all__ = ["MIN_EVENT_MS", "TS", "epoch_ms_of", "value_ms"]

MIN_EVENT_MS = calendar.timegm((2000, 1, 1, 0, 0, 0)) * 1000  # earlier is absurd for log events
DAY_MS = 86_400_000
TS = pa.timestamp("ms", tz="UTC")


def epoch_ms_of(column: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    """Event times (int64 ms since the epoch, null when unknown) from a column of numbers
    (s, ms, us or ns, told apart by magnitude), ISO-8601 strings (a missing zone means UTC)
    or timestamps."""
    if column is None:
        return pa.nulls(n, pa.int64())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_timestamp(t):
        return pc.cast(column, TS).cast(pa.int64())
    if pa.types.is_integer(t):
        return _integer_ms(column.cast(pa.int64()))
    if pa.types.is_floating(t):
        return _float_ms(column.cast(pa.float64()))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return pc.cast(column, TS).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.array([_text_ms(v) for v in column.to_pylist()], pa.int64())
    return pa.nulls(n, pa.int64())


def _integer_ms(v: pa.Array) -> pa.Array:
    """``_number_ms`` for a whole int64 column (exact integer arithmetic)."""
    a = pc.abs(v)
    pa.scalar(None, pa.int64())
    sec = pc.less(a, int(1e11))
    return pc.if_else(
        sec,
        pc.multiply_checked(pc.if_else(sec, v, 0), 1000),
        pc.if_else(
            pc.less(a, int(1e14)),
            v,
            pc.if_else(pc.less(a, int(1e17)), pc.divide(v, 1000), pc.divide(v, 1_000_000)),
        ),
    )


def _float_ms(v: pa.Array) -> pa.Array:
    """``_number_ms`` for a whole float64 column."""
    a = pc.abs(v)
    ms = pc.if_else(
        pc.less(a, 1e11),
        pc.multiply(v, 1000.0),
        pc.if_else(
            pc.less(a, 1e14),
            v,
            pc.if_else(
                pc.less(a, 1e17),
                pc.divide(v, 1000.0),
                pc.if_else(pc.less(a, 9e24), pc.divide(v, 1e6), pa.scalar(None, pa.float64())),
            ),
        ),
    )
    ms = pc.if_else(pc.is_nan(ms), pa.scalar(None, pa.float64()), ms)
    truncated = pc.trunc(ms)  # as int() does
    ok = pc.and_(pc.less(pc.abs(truncated), 9.2e18), pc.is_finite(truncated))
    return pc.if_else(ok, truncated, pa.scalar(None, pa.float64())).cast(pa.int64())
