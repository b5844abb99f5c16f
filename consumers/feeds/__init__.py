"""Online feeds for real-time consumers (the dashboard uses them; any tool may): a live tail
of a topic (``tail``) and windowed counts of JSON events by a field (``window``: the pure
counting; ``aggregate``: the group consumer that feeds it)."""

from .aggregate import AggregateFeed
from .tail import BadStart, Start, TailReader, message_fields, parse_start
from .window import WindowedCounter, bucket_starts, field_value, label

__all__ = [
    "AggregateFeed",
    "BadStart",
    "Start",
    "TailReader",
    "WindowedCounter",
    "bucket_starts",
    "field_value",
    "label",
    "message_fields",
    "parse_start",
]
