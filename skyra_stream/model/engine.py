"""What an engine takes and gives back, without vLLM: the seam between the core and the model.

Everything above the engine (the analysis path, verdicts, schemas, the API, the CLI) talks to
this protocol, so it imports neither vLLM nor torch and can be tested against
`model.fake_engine.FakeEngine` in milliseconds. `model.vllm_engine.VerdictEngine` is the
implementation that runs the model.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from skyra_stream.errors import EngineDeadError, EngineRequestError
from skyra_stream.model.grammar import ANSWER_TOKEN_CAP, MAX_TEXT_CHARS

__all__ = [
    "CUTS",
    "DEADLINE",
    "FAKE_MODEL_NAME",
    "LENGTH",
    "Engine",
    "EngineConfig",
    "EngineDeadError",
    "EngineRequest",
    "EngineRequestError",
    "EngineResult",
    "cut_result",
    "model_name",
    "settle",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What the engines read: the checkpoint, vLLM's knobs and the sampling parameters.
    `engine` is `fake` for the shipped `FakeEngine` (no model)."""

    engine: Literal["vllm", "fake"] = "vllm"
    model_path: Path | None = None
    served_model_name: str | None = None
    model_revision: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int = 32
    max_in_flight: int = 32
    gpu_memory_utilization: float = 0.90
    kv_cache_bytes: int | None = None
    tensor_parallel_size: int = 1
    prefix_caching: bool = True
    mm_min_pixels: int = 224 * 224
    mm_max_pixels: int = 1280 * 28 * 28
    mm_processor_cache_gb: float = 1.0
    seed: int = 0
    max_tokens: int = ANSWER_TOKEN_CAP
    temperature: float = 0.0
    top_logprobs: int = 5
    guided: Literal["off", "regex"] = "off"
    guided_max_text_chars: int = MAX_TEXT_CHARS
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"
    load_format: str = "auto"
    enforce_eager: bool = False
    engine_start_timeout_s: float = 900.0
    # Per video, from the moment it enters the engine's batch (queueing for a place is not
    # counted): past it the request is aborted, its slot freed, and the answer marked cut.
    deadline_s: float | None = 120.0


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One video for the model: its sampled frames (RGB uint8) and their timestamps."""

    request_id: str
    frames: Sequence[npt.NDArray[np.uint8]]
    timestamps_s: Sequence[float]
    # Lower goes first: synchronous API callers use a negative priority to overtake the
    # Kafka backlog in the in-flight window (and in vLLM's scheduler with the priority policy).
    priority: int = 0


# Why an answer ended without closing: `finish_reason` values that mean "cut, not finished",
# and the name verdicts and metrics give each cut.
LENGTH = "length"  # vLLM's own: max_tokens reached
DEADLINE = "deadline"  # ours: EngineConfig.deadline_s passed inside the engine
CUTS: dict[str, Literal["deadline", "token_cap"]] = {DEADLINE: "deadline", LENGTH: "token_cap"}


@dataclass(frozen=True, slots=True)
class EngineResult:
    request_id: str
    text: str
    finish_reason: str | None  # "stop" (answer closed), LENGTH, DEADLINE, ...
    fake_probability: float | None
    prompt_tokens: int
    output_tokens: int
    queue_s: float  # waiting for a place in the in-flight window
    infer_s: float  # from submission to the engine until the last token


def cut_result(request: EngineRequest, reason: str, queue_s: float, infer_s: float) -> EngineResult:
    """The answer of a request cut before it wrote anything (its deadline passed)."""
    return EngineResult(
        request_id=request.request_id,
        text="",
        finish_reason=reason,
        fake_probability=None,
        prompt_tokens=0,
        output_tokens=0,
        queue_s=queue_s,
        infer_s=infer_s,
    )


@runtime_checkable
class Engine(Protocol):
    """A batched, thread-safe model behind futures.

    `submit` never blocks on the model: the future resolves with an `EngineResult`, or fails
    with `EngineRequestError` (this request only) or `EngineDeadError` (the engine is gone;
    every caller must stop). Cancelling the future abandons the request inside the engine.
    """

    @property
    def ready(self) -> bool: ...

    @property
    def dead(self) -> BaseException | None: ...

    @property
    def in_flight(self) -> int: ...

    def start(self) -> Engine: ...

    def close(self) -> None: ...

    def submit(self, request: EngineRequest) -> concurrent.futures.Future[EngineResult]: ...


FAKE_MODEL_NAME = "fake-engine"


def model_name(config: EngineConfig) -> str:
    """The model's name in every verdict: the served name, else the checkpoint's folder.
    A fake engine's verdicts always say so, whatever else is configured."""
    if config.engine == "fake":
        return FAKE_MODEL_NAME
    if config.served_model_name:
        return config.served_model_name
    return Path(config.model_path).name if config.model_path else "skyra"


def settle(future: concurrent.futures.Future[T], value: T | BaseException) -> None:
    """Resolve a future once; one its caller cancelled meanwhile keeps its cancellation."""
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass
