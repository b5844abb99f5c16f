"""Client security settings from the command line, without brokers: ``--command-config`` files
read as Java properties, ``-X key=value`` over them, a clear one-line error for a bad file
or value, every broker-facing subcommand taking them, and the loaders' frozen config carrying
them to worker processes."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from broker.config import ConfigError, parse_properties
from consumers.security import (
    PLAINTEXT,
    ClientSecurity,
    SecurityConfigError,
    client_properties,
    parse_property_overrides,
    security_from_config,
)
from headrace import cli
from loaders.config import LoaderConfig


def test_a_command_config_is_read_as_java_properties(tmp_path):
    path = tmp_path / "client.properties"
    path.write_text(
        "# Kafka tools' client settings\n"
        "security.protocol = SASL_SSL\n"
        "sasl.mechanism: SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
        '    username="alice" password="s=cr\\u00e9t";\n'
        "ssl.truststore.location /etc/ca.pem\n"
    )
    props = client_properties(str(path))
    assert props == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
        'required username="alice" password="s=cr\u00e9t";',
        "ssl.truststore.location": "/etc/ca.pem",
    }


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SSL\nsasl.mechanism=PLAIN\n")
    props = client_properties(str(path), ["sasl.mechanism=SCRAM-SHA-256", "a.b = c=d "])
    assert props == {
        "security.protocol": "SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "a.b": "c=d",
    }


@pytest.mark.parametrize("item", ["security.protocol", "=SSL", ""])
def test_an_override_without_key_and_value_is_refused(item):
    with pytest.raises(SecurityConfigError, match="key=value"):
        parse_property_overrides([item])


def test_a_missing_file_and_a_bad_escape_say_which_file(tmp_path):
    with pytest.raises(SecurityConfigError, match=r"cannot read .*nope\.properties"):
        client_properties(str(tmp_path / "nope.properties"))
    bad = tmp_path / "bad.properties"
    bad.write_text("sasl.password=\\u12\n")
    with pytest.raises(SecurityConfigError, match=r"bad\.properties.*uxxxx"):
        client_properties(str(bad))


def test_the_broker_config_still_raises_its_own_error_for_a_bad_escape():
    with pytest.raises(ConfigError, match="uxxxx"):
        parse_properties("log.dirs=\\uZZZZ\n")


def test_nothing_said_is_plaintext_and_a_protocol_is_read():
    assert security_from_config() is PLAINTEXT
    assert security_from_config(None, ["security.protocol=plaintext"]) == PLAINTEXT
    with pytest.raises(SecurityConfigError, match=r"security\.protocol 'TLS'"):
        security_from_config(None, ["security.protocol=TLS"])


COMMANDS = [
    ["topics", "list"],
    ["topics", "list", "--bootstrap-server", "127.0.0.1:1"],
    ["configs", "--topic", "t", "--describe"],
    ["produce", "--topic", "t"],
    ["consume", "--topic", "t"],
    ["groups", "list"],
    ["ship", "--topic", "t", "f.log"],
    ["load", "--zookeeper", "127.0.0.1:1", "--topic", "t", "--group", "g", "--to", "w"],
    ["audit", "--topic", "t", "--zookeeper", "127.0.0.1:1"],
    ["dashboard", "--zookeeper", "127.0.0.1:1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_broker_command_refuses_a_bad_security_setting_in_one_line(command, capsys):
    """The settings are read before anything connects: a bad one is exit 2 and one line."""
    code = cli.main([*command, "-X", "security.protocol=TLS"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"headrace {command[0]}: security.protocol 'TLS' is not one of "
        "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    ]


@pytest.mark.parametrize("command", COMMANDS[:3], ids=lambda c: " ".join(c[:2]))
def test_a_missing_command_config_is_one_line(command, tmp_path, capsys):
    code = cli.main([*command, "--command-config", str(tmp_path / "absent.properties")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "absent.properties" in err[0] and "Traceback" not in err[0]


def test_the_mirror_reads_its_source_and_target_settings_apart(tmp_path, capsys):
    good = tmp_path / "target.properties"
    good.write_text("security.protocol=PLAINTEXT\n")
    base = ["mirror", "--from-zookeeper", "127.0.0.1:1", "--to-bootstrap-server", "127.0.0.1:1"]
    base += ["--include", "t", "--group", "g"]
    code = cli.main([*base, "--producer.config", str(good), "--source-property", "x"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "headrace mirror: -X 'x': give key=value, e.g. security.protocol=SSL"
    )
    code = cli.main([*base, "--target-command-config", str(tmp_path / "none")])
    assert code == 2
    assert "none" in capsys.readouterr().err


def test_the_mirror_passes_its_settings_to_each_process():
    from headrace.mirror_cli import _child_command

    parser_args = cli_namespace(
        "mirror",
        "--from-bootstrap-server",
        "a:1",
        "--to-bootstrap-server",
        "b:1",
        "--include",
        "t",
        "--group",
        "g",
        "--consumer.config",
        "src.properties",
        "--target-property",
        "security.protocol=SSL",
    )
    command = _child_command(parser_args, 0)
    assert command[command.index("--source-command-config") + 1] == "src.properties"
    assert command[command.index("--target-property") + 1] == "security.protocol=SSL"


def cli_namespace(*argv: str):
    """The arguments ``headrace`` parses (the subcommand run replaced by a capture)."""
    seen = []
    import headrace.mirror_cli as mirror_cli

    original = mirror_cli.run
    mirror_cli.run = lambda args: seen.append(args) or 0
    try:
        assert cli.main(list(argv)) == 0
    finally:
        mirror_cli.run = original
    return seen[0]


def test_the_loaders_config_carries_security_to_worker_processes():
    security = ClientSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="loader",
        sasl_password="pw",
        ssl_cafile="/ca.pem",
    )
    config = LoaderConfig(zookeeper="zk:2181", topics=("t",), group="g", url="w")
    assert config.security is PLAINTEXT
    config = replace(config, security=security)
    assert pickle.loads(pickle.dumps(config)).security == security


def test_the_registry_client_logs_in_with_confluents_settings(tmp_path):
    """``basic.auth.user.info`` (or ``schema.registry.``-prefixed), or the URL's own
    credentials with ``basic.auth.credentials.source=URL``, go out as a Basic header."""
    import base64

    from consumers.schemas import RegistryClient

    def authorization(client) -> str | None:
        return client.build_request("GET", "/subjects").get_header("Authorization")

    expected = "Basic " + base64.b64encode(b"reg:p@ss").decode()
    for props in (
        {"basic.auth.user.info": "reg:p@ss"},
        {"schema.registry.basic.auth.user.info": "reg:p@ss", "basic.auth.user.info": "x:y"},
    ):
        client = RegistryClient.from_properties("http://127.0.0.1:8081", props)
        assert authorization(client) == expected
    client = RegistryClient.from_properties(
        "http://reg:p%40ss@127.0.0.1:8081/", {"basic.auth.credentials.source": "URL"}
    )
    assert authorization(client) == expected
    assert client.url == "http://127.0.0.1:8081"  # the password is not kept in messages
    assert authorization(RegistryClient("http://127.0.0.1:8081")) is None
    with pytest.raises(ValueError, match="USER_INFO or URL"):
        RegistryClient.from_properties("http://h:1", {"basic.auth.credentials.source": "SASL"})
    with pytest.raises(OSError):  # a CA file that is not there is said at once
        RegistryClient.from_properties(
            "https://h:1", {"schema.registry.ssl.ca.location": str(tmp_path / "no-ca.pem")}
        )
