"""The request and response schemas of DescribeAcls (29), CreateAcls (30) and DeleteAcls
(31), versions 0-3 (flexible from 2; v1 brought the pattern type, KIP-290).
``registry.py`` lists the versions served; the enum codes are those of ``acls.py``.

Field names and the versions that carry them follow Apache Kafka's message definitions.

    >>> body = {"creations": [{"resource_type": 2, "resource_name": "t",
    ...     "resource_pattern_type": 3, "principal": "User:a", "host": "*", "operation": 4,
    ...     "permission_type": 3}]}
    >>> CREATE_ACLS_REQUEST.decode(CREATE_ACLS_REQUEST.encode(body, 0), 0) == body
    True
"""

from __future__ import annotations

from .acls import LITERAL
from .schema import INT8, INT16, INT32, NULLABLE_STRING, STRING, Field, Struct, struct_array


def _filter_fields() -> tuple[Field, ...]:
    """The fields of an ACL binding filter (DescribeAcls' request, DeleteAcls' filters)."""
    return (
        Field("resource_type_filter", INT8),
        Field("resource_name_filter", NULLABLE_STRING),
        Field("pattern_type_filter", INT8, "1+", default=LITERAL),
        Field("principal_filter", NULLABLE_STRING),
        Field("host_filter", NULLABLE_STRING),
        Field("operation", INT8),
        Field("permission_type", INT8),
    )


# --- DescribeAcls (29) -----------------------------------------------------------------------

DESCRIBE_ACLS_REQUEST = Struct(*_filter_fields())
DESCRIBE_ACLS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16),
    Field("error_message", NULLABLE_STRING),
    struct_array(
        "resources",
        Field("resource_type", INT8),
        Field("resource_name", STRING),
        Field("pattern_type", INT8, "1+", default=LITERAL),
        struct_array(
            "acls",
            Field("principal", STRING),
            Field("host", STRING),
            Field("operation", INT8),
            Field("permission_type", INT8),
        ),
    ),
)

# --- CreateAcls (30) -------------------------------------------------------------------------

CREATE_ACLS_REQUEST = Struct(
    struct_array(
        "creations",
        Field("resource_type", INT8),
        Field("resource_name", STRING),
        Field("resource_pattern_type", INT8, "1+", default=LITERAL),
        Field("principal", STRING),
        Field("host", STRING),
        Field("operation", INT8),
        Field("permission_type", INT8),
    )
)
CREATE_ACLS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array("results", Field("error_code", INT16), Field("error_message", NULLABLE_STRING)),
)

# --- DeleteAcls (31) -------------------------------------------------------------------------

DELETE_ACLS_REQUEST = Struct(struct_array("filters", *_filter_fields()))
DELETE_ACLS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array(
        "filter_results",
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
        struct_array(
            "matching_acls",
            Field("error_code", INT16),
            Field("error_message", NULLABLE_STRING),
            Field("resource_type", INT8),
            Field("resource_name", STRING),
            Field("pattern_type", INT8, "1+", default=LITERAL),
            Field("principal", STRING),
            Field("host", STRING),
            Field("operation", INT8),
            Field("permission_type", INT8),
        ),
    ),
)
