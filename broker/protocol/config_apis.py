"""The schemas of the config admin APIs: DescribeConfigs (32), AlterConfigs (33) and
IncrementalAlterConfigs (44), and the codes their bodies carry (resource types, config
sources, config types, incremental operations).

Fields and the versions carrying them follow Kafka's message definitions up to each API's
newest version; ``registry.py`` lists the versions served.

    >>> body = {"resources": [{"resource_type": 2, "resource_name": "t",
    ...                        "configuration_keys": None}], "include_synonyms": True}
    >>> DESCRIBE_CONFIGS_REQUEST.decode(DESCRIBE_CONFIGS_REQUEST.encode(body, 1), 1)["resources"]
    [{'resource_type': 2, 'resource_name': 't', 'configuration_keys': None}]
"""

from __future__ import annotations

from enum import IntEnum

from .schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    NULLABLE_STRING,
    STRING,
    Array,
    Field,
    Struct,
    struct_array,
)


class ResourceType(IntEnum):
    """Kafka's ConfigResource types (the ones headrace answers, and UNKNOWN)."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8


class ConfigSource(IntEnum):
    """Where a config's value comes from (DescribeConfigs v1+ ``config_source``)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6


class ConfigType(IntEnum):
    """A config's data type (DescribeConfigs v3+ ``config_type``)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class AlterConfigOp(IntEnum):
    """IncrementalAlterConfigs' operations."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


def _resource(*fields: Field) -> tuple[Field, ...]:
    return (Field("resource_type", INT8), Field("resource_name", STRING), *fields)


# --- DescribeConfigs (32): v0-4, v4 flexible -------------------------------------------------

DESCRIBE_CONFIGS_REQUEST = Struct(
    struct_array(
        "resources", *_resource(Field("configuration_keys", Array(STRING, nullable=True)))
    ),
    Field("include_synonyms", BOOL, "1+"),
    Field("include_documentation", BOOL, "3+"),
)
DESCRIBE_CONFIGS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array(
        "results",
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
        *_resource(
            struct_array(
                "configs",
                Field("name", STRING),
                Field("value", NULLABLE_STRING),
                Field("read_only", BOOL),
                Field("config_source", INT8, "1+", default=-1),
                Field("is_default", BOOL, "0"),
                Field("is_sensitive", BOOL),
                struct_array(
                    "synonyms",
                    Field("name", STRING),
                    Field("value", NULLABLE_STRING),
                    Field("source", INT8),
                    versions="1+",
                ),
                Field("config_type", INT8, "3+"),
                Field("documentation", NULLABLE_STRING, "3+"),
            )
        ),
    ),
)

# --- AlterConfigs (33): v0-2, v2 flexible; IncrementalAlterConfigs (44): v0-1, v1 flexible ---

ALTER_CONFIGS_REQUEST = Struct(
    struct_array(
        "resources",
        *_resource(struct_array("configs", Field("name", STRING), Field("value", NULLABLE_STRING))),
    ),
    Field("validate_only", BOOL),
)
INCREMENTAL_ALTER_CONFIGS_REQUEST = Struct(
    struct_array(
        "resources",
        *_resource(
            struct_array(
                "configs",
                Field("name", STRING),
                Field("config_operation", INT8),
                Field("value", NULLABLE_STRING),
            )
        ),
    ),
    Field("validate_only", BOOL),
)


def _alter_response() -> Struct:
    """The response both alter APIs share (a Struct each: their flexible versions differ)."""
    return Struct(
        Field("throttle_time_ms", INT32),
        struct_array(
            "responses",
            Field("error_code", INT16),
            Field("error_message", NULLABLE_STRING),
            *_resource(),
        ),
    )


ALTER_CONFIGS_RESPONSE = _alter_response()
INCREMENTAL_ALTER_CONFIGS_RESPONSE = _alter_response()

__all__ = [
    "ALTER_CONFIGS_REQUEST",
    "ALTER_CONFIGS_RESPONSE",
    "DESCRIBE_CONFIGS_REQUEST",
    "DESCRIBE_CONFIGS_RESPONSE",
    "INCREMENTAL_ALTER_CONFIGS_REQUEST",
    "INCREMENTAL_ALTER_CONFIGS_RESPONSE",
    "AlterConfigOp",
    "ConfigSource",
    "ConfigType",
    "ResourceType",
]
