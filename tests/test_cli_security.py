"""Every ``headrace`` command that talks to brokers, run as a process with ``--command-config``
(and ``-X``) against real brokers: topics, produce, consume (no group, a Kafka group, the
paper's ZooKeeper group), groups, ship, load into Parquet read back with DuckDB, and mirror
with different settings for its source and its target.  Here on PLAINTEXT, with the settings
given explicitly, so that the path from the flags to every connection is the one used."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from command_lines import HEADRACE, ROOT
from conftest import wait_for

from consumers.cluster import ClusterClient
from consumers.security import PLAINTEXT, ClientSecurity

TIMEOUT = 120


def headrace(*args: str, stdin: bytes | None = None, timeout: float = TIMEOUT):
    """``headrace <args>`` run to its end: (exit code, stdout, stderr)."""
    result = subprocess.run(
        [*HEADRACE, *args], input=stdin, capture_output=True, timeout=timeout, cwd=ROOT
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def ok(*args: str, stdin: bytes | None = None) -> str:
    code, out, err = headrace(*args, stdin=stdin)
    assert code == 0, f"headrace {' '.join(args)} exited {code}: {err[-2000:]}"
    return out


def events(n: int, prefix: str = "e") -> list[bytes]:
    return [
        json.dumps({"id": f"{prefix}{i}", "ts": "2026-12-07T10:00:00Z"}).encode() for i in range(n)
    ]


def write_config(path: Path, props: dict[str, str]) -> str:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def stored(bootstrap: str, topic: str, security: ClientSecurity) -> int:
    """How many records ``topic`` holds (end offsets minus start offsets), asked in-process."""
    cluster = ClusterClient(bootstrap, security=security)
    try:
        return sum(
            cluster.list_offset(topic, p, -1) - cluster.list_offset(topic, p, -2)
            for p in cluster.partitions(topic)
        )
    finally:
        cluster.close()


def pipeline(
    bootstrap: str, zookeeper: str, security: list[str], client: ClientSecurity, tmp_path: Path
) -> None:
    """Topics, produce, the three ways of consuming, groups, ship and load, every command
    given ``security`` (``--command-config F`` and ``-X`` options; ``client`` the same
    settings for the test's own checks)."""
    b = ["--bootstrap-server", bootstrap, *security]
    ok("topics", "create", "--topic", "sec", "--partitions", "2", *b)
    assert "sec" in ok("topics", "list", *b).split()
    assert "PartitionCount: 2" in ok("topics", "describe", "--topic", "sec", *b)
    sent = events(40)
    ok("produce", "--topic", "sec", *b, stdin=b"\n".join(sent) + b"\n")
    read = ["--topic", "sec", "--from-beginning", "--max-messages", "40", "--timeout", "20"]
    plain = ok("consume", *read, *b)
    assert sorted(plain.encode().splitlines()) == sorted(sent)
    kafka_group = ok("consume", *read, "--group", "kg", *b)
    assert sorted(kafka_group.encode().splitlines()) == sorted(sent)
    described = ok("groups", "describe", "kg", *b)
    assert "sec" in described and "kafka" in described
    zk = ["--zookeeper", zookeeper, *security]
    zk_group = ok("consume", *read, "--group", "zg", *zk)
    assert sorted(zk_group.encode().splitlines()) == sorted(sent)
    assert "zg" in ok("groups", "list", *zk)

    # ship -> load -> Parquet, each event once
    ok("topics", "create", "--topic", "shipped", "--partitions", "2", *b)
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    state = ["--state-file", str(tmp_path / "ship.json")]
    shipper = subprocess.Popen(
        [*HEADRACE, "ship", "--topic", "shipped", str(log), *b, "--from-beginning", *state],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        shipped = events(30, "s")
        with log.open("ab") as f:
            f.write(b"\n".join(shipped) + b"\n")
        wait_for(lambda: stored(bootstrap, "shipped", client) == 30, 60)
    finally:
        shipper.send_signal(signal.SIGTERM)
        _, err = shipper.communicate(timeout=30)
    assert shipper.returncode == 0, err.decode()[-2000:]
    warehouse = tmp_path / "warehouse"
    ok("load", *zk, "--topic", "shipped", "--group", "ld", "--to", str(warehouse))
    assert parquet_ids(warehouse) == sorted(json.loads(e)["id"] for e in shipped)


def parquet_ids(warehouse: Path) -> list[str]:
    import duckdb

    files = f"{warehouse}/**/*.parquet"
    rows = duckdb.execute(f"SELECT id FROM read_parquet('{files}') ORDER BY id").fetchall()
    return [row[0] for row in rows]


def test_every_command_runs_with_a_plaintext_command_config(cluster1, tmp_path):
    config = write_config(
        tmp_path / "client.properties",
        {"security.protocol": "PLAINTEXT", "client.id": "sec-test"},
    )
    pipeline(
        cluster1.bootstrap,
        cluster1.zookeeper_connect,
        ["--command-config", config, "-X", "security.protocol=PLAINTEXT"],
        PLAINTEXT,
        tmp_path,
    )


def test_the_mirror_takes_its_source_and_target_settings_apart(make_cluster, tmp_path):
    source, target = make_cluster(1), make_cluster(1)
    src = write_config(tmp_path / "source.properties", {"security.protocol": "PLAINTEXT"})
    dst = write_config(tmp_path / "target.properties", {"security.protocol": "PLAINTEXT"})
    b = ["--bootstrap-server", source.bootstrap, "--command-config", src]
    ok("topics", "create", "--topic", "mirrored", "--partitions", "2", *b)
    sent = events(25, "m")
    ok("produce", "--topic", "mirrored", *b, stdin=b"\n".join(sent) + b"\n")
    ends = ["--from-bootstrap-server", source.bootstrap, "--to-bootstrap-server", target.bootstrap]
    settings = ["--consumer.config", src, "--target-command-config", dst]
    settings += ["--target-property", "security.protocol=PLAINTEXT"]
    mirror = subprocess.Popen(
        [*HEADRACE, "mirror", *ends, "--include", "mirrored", "--group", "mm", *settings],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        t = ["--bootstrap-server", target.bootstrap, "--command-config", dst]
        read = ["--topic", "mirrored", "--from-beginning", "--max-messages", "25"]
        wait_for(lambda: stored(target.bootstrap, "mirrored", PLAINTEXT) == 25, 60)
        copied = ok("consume", *read, "--timeout", "5", *t).encode().splitlines()
        assert sorted(copied) == sorted(sent)
    finally:
        mirror.send_signal(signal.SIGTERM)
        _, err = mirror.communicate(timeout=30)
    assert mirror.returncode == 0, err.decode()[-2000:]


def test_settings_that_cannot_work_stop_a_command_with_one_line(cluster1, tmp_path):
    """A client set for TLS against a PLAINTEXT listener: one line, exit status not 0."""
    code, _, err = headrace(
        "topics", "list", "--bootstrap-server", cluster1.bootstrap, "-X", "security.protocol=SSL"
    )
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


# --- over SSL with a client certificate ------------------------------------------------------


def test_every_command_runs_over_ssl_with_a_client_certificate(make_cluster, certs, tmp_path):
    """TLS with ``ssl.client.auth=required``: a command that did not present alice's
    certificate from the file, or that went to the PLAINTEXT port it finds first in
    ZooKeeper, would fail."""
    props = certs.broker_properties(client_auth="required")
    cluster = make_cluster(1, listeners={"SSL": "SSL"}, props=props)
    client = certs.client_properties("alice", protocol="SSL")
    config = write_config(tmp_path / "alice-ssl.properties", client)
    pipeline(
        cluster.bootstrap_for("SSL"),
        cluster.zookeeper_connect,
        ["--command-config", config],
        ClientSecurity.from_properties(client),
        tmp_path,
    )


# --- over SASL_SSL with SCRAM-SHA-512 ---------------------------------------------------------

SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def sasl_ssl_cluster(make_cluster, certs):
    """One broker with a SASL_SSL listener (SCRAM-SHA-512) beside its PLAINTEXT one; the
    ZooKeeper registration names both, so ZooKeeper-found brokers must be picked by protocol."""
    props = {**certs.broker_properties(), "sasl.enabled.mechanisms": "SCRAM-SHA-512"}
    return make_cluster(1, listeners={"SASL_SSL": "SASL_SSL"}, props=props)


def add_user(zookeeper: str, user: str, password: str, tmp_path: Path) -> None:
    secret = tmp_path / f"{user}.password"
    secret.write_text(password + "\n")
    ok("users", "add", "--zookeeper", zookeeper, "--user", user, "--password-file", str(secret))


def scram_client(certs, user: str, password: str) -> dict[str, str]:
    return {
        **certs.client_properties(protocol="SASL_SSL"),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": f'{SCRAM_MODULE} required username="{user}" password="{password}";',
    }


def test_every_command_runs_over_sasl_ssl_with_scram(make_cluster, certs, tmp_path):
    """A SASL_SSL client cannot talk to the PLAINTEXT port, so each command that succeeds
    connected where it was told, TLS first, then the SCRAM login."""
    cluster = sasl_ssl_cluster(make_cluster, certs)
    add_user(cluster.zookeeper_connect, "alice", "alice-secret", tmp_path)
    props = scram_client(certs, "alice", "alice-secret")
    config = write_config(tmp_path / "alice.properties", props)
    pipeline(
        cluster.bootstrap_for("SASL_SSL"),
        cluster.zookeeper_connect,
        ["--command-config", config],
        ClientSecurity.from_properties(props),
        tmp_path,
    )


def test_a_mirror_from_a_sasl_ssl_cluster_into_a_plaintext_one(make_cluster, certs, tmp_path):
    source, target = sasl_ssl_cluster(make_cluster, certs), make_cluster(1)
    add_user(source.zookeeper_connect, "mirror", "mirror-secret", tmp_path)
    props = scram_client(certs, "mirror", "mirror-secret")
    src = write_config(tmp_path / "source.properties", props)
    b = ["--bootstrap-server", source.bootstrap_for("SASL_SSL"), "--command-config", src]
    ok("topics", "create", "--topic", "secure", "--partitions", "2", *b)
    sent = events(20, "x")
    ok("produce", "--topic", "secure", *b, stdin=b"\n".join(sent) + b"\n")
    ends = ["--from-zookeeper", source.zookeeper_connect]
    ends += ["--to-bootstrap-server", target.bootstrap, "--source-command-config", src]
    mirror = subprocess.Popen(
        [*HEADRACE, "mirror", *ends, "--include", "secure", "--group", "mm"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: stored(target.bootstrap, "secure", PLAINTEXT) == 20, 60)
        read = ["--topic", "secure", "--from-beginning", "--max-messages", "20", "--timeout", "5"]
        copied = ok("consume", *read, "--bootstrap-server", target.bootstrap)
        assert sorted(copied.encode().splitlines()) == sorted(sent)
    finally:
        mirror.send_signal(signal.SIGTERM)
        _, err = mirror.communicate(timeout=30)
    assert mirror.returncode == 0, err.decode()[-2000:]


def test_a_wrong_password_is_one_line_and_stores_nothing(make_cluster, certs, tmp_path):
    cluster = sasl_ssl_cluster(make_cluster, certs)
    add_user(cluster.zookeeper_connect, "alice", "alice-secret", tmp_path)
    props = scram_client(certs, "alice", "alice-secret")
    good = ClientSecurity.from_properties(props)
    right = write_config(tmp_path / "right.properties", props)
    wrong = write_config(tmp_path / "wrong.properties", scram_client(certs, "alice", "nope"))
    bootstrap = cluster.bootstrap_for("SASL_SSL")
    create = ["topics", "create", "--topic", "guarded", "--partitions", "2"]
    ok(*create, "--bootstrap-server", bootstrap, "--command-config", right)
    b = ["--bootstrap-server", bootstrap, "--command-config", wrong]
    for args, stdin in (
        (["topics", "list", *b], None),
        (["produce", "--topic", "guarded", *b], b"one\ntwo\n"),
        (["consume", "--topic", "guarded", "--from-beginning", "--timeout", "5", *b], None),
        (["consume", "--topic", "guarded", "--group", "kg", "--timeout", "5", *b], None),
        (["groups", "list", *b], None),
        (["groups", "describe", "kg", *b], None),
    ):
        code, _, err = headrace(*args, stdin=stdin)
        lines = err.strip().splitlines()
        assert code != 0, args
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        assert "auth" in lines[0].lower(), lines[0]
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntwo\n")
    state = ["--state-file", str(tmp_path / "ship.json"), "--from-beginning"]
    code, _, err = headrace("ship", "--topic", "guarded", str(log), *state, *b)
    assert code == 2 and "SASL_AUTHENTICATION_FAILED" in err and "Traceback" not in err, err
    assert stored(bootstrap, "guarded", good) == 0
