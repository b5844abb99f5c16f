"""The mirror's pure parts: the source header, the resume point among records of several
source clusters, the topic filter, which configs a target topic copies, and the command's
refusals of bad input (a clear message and exit 2, never a traceback)."""

from __future__ import annotations

import pytest

from broker.protocol.config_apis import ConfigSource
from consumers.consumer import Message
from consumers.mirror import HEADER, TopicFilter, parse_source, source_header
from consumers.mirror.resume import Source, last_in, mirrored_offset
from consumers.mirror.topics import copied_configs, topic_partitions
from headrace.cli import main


@pytest.mark.parametrize(
    ("cluster", "topic", "partition", "offset"),
    [("Zq3-x_Y", "clicks", 0, 0), ("a:b", "t.with-dots_and_", 17, 2**40), ("", "x", 3, 5)],
)
def test_the_source_header_round_trips(cluster, topic, partition, offset):
    key, value = source_header(cluster, topic, partition, offset)
    assert key == HEADER
    assert parse_source(value) == (Source(cluster, topic, partition), offset)


@pytest.mark.parametrize("value", [None, b"", b"nonsense", b"c:t:p:1", b"c:t:1:x", b"\xff\xfe"])
def test_a_header_that_is_not_ours_is_ignored(value):
    assert parse_source(value) is None


def _record(offset: int, *headers) -> Message:
    return Message("clicks", 0, offset, 0, None, b"v", tuple(headers))


def test_the_resume_point_is_the_last_record_of_the_same_source():
    a, b = Source("A", "clicks", 0), Source("B", "clicks", 0)
    records = [
        _record(0, source_header("A", "clicks", 0, 10)),
        _record(1, source_header("A", "clicks", 0, 11)),
        _record(2, source_header("B", "clicks", 0, 500)),  # another cluster into the same topic
        _record(3, ("app", b"x")),  # written by someone else
        _record(4, source_header("A", "clicks", 1, 99)),  # another source partition
    ]
    assert last_in(records, a) == 11
    assert last_in(records, b) == 500
    assert last_in(records, Source("A", "views", 0)) is None
    assert mirrored_offset(records[3], a) is None


def test_a_chained_mirror_keeps_the_first_hop_header_and_reads_its_own():
    record = _record(0, source_header("A", "clicks", 0, 7), source_header("B", "clicks", 0, 3))
    assert mirrored_offset(record, Source("B", "clicks", 0)) == 3
    assert mirrored_offset(record, Source("A", "clicks", 0)) == 7


def test_the_topic_filter_matches_whole_names_and_skips_internal_topics():
    accept = TopicFilter("clicks|views.*", exclude="views-test")
    assert accept("clicks") and accept("views") and accept("views-prod")
    assert not accept("clicks2") and not accept("views-test") and not accept("orders")
    assert not TopicFilter(".*")("__consumer_offsets")
    assert TopicFilter(".*")("_audit")


def _entry(name, value, source, read_only=False, sensitive=False) -> dict:
    return {
        "name": name,
        "value": value,
        "config_source": source,
        "read_only": read_only,
        "is_sensitive": sensitive,
    }


def test_a_target_topic_copies_only_the_source_topics_own_settings():
    configs = [
        _entry("retention.ms", "1000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        _entry("cleanup.policy", "compact", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        _entry("segment.bytes", "1024", ConfigSource.DEFAULT_CONFIG),
        _entry("max.message.bytes", "9", ConfigSource.STATIC_BROKER_CONFIG),
        _entry("frozen", "1", ConfigSource.DYNAMIC_TOPIC_CONFIG, read_only=True),
        _entry("secret", "s", ConfigSource.DYNAMIC_TOPIC_CONFIG, sensitive=True),
    ]
    assert copied_configs(configs) == {
        "retention.ms": "1000",
        "cleanup.policy": "compact",
        "message.timestamp.type": "CreateTime",
    }


def test_a_target_topic_keeps_create_time_whatever_the_source_says():
    """LogAppendTime on the target would overwrite the source timestamps the copies keep."""
    configs = [_entry("message.timestamp.type", "LogAppendTime", ConfigSource.DYNAMIC_TOPIC_CONFIG)]
    assert copied_configs(configs) == {"message.timestamp.type": "CreateTime"}


def test_partition_counts_leave_out_topics_in_error():
    body = {
        "topics": [
            {"name": "a", "error_code": 0, "partitions": [{}, {}]},
            {"name": "b", "error_code": 3, "partitions": []},
        ]
    }
    assert topic_partitions(body) == {"a": 2}


def _mirror(*extra: str) -> list[str]:
    return [
        "mirror",
        "--from-zookeeper",
        "127.0.0.1:2181/a",
        "--to-bootstrap-server",
        "127.0.0.1:9092",
        "--include",
        "clicks",
        "--group",
        "m",
        *extra,
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (_mirror("--workers", "0"), "--workers must be at least 1"),
        (_mirror("--processes", "0"), "--processes must be at least 1"),
        (_mirror("--include", "clicks("), "not a regular expression"),
        (_mirror("--exclude", "[x"), "not a regular expression"),
        (_mirror("--refresh-interval", "0"), "--refresh-interval must be a positive"),
        (_mirror("--zookeeper-session-timeout-ms", "10"), "at least 1000"),
        (_mirror("--compression-type", "zip"), "--compression-type"),
        (_mirror("--to-bootstrap-server", "nohost"), "--to-bootstrap-server"),
        (_mirror("--group", "a/b"), "group"),
    ],
)
def test_bad_mirror_arguments_get_a_clear_message(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_mirror_needs_exactly_one_source(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mirror", "--to-bootstrap-server", "h:1", "--include", "x", "--group", "m"])
    assert exit_info.value.code == 2
    assert "--from-zookeeper" in capsys.readouterr().err


def test_append_many_marks_the_last_record_of_every_batch_it_filled():
    from consumers.producer.accumulator import RecordAccumulator
    from consumers.producer.config import ProducerConfig

    accumulator = RecordAccumulator(ProducerConfig.of(batch_size=1000))
    try:
        records = [(None, b"x" * 100, (), i) for i in range(25)]
        marks = accumulator.append_many("t", 0, records, [200] * 25)
        # 200 bytes each on top of the batch overhead: four records fill a 1000-byte batch
        assert [i for i, _ in marks] == [3, 7, 11, 15, 19, 23, 24]
        batches = [future._batch for _, future in marks]
        assert len({id(b) for b in batches}) == len(batches)
        assert sum(len(b.records) for b in batches) == 25
        assert all(f._index == len(f._batch.records) - 1 for _, f in marks)
        more = accumulator.append_many("t", 0, records[:2], [200, 200])
        assert more[0][1].same_batch(marks[-1][1])  # the open batch goes on filling
    finally:
        accumulator.close()
        accumulator.close_wake()
