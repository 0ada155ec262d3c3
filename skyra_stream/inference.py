"""What an engine takes and gives back, without vLLM: the seam between the core and the model.

Everything above the engine (the analysis path, verdicts, schemas, the API, the CLI) talks to
this protocol, so it imports neither vLLM nor torch and can be tested against
`skyra_stream.testing.FakeEngine` in milliseconds. `skyra_stream.engine.VerdictEngine` is the
implementation that runs the model.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from skyra_stream.errors import EngineDeadError, EngineRequestError
from skyra_stream.settings import Settings

__all__ = [
    "FAKE_MODEL_NAME",
    "Engine",
    "EngineDeadError",
    "EngineRequest",
    "EngineRequestError",
    "EngineResult",
    "model_name",
    "settle",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One video for the model: its sampled frames (RGB uint8) and their timestamps."""

    request_id: str
    frames: Sequence[npt.NDArray[np.uint8]]
    timestamps_s: Sequence[float]
    # Lower goes first: synchronous API callers use a negative priority to overtake the
    # Kafka backlog in the in-flight window (and in vLLM's scheduler with the priority policy).
    priority: int = 0


@dataclass(frozen=True, slots=True)
class EngineResult:
    request_id: str
    text: str
    finish_reason: str | None  # "stop" (answer closed), "length" (cut at max_tokens), ...
    fake_probability: float | None
    prompt_tokens: int
    output_tokens: int
    queue_s: float  # waiting for a place in the in-flight window
    infer_s: float  # from submission to the engine until the last token


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


def model_name(settings: Settings) -> str:
    """The model's name in every verdict: the served name, else the checkpoint's folder.
    A fake engine's verdicts always say so, whatever else is configured."""
    if settings.engine == "fake":
        return FAKE_MODEL_NAME
    if settings.served_model_name:
        return settings.served_model_name
    return Path(settings.model_path).name if settings.model_path else "skyra"


def settle(future: concurrent.futures.Future[T], value: T | BaseException) -> None:
    """Resolve a future once; one its caller cancelled meanwhile keeps its cancellation."""
    try:
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass
