"""The schemas of the SASL APIs: SaslHandshake (17), SaslAuthenticate (36), and the SCRAM
credential admin APIs DescribeUserScramCredentials (50) and AlterUserScramCredentials (51)
(KIP-554, born flexible); ``registry.py`` lists the versions served.

Field names and versions follow Kafka's message definitions.  A SCRAM mechanism travels in
the credential APIs as an int8 (``ScramMechanism``).

    >>> SASL_HANDSHAKE_REQUEST.decode(b"\\x00\\x05PLAIN", 1)
    {'mechanism': 'PLAIN'}
"""

from __future__ import annotations

from enum import IntEnum

from .schema import (
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    NULLABLE_STRING,
    STRING,
    Array,
    Field,
    Struct,
    struct_array,
)


class ScramMechanism(IntEnum):
    """Kafka's SCRAM mechanism codes in the credential APIs."""

    UNKNOWN = 0
    SCRAM_SHA_256 = 1
    SCRAM_SHA_512 = 2

    @property
    def mechanism_name(self) -> str:
        """``SCRAM-SHA-256``: the SASL name of the mechanism."""
        return self.name.replace("_", "-")


# --- SaslHandshake (17) -----------------------------------------------------------------------

SASL_HANDSHAKE_REQUEST = Struct(Field("mechanism", STRING))
SASL_HANDSHAKE_RESPONSE = Struct(Field("error_code", INT16), Field("mechanisms", Array(STRING)))

# --- SaslAuthenticate (36) --------------------------------------------------------------------

SASL_AUTHENTICATE_REQUEST = Struct(Field("auth_bytes", BYTES))
SASL_AUTHENTICATE_RESPONSE = Struct(
    Field("error_code", INT16),
    Field("error_message", NULLABLE_STRING),
    Field("auth_bytes", BYTES),
    Field("session_lifetime_ms", INT64, "1+"),
)

# --- DescribeUserScramCredentials (50) --------------------------------------------------------

DESCRIBE_USER_SCRAM_CREDENTIALS_REQUEST = Struct(
    struct_array("users", Field("name", STRING), nullable=True),
)
DESCRIBE_USER_SCRAM_CREDENTIALS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16),
    Field("error_message", NULLABLE_STRING),
    struct_array(
        "results",
        Field("user", STRING),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
        struct_array("credential_infos", Field("mechanism", INT8), Field("iterations", INT32)),
    ),
)

# --- AlterUserScramCredentials (51) -----------------------------------------------------------

ALTER_USER_SCRAM_CREDENTIALS_REQUEST = Struct(
    struct_array("deletions", Field("name", STRING), Field("mechanism", INT8)),
    struct_array(
        "upsertions",
        Field("name", STRING),
        Field("mechanism", INT8),
        Field("iterations", INT32),
        Field("salt", BYTES),
        Field("salted_password", BYTES),
    ),
)
ALTER_USER_SCRAM_CREDENTIALS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array(
        "results",
        Field("user", STRING),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
    ),
)
