"""The aggregate's fast field reading (simdjson, a block at a time) gives what reading each
whole document with orjson gives, and its windowed counts are those of the simple path."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.feeds import WindowedCounter, field_value
from consumers.feeds.fields import FieldReader

NOW = 1_796_652_000_000  # 2026-12-07T14:00:00Z
NAMES = ["status", "http", "ts", "a", "stätus"]
PATHS = [["status"], ["http.status"], ["status", "ts"], ["http.status", "http.ts"], ["a.a"]]


def orjson_reading(values: list, paths: list[str]) -> list[list]:
    """What each path holds in each value, a whole orjson document at a time."""
    docs = []
    for value in values:
        try:
            docs.append(orjson.loads(value) if value is not None else None)
        except orjson.JSONDecodeError:
            docs.append(None)
    return [[field_value(doc, path) for doc in docs] for path in paths]


def escaped(name: str) -> str:
    """``name`` as a JSON string written with \\u escapes only."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in name) + '"'


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["200", "5xx", "status", '"status"', "2026-12-07T14:00:00Z", "é", "a\\u"]),
    st.text(max_size=5),
)
# Objects as lists of (name, value) pairs, so one name may come twice (orjson keeps the last)
objects = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(st.sampled_from(NAMES), inner), max_size=4).map(
            lambda pairs: ("object", pairs)
        ),
    ),
    max_leaves=12,
)


def write(doc, how: int) -> str:
    """JSON text of a generated document, keys and text written in one of several ways."""
    if isinstance(doc, tuple):
        names = [escaped(k) if how == 2 and k == "status" else json.dumps(k) for k, _ in doc[1]]
        return "{" + ",".join(f"{n}:{write(v, how)}" for n, (_, v) in zip(names, doc[1])) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(write(v, how) for v in doc) + "]"
    return json.dumps(doc, ensure_ascii=how != 1)


values = st.one_of(
    st.tuples(objects, st.integers(0, 2)).map(lambda d: write(*d).encode()),
    st.tuples(objects, st.integers(0, 2)).map(lambda d: b"\xef\xbb\xbf" + write(*d).encode()),
    st.sampled_from([b"{", b"", b"not json", b"\xff", b'{"status": 1e400}', b'{"a": 1}x']),
    st.sampled_from([b'{"status": 200, "a": 1e400}', b'{"status": "\\ud800"}', b"[1]", b"5"]),
    st.binary(max_size=20),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=12), st.sampled_from(PATHS))
def test_fast_reading_equals_orjson_on_random_values(block, paths):
    assert FieldReader(paths).read(block) == orjson_reading(block, paths)


@pytest.mark.parametrize(
    "value, expected",
    [
        (b'{"status": 1, "status": 2}', 2),  # orjson keeps the last; simdjson finds the first
        (b'{"status": 1, ' + escaped("status").encode() + b": 3}", 3),
        (b'{"http": {"status": 5}, "status": 4}', 4),  # a nested same-named field
        (b'{"status": 1, "a": 123456789012345678901234567890}', 1),  # simdjson: a big integer
        (b'{"status": 1, "a": 1e400}', None),  # orjson: not JSON (past a double)
        (b'\xef\xbb\xbf{"status": 1}', None),  # orjson: a byte order mark is not JSON
        (b'{"status": {"code": 1}}', {"code": 1}),
        (b'{"status": null}', None),
        (b"[1]", None),
        (None, None),
        (b'{"status": 1, "a": ' + b"[" * 1023 + b"]" * 1023 + b"}", 1),
        (b'{"status": 1, "a": ' + b"[" * 1024 + b"]" * 1024 + b"}", None),  # too deep
    ],
)
def test_fast_reading_of_what_simdjson_and_orjson_differ_on(value, expected):
    plain = b'{"status": 7}'
    assert FieldReader(["status"]).read([plain, value, plain]) == [[7, expected, 7]]


events = st.tuples(
    values,
    st.integers(NOW - 120_000, NOW + 5_000),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(events, max_size=10), max_size=4),
    st.sampled_from(["status", "http.status", "a.a"]),
    st.sampled_from([None, "ts", "http.ts"]),
    st.booleans(),
)
def test_fast_counts_equal_the_simple_path(blocks, field, time_field, classes):
    fast = WindowedCounter(field, 60, time_field, classes)
    simple = WindowedCounter(field, 60, time_field, classes, simple=True)
    for block in blocks:
        for counter in (fast, simple):
            counter.add_many([v for v, _ in block], [t for _, t in block], NOW)
    assert fast.read == simple.read
    assert fast.snapshot(NOW, 60, 10) == simple.snapshot(NOW, 60, 10)


@pytest.mark.parametrize("classes", [False, True])
def test_true_and_1_are_counted_apart(classes):
    # equal as dict keys (true == 1 == 1.0): the counts by value keep their types apart
    block = [b'{"status": %s}' % v for v in (b"true", b"1", b"1.0", b"false", b"0")]
    counter = WindowedCounter("status", 60, classes=classes)
    counter.add_many(block, [NOW - 500] * len(block), NOW)
    numbers = {"0xx": 3} if classes else {"0": 1, "1": 2}
    expected = {"false": 1, "true": 1, **numbers}
    assert counter.snapshot(NOW, 60, 10)["totals"] == dict(sorted(expected.items()))
