"""``headrace configs``, ``headrace topics alter`` and the configs of ``headrace topics
describe``, run as commands against a real broker."""

from __future__ import annotations

import subprocess
import sys

from conftest import create_topic


def headrace(cluster, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "headrace.cli", *args, "--bootstrap-server", cluster.bootstrap]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _ok(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_topics_alter_and_describe_show_configs_with_their_source(cluster1):
    create_topic(cluster1.brokers[0].port, "cli-cfg", 2, {"segment.bytes": "100000"})
    altered = headrace(
        cluster1,
        "topics", "alter", "--topic", "cli-cfg",
        "--config", "retention.ms=60000", "--config", "max.message.bytes=5000",
        "--delete-config", "segment.bytes",
    )  # fmt: skip
    assert _ok(altered) == ["altered the configs of topic cli-cfg"]
    lines = _ok(headrace(cluster1, "topics", "describe", "--topic", "cli-cfg"))
    assert lines[0] == (
        "Topic: cli-cfg\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: "
        "retention.ms=60000 (DYNAMIC_TOPIC_CONFIG), max.message.bytes=5000 (DYNAMIC_TOPIC_CONFIG)"
    )
    assert len(lines) == 3 and lines[1].startswith("\tTopic: cli-cfg\tPartition: 0")

    refused = headrace(cluster1, "topics", "alter", "--topic", "cli-cfg", "--config", "flush.ms=x")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "headrace topics: INVALID_CONFIG: flush.ms: 'x' is not a whole number"
    )
    missing = headrace(cluster1, "topics", "alter", "--topic", "nope", "--config", "flush.ms=1")
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr
    empty = headrace(cluster1, "topics", "alter", "--topic", "cli-cfg")
    assert empty.returncode == 2 and "say what to change" in empty.stderr


def test_configs_describes_and_alters_like_kafka_configs(cluster1):
    create_topic(cluster1.brokers[0].port, "cli-kc", 1)
    done = headrace(
        cluster1,
        "configs", "--topic", "cli-kc", "--alter",
        "--add-config", "retention.ms=120000,message.timestamp.type=LogAppendTime",
    )  # fmt: skip
    assert _ok(done) == ["Completed updating config for topic cli-kc."]
    assert _ok(headrace(cluster1, "configs", "--topic", "cli-kc", "--describe")) == [
        "Dynamic configs for topic cli-kc are:",
        "  retention.ms=120000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=120000,"
        " DEFAULT_CONFIG:log.retention.hours=168}",
        "  message.timestamp.type=LogAppendTime sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:"
        "message.timestamp.type=LogAppendTime, "
        "DEFAULT_CONFIG:log.message.timestamp.type=CreateTime}",
    ]
    deleted = headrace(
        cluster1, "configs", "--topic", "cli-kc", "--alter", "--delete-config", "retention.ms"
    )
    _ok(deleted)
    described = _ok(headrace(cluster1, "configs", "--topic", "cli-kc", "--describe", "--all"))
    assert described[0] == "All configs for topic cli-kc are:"
    assert any(line.startswith("  retention.ms=604800000 sensitive=false") for line in described)

    broker = _ok(headrace(cluster1, "configs", "--broker", "1", "--describe", "--all"))
    assert broker[0] == "All configs for broker 1 are:"
    assert "  broker.id=1 sensitive=false synonyms={STATIC_BROKER_CONFIG:broker.id=1," in (
        " ".join(broker)
    )
    assert _ok(headrace(cluster1, "configs", "--broker", "1", "--describe")) == [
        "Dynamic configs for broker 1 are:"  # none set yet
    ]
    cluster_wide = ("configs", "--broker-defaults")
    done = headrace(cluster1, *cluster_wide, "--alter", "--add-config", "log.retention.ms=5000")
    assert _ok(done) == ["Completed updating default config for brokers in the cluster."]
    assert _ok(headrace(cluster1, *cluster_wide, "--describe")) == [
        "Default configs for brokers in the cluster are:",
        "  log.retention.ms=5000 sensitive=false synonyms="
        "{DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=5000}",
    ]
    assert _ok(headrace(cluster1, "configs", "--broker", "1", "--describe"))[1].startswith(
        "  log.retention.ms=5000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:"
    )
    _ok(headrace(cluster1, *cluster_wide, "--alter", "--delete-config", "log.retention.ms"))
    static = headrace(
        cluster1, "configs", "--broker", "1", "--alter", "--add-config", "log.retention.hours=1"
    )
    assert static.returncode == 1
    assert "INVALID_REQUEST" in static.stderr and "Cannot update these configs" in static.stderr
    loggers = _ok(headrace(cluster1, "configs", "--broker-logger", "1", "--describe"))
    assert loggers[0] == "All configs for broker-logger 1 are:"
    assert loggers[1].startswith("  root=")


def test_configs_refuses_what_kafka_configs_refuses(cluster1):
    missing = headrace(cluster1, "configs", "--topic", "nope", "--describe")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "headrace configs: UNKNOWN_TOPIC_OR_PARTITION: Topic nope does not exist"
    )
    bad = headrace(cluster1, "configs", "--topic", "nope", "--alter", "--add-config", "novalue")
    assert bad.returncode == 2 and "'novalue' is not key=value" in bad.stderr
    neither = headrace(cluster1, "configs", "--topic", "nope")
    assert neither.returncode == 2 and "--describe" in neither.stderr
    absent = headrace(cluster1, "configs", "--broker", "9", "--describe")
    assert absent.returncode == 1 and "broker 9 is not in the cluster" in absent.stderr
