"""Pure: KIP-679's "Write on any topic" by Kafka's ``Authorizer.authorizeByResourceType``
(a literal ``*`` DENY refuses outright; a literal ALLOW counts unless a literal DENY of the
same name or a prefixed DENY of one of its prefixes takes it back; a prefixed ALLOW unless a
prefixed DENY of one of its prefixes does; super users and allow.everyone.if.no.acl.found as
for a resource named ``hardcode``), as InitProducerId asks it; and ACL hosts compared as IP
addresses, however they are spelled."""

from __future__ import annotations

import pytest

from broker.protocol.acls import (
    ALL,
    ALLOW,
    CLUSTER,
    DENY,
    IDEMPOTENT_WRITE,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    WRITE,
    AclBinding,
)
from broker.protocol.errors import ClusterAuthorizationFailedError
from broker.security import rules
from broker.security.authorizer import AclSet, Authorizer, canonical_host, host_matches
from broker.security.rules import Check

ME = "User:me"
HOST = "10.1.1.1"


def acl(name, op=WRITE, pattern=LITERAL, permission=ALLOW, principal=ME, host="*", rtype=TOPIC):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


def deny(name, pattern=LITERAL, **kw):
    return acl(name, pattern=pattern, permission=DENY, **kw)


def by_type(*acls, principal=ME, host=HOST, **options) -> bool:
    return Authorizer(AclSet(acls), **options).authorize_by_resource_type(
        principal, host, WRITE, TOPIC
    )


@pytest.mark.parametrize(
    "acls, allowed",
    [
        ((), False),
        ((acl("t"),), True),
        ((acl("t", op=ALL),), True),
        ((acl("t", op=READ),), False),  # only the operation itself or ALL counts
        ((acl("t", rtype=CLUSTER),), False),  # another resource type
        ((acl("t"), deny("t")), False),
        ((acl("t"), deny("u")), True),
        ((acl("t"), deny("t", op=ALL)), False),
        ((acl("t"), deny("t", pattern=PREFIXED)), False),
        ((acl("topic-a"), deny("top", pattern=PREFIXED)), False),  # a prefix dominates it
        ((acl("topic-a"), deny("topic-b", pattern=PREFIXED)), True),
        ((acl("logs-", pattern=PREFIXED), deny("logs", pattern=PREFIXED)), False),
        ((acl("logs", pattern=PREFIXED), deny("logs-", pattern=PREFIXED)), True),  # narrower
        ((acl("logs", pattern=PREFIXED), deny("logs")), True),  # a literal DENY: one topic
        ((acl("a"), acl("b"), deny("a")), True),  # b is still writable
        ((acl("t"), deny("*")), False),  # DENY on every topic
        ((acl("*"), deny("a", pattern=PREFIXED)), True),  # ALLOW on every topic
        ((acl("t", principal="User:*"),), True),
        ((acl("t"), deny("t", principal="User:*")), False),
        ((acl("t"), deny("t", principal="User:other")), True),
        ((acl("t", principal="User:other"),), False),
        ((acl("t", host="10.9.9.9"),), False),
        ((acl("t"), deny("t", host="10.9.9.9")), True),
        ((acl("t"), deny("t", host=HOST)), False),
    ],
)
def test_write_on_some_topic_as_kafka_decides(acls, allowed):
    assert by_type(*acls) is allowed


def test_super_users_and_allow_everyone_as_for_a_resource_named_hardcode():
    assert by_type(deny("*"), principal="User:root", super_users=["User:root"])
    assert by_type(acl("x", op=READ), allow_everyone_if_no_acl_found=True)  # none on hardcode
    # an ACL that covers "hardcode" takes the open door away, as in Kafka
    assert not by_type(deny("hard", pattern=PREFIXED), allow_everyone_if_no_acl_found=True)
    assert not by_type(deny("*"), allow_everyone_if_no_acl_found=True)


def test_init_producer_id_asks_it():
    body = {"transactional_id": None}

    def answer(*acls):
        return rules.init_producer_id(Check(Authorizer(AclSet(acls)), ME, HOST, "t"), body, 4)

    assert answer(acl("topic-a")).response is None
    refused = answer(acl("topic-a"), deny("top", pattern=PREFIXED)).response
    assert refused["error_code"] == ClusterAuthorizationFailedError.code
    idempotent = acl("kafka-cluster", op=IDEMPOTENT_WRITE, rtype=CLUSTER)
    assert answer(idempotent, deny("top", pattern=PREFIXED)).response is None


@pytest.mark.parametrize(
    "acl_host, host",
    [
        ("::1", "0:0:0:0:0:0:0:1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("2001:DB8::1", "2001:db8:0:0:0:0:0:1"),
        ("10.0.0.1", "::ffff:10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("*", "2001:db8::1"),
        ("*", "10.0.0.1"),
        ("broker.example", "broker.example"),
    ],
)
def test_one_address_however_spelled_matches(acl_host, host):
    assert host_matches(acl_host, host)


@pytest.mark.parametrize(
    "acl_host, host",
    [("::1", "::2"), ("10.0.0.1", "10.0.0.10"), ("::ffff:10.0.0.1", "10.0.0.2"), ("a", "b")],
)
def test_other_addresses_do_not_match(acl_host, host):
    assert not host_matches(acl_host, host)


def test_a_deny_for_an_ipv6_host_holds_however_the_client_spells_it():
    authorizer = Authorizer(AclSet([acl("t"), deny("t", host="2001:db8::7")]))
    assert not authorizer.authorize(ME, "2001:db8:0:0:0:0:0:7", WRITE, TOPIC, "t")
    assert authorizer.authorize(ME, "2001:db8::8", WRITE, TOPIC, "t")
    allowed_there = Authorizer(AclSet([acl("t", host="::FFFF:10.1.1.1")]))
    assert allowed_there.authorize(ME, HOST, WRITE, TOPIC, "t")
    assert canonical_host("0:0:0:0:0:0:0:1") == "::1" and canonical_host("*") == "*"
