"""Replication's broker and topic properties: Kafka's names, defaults and checks."""

from __future__ import annotations

import re

import pytest

from broker.config import BrokerConfig
from broker.log import ConfigError, LogConfig


def test_replication_defaults_are_kafkas():
    config = BrokerConfig({})
    assert {
        name: config[name]
        for name in (
            "default.replication.factor",
            "min.insync.replicas",
            "replica.lag.time.max.ms",
            "unclean.leader.election.enable",
            "auto.leader.rebalance.enable",
            "leader.imbalance.check.interval.seconds",
            "controlled.shutdown.enable",
            "controlled.shutdown.max.retries",
            "controlled.shutdown.retry.backoff.ms",
            "replica.fetch.max.bytes",
            "replica.fetch.wait.max.ms",
            "replica.fetch.min.bytes",
            "replica.fetch.backoff.ms",
            "replica.socket.timeout.ms",
        )
    } == {
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "replica.lag.time.max.ms": 30000,
        "unclean.leader.election.enable": False,
        "auto.leader.rebalance.enable": True,
        "leader.imbalance.check.interval.seconds": 300,
        "controlled.shutdown.enable": True,
        "controlled.shutdown.max.retries": 3,
        "controlled.shutdown.retry.backoff.ms": 5000,
        "replica.fetch.max.bytes": 1048576,
        "replica.fetch.wait.max.ms": 500,
        "replica.fetch.min.bytes": 1,
        "replica.fetch.backoff.ms": 1000,
        "replica.socket.timeout.ms": 30000,
    }


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("default.replication.factor", "0", "default.replication.factor: 0 is out of range"),
        ("min.insync.replicas", "0", "min.insync.replicas: 0 is out of range"),
        ("replica.lag.time.max.ms", "soon", "replica.lag.time.max.ms: 'soon' is not a whole"),
        ("unclean.leader.election.enable", "yes", "'yes' is not true or false"),
        ("auto.leader.rebalance.enable", "1", "'1' is not true or false"),
        ("leader.imbalance.check.interval.seconds", "0", "is out of range"),
        ("replica.fetch.min.bytes", "0", "replica.fetch.min.bytes: 0 is out of range"),
        ("replica.socket.timeout.ms", "100", "at least replica.fetch.wait.max.ms"),
    ],
)
def test_bad_replication_values_are_refused_naming_the_property(name, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        BrokerConfig({name: value})


def test_topic_level_replication_settings_override_the_brokers():
    broker = LogConfig.from_broker(
        BrokerConfig({"min.insync.replicas": "2", "unclean.leader.election.enable": "true"})
    )
    assert (broker.min_insync_replicas, broker.unclean_leader_election_enable) == (2, True)
    topic = broker.with_overrides(
        {"min.insync.replicas": "3", "unclean.leader.election.enable": "FALSE"}
    )
    assert (topic.min_insync_replicas, topic.unclean_leader_election_enable) == (3, False)
    with pytest.raises(ConfigError, match=r"min\.insync\.replicas: 0 is out of range"):
        broker.with_overrides({"min.insync.replicas": "0"})
    with pytest.raises(ConfigError, match=r"unclean\.leader\.election\.enable: 'maybe'"):
        broker.with_overrides({"unclean.leader.election.enable": "maybe"})
