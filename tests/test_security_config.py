"""Pure tests of the security configuration: listener parsing and Kafka's checks, the
principal mapping rules (Kafka's own examples), TLS settings' clear errors at start, and the
per-listener ``listener.name.<name>.<key>`` properties."""

from __future__ import annotations

import pytest

from broker.config import BrokerConfig
from broker.log import ConfigError
from broker.security import (
    Listener,
    NoMatchingRule,
    PrincipalMapper,
    TlsSettings,
    listener_plan,
)


def plan(**props):
    return listener_plan(BrokerConfig({k.replace("_", "."): v for k, v in props.items()}))


def test_several_listeners_with_custom_names_and_the_default_map():
    p = listener_plan(
        BrokerConfig(
            {
                "listeners": "PLAINTEXT://127.0.0.1:9092,SSL://:9093,INTERNAL://[::1]:9094",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:SSL",
                "advertised.listeners": "PLAINTEXT://a:1,SSL://a:2,INTERNAL://b:3",
                "inter.broker.listener.name": "internal",
            }
        )
    )
    assert p.listeners == (
        Listener("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 9092),
        Listener("SSL", "SSL", "", 9093),
        Listener("INTERNAL", "SSL", "::1", 9094),
    )
    assert [x.endpoint for x in p.advertised] == ["PLAINTEXT://a:1", "SSL://a:2", "INTERNAL://b:3"]
    assert p.inter_broker == "INTERNAL"
    # without the map, Kafka's default: each protocol's name maps to itself
    assert plan(listeners="SASL_SSL://h:1,PLAINTEXT://h:2").listeners[0].security_protocol == (
        "SASL_SSL"
    )


def test_security_inter_broker_protocol_names_the_listener_of_that_protocol():
    p = plan(listeners="PLAINTEXT://h:1,SSL://h:2", security_inter_broker_protocol="SSL")
    assert p.inter_broker == "SSL"
    assert plan(listeners="PLAINTEXT://h:1").inter_broker == "PLAINTEXT"  # the default


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"listeners": "INTERNAL://h:1"}, "no security protocol defined for listener INTERNAL"),
        ({"listeners": "PLAINTEXT://h:1,SSL://h:1"}, "different port"),
        ({"listeners": "PLAINTEXT://h:1,PLAINTEXT://h:2"}, "different name"),
        ({"listeners": "PLAINTEXT://h"}, "NAME://host:port"),
        (
            {"listeners": "PLAINTEXT://h:1", "listener.security.protocol.map": "PLAINTEXT:TLS"},
            r"'TLS' \(for PLAINTEXT\) is not one of",
        ),
        (
            {"listeners": "PLAINTEXT://h:1", "advertised.listeners": "SSL://h:2"},
            "listener SSL is not one of listeners",
        ),
        (
            {
                "listeners": "PLAINTEXT://h:1,SSL://h:2",
                "inter.broker.listener.name": "SSL",
                "security.inter.broker.protocol": "SSL",
            },
            "only one of inter.broker.listener.name and security.inter.broker.protocol",
        ),
        ({"listeners": "SSL://h:2"}, "PLAINTEXT must be a listener name defined in advertised"),
        (
            {"listeners": "PLAINTEXT://h:1", "inter.broker.listener.name": "INTERNAL"},
            "INTERNAL must be a listener name",
        ),
    ],
)
def test_bad_listener_settings_are_clear_errors(props, message):
    with pytest.raises(ConfigError, match=message):
        listener_plan(BrokerConfig(props))


def test_per_listener_keys_override_the_plain_key_and_are_not_unknown():
    config = BrokerConfig(
        {
            "ssl.client.auth": "required",
            "listener.name.external.ssl.client.auth": "none",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": "x",
            "listener.name.external.no.such.key": "1",
        }
    )
    assert config.for_listener("EXTERNAL", "ssl.client.auth") == "none"
    assert config.for_listener("INTERNAL", "ssl.client.auth") == "required"
    assert config.unknown == ["listener.name.external.no.such.key"]


# --- principal mapping: Kafka's examples (SslPrincipalMapperTest's rules) ----------------

RULES = (
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,"
    "DEFAULT"
)


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("CN=kafka-server1,OU=ServiceUsers,O=Org,C=US", "kafka-server1"),
        ("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US", "duke@javasoft"),
        ("CN=Duke,OU=JavaSoft", "duke"),
        ("OU=JavaSoft,O=Sun Microsystems,C=US", "OU=JavaSoft,O=Sun Microsystems,C=US"),
    ],
)
def test_principal_mapping_rules_apply_in_order(subject, name):
    assert PrincipalMapper.from_rules(RULES).name(subject) == name


def test_upper_case_rule_and_default_rules():
    mapper = PrincipalMapper.from_rules("RULE:^CN=(.*?),OU=(.*?)$/$1/U")
    assert mapper.name("CN=alice,OU=test") == "ALICE"
    assert PrincipalMapper.from_rules(None).name("CN=x,O=y") == "CN=x,O=y"
    assert PrincipalMapper.from_rules("DEFAULT").name("CN=x") == "CN=x"


def test_a_subject_no_rule_matches_is_refused():
    mapper = PrincipalMapper.from_rules("RULE:^CN=(.*?),OU=admins$/$1/")
    with pytest.raises(NoMatchingRule, match="no rules apply to CN=bob,OU=users"):
        mapper.name("CN=bob,OU=users")


@pytest.mark.parametrize("rules", ["RULE:^CN=(.*?)/$1", "NOTARULE", "RULE:(/$1/"])
def test_malformed_rules_are_config_errors(rules):
    with pytest.raises(ConfigError, match=r"ssl\.principal\.mapping\.rules"):
        PrincipalMapper.from_rules(rules)


# --- TLS settings: clear errors at start ---------------------------------------------------


def tls(certs, **props):
    values = {**certs.broker_properties(), **{k: v for k, v in props.items()}}
    config = BrokerConfig({k.replace("_", "."): v for k, v in values.items()})
    return TlsSettings.for_listener(config, "SSL")


def test_a_pem_keystore_and_an_encrypted_key_load(certs):
    assert tls(certs).key is not None
    settings = TlsSettings.for_listener(
        BrokerConfig(certs.broker_properties(encrypted=True)), "SSL"
    )
    assert len(settings.chain) == 2  # the broker's certificate, then the CA's


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"ssl_keystore_type": "JKS"}, "only PEM keystores"),
        ({"ssl_keystore_location": "/nonexistent/k.pem"}, "No such file"),
        ({"ssl_client_auth": "sometimes"}, "not one of none, requested, required"),
        ({"ssl_enabled_protocols": "TLSv1.2,SSLv3"}, "SSLv3 unknown"),
        ({"ssl_protocol": "SSLv2"}, "ssl.protocol=SSLv2"),
        ({"ssl_cipher_suites": "NO_SUCH_CIPHER"}, "cipher suite"),
        ({"ssl_key_password": "wrong"}, "not encrypted"),
    ],
)
def test_bad_tls_settings_are_clear_errors(certs, props, message):
    with pytest.raises(ConfigError, match=message):
        tls(certs, **props)


def test_keystore_problems_are_named(certs, tmp_path):
    with pytest.raises(ConfigError, match="no keystore"):
        TlsSettings.for_listener(BrokerConfig({}), "SSL")
    encrypted = {**certs.broker_properties(encrypted=True), "ssl.key.password": "wrong"}
    with pytest.raises(ConfigError, match=r"wrong ssl\.key\.password"):
        TlsSettings.for_listener(BrokerConfig(encrypted), "SSL")
    no_password = {**certs.broker_properties(encrypted=True)}
    del no_password["ssl.key.password"]
    with pytest.raises(ConfigError, match=r"encrypted; set ssl\.key\.password"):
        TlsSettings.for_listener(BrokerConfig(no_password), "SSL")
    only_certs = tmp_path / "certs-only.pem"
    only_certs.write_bytes(certs.ca.read_bytes())
    with pytest.raises(ConfigError, match="no PEM private key"):
        TlsSettings.for_listener(BrokerConfig({"ssl.keystore.location": str(only_certs)}), "SSL")
    required = {"ssl.keystore.location": str(certs.broker_keystore), "ssl.client.auth": "required"}
    with pytest.raises(ConfigError, match=r"needs ssl\.truststore\.location"):
        TlsSettings.for_listener(BrokerConfig(required), "SSL")


def test_iana_cipher_suite_names_are_accepted(certs):
    settings = tls(certs, ssl_cipher_suites="TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    assert settings.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)


def test_an_inline_pem_keystore_and_truststore_load(certs):
    text = certs.broker_keystore.read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    config = BrokerConfig(
        {
            "ssl.keystore.key": text[:start],
            "ssl.keystore.certificate.chain": text[start:],
            "ssl.truststore.certificates": certs.ca.read_text(),
            "ssl.client.auth": "required",
        }
    )
    settings = TlsSettings.for_listener(config, "SSL")
    assert len(settings.chain) == 2 and len(settings.cas) == 1
