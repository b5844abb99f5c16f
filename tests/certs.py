"""Certificates for TLS tests, made with the ``cryptography`` package and written as PEM.

    >>> certs = make_certs(tmp_path)
    >>> certs.ca                 # the CA every broker and good client trusts
    >>> certs.broker_keystore    # the broker's PKCS#8 key followed by its chain (to the CA)
    >>> certs.client("alice")    # client_alice.pem: key + chain, CN=alice,OU=test,O=headrace
    >>> certs.other_client       # a client (CN=mallory) signed by an unrelated CA
    >>> certs.other_ca           # that unrelated CA's certificate

Every keystore holds the private key (PKCS#8) and then the certificate chain, the layout of
Kafka's ``ssl.keystore.type=PEM`` file; stdlib ``ssl.load_cert_chain`` reads the same file.
``broker_keystore_encrypted`` is the same broker key encrypted with ``KEY_PASSWORD``.  The
broker certificate names 127.0.0.1 and localhost (SAN IP and DNS).  Keys are EC P-256: fast
to make, so a session's certificates cost milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headrace.certificates import LOCAL_SANS, issue, keystore_pem, name
from headrace.certificates import cert_pem as _cert_pem

KEY_PASSWORD = "keypass"  # the password of the encrypted keystore
CLIENT_NAMES = ("alice", "bob", "broker")


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files ``make_certs`` wrote (see the module docstring)."""

    directory: Path
    ca: Path  # ca.pem: the CA certificate (a truststore)
    other_ca: Path  # other_ca.pem: an unrelated CA
    broker_keystore: Path  # broker.pem: key + chain for 127.0.0.1 / localhost
    broker_keystore_encrypted: Path  # broker_encrypted.pem: the same, key under KEY_PASSWORD
    other_client: Path  # client_other.pem: CN=mallory, signed by other_ca
    key_password: str = KEY_PASSWORD

    def client(self, name: str) -> Path:
        """client_<name>.pem: key + chain for CN=<name>,OU=test,O=headrace (one of
        CLIENT_NAMES)."""
        path = self.directory / f"client_{name}.pem"
        if not path.exists():
            raise KeyError(f"no client certificate {name!r}; made: {', '.join(CLIENT_NAMES)}")
        return path

    def broker_properties(self, client_auth: str = "none", encrypted: bool = False) -> dict:
        """Broker properties for TLS listeners: the broker keystore, the CA as truststore,
        ``ssl.client.auth``.  The broker's own certificate (CN=localhost) is what it presents
        to other brokers as a client too."""
        props = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(
                self.broker_keystore_encrypted if encrypted else self.broker_keystore
            ),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
            "ssl.client.auth": client_auth,
        }
        if encrypted:
            props["ssl.key.password"] = self.key_password
        return props

    def client_properties(self, name: str | None = None, protocol: str = "SSL") -> dict:
        """Client properties (Kafka's Java names) trusting the CA, with ``name``'s certificate
        if given (``"other"``: the client signed by the unrelated CA)."""
        props = {
            "security.protocol": protocol,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
        }
        if name is not None:
            keystore = self.other_client if name == "other" else self.client(name)
            props["ssl.keystore.type"] = "PEM"
            props["ssl.keystore.location"] = str(keystore)
        return props


def make_certs(directory: Path) -> Certs:
    """Make the CAs, broker and client certificates and write them under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = issue(name("headrace test CA", ou=None), None, ca=True)
    other = issue(name("unrelated CA", ou=None, org="elsewhere"), None, ca=True)
    broker = issue(name("localhost", ou="brokers"), ca, sans=LOCAL_SANS)

    def write(filename: str, data: bytes) -> Path:
        path = directory / filename
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    paths = {
        "ca": write("ca.pem", _cert_pem(ca.cert)),
        "other_ca": write("other_ca.pem", _cert_pem(other.cert)),
        "broker_keystore": write("broker.pem", keystore_pem(broker, ca)),
        "broker_keystore_encrypted": write(
            "broker_encrypted.pem", keystore_pem(broker, ca, password=KEY_PASSWORD)
        ),
    }
    for client_name in CLIENT_NAMES:
        write(f"client_{client_name}.pem", keystore_pem(issue(name(client_name), ca), ca))
    mallory = issue(name("mallory", org="elsewhere"), other)
    paths["other_client"] = write("client_other.pem", keystore_pem(mallory, other))
    return Certs(directory=directory, **paths)
