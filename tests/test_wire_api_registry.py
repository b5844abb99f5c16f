"""The API registry: one row per API with a named key, ApiVersions answered from it, and
handler tables checked against it so a broker missing a handler refuses to start."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from broker.cluster import ZkCluster
from broker.config import BrokerConfig
from broker.handlers import RequestHandlers
from broker.log import LogManager
from broker.protocol.registry import (
    API_BY_KEY,
    APIS,
    ApiKey,
    MissingHandlerError,
    api_versions_body,
    check_handlers,
    client_version,
)


def test_every_key_has_one_row_and_the_rows_are_sorted():
    assert [api.key for api in APIS] == sorted(ApiKey)
    assert {api.name for api in APIS} >= {"Produce", "InitProducerId", "ApiVersions"}


def test_our_clients_ask_for_a_served_version():
    for api in APIS:
        assert api.min_version <= api.client_version <= api.max_version, api.name
        assert client_version(api.key) == api.client_version
        assert client_version(api.key, api.min_version) == api.min_version


def test_api_versions_is_answered_from_the_registry():
    advertised = {
        (k["api_key"], k["min_version"], k["max_version"]) for k in api_versions_body()["api_keys"]
    }
    assert advertised == {(a.key, a.min_version, a.max_version) for a in APIS}


def test_a_table_missing_an_api_is_refused_naming_it():
    table = {key: object() for key in ApiKey}
    check_handlers(table)
    del table[ApiKey.LIST_GROUPS]
    with pytest.raises(MissingHandlerError, match=r"ListGroups \(16\)"):
        check_handlers(table)


def test_a_table_with_a_key_outside_the_registry_is_refused():
    with pytest.raises(MissingHandlerError, match=r"\[77\]"):
        check_handlers({**{key: object() for key in ApiKey}, 77: object()})


def _handlers(tmp_path, cls):
    config = BrokerConfig({"broker.id": "1", "log.dirs": str(tmp_path / "logs")})
    manager = LogManager.from_broker_config(config, clock=Clock())
    # Built, never started: no ZooKeeper is reached.
    cluster = ZkCluster("127.0.0.1:1", 1, "127.0.0.1", 9092, Clock())
    return cls(config, manager, cluster, Clock())


def test_the_broker_handlers_answer_every_advertised_api(tmp_path):
    handlers = _handlers(tmp_path, RequestHandlers)
    assert {*handlers.table, *handlers.contextual} == set(API_BY_KEY)


def test_a_handler_set_missing_one_api_fails_at_construction(tmp_path):
    class WithoutDeleteTopics(RequestHandlers):
        def handler_table(self):
            table = super().handler_table()
            del table[ApiKey.DELETE_TOPICS]
            return table

    with pytest.raises(MissingHandlerError, match=r"DeleteTopics \(20\)"):
        _handlers(tmp_path, WithoutDeleteTopics)
