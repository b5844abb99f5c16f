"""SASL without sockets: the mechanisms (PLAIN, SCRAM-SHA-256/512 against our client side),
the connection's gate with twisted's Clock for the refusal delay, the server protocol over a
StringTransport (a request before login closes the connection, a refusal is answered after
the delay and then closes it, SaslHandshake v0's bare tokens), the JAAS line, and the SCRAM
credential text checked against the RFC 5802 formula computed here independently."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from broker.protocol import frames, security_nodes
from broker.protocol.jaas import JaasConfigError, parse_jaas
from broker.protocol.registry import ApiKey, api_versions_body
from broker.protocol.sasl_login import PlainLogin, SaslLoginError, ScramLogin, client_login
from broker.security.mechanisms import AuthenticationFailed, PlainServer, ScramServer
from broker.security.sasl import ListenerSasl, SaslGate, State
from broker.server import KafkaServerFactory

PASSWORDS = {"alice": "alice-secret", "bob": "b"}
CREDENTIALS = {
    (user, mech): security_nodes.scram_credential(mech, pw)
    for user, pw in PASSWORDS.items()
    for mech in security_nodes.SCRAM_MECHANISMS
}
SETTINGS = ListenerSasl(
    ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    PASSWORDS.get,
    lambda user, mech: CREDENTIALS.get((user, mech)),
    failed_delay_ms=100,
)


def _login(gate: SaslGate, login, version: int = 2) -> dict:
    """Run a login through the gate; the last SaslAuthenticate body (or Deferred)."""
    assert gate.handshake({"mechanism": login.mechanism}, 1)["error_code"] == 0
    token = login.first()
    while True:
        answer = gate.authenticate(token, version)
        if not isinstance(answer, dict) or answer["error_code"]:
            return answer
        token = login.step(answer["auth_bytes"])
        if token is None:
            return answer


# --- the mechanisms --------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_right_password_logs_in_and_the_client_checks_the_server(mechanism):
    gate = SaslGate(SETTINGS, Clock(), "peer")
    login = client_login(mechanism, "alice", "alice-secret")
    answer = _login(gate, login)
    assert answer["error_code"] == 0 and answer["session_lifetime_ms"] == 0
    assert login.done and gate.authenticated and gate.principal == "User:alice"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("mallory", "alice-secret")])
def test_a_wrong_password_or_unknown_user_is_refused_after_the_delay(mechanism, user, password):
    clock = Clock()
    gate = SaslGate(SETTINGS, clock, "peer")
    answer = _login(gate, client_login(mechanism, user, password))
    fired = []
    answer.addCallback(fired.append)
    clock.advance(0.099)
    assert fired == [] and gate.failed
    clock.advance(0.002)
    assert fired[0]["error_code"] == 58 and "Authentication failed" in fired[0]["error_message"]
    assert gate.principal is None


def test_an_unknown_scram_user_gets_a_server_first_like_a_known_one():
    """Whether a user exists is not told by the first exchange: a salt (stable per name)
    and the usual iterations."""

    def first(user):
        server = ScramServer("SCRAM-SHA-512", lambda u, m: CREDENTIALS.get((u, m)), b"k" * 32)
        reply = server.step(ScramLogin("SCRAM-SHA-512", user, "x").first()).decode()
        return dict(part.split("=", 1) for part in reply.split(","))

    ghost, ghost_again, known = first("ghost"), first("ghost"), first("alice")
    assert ghost["i"] == known["i"] == "4096"
    assert ghost["s"] == ghost_again["s"]
    assert len(base64.b64decode(ghost["s"])) == len(base64.b64decode(known["s"])) == 32


@pytest.mark.parametrize(
    "client_first, why",
    [
        (b"y,,n=alice,r=abc", "gs2 header"),
        (b"n,a=alice,n=alice,r=abc", "authorization id"),
        (b"n,,n=alice,r=abc,tokenauth=true", "delegation tokens"),
        (b"n,,n=al=ice,r=abc", "encoding"),
        (b"n,,r=abc", "client-first"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "gs2 header"),
    ],
)
def test_malformed_or_unsupported_scram_first_messages_are_refused(client_first, why):
    server = ScramServer("SCRAM-SHA-256", lambda u, m: CREDENTIALS.get((u, m)), b"k" * 32)
    with pytest.raises(AuthenticationFailed, match=why):
        server.step(client_first)


def test_scram_user_names_are_escaped_on_the_wire():
    creds = {"a,b=c": security_nodes.scram_credential("SCRAM-SHA-256", "pw")}
    server = ScramServer("SCRAM-SHA-256", lambda u, m: creds.get(u), b"k" * 32)
    login = ScramLogin("SCRAM-SHA-256", "a,b=c", "pw")
    first = login.first()
    assert first.startswith(b"n,,n=a=2Cb=3Dc,r=")
    assert login.step(server.step(login.step(server.step(first)))) is None
    assert server.done and server.user == "a,b=c"


@pytest.mark.parametrize(
    "token, why",
    [
        (b"alice\x00alice-secret", "3 tokens"),
        (b"bob\x00alice\x00alice-secret", "authorization id"),
        (b"\x00\x00x", "username not specified"),
        (b"\x00alice\x00wrong", "Invalid username or password"),
        (b"\x00alice\x00\xff", "UTF-8"),
    ],
)
def test_plain_refuses_malformed_tokens_and_other_authorization_ids(token, why):
    with pytest.raises(AuthenticationFailed, match=why):
        PlainServer(PASSWORDS.get).step(token)
    assert PlainServer(PASSWORDS.get).step(b"alice\x00alice\x00alice-secret") == b""


def test_a_server_that_does_not_know_the_password_fails_the_clients_check():
    fake = {("alice", "SCRAM-SHA-256"): security_nodes.scram_credential("SCRAM-SHA-256", "other")}
    login = ScramLogin("SCRAM-SHA-256", "alice", "alice-secret")
    server = ScramServer("SCRAM-SHA-256", lambda u, m: fake.get((u, m)), b"k" * 32)
    final = login.step(server.step(login.first()))
    with pytest.raises(AuthenticationFailed):
        server.step(final)
    with pytest.raises(SaslLoginError):  # a forged server-final
        login.step(b"v=" + base64.b64encode(b"\x00" * 32))


# --- the gate's states -----------------------------------------------------------------------


def test_unsupported_mechanism_lists_the_enabled_ones_and_fails():
    clock = Clock()
    gate = SaslGate(ListenerSasl(("SCRAM-SHA-512",)), clock, "peer")
    answer = gate.handshake({"mechanism": "GSSAPI"}, 1)
    fired = []
    answer.addCallback(fired.append)
    clock.advance(0.1)
    assert fired == [{"error_code": 33, "mechanisms": ["SCRAM-SHA-512"]}] and gate.failed


def test_out_of_order_sasl_requests_are_illegal_state():
    clock = Clock()
    gate = SaslGate(SETTINGS, clock, "peer")
    fired = []
    gate.authenticate(b"\x00a\x00b", 2).addCallback(fired.append)
    clock.advance(1)
    assert fired[0]["error_code"] == 34

    gate = SaslGate(SETTINGS, clock, "peer")
    gate.handshake({"mechanism": "PLAIN"}, 1)
    gate.handshake({"mechanism": "PLAIN"}, 1).addCallback(fired.append)
    clock.advance(1)
    assert fired[1]["error_code"] == 34


def test_only_api_versions_and_sasl_pass_before_login():
    gate = SaslGate(SETTINGS, Clock(), "peer")
    assert [gate.allows(k) for k in (18, 17, 36, 0, 1, 3, 51)] == [True] * 3 + [False] * 4
    gate.handshake({"mechanism": "PLAIN"}, 1)
    assert [gate.allows(k) for k in (18, 36, 0)] == [False, True, False]
    gate.authenticate(b"\x00bob\x00b", 1)
    assert gate.state is State.COMPLETE and all(gate.allows(k) for k in (0, 1, 3, 51))


# --- through the server protocol -------------------------------------------------------------


class Handlers:
    """Answers ApiVersions; counts every other request it is given."""

    def __init__(self):
        self.seen = []

    def handle(self, request, connection):
        self.seen.append((request.api.key, connection.principal))
        if request.api.key == ApiKey.API_VERSIONS:
            return api_versions_body()
        return {"brokers": [], "topics": []}


def _connect(settings=SETTINGS):
    clock, handlers = Clock(), Handlers()
    factory = KafkaServerFactory(
        handlers, 1 << 20, "SASL_PLAINTEXT", "SASL_PLAINTEXT", settings, clock
    )
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, handlers, clock


def _answers(transport, *keys_versions):
    data, out, pos = transport.value(), [], 0
    for key, version in keys_versions:
        size = struct.unpack_from(">i", data, pos)[0]
        out.append(frames.decode_response(key, version, data[pos + 4 : pos + 4 + size])[1])
        pos += 4 + size
    assert pos == len(data)
    return out


def test_a_request_before_login_closes_the_connection_unanswered():
    proto, transport, handlers, _ = _connect()
    proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, 1, "c", {"topics": None}))
    assert transport.disconnecting and transport.value() == b"" and handlers.seen == []


def test_login_then_requests_carry_the_principal():
    proto, transport, handlers, _ = _connect()
    proto.dataReceived(frames.encode_request(ApiKey.API_VERSIONS, 0, 1, "c", {}))
    proto.dataReceived(
        frames.encode_request(ApiKey.SASL_HANDSHAKE, 1, 2, "c", {"mechanism": "PLAIN"})
    )
    token = {"auth_bytes": b"\x00alice\x00alice-secret"}
    proto.dataReceived(frames.encode_request(ApiKey.SASL_AUTHENTICATE, 2, 3, "c", token))
    proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, 4, "c", {"topics": None}))
    answers = _answers(
        transport,
        (ApiKey.API_VERSIONS, 0),
        (ApiKey.SASL_HANDSHAKE, 1),
        (ApiKey.SASL_AUTHENTICATE, 2),
        (ApiKey.METADATA, 8),
    )
    assert [a["error_code"] for a in answers[:3]] == [0, 0, 0]
    assert proto.principal == "User:alice"
    assert handlers.seen == [
        (ApiKey.API_VERSIONS, "User:ANONYMOUS"),
        (ApiKey.METADATA, "User:alice"),
    ]


def test_a_refused_login_is_answered_after_the_delay_then_closed_and_later_frames_ignored():
    proto, transport, handlers, clock = _connect()
    proto.dataReceived(
        frames.encode_request(ApiKey.SASL_HANDSHAKE, 1, 1, "c", {"mechanism": "PLAIN"})
    )
    token = {"auth_bytes": b"\x00alice\x00nope"}
    proto.dataReceived(frames.encode_request(ApiKey.SASL_AUTHENTICATE, 1, 2, "c", token))
    proto.dataReceived(frames.encode_request(ApiKey.PRODUCE, 3, 3, "c", {})[:40])
    assert not transport.disconnecting
    clock.advance(0.1)
    _, refusal = _answers(transport, (ApiKey.SASL_HANDSHAKE, 1), (ApiKey.SASL_AUTHENTICATE, 1))
    assert refusal["error_code"] == 58 and transport.disconnecting and handlers.seen == []


def test_handshake_v0_takes_bare_tokens():
    proto, transport, _, _ = _connect()
    proto.dataReceived(
        frames.encode_request(ApiKey.SASL_HANDSHAKE, 0, 1, "c", {"mechanism": "SCRAM-SHA-256"})
    )
    login = ScramLogin("SCRAM-SHA-256", "bob", "b")
    first = login.first()
    transport.clear()
    proto.dataReceived(struct.pack(">i", len(first)) + first)
    server_first = transport.value()[4:]
    transport.clear()
    final = login.step(server_first)
    proto.dataReceived(struct.pack(">i", len(final)) + final)
    assert login.step(transport.value()[4:]) is None and proto.principal == "User:bob"


def test_handshake_v0_refusal_closes_without_a_token():
    proto, transport, _, clock = _connect()
    proto.dataReceived(
        frames.encode_request(ApiKey.SASL_HANDSHAKE, 0, 1, "c", {"mechanism": "PLAIN"})
    )
    transport.clear()
    proto.dataReceived(struct.pack(">i", 8) + b"\x00bob\x00bad")
    clock.advance(0.1)
    assert transport.value() == b"" and transport.disconnecting


def test_a_sasl_listener_needs_its_settings():
    with pytest.raises(ValueError, match="SASL settings"):
        KafkaServerFactory(Handlers(), 1024, "SASL_PLAINTEXT", "SASL_PLAINTEXT")


# --- JAAS and credentials --------------------------------------------------------------------


def test_jaas_lines_as_kafka_writes_them():
    j = parse_jaas(
        "org.apache.kafka.common.security.plain.PlainLoginModule required\n"
        '  username="admin" password="ad\\"min" user_admin="ad\\"min" user_alice=x;'
    )
    assert j.flag == "required" and j.options["password"] == 'ad"min'
    assert j.plain_users == {"admin": 'ad"min', "alice": "x"}
    for bad in ("", "Module maybe;", 'M required username="x"', 'M required a="b"; extra'):
        with pytest.raises(JaasConfigError):
            parse_jaas(bad)


@pytest.mark.parametrize(
    "mechanism, name", [("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-512", "sha512")]
)
def test_a_credential_is_kafkas_formula_and_text(mechanism, name):
    salt, password, i = b"0123456789abcdef", "pencil", 4096
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, i)
    stored = hashlib.new(name, hmac.new(salted, b"Client Key", name).digest()).digest()
    server = hmac.new(salted, b"Server Key", name).digest()
    c = security_nodes.scram_credential(mechanism, password, salt=salt, iterations=i)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    assert security_nodes.format_credential(c) == (
        f"salt={b64(salt)},stored_key={b64(stored)},server_key={b64(server)},iterations=4096"
    )
    node = security_nodes.encode_user_config(security_nodes.with_credential({"q": "1"}, c))
    assert json.loads(node) == {
        "version": 1,
        "config": {"q": "1", mechanism: security_nodes.format_credential(c)},
    }
    assert security_nodes.decode_user_credentials(node) == {mechanism: c}


def test_credentials_refuse_few_iterations_and_empty_passwords():
    with pytest.raises(ValueError, match="4096"):
        security_nodes.scram_credential("SCRAM-SHA-256", "pw", iterations=4095)
    with pytest.raises(ValueError, match="empty"):
        security_nodes.scram_credential("SCRAM-SHA-256", "")
    with pytest.raises(ValueError):
        security_nodes.user_path("a/b")
    with pytest.raises(SaslLoginError):
        client_login("GSSAPI", "a", "b")
    with pytest.raises(SaslLoginError):
        PlainLogin("a\x00", "b")


def _client_final(server_first: str, nonce: str, client_first_bare: str, password: str) -> bytes:
    """A client-final message over ``nonce``, computed here from RFC 5802."""
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={nonce}"
    message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize("librdkafka_form", [False, True])
def test_the_client_final_nonce_may_carry_the_client_nonce_before_it_as_kafka_allows(
    librdkafka_form,
):
    """librdkafka sends its own nonce before the combined one; Kafka checks only that the
    nonce ends with the server's."""
    server = ScramServer("SCRAM-SHA-256", lambda u, m: CREDENTIALS.get((u, m)), b"k" * 32)
    server_first = server.step(b"n,,n=bob,r=cnonce").decode()
    nonce = server_first.split(",")[0][2:]
    sent = "cnonce" + nonce if librdkafka_form else nonce
    assert server.step(_client_final(server_first, sent, "n=bob,r=cnonce", "b")).startswith(b"v=")
    assert server.done and server.user == "bob"

    server = ScramServer("SCRAM-SHA-256", lambda u, m: CREDENTIALS.get((u, m)), b"k" * 32)
    server_first = server.step(b"n,,n=bob,r=cnonce").decode()
    with pytest.raises(AuthenticationFailed, match="nonce"):
        server.step(_client_final(server_first, "cnonce-other", "n=bob,r=cnonce", "b"))


# --- the broker's SASL settings --------------------------------------------------------------


def _config(**values):
    from broker.config import BrokerConfig

    return BrokerConfig({k.replace("__", "."): v for k, v in values.items()})


def test_listener_settings_from_kafkas_properties(tmp_path):
    from broker.security.sasl_settings import broker_client_login, listener_sasl

    users = tmp_path / "users"
    users.write_text("# comment\n\ncarol:c:with:colons\n")
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="a" user_admin="a" user_bob="b";'
    )
    config = _config(
        listeners="SASL_PLAINTEXT://127.0.0.1:9092",
        **{
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "plain,SCRAM-SHA-256",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "sasl.plain.credentials.file": str(users),
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "connection.failed.authentication.delay.ms": "250",
        },
    )
    assert config.unknown == []  # listener.name.* are read where they apply
    s = listener_sasl(config, "SASL_PLAINTEXT", lambda u, m: None)
    assert s.mechanisms == ("PLAIN", "SCRAM-SHA-256") and s.failed_delay_ms == 250
    assert [s.password_of(u) for u in ("admin", "bob", "carol", "eve")] == [
        "a",
        "b",
        "c:with:colons",
        None,
    ]
    assert broker_client_login(config) == ("PLAIN", "admin", "a")
    assert listener_sasl(config, "OTHER", lambda u, m: None).mechanisms == ("SCRAM-SHA-512",)


@pytest.mark.parametrize(
    "values, why",
    [
        ({"sasl.enabled.mechanisms": "GSSAPI"}, "GSSAPI is not served"),
        ({"sasl.enabled.mechanisms": "OAUTHBEARER"}, "OAUTHBEARER is not served"),
        ({"sasl.jaas.config": "not a jaas line"}, "is not one of"),
        ({"sasl.jaas.config": "="}, "login module class"),
        ({}, "sasl.jaas.config with the broker's username"),
    ],
)
def test_settings_the_broker_cannot_serve_stop_it_with_a_message(values, why):
    from broker.log.config import ConfigError
    from broker.security.sasl_settings import broker_client_login, listener_sasl

    config = _config(listeners="SASL_PLAINTEXT://127.0.0.1:9092", **values)
    with pytest.raises(ConfigError, match=why):
        listener_sasl(config, "SASL_PLAINTEXT", lambda u, m: None)
        broker_client_login(config)


def test_a_plain_credentials_file_line_without_a_colon_is_refused(tmp_path):
    from broker.log.config import ConfigError
    from broker.security.sasl_settings import read_plain_credentials

    bad = tmp_path / "users"
    bad.write_text("alice:a\nbob\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_plain_credentials(str(bad))


def test_client_properties_java_and_librdkafka_names():
    from consumers.security import ClientSecurity, SecurityConfigError

    java = ClientSecurity.from_properties(
        {
            "security.protocol": "sasl_plaintext",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
            'required username="u" password="p";',
        }
    )
    librdkafka = ClientSecurity.from_properties(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "u",
            "sasl.password": "p",
        }
    )
    assert java == librdkafka and java.uses_sasl
    for props in (
        {"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"},
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"},
        {"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": "x"},
    ):
        with pytest.raises(SecurityConfigError):
            ClientSecurity.from_properties(props)
