"""Each third-party client's settings for a secured listener, in its own names: SASL_SSL with
SCRAM-SHA-512 (a user and password, the CA trusted) or SSL with a client certificate (the PEM
file holding the key and its chain), as ``tests/test_security_clients.py`` uses them and the
README's "client settings" table shows them.

    >>> login = Login.scram(certs, "alice", "alice-pw")   # SASL_SSL, SCRAM-SHA-512
    >>> login = Login.certificate(certs, "alice")         # SSL, CN=alice's certificate
    >>> login.librdkafka()    # kcat's -X and confluent-kafka's config
    >>> login.kafka_python()  # kafka-python's and aiokafka's keyword arguments
    >>> login.kafkajs()       # kafkajs's {ssl, sasl} (files named; the script reads them)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Login:
    """How one client connects: ``protocol`` SASL_SSL or SSL, the CA it trusts, and either a
    SCRAM user and password or a client keystore (key + chain, one PEM file)."""

    protocol: str
    ca: Path
    user: str | None = None
    password: str | None = None
    keystore: Path | None = None

    @classmethod
    def scram(cls, certs, user: str, password: str) -> Login:
        return cls("SASL_SSL", certs.ca, user=user, password=password)

    @classmethod
    def certificate(cls, certs, name: str | None) -> Login:
        """SSL with ``name``'s certificate (``"other"``: the one another CA signed; None: no
        certificate at all)."""
        if name is None:
            return cls("SSL", certs.ca)
        keystore = certs.other_client if name == "other" else certs.client(name)
        return cls("SSL", certs.ca, keystore=keystore)

    @property
    def listener(self) -> str:
        """The listener this login is for (the test brokers name them by protocol)."""
        return self.protocol

    def librdkafka(self) -> dict[str, str]:
        """librdkafka's properties (kcat ``-X k=v``, confluent-kafka's config dict)."""
        props = {"security.protocol": self.protocol, "ssl.ca.location": str(self.ca)}
        if self.user is not None:
            props.update(
                {
                    "sasl.mechanisms": MECHANISM,
                    "sasl.username": self.user,
                    "sasl.password": str(self.password),
                }
            )
        if self.keystore is not None:
            props["ssl.certificate.location"] = str(self.keystore)
            props["ssl.key.location"] = str(self.keystore)
        return props

    def kcat_args(self) -> list[str]:
        return [arg for k, v in self.librdkafka().items() for arg in ("-X", f"{k}={v}")]

    def kafka_python(self) -> dict:
        """kafka-python's keyword arguments (aiokafka's are the same but for the TLS files,
        which it takes as an ``ssl_context``: see ``aiokafka``)."""
        kwargs: dict = {"security_protocol": self.protocol, "ssl_cafile": str(self.ca)}
        if self.user is not None:
            kwargs.update(
                sasl_mechanism=MECHANISM,
                sasl_plain_username=self.user,
                sasl_plain_password=self.password,
            )
        if self.keystore is not None:
            kwargs.update(ssl_certfile=str(self.keystore), ssl_keyfile=str(self.keystore))
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A stdlib context with these TLS settings (for bare sockets)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.keystore is not None:
            context.load_cert_chain(str(self.keystore))
        return context

    def aiokafka(self) -> dict:
        """aiokafka's keyword arguments: an ``ssl_context`` (its ``create_ssl_context``)
        instead of the files."""
        from aiokafka.helpers import create_ssl_context

        kwargs = {k: v for k, v in self.kafka_python().items() if not k.startswith("ssl_")}
        files = {}
        if self.keystore is not None:
            files = {"certfile": str(self.keystore), "keyfile": str(self.keystore)}
        kwargs["ssl_context"] = create_ssl_context(cafile=str(self.ca), **files)
        return kwargs

    def kafkajs(self) -> dict:
        """kafkajs's ``ssl`` and ``sasl`` options, PEM files by path (``tests/js/common.js``
        reads them: ``ssl: {ca: [pem], cert, key}``)."""
        tls: dict = {"ca": str(self.ca)}
        if self.keystore is not None:
            tls.update(cert=str(self.keystore), key=str(self.keystore))
        options: dict = {"ssl": tls}
        if self.user is not None:
            options["sasl"] = {
                "mechanism": MECHANISM.lower(),
                "username": self.user,
                "password": self.password,
            }
        return options
