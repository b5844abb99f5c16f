"""The API registry: a named key per Kafka API, the versions the broker serves, the version
our clients ask for, and the request and response schemas; ApiVersions is answered from it.

Every API is one row of ``APIS``; the schemas are in ``apis.py``, ``group_apis.py`` and
``config_apis.py``, ``cluster_apis.py``, ``acl_apis.py``, ``sasl_apis.py``.
Serving a new version is widening its row; serving a new API is adding a key and a row, and
the broker then refuses to start until a handler is registered for it (``check_handlers``).
A row's ``flexible_from`` is the API's first flexible version (KIP-482; Kafka's
"flexibleVersions"), None if it has none: from it on, the codec writes the row's schemas in
compact form with tagged fields, and requests and responses carry header v2 and v1.

    >>> API_BY_KEY[ApiKey.METADATA].name, API_BY_KEY[ApiKey.METADATA].max_version
    ('Metadata', 12)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from . import acl_apis, admin_apis, apis, cluster_apis, config_apis, group_apis, sasl_apis
from .schema import Struct


class ApiKey(IntEnum):
    """The Kafka API keys this broker serves (``ApiKey.PRODUCE == 0``)."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    CONTROLLED_SHUTDOWN = 7
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61

    @property
    def title(self) -> str:
        """Kafka's name for the API: ``ApiKey.INIT_PRODUCER_ID.title == "InitProducerId"``."""
        return "".join(word.capitalize() for word in self.name.split("_"))


@dataclass(frozen=True)
class Api:
    """One row of the registry: the key, the versions served, the version our clients ask
    for, the request and response schemas, and the first flexible version (None: none).
    The row tells its schemas where their flexible versions begin."""

    key: ApiKey
    min_version: int
    max_version: int
    client_version: int
    request: Struct
    response: Struct
    flexible_from: int | None = None

    def __post_init__(self):
        for schema in (self.request, self.response):
            if schema.flexible_from not in (None, self.flexible_from):
                raise ValueError(f"{self.name}: a schema flexible from another version")
            schema.flexible_from = self.flexible_from

    def is_flexible(self, version: int) -> bool:
        """Whether ``version`` is flexible: compact encodings, tagged fields, header v2/v1."""
        return self.flexible_from is not None and version >= self.flexible_from

    @property
    def name(self) -> str:
        return self.key.title


K, a, g, ad, c, cl, s = ApiKey, apis, group_apis, admin_apis, config_apis, cluster_apis, sasl_apis
# key, versions served (min, max), our clients' version, request and response schemas, first
# flexible version
# one row per API, unwrapped
# fmt: off
APIS: tuple[Api, ...] = (
    Api(K.PRODUCE, 0, 9, 9, a.PRODUCE_REQUEST, a.PRODUCE_RESPONSE, flexible_from=9),
    Api(K.FETCH, 4, 13, 12, a.FETCH_REQUEST, a.FETCH_RESPONSE, flexible_from=12),
    Api(K.LIST_OFFSETS, 1, 7, 7, a.LIST_OFFSETS_REQUEST, a.LIST_OFFSETS_RESPONSE, flexible_from=6),
    Api(K.METADATA, 0, 12, 12, a.METADATA_REQUEST, a.METADATA_RESPONSE, flexible_from=9),
    Api(K.CONTROLLED_SHUTDOWN, 1, 3, 3, a.CONTROLLED_SHUTDOWN_REQUEST, a.CONTROLLED_SHUTDOWN_RESPONSE, flexible_from=3),  # noqa: E501
    Api(K.OFFSET_COMMIT, 2, 9, 7, g.OFFSET_COMMIT_REQUEST, g.OFFSET_COMMIT_RESPONSE, flexible_from=8),  # noqa: E501
    Api(K.OFFSET_FETCH, 1, 8, 5, g.OFFSET_FETCH_REQUEST, g.OFFSET_FETCH_RESPONSE, flexible_from=6),
    Api(K.FIND_COORDINATOR, 0, 4, 2, g.FIND_COORDINATOR_REQUEST, g.FIND_COORDINATOR_RESPONSE, flexible_from=3),  # noqa: E501
    Api(K.JOIN_GROUP, 0, 9, 5, g.JOIN_GROUP_REQUEST, g.JOIN_GROUP_RESPONSE, flexible_from=6),
    Api(K.HEARTBEAT, 0, 4, 3, g.HEARTBEAT_REQUEST, g.HEARTBEAT_RESPONSE, flexible_from=4),
    Api(K.LEAVE_GROUP, 0, 5, 1, g.LEAVE_GROUP_REQUEST, g.LEAVE_GROUP_RESPONSE, flexible_from=4),
    Api(K.SYNC_GROUP, 0, 5, 3, g.SYNC_GROUP_REQUEST, g.SYNC_GROUP_RESPONSE, flexible_from=4),
    Api(K.DESCRIBE_GROUPS, 0, 5, 4, g.DESCRIBE_GROUPS_REQUEST, g.DESCRIBE_GROUPS_RESPONSE, flexible_from=5),  # noqa: E501
    Api(K.LIST_GROUPS, 0, 4, 2, g.LIST_GROUPS_REQUEST, g.LIST_GROUPS_RESPONSE, flexible_from=3),
    Api(K.SASL_HANDSHAKE, 0, 1, 1, s.SASL_HANDSHAKE_REQUEST, s.SASL_HANDSHAKE_RESPONSE),
    Api(K.API_VERSIONS, 0, 3, 3, a.API_VERSIONS_REQUEST, a.API_VERSIONS_RESPONSE, flexible_from=3),
    Api(K.CREATE_TOPICS, 2, 7, 7, a.CREATE_TOPICS_REQUEST, a.CREATE_TOPICS_RESPONSE, flexible_from=5),  # noqa: E501
    Api(K.DELETE_TOPICS, 1, 6, 5, a.DELETE_TOPICS_REQUEST, a.DELETE_TOPICS_RESPONSE, flexible_from=4),  # noqa: E501
    Api(K.DELETE_RECORDS, 0, 2, 2, ad.DELETE_RECORDS_REQUEST, ad.DELETE_RECORDS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.INIT_PRODUCER_ID, 0, 4, 4, a.INIT_PRODUCER_ID_REQUEST, a.INIT_PRODUCER_ID_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.OFFSET_FOR_LEADER_EPOCH, 0, 4, 4, a.OFFSET_FOR_LEADER_EPOCH_REQUEST, a.OFFSET_FOR_LEADER_EPOCH_RESPONSE, flexible_from=4),  # noqa: E501
    Api(K.DESCRIBE_ACLS, 0, 3, 3, acl_apis.DESCRIBE_ACLS_REQUEST, acl_apis.DESCRIBE_ACLS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.CREATE_ACLS, 0, 3, 3, acl_apis.CREATE_ACLS_REQUEST, acl_apis.CREATE_ACLS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.DELETE_ACLS, 0, 3, 3, acl_apis.DELETE_ACLS_REQUEST, acl_apis.DELETE_ACLS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.DESCRIBE_CONFIGS, 0, 4, 4, c.DESCRIBE_CONFIGS_REQUEST, c.DESCRIBE_CONFIGS_RESPONSE, flexible_from=4),  # noqa: E501
    Api(K.ALTER_CONFIGS, 0, 2, 2, c.ALTER_CONFIGS_REQUEST, c.ALTER_CONFIGS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.DESCRIBE_LOG_DIRS, 0, 4, 4, a.DESCRIBE_LOG_DIRS_REQUEST, a.DESCRIBE_LOG_DIRS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.SASL_AUTHENTICATE, 0, 2, 2, s.SASL_AUTHENTICATE_REQUEST, s.SASL_AUTHENTICATE_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.CREATE_PARTITIONS, 0, 3, 3, ad.CREATE_PARTITIONS_REQUEST, ad.CREATE_PARTITIONS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.DELETE_GROUPS, 0, 2, 2, ad.DELETE_GROUPS_REQUEST, ad.DELETE_GROUPS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.ELECT_LEADERS, 0, 2, 2, ad.ELECT_LEADERS_REQUEST, ad.ELECT_LEADERS_RESPONSE, flexible_from=2),  # noqa: E501
    Api(K.INCREMENTAL_ALTER_CONFIGS, 0, 1, 1, c.INCREMENTAL_ALTER_CONFIGS_REQUEST, c.INCREMENTAL_ALTER_CONFIGS_RESPONSE, flexible_from=1),  # noqa: E501
    Api(K.OFFSET_DELETE, 0, 0, 0, ad.OFFSET_DELETE_REQUEST, ad.OFFSET_DELETE_RESPONSE),
    Api(K.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0, 0, s.DESCRIBE_USER_SCRAM_CREDENTIALS_REQUEST, s.DESCRIBE_USER_SCRAM_CREDENTIALS_RESPONSE, flexible_from=0),  # noqa: E501
    Api(K.ALTER_USER_SCRAM_CREDENTIALS, 0, 0, 0, s.ALTER_USER_SCRAM_CREDENTIALS_REQUEST, s.ALTER_USER_SCRAM_CREDENTIALS_RESPONSE, flexible_from=0),  # noqa: E501
    Api(K.DESCRIBE_CLUSTER, 0, 1, 1, cl.DESCRIBE_CLUSTER_REQUEST, cl.DESCRIBE_CLUSTER_RESPONSE, flexible_from=0),  # noqa: E501
    Api(K.DESCRIBE_PRODUCERS, 0, 0, 0, cl.DESCRIBE_PRODUCERS_REQUEST, cl.DESCRIBE_PRODUCERS_RESPONSE, flexible_from=0),  # noqa: E501
)
# fmt: on
del K, a, g, ad, c, cl, s
API_BY_KEY: dict[int, Api] = {api.key: api for api in APIS}

# The APIs of the group coordinator (``broker/group_handlers.py``), in the order it lists them.
GROUP_APIS: tuple[Api, ...] = tuple(
    API_BY_KEY[key]
    for key in (
        ApiKey.FIND_COORDINATOR,
        ApiKey.JOIN_GROUP,
        ApiKey.HEARTBEAT,
        ApiKey.LEAVE_GROUP,
        ApiKey.SYNC_GROUP,
        ApiKey.OFFSET_COMMIT,
        ApiKey.OFFSET_FETCH,
        ApiKey.DESCRIBE_GROUPS,
        ApiKey.LIST_GROUPS,
    )
)


def client_version(key: ApiKey, version: int | None = None) -> int:
    """``version`` if given, else the version our clients ask for of API ``key``."""
    return API_BY_KEY[key].client_version if version is None else version


def api_versions_body(error_code: int = 0) -> dict:
    """The ApiVersions response body listing every API and version range we serve."""
    return {
        "error_code": error_code,
        "api_keys": [
            {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
            for a in APIS
        ],
        "throttle_time_ms": 0,
    }


class MissingHandlerError(RuntimeError):
    """A handler table that does not answer every API the broker advertises."""


def check_handlers(table: Mapping[int, object]) -> None:
    """Raise MissingHandlerError, naming each one, if an API in ``APIS`` has no handler in
    ``table`` (keyed by ``ApiKey``), or if ``table`` holds a key the registry does not know."""
    missing = [f"{api.name} ({api.key:d})" for api in APIS if api.key not in table]
    unknown = sorted(key for key in table if key not in API_BY_KEY)
    if missing:
        raise MissingHandlerError(f"no handler for the advertised API {', '.join(missing)}")
    if unknown:
        raise MissingHandlerError(f"handlers for API keys not in the registry: {unknown}")


__all__ = [
    "APIS",
    "API_BY_KEY",
    "GROUP_APIS",
    "Api",
    "ApiKey",
    "MissingHandlerError",
    "api_versions_body",
    "check_handlers",
    "client_version",
]
