"""The admin tools over a secure listener: ``headrace acls`` and ``headrace users`` with
``--bootstrap-server`` and ``--command-config`` against a broker whose only client listener
is SASL_SSL (SCRAM-SHA-512) with the authorizer on: the super user's properties file adds,
lists and removes ACLs and SCRAM users; another user's is refused, nothing stored; a missing
or wrong password in the file fails the command with a clear message."""

from __future__ import annotations

import subprocess
import sys

from conftest import wait_for, zk_session

from broker.protocol.acls import WRITE
from broker.protocol.security_nodes import scram_credential
from broker.security.acl_store import ZkAclStore
from broker.security.credentials import read_credentials, write_credential
from consumers.client import BrokerConnection
from consumers.sasl import SaslAuthenticationError
from consumers.security import ClientSecurity

MECHANISM = "SCRAM-SHA-512"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


def _headrace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args], capture_output=True, text=True, timeout=60
    )


def _command_config(path, certs, user: str, password: str):
    props = {
        **certs.client_properties(protocol="SASL_SSL"),
        "sasl.mechanism": MECHANISM,
        "sasl.jaas.config": f'{SCRAM_MODULE} required username="{user}" password="{password}";',
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _can_log_in(certs, bootstrap: str, user: str, password: str) -> bool:
    security = ClientSecurity.from_properties(
        {
            **certs.client_properties(protocol="SASL_SSL"),
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
        }
    )
    host, port = bootstrap.rsplit(":", 1)
    try:
        BrokerConnection(host, int(port), timeout=15, security=security).close()
    except SaslAuthenticationError:
        return False
    return True


def test_acls_and_users_tools_over_sasl_ssl_with_a_command_config(make_cluster, certs, tmp_path):
    cluster = make_cluster(
        1,
        listeners={"SASL_SSL": "SASL_SSL"},
        props={
            **certs.broker_properties(),
            "sasl.enabled.mechanisms": MECHANISM,
            "authorizer.class.name": AUTHORIZER,
            "super.users": "User:admin;User:ANONYMOUS",  # ANONYMOUS: the PLAINTEXT inter-broker
        },
    )
    with zk_session(cluster.zookeeper_connect) as zk:
        for user, password in (("admin", "admin-pw"), ("alice", "alice-pw")):
            write_credential(zk, user, scram_credential(MECHANISM, password))
        bootstrap = cluster.bootstrap_for("SASL_SSL")
        wait_for(lambda: _can_log_in(certs, bootstrap, "alice", "alice-pw"), 20)
        admin = ["--bootstrap-server", bootstrap, "--command-config"]
        admin.append(
            str(_command_config(tmp_path / "admin.properties", certs, "admin", "admin-pw"))
        )
        alice = ["--bootstrap-server", bootstrap, "--command-config"]
        alice.append(
            str(_command_config(tmp_path / "alice.properties", certs, "alice", "alice-pw"))
        )
        store = ZkAclStore(zk)

        def stored():
            return sorted((b.name, b.principal, b.operation) for b in store.load().bindings())

        grant = ("--allow-principal", "User:alice", "--operation", "Write", "--topic", "clicks")
        added = _headrace("acls", *admin, "--add", *grant)
        assert added.returncode == 0, added.stderr
        assert stored() == [("clicks", "User:alice", WRITE)]
        listed = _headrace("acls", *admin, "--list", "--topic", "clicks")
        assert "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)" in (
            listed.stdout
        ), listed.stderr

        refused = _headrace("acls", *alice, "--add", "--allow-principal", "User:alice",
                            "--operation", "All", "--cluster")  # fmt: skip
        assert refused.returncode != 0 and "CLUSTER_AUTHORIZATION_FAILED" in refused.stderr
        assert _headrace("acls", *alice, "--list").returncode != 0
        assert stored() == [("clicks", "User:alice", WRITE)]  # nothing of alice's stored

        removed = _headrace("acls", *admin, "--remove", "--topic", "clicks", "--force")
        assert removed.returncode == 0, removed.stderr
        assert stored() == []

        pw = tmp_path / "pw"
        pw.write_text("carol-pw\n")
        made = _headrace("users", "add", "--user", "carol", "--password-file", str(pw), *admin)
        assert made.returncode == 0, made.stderr
        wait_for(lambda: _can_log_in(certs, bootstrap, "carol", "carol-pw"), 20)
        assert "'carol' are SCRAM-SHA-512" in _headrace("users", "list", *admin).stdout

        intruder = _headrace(
            "users", "add", "--user", "mallory", "--password-file", str(pw), *alice
        )
        assert intruder.returncode != 0 and "CLUSTER_AUTHORIZATION_FAILED" in intruder.stderr
        assert "mallory" not in read_credentials(zk)

        wrong = _command_config(tmp_path / "wrong.properties", certs, "admin", "not-it")
        failed = _headrace("users", "list", "--bootstrap-server", bootstrap,
                           "--command-config", str(wrong))  # fmt: skip
        assert failed.returncode != 0 and "SASL_AUTHENTICATION_FAILED" in failed.stderr

        deleted = _headrace("users", "delete", "--user", "carol", *admin)
        assert deleted.returncode == 0, deleted.stderr
        wait_for(lambda: not _can_log_in(certs, bootstrap, "carol", "carol-pw"), 20)
        assert "carol" not in read_credentials(zk)
