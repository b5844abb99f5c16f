"""A load's settings: one frozen value, checked when it is built, handed to every worker.

    >>> config = LoaderConfig(zookeeper="127.0.0.1:2181", topics=("access",), group="wh",
    ...                       url="./warehouse", workers=2, time_field="ts")
    >>> dataclasses.replace(config, workers=0)     # ConfigError: --workers must be at least 1

Each field is a ``headrace load`` option (``max_rows`` is ``--max-rows``), and an error names
the option; ``session_timeout_ms`` is each worker's ``zookeeper.session.timeout.ms``;
``security`` (``--command-config``, ``-X``) is frozen and picklable, so workers get it too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.protocol.zk_security import ZkCredentials
from consumers.security import PLAINTEXT, ClientSecurity

FORMATS = ("json", "string", "raw", "avro")
PARQUET_COMPRESSIONS = ("snappy", "zstd", "gzip", "lz4", "none")


class ConfigError(ValueError):
    """A setting of the load is out of range; the message names the option."""


def option(name: str) -> str:
    """The command-line option of a field: ``max_rows`` is ``--max-rows``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class LoaderConfig:
    """What one load (and each of its workers) runs with; see the module docstring."""

    zookeeper: str
    topics: tuple[str, ...]
    group: str
    url: str
    workers: int = 1
    format: str = "json"  # --value-format (also --format)
    time_field: str | None = None
    schema_registry: str | None = None  # with avro: the registry's URL
    value_subject: str | None = None  # with avro: the subject of every topic (<topic>-value)
    schema_file: str | None = None
    max_rows: int = 1_000_000
    max_bytes: int = 256 << 20
    max_open_writers: int = 32
    max_chunk_bytes: int = 256 << 20
    allow_gaps: bool = False
    follow: bool = False
    interval: float = 60.0
    storage_options: Mapping = field(default_factory=dict)
    parquet_compression: str = "snappy"
    session_timeout_ms: int = 6000
    max_future_ms: int = 86_400_000  # events later than the plan's time plus this: quarantined
    success_lookback_days: int = 7  # how far back hours are checked for _SUCCESS
    log_level: str = "WARNING"
    metrics_port: int | None = None  # the supervisor's Prometheus page; None: none
    metrics_host: str = "127.0.0.1"
    security: ClientSecurity = PLAINTEXT  # how the supervisor and each worker reach brokers
    # the registry's login and CA (Confluent's basic.auth.* and schema.registry.ssl.* names)
    registry_properties: Mapping = field(default_factory=dict)
    zookeeper_credentials: ZkCredentials | None = None  # --zookeeper-auth-file

    def __post_init__(self) -> None:
        if isinstance(self.topics, str):
            object.__setattr__(self, "topics", (self.topics,))
        else:
            object.__setattr__(self, "topics", tuple(self.topics))
        for name in ("zookeeper", "group", "url"):
            if not getattr(self, name):
                raise ConfigError(f"{option(name)} must not be empty")
        if not self.topics or not all(self.topics):
            raise ConfigError("--topic must name at least one topic")
        for name in (
            "workers",
            "max_rows",
            "max_bytes",
            "max_open_writers",
            "max_chunk_bytes",
            "session_timeout_ms",
            "max_future_ms",
            "success_lookback_days",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{option(name)} must be at least 1 (got {value!r})")
        if not self.interval > 0:
            raise ConfigError(f"--interval must be more than 0 seconds (got {self.interval!r})")
        if self.format not in FORMATS:
            raise ConfigError(
                f"--value-format must be one of {', '.join(FORMATS)} (got {self.format!r})"
            )
        if self.time_field is not None and self.format not in ("json", "avro"):
            raise ConfigError("--time-field needs --value-format json or avro")
        self._check_avro()
        if self.parquet_compression not in PARQUET_COMPRESSIONS:
            raise ConfigError(
                f"--parquet-compression must be one of {', '.join(PARQUET_COMPRESSIONS)} "
                f"(got {self.parquet_compression!r})"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port must be 0-65535 (got {self.metrics_port!r})")
        if not isinstance(logging.getLevelName(self.log_level), int):
            raise ConfigError(f"unknown log level {self.log_level!r}")

    def _check_avro(self) -> None:
        avro = self.format == "avro"
        if avro and not self.schema_registry:
            raise ConfigError("--value-format avro needs --schema-registry URL")
        if self.schema_registry is not None and not avro:
            raise ConfigError("--schema-registry needs --value-format avro")
        if self.value_subject is not None and not avro:
            raise ConfigError("--value-subject needs --value-format avro")
        if avro and self.schema_file:
            raise ConfigError("--schema is for --value-format json; Avro has the registry's")
        if self.schema_registry is not None and not self.schema_registry.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"--schema-registry must be an http:// or https:// URL "
                f"(got {self.schema_registry!r})"
            )
        if self.value_subject == "":
            raise ConfigError("--value-subject must not be empty")

    def subject(self, topic: str) -> str:
        """The registry subject of a topic's values: ``--value-subject``, or ``<topic>-value``."""
        return self.value_subject or f"{topic}-value"

    def replace(self, **changes) -> LoaderConfig:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)
