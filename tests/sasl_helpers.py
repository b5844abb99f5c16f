"""A broker whose one listener is SASL_PLAINTEXT, for SASL tests: its properties (PLAIN users
from a JAAS line and a credentials file, SCRAM users from ZooKeeper), and our client's
security settings for a user."""

from __future__ import annotations

import time

from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from consumers.security import ClientSecurity
from headrace.devcluster import BrokerProcess

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"  # PLAIN, from the listener's JAAS line
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def security(user: str, password: str, mechanism: str = "PLAIN") -> ClientSecurity:
    return ClientSecurity.from_properties(
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }
    )


ADMIN_SECURITY = security(ADMIN, ADMIN_PASSWORD)


def sasl_properties(port: int, plain_file, **extra) -> dict[str, str]:
    """A SASL_PLAINTEXT listener on ``port`` with every mechanism enabled; the broker logs
    in as the PLAIN admin."""
    jaas = (
        f'{PLAIN_MODULE} required username="{ADMIN}" password="{ADMIN_PASSWORD}" '
        f'user_{ADMIN}="{ADMIN_PASSWORD}";'
    )
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "sasl.plain.credentials.file": str(plain_file),
        "auto.create.topics.enable": "false",
        **extra,
    }


class SaslBroker(BrokerProcess):
    """A broker process ready once the PLAIN admin can log in and see it registered."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{tail}")
            try:
                with self.connect(ADMIN_SECURITY) as conn:
                    body = conn.request(ApiKey.METADATA, {"topics": []})
                    if any(b["node_id"] == self.broker_id for b in body["brokers"]):
                        return
            except (OSError, Exception):  # not listening or not registered yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"SASL broker not ready on port {self.port} within {timeout} s")

    def connect(self, sec: ClientSecurity, timeout: float = 10.0) -> BrokerConnection:
        return BrokerConnection("127.0.0.1", self.port, timeout=timeout, security=sec)
