"""What the Kafka adapters read (connection, group, topics, polling and commit timing), and
kafka-python's connection arguments from it; shared by producers and consumers.

A frozen config built once by the composition root from `Settings`, so that the adapters
never see the other settings and a test builds one in a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    kafka_bootstrap_servers: tuple[str, ...] = ("localhost:9092",)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_client_id: str = "skyra-stream"
    group_id: str = "skyra-stream"
    kafka_group_instance_id: str | None = None
    ingest_topic: str = "skyra.ingest"
    verdict_topic: str = "skyra.verdicts"
    dead_letter_topic: str = "skyra.dead-letters"
    review_topic: str | None = None
    review_results_topic: str = "skyra.review-results"
    audit_topic: str = "skyra.audit"
    review_group_id: str = "skyra-reviews"
    kafka_max_poll_records: int = 50
    kafka_session_timeout_ms: int = 30_000
    kafka_max_poll_interval_ms: int = 300_000
    kafka_auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    kafka_commit_interval_s: float = 1.0
    kafka_revoke_budget_s: float = 5.0
    shutdown_timeout_s: float = 60.0
    max_message_bytes: int = 1 << 20

    def revoke_budget_s(self) -> float:
        """The revoke budget in force: at most half the session timeout. It runs in
        kafka-python's rebalance listener, on its network thread: no heartbeat goes out
        meanwhile, and a budget near the session timeout would get this worker expelled
        from the group it is trying to hand partitions over to cleanly."""
        return min(self.kafka_revoke_budget_s, self.kafka_session_timeout_ms / 2000)


def connection_config(config: KafkaConfig) -> dict[str, Any]:
    """bootstrap servers, client id and security (SSL, SASL PLAIN/SCRAM) for kafka-python."""
    out: dict[str, Any] = {
        "bootstrap_servers": list(config.kafka_bootstrap_servers),
        "client_id": config.kafka_client_id,
        "security_protocol": config.kafka_security_protocol,
    }
    if config.kafka_sasl_mechanism:
        out["sasl_mechanism"] = config.kafka_sasl_mechanism
        out["sasl_plain_username"] = config.kafka_sasl_username
        out["sasl_plain_password"] = (
            config.kafka_sasl_password.get_secret_value() if config.kafka_sasl_password else None
        )
    for key, path in (
        ("ssl_cafile", config.kafka_ssl_cafile),
        ("ssl_certfile", config.kafka_ssl_certfile),
        ("ssl_keyfile", config.kafka_ssl_keyfile),
    ):
        if path is not None:
            out[key] = str(path)
    return out
