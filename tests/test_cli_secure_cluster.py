"""``headrace cluster up --secure``: a development cluster on SASL_SSL with ACLs and ZooKeeper
ACLs, used with nothing but the files and commands it prints."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from command_lines import HEADRACE, ROOT

from broker.config import parse_properties
from consumers.security import ClientSecurity
from headrace import devsecurity
from headrace.devcluster import free_port_run, read_state

SECRET_FILES = ("admin.properties", "zookeeper-auth", "secrets.json", "broker.pem")


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_secure_files_are_owner_only_and_kept_by_a_second_run(tmp_path):
    files = devsecurity.prepare(tmp_path)
    for name in SECRET_FILES:
        assert mode(tmp_path / name) == 0o600, name
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = devsecurity.prepare(tmp_path)
    assert again == files
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    admin = ClientSecurity.from_properties(
        parse_properties((tmp_path / "admin.properties").read_text())
    )
    assert (admin.security_protocol, admin.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (admin.sasl_username, admin.sasl_password) == ("admin", files.admin_password)
    assert len({files.admin_password, files.broker_password, files.zookeeper_password}) == 3
    auth = (tmp_path / "zookeeper-auth").read_text()
    assert "DigestLoginModule" in auth and files.zookeeper_password in auth


@pytest.mark.integration
def test_cluster_up_secure_serves_sasl_ssl_with_acls_and_stops(tmp_path):
    zk_port = free_port_run(3)
    ports = (zk_port + 1, zk_port + 2)
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)

    def headrace(*args, stdin=None):
        return subprocess.run(
            [*HEADRACE, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120
        )

    up = headrace("cluster", "up", "--secure", "--brokers", "2", "--dir", str(tmp_path),
                  "--zookeeper-port", str(zk_port), "--base-port", str(ports[0]))  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        admin = tmp_path / "admin.properties"
        as_admin = ("--bootstrap-server", bootstrap, "--command-config", str(admin))
        assert f"headrace topics {' '.join(as_admin)} list" in up.stdout
        assert "kcat -b" in up.stdout and "-X security.protocol=SASL_SSL" in up.stdout
        for name in (*SECRET_FILES, "broker-1.properties", "broker-2.properties"):
            assert mode(tmp_path / name) == 0o600, name

        created = headrace("topics", *as_admin, "create", "--topic", "t", "--partitions", "2",
                           "--replication-factor", "2")  # fmt: skip
        assert created.returncode == 0, created.stderr
        produced = headrace("produce", *as_admin, "--topic", "t", stdin="a\nb\nc\n")
        assert produced.returncode == 0, produced.stderr

        # refused, in one line each, and nothing stored: PLAINTEXT on the port, no properties,
        # a wrong password
        for port in ports:
            plain = headrace("topics", "--bootstrap-server", f"127.0.0.1:{port}", "list")
            assert plain.returncode != 0 and len(plain.stderr.strip().splitlines()) == 1
        bare = headrace("produce", "--bootstrap-server", bootstrap, "--topic", "t", stdin="x\n")
        assert bare.returncode != 0 and len(bare.stderr.strip().splitlines()) == 1, bare.stderr
        wrong = tmp_path / "wrong.properties"
        wrong.write_text(admin.read_text().replace(devsecurity.prepare(tmp_path).admin_password,
                                                   "not-the-password"))  # fmt: skip
        refused = headrace("produce", "--bootstrap-server", bootstrap, "--command-config",
                           str(wrong), "--topic", "t", stdin="y\n")  # fmt: skip
        assert refused.returncode != 0
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
        assert "SASL_AUTHENTICATION_FAILED" in refused.stderr

        # a new user who may write the topic, not read it
        (tmp_path / "new.password").write_text("new-secret\n")
        added = headrace("users", "add", "--user", "new", "--password-file",
                         str(tmp_path / "new.password"), *as_admin)  # fmt: skip
        assert added.returncode == 0, added.stderr
        acl = headrace("acls", *as_admin, "--add", "--allow-principal", "User:new",
                       "--operation", "Write", "--topic", "t")  # fmt: skip
        assert acl.returncode == 0, acl.stderr
        new = tmp_path / "new.properties"
        new.write_text(
            admin.read_text().replace(
                f'username="admin" password="{devsecurity.prepare(tmp_path).admin_password}"',
                'username="new" password="new-secret"',
            )
        )
        as_new = ("--bootstrap-server", bootstrap, "--command-config", str(new))
        wrote = headrace("produce", *as_new, "--topic", "t", stdin="d\ne\n")
        assert wrote.returncode == 0, wrote.stderr
        read = headrace("consume", *as_new, "--topic", "t", "--from-beginning",
                        "--timeout", "2")  # fmt: skip
        assert read.returncode != 0 and "TOPIC_AUTHORIZATION_FAILED" in read.stderr
        assert read.stdout == ""

        everything = headrace("consume", *as_admin, "--topic", "t", "--from-beginning",
                              "--timeout", "2")  # fmt: skip
        assert everything.returncode == 0, everything.stderr
        assert sorted(everything.stdout.split()) == ["a", "b", "c", "d", "e"]
    finally:
        pids = (read_state(tmp_path) or {}).get("pids", [])
        down = headrace("cluster", "down", "--dir", str(tmp_path))
    assert down.returncode == 0 and "stopped 3 processes" in down.stdout
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
