"""``headrace cluster up --secure``: the files and settings of a secured development cluster.

In the cluster's directory: a CA (``ca.pem``) and the brokers' keystore for 127.0.0.1 and
localhost (``broker.pem``: PKCS#8 key, then the chain); random passwords (``secrets.json``)
for the SCRAM-SHA-512 users ``broker`` (the brokers' own) and ``admin``, and for the brokers'
ZooKeeper digest identity; ``admin.properties`` (Kafka client properties for ``admin``) and
``zookeeper-auth`` (a JAAS ``Client`` section, the brokers' ``zookeeper.jaas.config.file`` and
every command's ``--zookeeper-auth-file``).  Files holding a secret are mode 0600.  A second
``up --secure`` reuses what is there.  The users are written into ZooKeeper before the brokers
start, with the code ``headrace users add --zookeeper`` runs.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from broker.protocol.security_nodes import MIN_ITERATIONS, scram_credential
from broker.protocol.zk_security import ZkCredentials
from consumers.security import ClientSecurity

from .certificates import LOCAL_SANS, cert_pem, issue, keystore_pem, name

MECHANISM = "SCRAM-SHA-512"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
DIGEST_MODULE = "org.apache.zookeeper.server.auth.DigestLoginModule"
BROKER_USER, ADMIN_USER = "broker", "admin"
ZOOKEEPER_USER = "headrace"  # the brokers' ZooKeeper digest identity
SECRETS = "secrets.json"


def write_secret(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner alone (0600 from its creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)


@dataclass(frozen=True)
class SecureFiles:
    """The secured cluster's files under ``directory`` and the passwords they hold."""

    directory: Path
    broker_password: str
    admin_password: str
    zookeeper_password: str

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def admin_properties(self) -> Path:
        return self.directory / "admin.properties"

    @property
    def zookeeper_auth(self) -> Path:
        return self.directory / "zookeeper-auth"

    @property
    def zookeeper_credentials(self) -> ZkCredentials:
        return ZkCredentials(ZOOKEEPER_USER, self.zookeeper_password)

    def admin_client_properties(self) -> dict[str, str]:
        """``admin``'s client properties (Kafka's names), as written to admin.properties."""
        return {
            "security.protocol": "SASL_SSL",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca.absolute()),
            "sasl.mechanism": MECHANISM,
            "sasl.jaas.config": _scram_jaas(ADMIN_USER, self.admin_password),
        }

    def admin_security(self) -> ClientSecurity:
        return ClientSecurity.from_properties(self.admin_client_properties())

    def broker_properties(self, port: int) -> dict[str, str]:
        """A broker's settings: one SASL_SSL listener on ``port`` for clients and brokers,
        the authorizer with ``broker`` and ``admin`` super users, ZooKeeper ACLs."""
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _scram_jaas(
                BROKER_USER, self.broker_password
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore.absolute()),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca.absolute()),
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
            "zookeeper.set.acl": "true",
            "zookeeper.jaas.config.file": str(self.zookeeper_auth.absolute()),
        }


def _scram_jaas(user: str, password: str) -> str:
    return f'{SCRAM_MODULE} required username="{user}" password="{password}";'


def prepare(directory: Path) -> SecureFiles:
    """Make (or keep) the certificates, passwords, admin.properties and zookeeper-auth."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets_path = directory / SECRETS
    try:
        saved = json.loads(secrets_path.read_text())
        files = SecureFiles(directory, saved["broker"], saved["admin"], saved["zookeeper"])
    except FileNotFoundError:
        files = SecureFiles(directory, *(secrets.token_urlsafe(18) for _ in range(3)))
        passwords = {
            "broker": files.broker_password,
            "admin": files.admin_password,
            "zookeeper": files.zookeeper_password,
        }
        write_secret(secrets_path, json.dumps(passwords, indent=2) + "\n")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"cannot read {secrets_path}: {exc}; remove it to start afresh"
        ) from None
    if not (files.ca.exists() and files.keystore.exists()):
        ca = issue(name("headrace development CA", ou=None), None, ca=True, days=365)
        broker = issue(name("localhost", ou="brokers"), ca, sans=LOCAL_SANS, days=365)
        files.ca.write_bytes(cert_pem(ca.cert))
        write_secret(files.keystore, keystore_pem(broker, ca).decode())
    write_secret(
        files.admin_properties,
        "".join(f"{k}={v}\n" for k, v in files.admin_client_properties().items()),
    )
    write_secret(
        files.zookeeper_auth,
        f'Client {{\n  {DIGEST_MODULE} required\n  username="{ZOOKEEPER_USER}"\n'
        f'  password="{files.zookeeper_password}";\n}};\n',
    )
    return files


def create_users(files: SecureFiles, connect: str) -> None:
    """Set the SCRAM-SHA-512 credentials of ``broker`` and ``admin`` in the cluster's
    ZooKeeper (``connect`` with its chroot), created with the brokers' ZooKeeper identity."""
    from broker.protocol.zk_client import zookeeper_client
    from broker.security.credentials import write_credential

    root, _, chroot = connect.partition("/")
    credentials = files.zookeeper_credentials
    if chroot:
        client = zookeeper_client(root, credentials, secure=True)
        client.start(timeout=15)
        try:
            client.ensure_path("/" + chroot)
        finally:
            client.stop()
            client.close()
    client = zookeeper_client(connect, credentials, secure=True)
    client.start(timeout=15)
    try:
        for user, password in (
            (BROKER_USER, files.broker_password),
            (ADMIN_USER, files.admin_password),
        ):
            write_credential(
                client, user, scram_credential(MECHANISM, password, None, MIN_ITERATIONS)
            )
    finally:
        client.stop()
        client.close()


def usage(files: SecureFiles, bootstrap: str, connect: str) -> str:
    """What to type to use the secured cluster, for people."""
    props = files.admin_properties
    b = f"--bootstrap-server {bootstrap} --command-config {props}"
    first = bootstrap.split(",")[0]
    return "\n".join(
        [
            f"security: SASL_SSL with {MECHANISM} on every broker port, ACLs on (super users "
            f"{BROKER_USER} and {ADMIN_USER}), ZooKeeper ACLs on",
            f"  {props} logs in as {ADMIN_USER}; {files.zookeeper_auth} is the brokers' "
            "ZooKeeper identity; both are secrets (mode 0600)",
            f"  headrace topics {b} list",
            f"  headrace topics {b} create --topic clicks --partitions 3",
            f"  echo hello | headrace produce {b} --topic clicks",
            f"  headrace consume {b} --topic clicks --from-beginning --timeout 5",
            f"  headrace users add --user alice --password-file alice.password {b}",
            f"  headrace acls {b} --add --allow-principal User:alice --operation Write "
            "--topic clicks",
            f"  headrace acls --zookeeper {connect} --zookeeper-auth-file {files.zookeeper_auth} "
            "--list",
            f"  kcat -b {first} -X security.protocol=SASL_SSL -X sasl.mechanisms={MECHANISM} "
            f"-X sasl.username={ADMIN_USER} -X sasl.password={files.admin_password} "
            f"-X ssl.ca.location={files.ca} -L",
        ]
    )
