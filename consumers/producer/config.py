"""The producer's settings, checked once, with Kafka's meanings: acks, idempotence (on by
default with acks all, as in Kafka's producer), requests in flight, batching, time limits."""

from __future__ import annotations

from dataclasses import dataclass

from broker.protocol import compression as codecs

from .sequences import MAX_IN_FLIGHT_IDEMPOTENT


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """What the accumulator and the sender go by; times in seconds unless named ``_ms``."""

    acks: int  # -1 (all), 0 or 1
    idempotent: bool
    max_in_flight: int  # requests per connection
    codec: int
    linger: float
    batch_size: int
    buffer_memory: int
    block_on_full: bool
    max_block: float
    retry_backoff: float
    delivery_timeout: float
    request_timeout_ms: int
    max_request_size: int

    @classmethod
    def of(
        cls,
        *,
        acks: int | str = "all",
        enable_idempotence: bool | None = None,
        max_in_flight_requests_per_connection: int = 5,
        compression: str = "none",
        linger_ms: float = 5.0,
        batch_size: int = 512 * 1024,
        buffer_memory: int = 64 * 1024 * 1024,
        block_on_full: bool = True,
        max_block_ms: float = 60_000,
        retry_backoff_ms: float = 100,
        delivery_timeout_ms: float = 120_000,
        request_timeout_ms: float = 30_000,
        max_request_size: int = 1_048_576,
    ) -> ProducerConfig:
        """The settings from the Producer's options; ValueError for a combination Kafka's
        producer refuses (idempotence without acks all, or with more than 5 in flight)."""
        acks = -1 if acks in ("all", -1, "-1") else int(acks)
        if acks not in (-1, 0, 1):
            raise ValueError("acks must be 0, 1 or all")
        if enable_idempotence is None:  # Kafka's rule: on, unless acks asks for less
            enable_idempotence = acks == -1
        elif enable_idempotence and acks != -1:
            raise ValueError("enable_idempotence needs acks='all'")
        max_in_flight = max(1, max_in_flight_requests_per_connection)
        if enable_idempotence and max_in_flight > MAX_IN_FLIGHT_IDEMPOTENT:
            raise ValueError(
                f"enable_idempotence allows at most {MAX_IN_FLIGHT_IDEMPOTENT} "
                "requests in flight per connection"
            )
        return cls(
            acks=acks,
            idempotent=bool(enable_idempotence),
            max_in_flight=max_in_flight,
            codec=codecs.codec_by_name(compression),
            linger=linger_ms / 1000.0,
            batch_size=max(1, batch_size),
            buffer_memory=buffer_memory,
            block_on_full=block_on_full,
            max_block=max_block_ms / 1000.0,
            retry_backoff=retry_backoff_ms / 1000.0,
            delivery_timeout=delivery_timeout_ms / 1000.0,
            request_timeout_ms=int(request_timeout_ms),
            max_request_size=max_request_size,
        )
