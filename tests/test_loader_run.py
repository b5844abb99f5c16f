"""The load's run, piece by piece, without sockets: its configuration, the progress line, the
exit status of a pass, and when dead workers are replaced."""

from __future__ import annotations

import pickle
import signal

import pytest

from loaders.config import ConfigError, LoaderConfig
from loaders.pool import MAX_BACKOFF_S, Replacements
from loaders.report import Stats, progress_line
from loaders.run import exit_status

BASE = {"zookeeper": "127.0.0.1:2181/hr", "topics": ["access"], "group": "wh", "url": "/tmp/wh"}


def test_config_has_the_command_line_defaults_and_survives_pickling():
    """Workers are handed the config by multiprocessing: it pickles, and it cannot change."""
    config = LoaderConfig(**BASE)
    assert config.topics == ("access",)
    assert (config.workers, config.format, config.max_rows) == (1, "json", 1_000_000)
    assert (config.max_bytes, config.max_chunk_bytes) == (256 << 20, 256 << 20)
    assert (config.parquet_compression, config.session_timeout_ms) == ("snappy", 6000)
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(AttributeError):
        config.workers = 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"max_rows": -5}, "--max-rows must be at least 1"),
        ({"max_bytes": 0}, "--max-bytes must be at least 1"),
        ({"max_open_writers": 0}, "--max-open-writers must be at least 1"),
        ({"max_chunk_bytes": 0}, "--max-chunk-bytes must be at least 1"),
        ({"session_timeout_ms": 0}, "--session-timeout-ms must be at least 1"),
        ({"workers": "2"}, "--workers must be at least 1"),
        ({"interval": 0.0}, "--interval must be more than 0"),
        ({"format": "xml"}, "--value-format must be one of json, string, raw, avro"),
        ({"format": "raw", "time_field": "ts"}, "--time-field needs --value-format json or avro"),
        ({"format": "avro"}, "--value-format avro needs --schema-registry URL"),
        ({"schema_registry": "http://127.0.0.1:8081"}, "--schema-registry needs --value-format"),
        ({"value_subject": "s"}, "--value-subject needs --value-format avro"),
        (
            {"format": "avro", "schema_registry": "127.0.0.1:8081"},
            "--schema-registry must be an http:// or https:// URL",
        ),
        (
            {"format": "avro", "schema_registry": "http://r", "schema_file": "s.json"},
            "--schema is for --value-format json",
        ),
        ({"parquet_compression": "brotli"}, "--parquet-compression must be one of"),
        ({"topics": []}, "--topic must name at least one topic"),
        ({"group": ""}, "--group must not be empty"),
        ({"log_level": "LOUD"}, "unknown log level 'LOUD'"),
    ],
)
def test_config_refuses_bad_values_naming_the_option(change, message):
    with pytest.raises(ConfigError, match=message):
        LoaderConfig(**BASE | change)
    with pytest.raises(ConfigError, match=message):
        LoaderConfig(**BASE).replace(**change)


def test_progress_line_counts_against_the_plan_unless_following():
    assert progress_line(250, 1000, 2.0, follow=False) == (
        "\rloading: 250 / 1,000 events (25%), 125/s   "
    )
    assert progress_line(250, 1000, 2.0, follow=True) == "\rloading: 250 events, 125/s   "
    assert progress_line(0, 0, 0.0, follow=False) == "\rloading: 0 / 0 events, 0/s   "


def test_exit_status_of_a_pass():
    assert exit_status([0, 0], Stats(), [], set()) == 0
    assert exit_status([0, None], Stats(), [], set()) == 0  # a thread never started
    stats = Stats()
    assert exit_status([0, -9], stats, [], set()) == 1
    assert stats.errors == ["worker 1 was killed by signal 9"]
    stats = Stats()
    assert exit_status([3, 0], stats, [], set()) == 1
    assert stats.errors == ["worker 0 died (exit status 3)"]
    stats = Stats()  # a worker that reported its error, and one stopped because of it
    stats.add({"type": "error", "worker": 0, "message": "boom"})
    assert exit_status([1, -15], stats, [], {1}) == 1
    assert stats.errors == ["worker 0: boom"]
    stats = Stats()  # interrupted: the signal decides, the workers it stopped are no error
    assert exit_status([-15, -15], stats, [signal.SIGINT], set()) == 130
    assert exit_status([-15], stats, [signal.SIGTERM], set()) == 143
    assert stats.errors == []


def test_dead_workers_are_replaced_after_a_back_off_that_doubles():
    replacements = Replacements()
    said = []

    def say(i, backoff):
        said.append((i, backoff))

    assert replacements.due([0], 100.0, say) == []  # noticed: replaced in 1 s
    assert said == [(0, 1.0)]
    assert replacements.due([0], 100.5, say) == []
    assert replacements.due([0], 101.0, say) == [0]
    assert replacements.due([], 101.5, say) == []  # the new one runs
    assert replacements.due([0], 102.0, say) == []  # and died: 2 s now
    assert said[-1] == (0, 2.0)
    assert replacements.due([0], 103.9, say) == []
    assert replacements.due([0, 1], 104.0, say) == [0]  # worker 1 starts at 1 s
    assert said[-1] == (1, 1.0)
    now = 104.0
    for _ in range(10):  # keeps dying: the back-off stops growing at a minute
        replacements.due([0], now, say)
        now += MAX_BACKOFF_S
        replacements.due([0], now, say)
    assert said[-1] == (0, MAX_BACKOFF_S)
