"""The ACL authorizer's decisions, pure: Kafka's AclAuthorizer rules (DENY wins, implied
operations, wildcard and prefixed patterns, super users, allow.everyone.if.no.acl.found),
with hypothesis for the rules that must hold for every set of ACLs."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.config import BrokerConfig, ConfigError
from broker.handlers import build_authorizer
from broker.protocol.acls import (
    ALL,
    ALLOW,
    ALTER,
    ALTER_CONFIGS,
    ANY,
    CLUSTER,
    CLUSTER_ACTION,
    CREATE,
    DELETE,
    DENY,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    GROUP,
    IDEMPOTENT_WRITE,
    LITERAL,
    MATCH,
    PREFIXED,
    READ,
    TOPIC,
    UNKNOWN,
    WRITE,
    AclBinding,
    AclError,
    AclFilter,
)
from broker.security.authorizer import AclSet, Authorizer, parse_super_users

ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.7"


def acl(name, op, permission=ALLOW, principal=ALICE, host="*", rtype=TOPIC, pattern=LITERAL):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


def authorizer(*acls, **options) -> Authorizer:
    return Authorizer(AclSet(acls), **options)


def test_write_allows_writing_and_describing_but_not_reading():
    a = authorizer(acl("clicks", WRITE))
    assert a.authorize(ALICE, HOST, WRITE, TOPIC, "clicks")
    assert a.authorize(ALICE, HOST, DESCRIBE, TOPIC, "clicks")
    assert not a.authorize(ALICE, HOST, READ, TOPIC, "clicks")
    assert not a.authorize(ALICE, HOST, DELETE, TOPIC, "clicks")
    assert not a.authorize(ALICE, HOST, WRITE, TOPIC, "other")
    assert not a.authorize(BOB, HOST, WRITE, TOPIC, "clicks")


@pytest.mark.parametrize("granting", [READ, WRITE, DELETE, ALTER, ALL])
def test_operations_that_imply_describe(granting):
    assert authorizer(acl("t", granting)).authorize(ALICE, HOST, DESCRIBE, TOPIC, "t")


def test_alter_configs_implies_describe_configs_and_not_the_reverse():
    a = authorizer(acl("t", ALTER_CONFIGS), acl("u", DESCRIBE_CONFIGS))
    assert a.authorize(ALICE, HOST, DESCRIBE_CONFIGS, TOPIC, "t")
    assert not a.authorize(ALICE, HOST, ALTER_CONFIGS, TOPIC, "u")
    assert not a.authorize(ALICE, HOST, DESCRIBE, TOPIC, "u")


def test_deny_of_read_does_not_deny_describe_granted_by_write():
    a = authorizer(acl("t", WRITE), acl("t", READ, DENY))
    assert a.authorize(ALICE, HOST, DESCRIBE, TOPIC, "t")
    assert not a.authorize(ALICE, HOST, READ, TOPIC, "t")


def test_wildcard_name_principal_and_host():
    a = authorizer(acl("*", READ, principal="User:*", host=HOST))
    assert a.authorize(BOB, HOST, READ, TOPIC, "anything")
    assert not a.authorize(BOB, "10.0.0.8", READ, TOPIC, "anything")
    assert not a.authorize(BOB, HOST, READ, GROUP, "anything")


def test_prefixed_pattern_covers_names_that_start_with_it():
    a = authorizer(acl("logs-", WRITE, pattern=PREFIXED))
    assert a.authorize(ALICE, HOST, WRITE, TOPIC, "logs-eu")
    assert a.authorize(ALICE, HOST, WRITE, TOPIC, "logs-")
    assert not a.authorize(ALICE, HOST, WRITE, TOPIC, "log")
    assert not a.authorize(ALICE, HOST, WRITE, TOPIC, "metrics-logs-")


def test_a_prefixed_deny_beats_a_literal_allow():
    a = authorizer(acl("logs-eu", WRITE), acl("logs-", ALL, DENY, pattern=PREFIXED))
    assert not a.authorize(ALICE, HOST, WRITE, TOPIC, "logs-eu")


def test_super_users_may_do_anything_even_when_denied():
    a = authorizer(acl("t", ALL, DENY), super_users=parse_super_users("User:admin; User:broker"))
    assert a.authorize("User:admin", HOST, DELETE, TOPIC, "t")
    assert a.authorize("User:broker", HOST, CLUSTER_ACTION, CLUSTER, "kafka-cluster")
    assert not a.authorize(ALICE, HOST, READ, TOPIC, "t")


def test_resources_without_acls_follow_allow_everyone_if_no_acl_found():
    closed = authorizer(acl("t", READ))
    opened = authorizer(acl("t", READ), allow_everyone_if_no_acl_found=True)
    assert not closed.authorize(BOB, HOST, WRITE, TOPIC, "unnamed")
    assert opened.authorize(BOB, HOST, WRITE, TOPIC, "unnamed")
    # A resource some ACL names is closed to everyone else, whatever the setting.
    assert not opened.authorize(BOB, HOST, READ, TOPIC, "t")


def test_authorized_operations_bits():
    a = authorizer(acl("t", WRITE), acl("t", DELETE, DENY))
    bits = a.authorized_operations(ALICE, HOST, TOPIC, "t")
    assert bits == (1 << WRITE) | (1 << DESCRIBE)
    a = authorizer(acl("kafka-cluster", IDEMPOTENT_WRITE, rtype=CLUSTER))
    assert a.authorized_operations(ALICE, HOST, CLUSTER, "kafka-cluster") == 1 << IDEMPOTENT_WRITE


def test_denials_are_logged_in_kafkas_style(caplog):
    a = authorizer(acl("t", WRITE))
    with caplog.at_level(logging.INFO, logger="kafka.authorizer.logger"):
        assert not a.authorize(BOB, HOST, READ, TOPIC, "t", "Fetch")
    assert (
        "Principal = User:bob is Denied Operation = Read from host = 10.0.0.7 on resource = "
        "Topic:LITERAL:t for request = Fetch" in caplog.text
    )


def test_bindings_kafka_refuses():
    with pytest.raises(AclError, match="PREFIXED"):
        acl("*", READ, pattern=PREFIXED).check()
    with pytest.raises(AclError, match="not supported"):
        acl("g", WRITE, rtype=GROUP).check()
    with pytest.raises(AclError, match="kafka-cluster"):
        acl("other", ALTER, rtype=CLUSTER).check()
    with pytest.raises(AclError, match="Type:name"):
        acl("t", READ, principal="alice").check()
    with pytest.raises(AclError):
        acl("t", READ, permission=ANY).check()
    with pytest.raises(AclError):
        AclFilter(UNKNOWN).check()
    acl("g", READ, rtype=GROUP).check()


def test_filters_match_like_kafkas():
    literal, prefixed, wild = (
        acl("logs-eu", READ),
        acl("logs-", READ, pattern=PREFIXED),
        acl("*", READ),
    )
    match = AclFilter(TOPIC, "logs-eu", MATCH)
    assert [match.matches(a) for a in (literal, prefixed, wild)] == [True, True, True]
    assert not match.matches(acl("logs-us", READ))
    exact = AclFilter(TOPIC, "logs-", PREFIXED)
    assert [exact.matches(a) for a in (literal, prefixed, wild)] == [False, True, False]
    assert AclFilter(ANY, None, ANY, ALICE).matches(literal)
    assert not AclFilter(ANY, None, ANY, BOB).matches(literal)


def test_authorizer_class_name_switches_it_on():
    assert build_authorizer(BrokerConfig({})) is None
    for name in (
        "kafka.security.authorizer.AclAuthorizer",
        "kafka.security.auth.SimpleAclAuthorizer",
    ):
        config = BrokerConfig({"authorizer.class.name": name, "super.users": "User:a;User:b"})
        assert build_authorizer(config).super_users == {"User:a", "User:b"}
    with pytest.raises(ConfigError, match="unknown authorizer class"):
        BrokerConfig({"authorizer.class.name": "com.example.Nope"})


# --- properties over every ACL set -------------------------------------------------------------

OPS = [READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL]
acls_strategy = st.lists(
    st.builds(
        AclBinding,
        st.just(TOPIC),
        st.sampled_from(["t", "*", "t-", "u"]),
        st.sampled_from([LITERAL, PREFIXED]),
        st.sampled_from([ALICE, BOB, "User:*"]),
        st.sampled_from(["*", HOST, "10.9.9.9"]),
        st.sampled_from(OPS),
        st.sampled_from([ALLOW, DENY]),
    ),
    max_size=8,
)
names = st.sampled_from(["t", "t-1", "u", "v"])


@given(acls_strategy, st.sampled_from(OPS[:-1]), names, st.booleans())
def test_a_matching_deny_always_wins(acls, op, name, everyone):
    deny = acl(name, op, DENY)
    a = authorizer(*acls, deny, allow_everyone_if_no_acl_found=everyone)
    assert not a.authorize(ALICE, HOST, op, TOPIC, name)


@given(acls_strategy, st.sampled_from(OPS[:-1]), names)
def test_allowed_iff_no_deny_and_an_allow_applies(acls, op, name):
    """An operation is allowed iff an ACL applies to the resource, none of those that match
    the principal and host denies the operation (or ALL), and one of them allows it or an
    operation that implies it."""
    a = authorizer(*acls)

    def applies(b):
        return b.name in (name, "*") if b.pattern_type == LITERAL else name.startswith(b.name)

    mine = [
        b for b in acls if applies(b) and b.principal in (ALICE, "User:*") and b.host in ("*", HOST)
    ]
    implying = {DESCRIBE: {DESCRIBE, READ, WRITE, DELETE, ALTER, ALL}}.get(
        op, {DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL} if op == DESCRIBE_CONFIGS else {op, ALL}
    )
    expected = not any(b.permission == DENY and b.operation in (op, ALL) for b in mine) and any(
        b.permission == ALLOW and b.operation in implying for b in mine
    )
    assert a.authorize(ALICE, HOST, op, TOPIC, name) == expected


def test_every_api_served_has_an_authorization_rule():
    """A new API must say what it needs: one without a rule is refused, never let through."""
    from broker.protocol.registry import APIS
    from broker.security.guard import NO_AUTHORIZATION, RequestGuard

    rules = RequestGuard(Authorizer(), handlers=None).rules
    assert [a.name for a in APIS if a.key not in rules and a.key not in NO_AUTHORIZATION] == []


def test_many_prefixes_are_looked_up_by_the_names_prefixes():
    """More prefixed patterns than characters in the name: the check looks up each prefix
    of the name instead of scanning, with the same answer."""
    many = [acl(f"p{i}-", READ, pattern=PREFIXED) for i in range(100)]
    a = authorizer(*many, acl("p7", WRITE, pattern=PREFIXED))
    assert a.authorize(ALICE, HOST, READ, TOPIC, "p7-x")
    assert a.authorize(ALICE, HOST, WRITE, TOPIC, "p7-x")
    assert not a.authorize(ALICE, HOST, READ, TOPIC, "p7x")
    a.acls.set(many[7].pattern, [])
    assert not a.authorize(ALICE, HOST, READ, TOPIC, "p7-x")
