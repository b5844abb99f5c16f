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

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_PASSWORD = "keypass"  # the password of the encrypted keystore
CLIENT_NAMES = ("alice", "bob", "broker")


def _name(cn: str, ou: str | None = "test", org: str = "headrace") -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if ou is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


@dataclass
class _Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _issue(
    subject: x509.Name,
    issuer: _Issued | None,
    ca: bool = False,
    sans: list | None = None,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = key if issuer is None else issuer.key
    return _Issued(key, builder.sign(signer, hashes.SHA256()))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key, password: str | None = None) -> bytes:
    encryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password.encode())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


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
    ca = _issue(_name("headrace test CA", ou=None), None, ca=True)
    other = _issue(_name("unrelated CA", ou=None, org="elsewhere"), None, ca=True)
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    broker = _issue(_name("localhost", ou="brokers"), ca, sans=sans)
    chain = _cert_pem(broker.cert) + _cert_pem(ca.cert)

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    paths = {
        "ca": write("ca.pem", _cert_pem(ca.cert)),
        "other_ca": write("other_ca.pem", _cert_pem(other.cert)),
        "broker_keystore": write("broker.pem", _key_pem(broker.key) + chain),
        "broker_keystore_encrypted": write(
            "broker_encrypted.pem", _key_pem(broker.key, KEY_PASSWORD) + chain
        ),
    }
    for name in CLIENT_NAMES:
        client = _issue(_name(name), ca)
        keystore = _key_pem(client.key) + _cert_pem(client.cert) + _cert_pem(ca.cert)
        write(f"client_{name}.pem", keystore)
    mallory = _issue(_name("mallory", org="elsewhere"), other)
    paths["other_client"] = write(
        "client_other.pem", _key_pem(mallory.key) + _cert_pem(mallory.cert) + _cert_pem(other.cert)
    )
    return Certs(directory=directory, **paths)
