"""TLS for the broker: a listener's server context, the inter-broker client's context, and
the principal a client certificate names, from Kafka's ``ssl.*`` properties (PEM only).

    >>> settings = TlsSettings.for_listener(config, "SSL")
    >>> reactor.listenSSL(9093, factory, ServerTls(settings), interface=host)
    >>> principal_of(connection.transport, settings.mapper)   # 'User:CN=alice,OU=test,O=x'

``ssl.keystore.location`` is one PEM file with the private key (PKCS#8, encrypted under
``ssl.key.password`` or not) and the certificate chain, leaf first; ``ssl.keystore.key`` and
``ssl.keystore.certificate.chain`` give the same inline.  ``ssl.truststore.location`` is a
PEM file of CA certificates.  Every problem (a missing file, a wrong key password, a key that
does not match its certificate, an unknown protocol or cipher) is a ConfigError at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer  # type: ignore[import-untyped]

from ..log.config import ConfigError
from .principal import PrincipalMapper

TLS_VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}
SSL_PROTOCOLS = ("TLS", "TLSv1.2", "TLSv1.3", "TLSv1.1", "TLSv1")  # ssl.protocol values
CLIENT_AUTH = ("none", "requested", "required")
_KEYS = (
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.cipher.suites",
    "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm",
)


@dataclass(frozen=True)
class TlsSettings:
    """A listener's TLS settings (the per-listener keys over the plain ones), checked and
    loaded: ``key``/``chain`` are pyOpenSSL objects, ``cas`` the trusted certificates."""

    listener: str
    key: Any  # a cryptography private key, or None
    chain: tuple[x509.Certificate, ...]
    cas: tuple[x509.Certificate, ...]
    client_auth: str
    min_version: int
    max_version: int
    cipher_suites: tuple[str, ...]
    mapper: PrincipalMapper
    check_hostname: bool

    @classmethod
    def for_listener(cls, config, listener: str, need_keystore: bool = True) -> TlsSettings:
        """Read ``listener``'s settings from a BrokerConfig (``config.for_listener``);
        ``need_keystore`` false: a client may go without a certificate."""
        values = {key: config.for_listener(listener, key) for key in _KEYS}
        return cls.from_values(values, listener, need_keystore)

    @classmethod
    def from_values(cls, v: dict, listener: str, need_keystore: bool = True) -> TlsSettings:
        where = f"listener {listener}"
        for key in ("ssl.keystore.type", "ssl.truststore.type"):
            if (v.get(key) or "PEM").upper() != "PEM":
                raise ConfigError(
                    f"{key}={v[key]} ({where}): only PEM keystores and truststores are "
                    "supported; convert with e.g. openssl pkcs12 -in store.p12 -nodes"
                )
        private_key, chain = _keystore(v, where)
        if private_key is None and need_keystore:
            raise ConfigError(
                f"{where} uses TLS but has no keystore: set ssl.keystore.location (a PEM file "
                "with the private key and certificate chain) or listener.name."
                f"{listener.lower()}.ssl.keystore.location"
            )
        cas = _truststore(v, where)
        client_auth = (v.get("ssl.client.auth") or "none").strip().lower()
        if client_auth not in CLIENT_AUTH:
            raise ConfigError(
                f"ssl.client.auth={client_auth} ({where}) is not one of {', '.join(CLIENT_AUTH)}"
            )
        if client_auth != "none" and not cas:
            raise ConfigError(
                f"ssl.client.auth={client_auth} ({where}) needs ssl.truststore.location: the "
                "CAs whose client certificates are accepted"
            )
        enabled = v.get("ssl.enabled.protocols") or ["TLSv1.2", "TLSv1.3"]
        unknown = [p for p in enabled if p not in TLS_VERSIONS]
        if unknown:
            raise ConfigError(
                f"ssl.enabled.protocols ({where}): {', '.join(unknown)} unknown; use "
                + ", ".join(TLS_VERSIONS)
            )
        protocol = v.get("ssl.protocol") or "TLSv1.3"
        if protocol not in SSL_PROTOCOLS:
            raise ConfigError(
                f"ssl.protocol={protocol} ({where}) is not one of {', '.join(SSL_PROTOCOLS)}"
            )
        versions = sorted(TLS_VERSIONS[p] for p in enabled)
        algorithm = v.get("ssl.endpoint.identification.algorithm")
        algorithm = "https" if algorithm is None else algorithm.strip()
        if algorithm.lower() not in ("", "https"):
            raise ConfigError(
                f"ssl.endpoint.identification.algorithm={algorithm} ({where}): only https "
                "(check the host name) or empty (do not) is supported"
            )
        settings = cls(
            listener.upper(),
            private_key,
            chain,
            cas,
            client_auth,
            versions[0],
            versions[-1],
            tuple(v.get("ssl.cipher.suites") or ()),
            PrincipalMapper.from_rules(v.get("ssl.principal.mapping.rules")),
            algorithm.lower() == "https",
        )
        settings.context(server=private_key is not None)  # fail now, not per client
        return settings

    def context(self, server: bool) -> SSL.Context:
        """A new pyOpenSSL context: a listener's (``server``) or the inter-broker client's."""
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(self.min_version)
        ctx.set_max_proto_version(self.max_version)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
        if server:
            ctx.set_options(SSL.OP_NO_TICKET)
        if self.key is not None:
            try:
                ctx.use_certificate(self.chain[0])
                for cert in self.chain[1:]:
                    ctx.add_extra_chain_cert(cert)
                ctx.use_privatekey(self.key)
                ctx.check_privatekey()
            except SSL.Error as exc:
                raise ConfigError(
                    f"listener {self.listener}: the keystore's key does not match its "
                    f"certificate ({exc})"
                ) from None
        store = ctx.get_cert_store()
        assert store is not None
        for ca in self.cas:
            store.add_cert(crypto.X509.from_cryptography(ca))
        if self.cipher_suites:
            _set_ciphers(ctx, self.cipher_suites, self.listener)
        if server:
            mode = {
                "none": SSL.VERIFY_NONE,
                "requested": SSL.VERIFY_PEER,
                "required": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            }[self.client_auth]
            ctx.set_verify(mode, _keep_verdict)
            ctx.set_session_id(f"headrace-{self.listener}".encode()[:32])
        else:
            ctx.set_verify(SSL.VERIFY_PEER, _keep_verdict)
        return ctx


def _keep_verdict(connection, cert, errno, depth, ok) -> bool:
    return bool(ok)


def _read(path: str, what: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} ({where}): {exc.strerror}") from None


def _certificates(data: bytes, what: str, where: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{what} ({where}) holds no readable PEM certificate: {exc}") from None
    return tuple(certs)


def _keystore(v: dict, where: str) -> tuple[Any, tuple[x509.Certificate, ...]]:
    location, inline_key = v.get("ssl.keystore.location"), v.get("ssl.keystore.key")
    if location and inline_key:
        raise ConfigError(f"{where}: set ssl.keystore.location or ssl.keystore.key, not both")
    if location:
        data = _read(location, "ssl.keystore.location", where)
        key_data, chain_data, what = data, data, f"ssl.keystore.location {location}"
    elif inline_key:
        chain_text = v.get("ssl.keystore.certificate.chain")
        if not chain_text:
            raise ConfigError(f"{where}: ssl.keystore.key needs ssl.keystore.certificate.chain")
        key_data, chain_data = inline_key.encode(), chain_text.encode()
        what = "ssl.keystore.key"
    else:
        return None, ()
    password = v.get("ssl.key.password")
    start = key_data.find(b"-----BEGIN ")
    end = key_data.find(b"PRIVATE KEY-----", key_data.find(b"-----END ", start))
    if start < 0 or end < 0 or b"PRIVATE KEY" not in key_data[start : start + 40]:
        raise ConfigError(f"{what} ({where}) holds no PEM private key (PKCS#8) before its chain")
    pem_key = key_data[start : end + len(b"PRIVATE KEY-----")]
    try:
        key = load_pem_private_key(pem_key, password.encode() if password else None)
    except TypeError:
        raise ConfigError(
            f"{what} ({where}): the private key is encrypted; set ssl.key.password"
            if not password
            else f"{what} ({where}): ssl.key.password is set but the key is not encrypted"
        ) from None
    except ValueError:
        raise ConfigError(
            f"{what} ({where}): cannot decrypt the private key (wrong ssl.key.password?)"
        ) from None
    chain = _certificates(chain_data, what, where)
    return key, chain


def _truststore(v: dict, where: str) -> tuple[x509.Certificate, ...]:
    location, inline = v.get("ssl.truststore.location"), v.get("ssl.truststore.certificates")
    if location:
        return _certificates(
            _read(location, "ssl.truststore.location", where),
            f"ssl.truststore.location {location}",
            where,
        )
    if inline:
        return _certificates(inline.encode(), "ssl.truststore.certificates", where)
    return ()


def _openssl_cipher(name: str) -> str:
    """Kafka's (IANA) TLS 1.2 suite name as OpenSSL names it; other names unchanged."""
    if not name.startswith("TLS_") or "_WITH_" not in name:
        return name
    exchange, _, rest = name[4:].partition("_WITH_")
    rest = rest.replace("AES_128_", "AES128_").replace("AES_256_", "AES256_")
    parts = rest.split("_")
    if parts[-1] == "SHA":
        parts[-1] = "SHA" if "CBC" in parts else parts[-1]
    parts = [p for p in parts if p != "CBC"]
    cipher = "-".join(parts)
    return cipher if exchange == "RSA" else f"{exchange.replace('_', '-')}-{cipher}"


def _set_ciphers(ctx: SSL.Context, suites: tuple[str, ...], listener: str) -> None:
    tls13 = [s for s in suites if s.startswith("TLS_") and "_WITH_" not in s]
    older = [_openssl_cipher(s) for s in suites if s not in tls13]
    try:
        if older:
            ctx.set_cipher_list(":".join(older).encode())
        if tls13:
            ctx.set_tls13_ciphersuites(":".join(tls13).encode())
    except SSL.Error as exc:
        raise ConfigError(
            f"ssl.cipher.suites (listener {listener}): none of {', '.join(suites)} is a "
            f"cipher suite this OpenSSL knows ({exc})"
        ) from None


def subject_of(certificate: crypto.X509) -> str:
    """The certificate's subject as Kafka prints it (RFC 2253: CN first)."""
    return certificate.to_cryptography().subject.rfc4514_string()


def principal_of(transport, mapper: PrincipalMapper) -> str | None:
    """``User:<mapped subject>`` of the client certificate a TLS ``transport`` received,
    or None when the client sent none.  NoMatchingRule if no mapping rule applies."""
    get_peer = getattr(transport, "getPeerCertificate", None)
    certificate = get_peer() if get_peer is not None else None
    if certificate is None:
        return None
    return "User:" + mapper.name(subject_of(certificate))


@implementer(IOpenSSLContextFactory)
class ServerTls:
    """The context factory of a TLS listener (``reactor.listenSSL``)."""

    def __init__(self, settings: TlsSettings):
        self.settings = settings
        self._context = settings.context(server=True)

    def getContext(self) -> SSL.Context:  # Twisted's name
        return self._context
