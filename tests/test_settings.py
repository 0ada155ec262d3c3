"""Configuration: the variable names operators' scripts use, and errors that name them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from skyra_stream.settings import Settings

SKYRA = str(Path(sys.executable).with_name("skyra-stream"))

OPERATOR_NAMES = {
    "SKYRA_KAFKA_BOOTSTRAP_SERVERS": (
        "kafka_bootstrap_servers",
        "b1:9092,b2:9092",
        ["b1:9092", "b2:9092"],
    ),
    "SKYRA_GROUP_ID": ("group_id", "g", "g"),
    "SKYRA_INGEST_TOPIC": ("ingest_topic", "in", "in"),
    "SKYRA_VERDICT_TOPIC": ("verdict_topic", "out", "out"),
    "SKYRA_DEAD_LETTER_TOPIC": ("dead_letter_topic", "dlq", "dlq"),
    "SKYRA_S3_ENDPOINT_URL": ("s3_endpoint_url", "http://minio:9000", "http://minio:9000"),
    "SKYRA_S3_ALLOWED_BUCKETS": ("s3_allowed_buckets", "a, b,c", ["a", "b", "c"]),
    "SKYRA_MODEL_PATH": ("model_path", "/models/skyra", Path("/models/skyra")),
    "SKYRA_HTTP_PORT": ("http_port", "9100", 9100),
    "SKYRA_SHUTDOWN_TIMEOUT_S": ("shutdown_timeout_s", "45", 45.0),
}


def test_operator_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (_, raw, _) in OPERATOR_NAMES.items():
        monkeypatch.setenv(name, raw)
    settings = Settings()
    for name, (field, _, expected) in OPERATOR_NAMES.items():
        assert getattr(settings, field) == expected, name


def test_sasl_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="kafka_sasl_mechanism"):
        Settings(kafka_security_protocol="SASL_SSL")
    ok = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="hunter2-secret",
    )
    assert ok.kafka_sasl_password is not None
    assert "hunter2-secret" not in repr(ok)  # secrets stay out of logs


def test_the_revoke_budget_stays_well_inside_the_session_timeout() -> None:
    # The budget blocks kafka-python's network thread (no heartbeats meanwhile).
    from skyra_stream.runtime.configs import kafka_config

    def budget(**values: object) -> float:
        return kafka_config(Settings(**values)).revoke_budget_s()  # type: ignore[arg-type]

    assert budget(kafka_revoke_budget_s=20, kafka_session_timeout_ms=30_000) == 15
    assert budget(kafka_session_timeout_ms=6_000) == 3
    assert budget() == 5


@pytest.mark.subprocess
def test_invalid_configuration_fails_at_start_naming_the_variable() -> None:
    env = {**os.environ, "SKYRA_MAX_NUM_SEQS": "lots", "SKYRA_HTTP_PORT": "99999"}
    proc = subprocess.run(
        [SKYRA, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "SKYRA_MAX_NUM_SEQS" in proc.stderr
    assert "SKYRA_HTTP_PORT" in proc.stderr


def test_api_tokens_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# one per line\nfrom-file\n\n")
    monkeypatch.setenv("SKYRA_API_TOKENS", "t1, t2")
    monkeypatch.setenv("SKYRA_API_TOKENS_FILE", str(tokens))
    settings = Settings()
    assert settings.bearer_tokens() == ["t1", "t2", "from-file"]
    assert "t1" not in repr(settings)


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_api_on_a_public_address_needs_tokens(command: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SKYRA_HTTP_HOST": "0.0.0.0",
        "SKYRA_API_ENABLED": "true",
        "SKYRA_MODEL_PATH": str(tmp_path),
    }
    env.pop("SKYRA_API_TOKENS", None)
    env.pop("SKYRA_API_TOKENS_FILE", None)
    proc = subprocess.run(
        [SKYRA, command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert "SKYRA_API_TOKENS" in proc.stderr


def test_the_pipeline_bound_reads_its_new_name_and_its_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().pipeline_max_messages == 64
    monkeypatch.setenv("SKYRA_PIPELINE_WINDOW", "7")  # the name before 0.2
    assert Settings().pipeline_max_messages == 7
    monkeypatch.setenv("SKYRA_PIPELINE_MAX_MESSAGES", "9")  # the new name wins
    assert Settings().pipeline_max_messages == 9
    assert Settings(pipeline_max_messages=3).pipeline_max_messages == 3


def test_the_output_cap_default_is_the_grammars_longest_answer() -> None:
    # settings.py is a leaf and cannot import the grammar: its literal is checked here.
    from skyra_stream.model.engine import EngineConfig
    from skyra_stream.model.grammar import ANSWER_TOKEN_CAP, MAX_TEXT_CHARS, longest_answer_tokens
    from skyra_stream.runtime.configs import engine_config

    settings = Settings()
    assert settings.max_tokens == ANSWER_TOKEN_CAP == EngineConfig().max_tokens
    assert longest_answer_tokens() <= ANSWER_TOKEN_CAP
    assert settings.guided_max_text_chars == MAX_TEXT_CHARS
    assert engine_config(settings).deadline_s == settings.engine_deadline_s == 120.0
    assert engine_config(Settings(engine_deadline_s=0)).deadline_s is None  # 0: no deadline
