"""Counts of JSON events over a sliding window, grouped by the value of one field: the pure
logic of the dashboard's real-time consumer (no I/O, times passed in; the consumer that feeds
it is ``aggregate.py``).

    >>> counter = WindowedCounter("status", window_s=60, classes=True)
    >>> counter.add(b'{"status": 503}', timestamp_ms=1_000_000, now_ms=1_000_500)
    >>> counter.snapshot(now_ms=1_001_000, window_s=60, step_s=30)["totals"]
    {'5xx': 1}

Events are kept per second of their time (the message timestamp, or the event's own
``time_field``, read as ``headrace load --time-field`` reads it), for the longest window
asked; a snapshot sums them into buckets of ``step_s`` seconds.  Events without the field,
or not JSON, count under ``null``; events older than the window when read are ``late``.
``add_many`` reads a block's fields in one ``FieldReader`` pass (simdjson) and counts each
distinct value once; ``simple=True`` counts as it first did, an orjson document and a count
per message (the benchmark compares the two).
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, defaultdict

import orjson

from ..eventtime import value_ms
from .fields import FieldReader, field_value

NULL = "null"
LABEL_CACHE = 10_000  # distinct field values whose labels are remembered


def label(value, classes: bool = False) -> str:
    """The series name of a field value: text as it is, numbers as JSON writes them (200, not
    200.0), other JSON compact; with ``classes``, numbers (or numeric text) by hundreds:
    ``"5xx"``."""
    if value is None:
        return NULL
    if classes and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and math.isfinite(number):
            return f"{int(number) // 100}xx"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def bucket_starts(now_ms: int, window_s: int, step_s: int) -> list[int]:
    """The starts (ms) of the ``ceil(window / step)`` buckets ending with the one holding
    ``now``, oldest first; buckets are aligned to multiples of ``step_s``."""
    step_ms = step_s * 1000
    last = now_ms // step_ms * step_ms
    count = -(-window_s // step_s)
    return [last - (count - 1 - i) * step_ms for i in range(count)]


class WindowedCounter:
    """Event counts per second of event time and per label, for ``window_s`` seconds back
    from now; thread-safe (a consumer thread adds, the server takes snapshots)."""

    def __init__(
        self,
        field: str,
        window_s: int,
        time_field: str | None = None,
        classes: bool = False,
        simple: bool = False,
    ):
        self.field = field
        self._path = tuple(field.split("."))
        self._time_path = tuple(time_field.split(".")) if time_field else ()
        self.window_s = window_s
        self.time_field = time_field
        self.classes = classes
        self.read = 0  # events read, counted or not
        self.late = 0
        self._seconds: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._lock = threading.Lock()
        self._labels: dict[tuple, str] = {}  # (type, value) -> label, for scalar values
        self.simple = simple  # one orjson document and one count per message, as it began
        self._reader = FieldReader([self._path] + ([self._time_path] if time_field else []))

    def _label(self, value) -> str:
        key = (value.__class__, value)
        try:
            return self._labels[key]
        except KeyError:
            found = label(value, self.classes)
            if len(self._labels) < LABEL_CACHE:
                self._labels[key] = found
            return found
        except TypeError:  # a list or an object: not hashable
            return label(value, self.classes)

    def classify(self, value: bytes | None, timestamp_ms: int) -> tuple[str, int]:
        """(label, event time in ms) of one message's value."""
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:  # not JSON (or not UTF-8): no field, the message's time
            doc = None
        when = timestamp_ms
        if self.time_field is not None:
            found = value_ms(field_value(doc, self._time_path))
            when = found if found is not None else timestamp_ms
        return self._label(field_value(doc, self._path)), when

    def add(self, value: bytes | None, timestamp_ms: int, now_ms: int) -> None:
        self.add_many([value], [timestamp_ms], now_ms)

    def add_many(self, values: list, timestamps: list, now_ms: int) -> None:
        """Count messages given as parallel lists of values and timestamps (a Block's): their
        fields read by one ``FieldReader`` pass, counted per (second, label) by a Counter."""
        if self.simple:
            return self._add_simple(values, timestamps, now_ms)
        found = self._reader.read(values)
        whens = timestamps
        if self.time_field is not None:
            whens = [t if w is None else w for w, t in zip(map(value_ms, found[1]), timestamps)]
        fields = found[0]
        with self._lock:
            oldest = now_ms - self.window_s * 1000
            self.read += len(fields)
            first = min(whens, default=oldest)
            second = seconds = None  # one second for all, when it is so (as most blocks are)
            if first < oldest:
                kept = [(w // 1000, f) for w, f in zip(whens, fields) if w >= oldest]
                self.late += len(fields) - len(kept)
                seconds, fields = [s for s, _ in kept], [f for _, f in kept]
            elif first // 1000 == max(whens, default=first) // 1000:
                second = first // 1000
            else:
                seconds = [w // 1000 for w in whens]
            self._count(second, seconds, fields)

    def _count(self, second: int | None, seconds: list | None, fields: list) -> None:
        """Add ``fields`` (values), all of ``second`` or each of its ``seconds``, counting
        each distinct value once by a Counter (in C), then labelling it."""
        kinds = set(map(type, fields))
        if dict in kinds or list in kinds:  # not hashable: labelled first (a label's label
            fields, kinds = list(map(self._label, fields)), {str}  # is itself)
        typed = bool in kinds and len(kinds) > 1  # true == 1 == 1.0 as keys: types apart
        keys = zip(map(type, fields), fields) if typed else fields
        name, by_second = self._label, self._seconds
        if second is not None:
            row = by_second[second]
            for key, n in Counter(keys).items():
                row[name(key[1] if typed else key)] += n
            return
        for (at, key), n in Counter(zip(seconds, keys)).items():
            by_second[at][name(key[1] if typed else key)] += n

    def _add_simple(self, values: list, timestamps: list, now_ms: int) -> None:
        classified = [self.classify(v, t) for v, t in zip(values, timestamps)]
        with self._lock:
            oldest = now_ms - self.window_s * 1000
            self.read += len(classified)
            seconds = self._seconds
            for name, when in classified:
                if when < oldest:
                    self.late += 1
                else:
                    seconds[when // 1000][name] += 1

    def reset(self, window_s: int) -> None:
        """Forget every count (before reading the window again, e.g. a longer one)."""
        with self._lock:
            self.window_s = window_s
            self._seconds.clear()
            self.late = 0

    def snapshot(self, now_ms: int, window_s: int, step_s: int) -> dict:
        """``buckets`` (starts, ms), ``series`` (label -> count per bucket), ``totals`` and
        ``events`` (counted in this window) and ``late``; drops seconds that left the
        longest window."""
        starts = bucket_starts(now_ms, window_s, step_s)
        first, step_ms = starts[0], step_s * 1000
        end = starts[-1] + step_ms
        series: dict[str, list[int]] = {}
        with self._lock:
            horizon = (now_ms - self.window_s * 1000) // 1000
            for second in [s for s in self._seconds if s < horizon]:
                del self._seconds[second]
            for second, counts in self._seconds.items():
                t = second * 1000
                if not first <= t < end:
                    continue
                index = (t - first) // step_ms
                for name, n in counts.items():
                    series.setdefault(name, [0] * len(starts))[index] += n
            late = self.late
        totals = {name: sum(counts) for name, counts in sorted(series.items())}
        return {
            "buckets": starts,
            "series": dict(sorted(series.items())),
            "totals": totals,
            "events": sum(totals.values()),
            "late": late,
        }
