"""X.509 certificates made with the ``cryptography`` package, written as PEM.

A CA (``issue(name(...), None, ca=True)``) signs server and client certificates; a keystore
is the PKCS#8 private key followed by the certificate chain, the layout of Kafka's
``ssl.keystore.type=PEM`` file (stdlib ``ssl.load_cert_chain`` reads the same file).  Keys
are EC P-256: fast to make.  ``headrace cluster up --secure`` and the tests' certificates
use it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# the names a certificate for a broker on this machine answers to
LOCAL_SANS = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def name(cn: str, ou: str | None = "test", org: str = "headrace") -> x509.Name:
    """``CN=<cn>,OU=<ou>,O=<org>`` (no OU when ``ou`` is None)."""
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if ou is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def issue(
    subject: x509.Name,
    issuer: Issued | None,
    ca: bool = False,
    sans: list | tuple | None = None,
    days: int = 30,
) -> Issued:
    """A new key and its certificate signed by ``issuer`` (self-signed when None); a CA's
    may sign certificates, others serve both as server and client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
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
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    signer = key if issuer is None else issuer.key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, password: str | None = None) -> bytes:
    """The private key as PKCS#8 PEM, encrypted under ``password`` if given."""
    encryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password.encode())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def keystore_pem(issued: Issued, *chain: Issued, password: str | None = None) -> bytes:
    """A PEM keystore: ``issued``'s key, its certificate, then ``chain``'s certificates."""
    return key_pem(issued.key, password) + b"".join(cert_pem(i.cert) for i in (issued, *chain))
