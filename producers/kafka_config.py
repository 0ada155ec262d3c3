"""kafka-python connection settings from `Settings`, shared by producers and consumers."""

from __future__ import annotations

from typing import Any

from skyra_stream.settings import Settings


def connection_config(settings: Settings) -> dict[str, Any]:
    """bootstrap servers, client id and security (SSL, SASL PLAIN/SCRAM) for kafka-python."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    for key, path in (
        ("ssl_cafile", settings.kafka_ssl_cafile),
        ("ssl_certfile", settings.kafka_ssl_certfile),
        ("ssl_keyfile", settings.kafka_ssl_keyfile),
    ):
        if path is not None:
            config[key] = str(path)
    return config
