"""Broker and log configuration: Kafka's property names, units, checks and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.config import BrokerConfig, parse_overrides, parse_properties
from broker.log import ConfigError, LogConfig


def test_properties_format():
    text = "\n".join(
        [
            "# a comment",
            "! another comment",
            "broker.id=3",
            "log.dirs = /data/a,\\",
            "    /data/b",
            "listeners: PLAINTEXT://127.0.0.1:9093",
            "zookeeper.connect   localhost:2181/headrace",
            "key\\=with\\:escapes=value\\tx",
            "",
        ]
    )
    props = parse_properties(text)
    assert props["broker.id"] == "3"
    assert props["log.dirs"] == "/data/a,/data/b"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093"
    assert props["zookeeper.connect"] == "localhost:2181/headrace"
    assert props["key=with:escapes"] == "value\tx"


def test_defaults_are_kafkas():
    config = BrokerConfig({})
    assert config["log.segment.bytes"] == 1073741824
    assert config["log.retention.ms"] == 168 * 3600_000
    assert config["log.roll.ms"] == 168 * 3600_000
    assert config["message.max.bytes"] == 1048588
    assert config["log.dirs"] == ["/tmp/kafka-logs"]
    assert config["num.partitions"] == 1
    assert config["auto.create.topics.enable"] is True
    log_config = LogConfig.from_broker(config)
    assert log_config == LogConfig()


def test_finest_retention_unit_wins():
    assert BrokerConfig({"log.retention.hours": "2"})["log.retention.ms"] == 7_200_000
    assert (
        BrokerConfig({"log.retention.hours": "2", "log.retention.minutes": "3"})["log.retention.ms"]
        == 180_000
    )
    assert (
        BrokerConfig({"log.retention.minutes": "3", "log.retention.ms": "5"})["log.retention.ms"]
        == 5
    )
    assert BrokerConfig({"log.retention.hours": "-1"})["log.retention.ms"] == -1
    assert BrokerConfig({"log.roll.hours": "1"})["log.roll.ms"] == 3_600_000


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("log.segment.bytes", "lots", "log.segment.bytes: 'lots' is not a whole number"),
        ("log.segment.bytes", "10", "log.segment.bytes: 10 is out of range"),
        ("auto.create.topics.enable", "yes", "not true or false"),
        ("log.dir", "  ", "must not be empty"),
        ("log.message.timestamp.type", "Wallclock", "not one of CreateTime, LogAppendTime"),
        ("num.partitions", "0", "num.partitions: 0 is out of range"),
    ],
)
def test_bad_values_name_the_property(name, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        BrokerConfig({name: value})


def test_unknown_properties_are_kept_and_logged(caplog):
    config = BrokerConfig({"log.segmnet.bytes": "5"})
    assert config.unknown == ["log.segmnet.bytes"]
    assert "log.segmnet.bytes" in caplog.text


def test_file_and_overrides(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("broker.id=1\nlog.dirs=/a\n")
    config = BrokerConfig.from_file(path, ["broker.id=7", "log.segment.bytes=4096"])
    assert config["broker.id"] == 7 and config["log.segment.bytes"] == 4096
    with pytest.raises(ConfigError, match="cannot read"):
        BrokerConfig.from_file(tmp_path / "missing.properties")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["broker.id"])


def test_topic_overrides_use_topic_level_names():
    base = LogConfig()
    custom = base.with_overrides(
        {"retention.ms": "1000", "segment.bytes": 4096, "message.timestamp.type": "LogAppendTime"}
    )
    assert (custom.retention_ms, custom.segment_bytes, custom.timestamp_type) == (
        1000,
        4096,
        "LogAppendTime",
    )
    with pytest.raises(ConfigError, match=r"retention\.msec"):
        base.with_overrides({"retention.msec": "1"})
    with pytest.raises(ConfigError, match=r"segment\.bytes"):
        base.with_overrides({"segment.bytes": "-5"})


@pytest.mark.integration  # a fresh interpreter, so no other test's imports count
def test_storage_does_not_import_the_broker_configuration():
    code = "import sys, broker.log; print('broker.config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
