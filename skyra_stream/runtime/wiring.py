"""Collaborators built once from the settings: the engine, and the analysis path with its
fetcher, policies, provenance reader and verdict store.

Every process (worker, API server, CLI, demo, campaigns, benchmarks) builds its path here,
so the path a test drives is wired as production wires it; a test that wants a fake hands it
in (`fetcher=`, `policies=`) instead of patching.
"""

from __future__ import annotations

from skyra_stream.analysis import Analysis
from skyra_stream.decisions.calibration import CalibrationFile, load_calibration
from skyra_stream.decisions.policy import PolicyFile, load_policy
from skyra_stream.decisions.reuse import ReuseCache, answer_identity
from skyra_stream.decisions.review_tickets import ReviewTickets
from skyra_stream.media.fetch import Fetcher, ObjectFetcher
from skyra_stream.media.provenance import ProvenanceReader
from skyra_stream.messages import ModelInfo
from skyra_stream.metrics import Metrics
from skyra_stream.model.engine import Engine, model_name
from skyra_stream.model.fake_engine import FakeEngine
from skyra_stream.runtime.configs import (
    analysis_config,
    decode_limits,
    engine_config,
    fetch_config,
    provenance_config,
    reuse_config,
)
from skyra_stream.settings import Settings


def build_engine(settings: Settings) -> Engine:
    """The engine SKYRA_ENGINE names; vLLM is imported only when it is the one."""
    if settings.engine == "fake":
        return FakeEngine(
            latency_s=settings.fake_engine_latency_s,
            hold_file=settings.fake_engine_hold_file,
            journal=settings.fake_engine_journal,
        )
    from skyra_stream.model.vllm_engine import VerdictEngine  # noqa: PLC0415 - vLLM, ~10 s

    return VerdictEngine(engine_config(settings))


def model_info(settings: Settings) -> ModelInfo:
    """The model as every verdict names it."""
    return ModelInfo(name=model_name(engine_config(settings)), revision=settings.model_revision)


def build_analysis(
    settings: Settings,
    engine: Engine,
    *,
    fetcher: Fetcher | None = None,
    metrics: Metrics | None = None,
    policies: PolicyFile | None = None,
) -> Analysis:
    """The analysis path as the settings configure it. The policy file is loaded here, at
    start (PolicyError on a bad one): a process never runs half-configured."""
    metrics = metrics or Metrics()
    model = model_info(settings)
    engine_cfg = engine_config(settings)
    provenance = provenance_config(settings)
    return Analysis(
        analysis_config(settings),
        engine,
        fetcher=fetcher or ObjectFetcher(fetch_config(settings)),
        limits=decode_limits(settings),
        model=model,
        engine_config=engine_cfg,
        policies=policies or load_policy(settings.policy_file),
        provenance=ProvenanceReader(provenance) if provenance is not None else None,
        reuse=ReuseCache.build(
            reuse_config(settings), answer_identity(engine_cfg, model, provenance), metrics
        ),
        calibration=calibration(settings),
        metrics=metrics,
    )


def calibration(settings: Settings) -> CalibrationFile | None:
    """SKYRA_CALIBRATION_FILE checked for the served model (CalibrationError otherwise)."""
    if settings.calibration_file is None:
        return None
    return load_calibration(settings.calibration_file, model_info(settings))


def review_tickets(settings: Settings) -> ReviewTickets | None:
    """The review tickets' keys, when set (required with SKYRA_REVIEW_TOPIC and by the
    review loop)."""
    key, previous = settings.review_ticket_key, settings.review_ticket_previous_key
    if key is None:
        return None
    return ReviewTickets(
        key.get_secret_value().encode(),
        previous.get_secret_value().encode() if previous is not None else None,
    )
