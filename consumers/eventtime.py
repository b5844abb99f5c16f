"""The event time of one JSON value, in milliseconds since the epoch: numbers are seconds,
milliseconds, microseconds or nanoseconds told apart by magnitude; strings are such numbers or
ISO-8601 (a missing zone means UTC); anything else is None.  The loaders (``headrace load
--time-field``) and the dashboard's windowed counts read event times alike through it.

    >>> value_ms("2026-12-07T14:00:00Z"), value_ms(1796652000), value_ms("soon")
    (1796652000000, 1796652000000, None)
"""

from __future__ import annotations

import datetime as dt


def number_ms(v) -> int | None:
    if v is None or v != v:  # None or NaN
        return None
    a = abs(v)
    if a < 1e11:
        return int(v * 1000)
    if a < 1e14:
        return int(v)
    if a < 1e17:
        return int(v // 1000)
    if a < 9e24:
        return int(v // 1_000_000)
    return None  # infinite, or past int64 in ms: quarantined, not a crash


def value_ms(v) -> int | None:
    """Event time of a JSON value: a number (s, ms, us or ns) or a string."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return number_ms(v)
    if isinstance(v, str):
        return text_ms(v)
    return None


def text_ms(v) -> int | None:
    if v is None:
        return None
    if ":" not in v:  # a number never has a colon; skipping float() on times saves its error
        try:
            return number_ms(float(v))
        except ValueError:
            pass
    try:
        stamp = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)
