"""The audit without sockets: window arithmetic, the record format, the producer's counter,
timestamps read from batch and record headers, and the comparison (counts in, rows out)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.protocol import compression
from broker.protocol.records import LOG_APPEND_TIME, build_batch, parse_header, with_log_append_time
from consumers.audit import (
    AuditRecord,
    AuditRecordError,
    decode_record,
    encode_record,
    iso,
    parse_duration,
    parse_time,
    window_start,
)
from consumers.producer.audit import AuditCounter
from headrace.audit.compare import AuditError, Produced, compare, overall_ok, rebucket
from headrace.audit.report import COLUMNS, format_table
from headrace.audit.sources import batch_timestamps

MIN = 60_000
T0 = 1_765_000_000_000 - 1_765_000_000_000 % 3_600_000  # the start of an hour
CODECS = [compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
stamps = st.integers(-(2**50), 2**50)


@given(stamps, st.integers(1, 10**9))
def test_a_timestamp_lies_in_its_window_which_is_aligned_to_the_epoch(ts, window_ms):
    start = window_start(ts, window_ms)
    assert start % window_ms == 0
    assert start <= ts < start + window_ms


@given(stamps, st.integers(1, 1000), st.integers(1, 50))
def test_a_window_lies_whole_in_one_window_of_any_multiple_of_its_length(ts, window_ms, k):
    start = window_start(ts, window_ms)
    big = window_start(start, window_ms * k)
    assert big <= start and start + window_ms <= big + window_ms * k
    assert window_start(ts, window_ms * k) == big


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("1m", MIN), ("5m", 300_000), ("2h", 7_200_000), ("0", 0)],
)
def test_durations_take_a_unit(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "1 minute", "-1m", "1.5m", "m"])
def test_a_duration_without_a_unit_is_refused_naming_the_option(text):
    with pytest.raises(ValueError, match="--window"):
        parse_duration(text, "--window")


def test_times_are_iso_epoch_milliseconds_or_a_duration_ago():
    assert parse_time("2026-12-07T14:00:00Z", 0) == 1_796_652_000_000
    assert parse_time("2026-12-07T14:00:00", 0) == 1_796_652_000_000
    assert parse_time("2026-12-07T15:00:00+01:00", 0) == 1_796_652_000_000
    assert parse_time("1796652000000", 0) == 1_796_652_000_000
    assert parse_time("2h", 10_000_000) == 10_000_000 - 7_200_000
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday", 0)
    assert iso(1_796_652_000_000) == "2026-12-07T14:00:00Z"
    assert iso(1_796_652_000_250) == "2026-12-07T14:00:00.250Z"


records = st.builds(
    AuditRecord,
    topic=st.text(min_size=1, max_size=20),
    window_start=st.integers(-(10**6), 10**6).map(lambda n: n * MIN),
    window_ms=st.just(MIN),
    producer=st.text(max_size=30),
    host=st.text(max_size=30),
    count=st.integers(0, 2**40),
    sent_at=st.integers(0, 2**45),
    producer_id=st.integers(-1, 2**62),
    final=st.booleans(),
)


@given(records)
def test_audit_records_round_trip_as_json(record):
    assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"topic": "t"}', "'window_start'"),
        (
            b'{"topic":"t","window_start":5,"window_ms":60000,"producer":"p","host":"h",'
            b'"count":1,"sent_at":0}',
            "aligned",
        ),
        (
            b'{"topic":"t","window_start":0,"window_ms":60000,"producer":"p","host":"h",'
            b'"count":-1,"sent_at":0}',
            "negative",
        ),
        (
            b'{"topic":"t","window_start":0,"window_ms":60000,"producer":"p","host":"h",'
            b'"count":true,"sent_at":0}',
            "'count'",
        ),
        (None, "not a JSON object"),
    ],
)
def test_a_message_that_is_no_audit_record_is_refused_saying_why(value, why):
    with pytest.raises(AuditRecordError, match=why):
        decode_record(value)


def test_the_producer_counter_counts_per_topic_window_and_producer_id():
    counter = AuditCounter(MIN)
    counter.add("a", 7, [T0, T0 + 1, T0 + MIN, T0 - 1])
    counter.add("b", -1, [T0])
    taken = counter.take()
    assert taken == Counter(
        {("a", T0, 7): 2, ("a", T0 + MIN, 7): 1, ("a", T0 - MIN, 7): 1, ("b", T0, -1): 1}
    )
    assert counter.take() == Counter()
    counter.give_back(Counter({("a", T0, 7): 2}))
    counter.add("a", 7, [T0])
    assert counter.take() == Counter({("a", T0, 7): 3})
    assert counter.seen == {("a", 7): T0 + MIN, ("b", -1): T0}


@given(st.lists(st.lists(stamps, max_size=30), max_size=5), st.integers(1, 10**7))
def test_the_producer_counter_agrees_with_counting_one_message_at_a_time(batches, window_ms):
    counter = AuditCounter(window_ms)
    for batch in batches:
        counter.add("t", 3, batch)
    expected = Counter(("t", window_start(ts, window_ms), 3) for b in batches for ts in b)
    assert counter.take() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.binary(max_size=40),
            st.none() | st.binary(max_size=300),
            st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=2),
            stamps,
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(CODECS),
)
def test_timestamps_are_read_from_record_headers_in_every_codec(items, codec):
    batch = build_batch(items, compression_type=codec, base_offset=100)
    assert batch_timestamps(batch, 0, parse_header(batch)).tolist() == [i[3] for i in items]
    appended = with_log_append_time(batch, 12345)
    header = parse_header(appended)
    assert header.timestamp_type == LOG_APPEND_TIME
    assert batch_timestamps(appended, 0, header).tolist() == [12345] * len(items)


def produced_of(counts: dict, final=(7,), names=None) -> Produced:
    names = names or {pid: {f"p{pid}"} for _, pid in counts}
    return Produced(Counter(counts), frozenset(final), names)


def row_of(rows, w):
    return next(r for r in rows if r["window_start"] == w)


windows_counts = st.dictionaries(
    st.integers(0, 30).map(lambda i: T0 + i * MIN), st.integers(1, 500), min_size=1
)


@given(windows_counts)
def test_a_clean_run_matches_in_every_window(per_window):
    produced = produced_of({(w, 7): n for w, n in per_window.items()})
    brokered = {(w, 7): n for w, n in per_window.items()}
    rows, notes = compare(produced, brokered, dict(per_window), MIN, 0, T0 + 10**9)
    assert [r["window_start"] for r in rows] == sorted(per_window)
    assert all(r["ok"] and r["closed"] and not r["unaudited"] for r in rows)
    assert [(r["produced"], r["brokered"], r["loaded"]) for r in rows] == [
        (n, n, n) for _, n in sorted(per_window.items())
    ]
    assert notes == [] and overall_ok(rows)


@given(windows_counts, st.data())
def test_rows_lost_or_gained_in_the_warehouse_are_missing_or_duplicated_in_their_window(
    per_window, data
):
    w = data.draw(st.sampled_from(sorted(per_window)))
    k = data.draw(st.integers(1, per_window[w]))
    gain = data.draw(st.booleans())
    produced = produced_of({(x, 7): n for x, n in per_window.items()})
    brokered = {(x, 7): n for x, n in per_window.items()}
    loaded = dict(per_window)
    loaded[w] += k if gain else -k
    rows, _ = compare(produced, brokered, loaded, MIN, 0, T0 + 10**9)
    bad = [r for r in rows if not r["ok"]]
    assert [r["window_start"] for r in bad] == [w]
    assert (bad[0]["duplicated"], bad[0]["missing"]) == ((k, 0) if gain else (0, k))
    assert not overall_ok(rows)


@given(windows_counts, st.data())
def test_messages_the_brokers_lack_are_missing_against_the_producers_counts(per_window, data):
    w = data.draw(st.sampled_from(sorted(per_window)))
    k = data.draw(st.integers(1, per_window[w]))
    produced = produced_of({(x, 7): n for x, n in per_window.items()})
    brokered = {(x, 7): n for x, n in per_window.items()}
    brokered[(w, 7)] -= k
    loaded = {x: n for (x, _), n in brokered.items()}
    rows, _ = compare(produced, brokered, loaded, MIN, 0, T0 + 10**9)
    assert [(r["window_start"], r["missing"]) for r in rows if not r["ok"]] == [(w, k)]


def test_unaudited_producers_and_uncounted_excess_are_unaudited_with_a_note():
    produced = produced_of({(T0, 7): 10, (T0, 8): 5}, final=(7,))
    brokered = {(T0, 7): 10, (T0, 8): 9, (T0, -1): 4, (T0, 99): 2}  # 8 crashed; kcat; kcat -X idem
    rows, notes = compare(produced, brokered, {T0: 25}, MIN, 0, T0 + 10**9)
    assert row_of(rows, T0) == {
        "window_start": T0,
        "window_start_iso": iso(T0),
        "closed": True,
        "produced": 15,
        "brokered": 25,
        "loaded": 25,
        "unaudited": 4 + 4 + 2,
        "missing": 0,
        "duplicated": 0,
        "ok": True,
    }
    assert len(notes) == 1 and "p8 (producer id 8) published no final audit record" in notes[0]
    assert "4 of its messages" in notes[0]


def test_excess_of_a_cleanly_closed_producer_is_duplicated_with_a_note():
    produced = produced_of({(T0, 7): 10}, final=(7,))
    rows, notes = compare(produced, {(T0, 7): 12}, {T0: 12}, MIN, 0, T0 + 10**9)
    assert (rows[0]["duplicated"], rows[0]["unaudited"], rows[0]["ok"]) == (2, 0, False)
    assert "closed cleanly" in notes[0]


def test_producers_without_an_id_are_compared_with_all_unattributed_messages():
    produced = produced_of({(T0, -1): 10, (T0 + MIN, -1): 10}, final=())
    brokered = {(T0, -1): 13, (T0 + MIN, -1): 8}
    rows, notes = compare(produced, brokered, None, MIN, 0, T0 + 10**9)
    assert [(r["unaudited"], r["missing"], r["loaded"]) for r in rows] == [
        (3, 0, None),
        (0, 2, None),
    ]
    assert "idempotence off" in notes[-1]


def test_a_window_is_closed_once_its_end_plus_grace_has_passed_and_only_closed_ones_fail():
    produced = produced_of({(T0, 7): 5, (T0 + MIN, 7): 5})
    brokered = {(T0, 7): 5, (T0 + MIN, 7): 5}
    now = T0 + 2 * MIN + 30_000 - 1  # a millisecond before the second window closes
    rows, _ = compare(produced, brokered, {T0: 5}, MIN, 30_000, now)
    assert [r["closed"] for r in rows] == [True, False]
    assert [r["missing"] for r in rows] == [0, 5]
    assert overall_ok(rows)  # the open window does not match yet: not a failure
    rows, _ = compare(produced, brokered, {T0: 5}, MIN, 30_000, now + 1)
    assert rows[1]["closed"] and not overall_ok(rows)


def test_records_are_summed_into_the_audits_window_if_it_is_a_multiple_of_theirs():
    def rec(w, n, window=MIN, topic="t", final=False):
        return AuditRecord(topic, w, window, "p", "h", n, 0, 7, final)

    found = rebucket(
        [rec(T0, 1), rec(T0 + MIN, 2), rec(T0, 4), rec(T0, 8, topic="other"), rec(T0 - MIN, 3)],
        "t",
        5 * MIN,
        since_ms=T0,
    )
    assert found.counts == Counter({(T0, 7): 7})  # T0 - MIN is before the window of since
    assert found.final == frozenset() and found.names == {7: {"p"}}
    assert rebucket([rec(T0, 0, final=True)], "t", MIN, 0).final == {7}
    with pytest.raises(AuditError, match="multiple"):
        rebucket([rec(T0, 1, window=45_000)], "t", MIN, 0)
    assert not rebucket([rec(T0 - 90_000, 1, window=45_000)], "t", MIN, since_ms=T0).counts


def test_the_table_shows_every_column_and_each_windows_status():
    produced = produced_of({(T0, 7): 5, (T0 + MIN, 7): 5})
    brokered = {(T0, 7): 5, (T0 + MIN, 7): 5}
    rows, notes = compare(produced, brokered, {T0: 4, T0 + MIN: 5}, MIN, 0, T0 + MIN + 1)
    text = format_table({"topic": "t", "rows": rows, "notes": notes})
    header, first, second, summary = text.splitlines()
    assert header.split() == [*COLUMNS, "status"]
    assert COLUMNS[1:] == ("produced", "brokered", "loaded", "unaudited", "missing", "duplicated")
    assert first.split() == [iso(T0), "5", "5", "4", "0", "1", "0", "MISMATCH"]
    assert second.split()[-1] == "open"
    assert summary == "1 closed windows, 1 not matching; 1 still open"
