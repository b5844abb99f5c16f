"""The SASL APIs' schemas without sockets: round trips of every version served, byte-for-byte
agreement with kafka-python's classes generated from Kafka's JSON, and golden bytes."""

from __future__ import annotations

import pytest
from kafka.protocol import sasl as kp_sasl
from kafka.protocol.admin import users as kp_users
from schema_samples import assert_agrees_with_json_class, project, sample

from broker.protocol.registry import API_BY_KEY, ApiKey, api_versions_body
from broker.protocol.sasl_apis import ScramMechanism

CLASSES = {
    ApiKey.SASL_HANDSHAKE: kp_sasl.SaslHandshakeRequest,
    ApiKey.SASL_AUTHENTICATE: kp_sasl.SaslAuthenticateRequest,
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: kp_users.DescribeUserScramCredentialsRequest,
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: kp_users.AlterUserScramCredentialsRequest,
}
RESPONSES = {
    ApiKey.SASL_HANDSHAKE: kp_sasl.SaslHandshakeResponse,
    ApiKey.SASL_AUTHENTICATE: kp_sasl.SaslAuthenticateResponse,
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: kp_users.DescribeUserScramCredentialsResponse,
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: kp_users.AlterUserScramCredentialsResponse,
}
VERSIONS = [
    (API_BY_KEY[k], v)
    for k in CLASSES
    for v in range(API_BY_KEY[k].min_version, API_BY_KEY[k].max_version + 1)
]
IDS = [f"{a.name}-v{v}" for a, v in VERSIONS]


def test_versions_served_are_kafkas():
    advertised = {
        k["api_key"]: (k["min_version"], k["max_version"]) for k in api_versions_body()["api_keys"]
    }
    assert {k: advertised[k] for k in (17, 36, 50, 51)} == {
        17: (0, 1),
        36: (0, 2),
        50: (0, 0),
        51: (0, 0),
    }
    assert [API_BY_KEY[k].flexible_from for k in CLASSES] == [None, 2, 0, 0]


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("api, version", VERSIONS, ids=IDS)
def test_every_version_round_trips(api, version, nulls):
    for schema in (api.request, api.response):
        body = sample(schema, version, nulls)
        assert project(schema.decode(schema.encode(body, version), version), body) == body


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("side", ["Request", "Response"])
@pytest.mark.parametrize("api, version", VERSIONS, ids=IDS)
def test_bytes_equal_kafka_python_json_generated_classes(api, version, side, nulls):
    schema = api.request if side == "Request" else api.response
    cls = (CLASSES if side == "Request" else RESPONSES)[api.key]
    assert bool(cls.flexible_version_q(version)) == api.is_flexible(version)
    assert_agrees_with_json_class(cls, schema, version, sample(schema, version, nulls))


def test_golden_sasl_authenticate_v2_response():
    schema = API_BY_KEY[ApiKey.SASL_AUTHENTICATE].response
    body = {"error_code": 58, "error_message": "no", "auth_bytes": b"", "session_lifetime_ms": 0}
    expected = bytes.fromhex(
        "003a"  # error_code 58 SASL_AUTHENTICATION_FAILED
        "03"
        "6e6f"  # compact string "no"
        "01"  # compact bytes, empty
        "0000000000000000"  # session_lifetime_ms 0
        "00"  # no tagged fields
    )
    assert schema.encode(body, 2) == expected
    assert schema.decode(expected, 2) == body


def test_golden_sasl_handshake_v1_response():
    schema = API_BY_KEY[ApiKey.SASL_HANDSHAKE].response
    body = {"error_code": 33, "mechanisms": ["PLAIN"]}
    expected = bytes.fromhex(
        "0021"  # error_code 33 UNSUPPORTED_SASL_MECHANISM
        "00000001"  # one mechanism enabled
        "0005"
        "504c41494e"  # "PLAIN"
    )
    assert schema.encode(body, 1) == expected


def test_golden_alter_user_scram_credentials_request():
    schema = API_BY_KEY[ApiKey.ALTER_USER_SCRAM_CREDENTIALS].request
    body = {
        "deletions": [{"name": "b", "mechanism": ScramMechanism.SCRAM_SHA_256}],
        "upsertions": [
            {
                "name": "a",
                "mechanism": ScramMechanism.SCRAM_SHA_512,
                "iterations": 4096,
                "salt": b"\x01",
                "salted_password": b"\x02\x03",
            }
        ],
    }
    expected = bytes.fromhex(
        "02"  # one deletion (compact array)
        "0262"
        "01"
        "00"  # name "b", SCRAM-SHA-256, no tags
        "02"  # one upsertion
        "0261"
        "02"
        "00001000"  # name "a", SCRAM-SHA-512, 4096 iterations
        "0201"
        "030203"
        "00"  # salt, salted password, no tags
        "00"  # no tagged fields
    )
    assert schema.encode(body, 0) == expected
    assert schema.decode(expected, 0) == body
    assert ScramMechanism(2).mechanism_name == "SCRAM-SHA-512"
