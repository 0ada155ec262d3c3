"""The one module that owns vLLM: Skyra requests in, raw answers with P(fake) out.

Why two engines:
- `VerdictEngine` (the worker's): vLLM's AsyncLLM on a private event-loop thread. Up to
  `max_in_flight` videos are in the engine at once, so vLLM's scheduler batches their decode
  steps (continuous batching) and each result comes back the moment its sequence finishes.
  `submit()` is thread-safe and returns a `concurrent.futures.Future`, which suits both the
  threaded Kafka worker and asyncio callers (`asyncio.wrap_future`).
- `OfflineEngine`: one `LLM.generate` over a list, vLLM's own upper bound on throughput, for
  the CLI's batch mode and the benchmark.

Failures are split by blast radius: `EngineRequestError` (code `engine_failed`) fails one
request, e.g. an image the processor refuses or a prompt past max_model_len; `EngineDeadError`
means the engine process is gone and the caller must stop, fail readiness and exit. Both,
with the request and result types, live in `skyra_stream.model.engine`, which imports no vLLM.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import structlog
from PIL import Image
from transformers import AutoTokenizer
from vllm import LLM, SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.platforms import current_platform
from vllm.sampling_params import StructuredOutputsParams
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDeadError

from skyra_stream.model.confidence import fake_probability
from skyra_stream.model.engine import (
    DEADLINE,
    EngineConfig,
    EngineDeadError,
    EngineRequest,
    EngineRequestError,
    EngineResult,
    cut_result,
    model_name,
)
from skyra_stream.model.grammar import output_regex
from skyra_stream.model.prompt import IMAGE_PLACEHOLDER, NUM_FRAMES, render_prompt
from skyra_stream.model.reaper import start_reaper
from skyra_stream.pools import PrioritySlots

log = structlog.get_logger(__name__)

CPU_DEFAULT_KV_CACHE_BYTES = 1 << 30
STOP = "</answer>"


# -- pieces shared by both engines ----------------------------------------------------------


def frame_token_budget(config: EngineConfig, num_frames: int = NUM_FRAMES) -> int:
    """Worst-case image tokens of one request: every frame at the processor's pixel cap
    (one token per 28x28 patch after the 2x2 merge)."""
    return num_frames * (config.mm_max_pixels // (28 * 28))


def derived_max_model_len(config: EngineConfig, prompt_text_tokens: int) -> int:
    """max_model_len when unset: frames at their cap + the prompt's text + max_tokens."""
    return frame_token_budget(config) + prompt_text_tokens + config.max_tokens + 16


def engine_kwargs(config: EngineConfig, *, max_model_len: int | None = None) -> dict[str, Any]:
    """vLLM engine arguments from our config (shared by AsyncLLM and LLM)."""
    if config.model_path is None:
        raise ValueError("SKYRA_MODEL_PATH is not set")
    kwargs: dict[str, Any] = {
        "model": str(config.model_path),
        "served_model_name": model_name(config),
        "dtype": config.dtype,
        "max_num_seqs": config.max_num_seqs,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enable_prefix_caching": config.prefix_caching,
        "limit_mm_per_prompt": {"image": NUM_FRAMES, "video": 0},
        # transformers' current spelling of the processor's min_pixels / max_pixels.
        "mm_processor_kwargs": {
            "size": {
                "shortest_edge": config.mm_min_pixels,
                "longest_edge": config.mm_max_pixels,
            }
        },
        "mm_processor_cache_gb": config.mm_processor_cache_gb,
        "seed": config.seed,
        "load_format": config.load_format,
        "enforce_eager": config.enforce_eager,
        "max_logprobs": max(20, config.top_logprobs),
        "scheduling_policy": config.scheduling_policy,
    }
    if max_model_len or config.max_model_len:
        kwargs["max_model_len"] = max_model_len or config.max_model_len
    kv_bytes = config.kv_cache_bytes
    if kv_bytes is None and current_platform.is_cpu():
        kv_bytes = CPU_DEFAULT_KV_CACHE_BYTES
    if kv_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = kv_bytes
    else:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    return kwargs


def prompt_text_tokens(config: EngineConfig) -> int:
    """Tokens of the prompt without its images (the part max_model_len adds to the frames)."""
    tok = AutoTokenizer.from_pretrained(str(config.model_path))
    text = render_prompt([99.99] * NUM_FRAMES).replace(IMAGE_PLACEHOLDER, "")
    return len(tok(text)["input_ids"]) + 2 * NUM_FRAMES


def sampling_params(config: EngineConfig, **overrides: Any) -> SamplingParams:
    structured = None
    if config.guided == "regex":
        structured = StructuredOutputsParams(
            regex=output_regex(max_text_chars=config.guided_max_text_chars)
        )
    params: dict[str, Any] = {
        "temperature": config.temperature,
        "top_p": 1.0,
        "max_tokens": config.max_tokens,
        "stop": [STOP],
        "include_stop_str_in_output": True,
        "logprobs": config.top_logprobs,
        "seed": config.seed,
        "structured_outputs": structured,
    }
    params.update(overrides)
    return SamplingParams(**params)


def vllm_prompt(request: EngineRequest) -> dict[str, Any]:
    """The request as vLLM's multimodal prompt: our exact prompt text plus 16 images."""
    if not request.frames or len(request.frames) != len(request.timestamps_s):
        raise EngineRequestError(
            f"{len(request.frames)} frames for {len(request.timestamps_s)} timestamps"
        )
    if len(request.frames) > NUM_FRAMES:
        raise EngineRequestError(f"{len(request.frames)} frames, the model takes {NUM_FRAMES}")
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in request.frames]
    return {"prompt": render_prompt(request.timestamps_s), "multi_modal_data": {"image": images}}


def to_result(request: EngineRequest, output: Any, queue_s: float, infer_s: float) -> EngineResult:
    completion = output.outputs[0]
    token_ids = list(completion.token_ids)
    texts: list[str] = []
    tops: list[Mapping[str, float]] = []
    for token_id, candidates in zip(token_ids, completion.logprobs or [], strict=False):
        top = candidates or {}
        chosen = top.get(token_id)
        texts.append(chosen.decoded_token if chosen is not None and chosen.decoded_token else "")
        tops.append({lp.decoded_token: lp.logprob for lp in top.values() if lp.decoded_token})
    return EngineResult(
        request_id=request.request_id,
        text=completion.text,
        finish_reason=completion.finish_reason,
        fake_probability=fake_probability(texts, tops) if tops else None,
        prompt_tokens=len(output.prompt_token_ids or []),
        output_tokens=len(token_ids),
        queue_s=queue_s,
        infer_s=infer_s,
    )


def _describe(exc: BaseException) -> str:
    """vLLM wraps request failures in EngineGenerateError with an empty message; the cause
    says what was wrong with the request."""
    parts: list[str] = []
    while exc is not None and len(parts) < 3:
        text = str(exc).strip()
        parts.append(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return " <- ".join(parts)[:1000]


def _is_dead(exc: BaseException) -> bool:
    return isinstance(exc, VllmEngineDeadError)


# -- the worker's engine --------------------------------------------------------------------


class VerdictEngine:
    """vLLM's AsyncLLM on its own event-loop thread, with a bounded in-flight window."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-engine", daemon=True
        )
        self._llm: Any = None
        self._slots: PrioritySlots | None = None
        self._dead: BaseException | None = None
        self._in_flight = 0
        self.peak_in_flight = 0
        self.aborted = 0  # vLLM requests aborted because their caller went away
        self._params = sampling_params(config)
        self._started = False
        self._reaper: subprocess.Popen[bytes] | None = None
        self.max_model_len: int | None = None

    # lifecycle

    def start(self) -> VerdictEngine:
        """Load the model (about a minute for the tiny model on a CPU); idempotent."""
        if self._started:
            return self
        # vLLM's engine processes outlive a killed parent; the reaper ends them with it.
        self._reaper = start_reaper()
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=self.config.engine_start_timeout_s)
        self._started = True
        return self

    async def _start(self) -> None:
        max_len = self.config.max_model_len or derived_max_model_len(
            self.config, prompt_text_tokens(self.config)
        )
        self.max_model_len = max_len
        args = AsyncEngineArgs(**engine_kwargs(self.config, max_model_len=max_len))
        self._llm = AsyncLLM.from_engine_args(args)
        self._slots = PrioritySlots(self.config.max_in_flight)
        log.info(
            "engine_started",
            model=model_name(self.config),
            max_model_len=max_len,
            max_num_seqs=self.config.max_num_seqs,
            max_in_flight=self.config.max_in_flight,
        )

    def close(self) -> None:
        """Shut the engine process down and stop the loop thread; safe to call twice."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=120)
        except Exception:  # shutting down a dead engine may raise; it is going anyway
            log.warning("engine_shutdown_error", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if self._reaper is not None:  # shut down cleanly: nothing left to watch over
            self._reaper.terminate()
            self._reaper.wait(timeout=10)
            self._reaper = None

    async def _shutdown(self) -> None:
        # On the loop thread, so vLLM's output handler tasks end inside their own loop.
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> VerdictEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # state

    @property
    def ready(self) -> bool:
        return self._started and self._llm is not None and self.dead is None

    @property
    def dead(self) -> BaseException | None:
        """The error that killed the engine, or None while it is alive."""
        if self._dead is None and self._llm is not None and self._llm.errored:
            self._dead = self._llm.dead_error
        return self._dead

    @property
    def in_flight(self) -> int:
        """Requests inside vLLM right now (the batch the scheduler can draw from)."""
        return self._in_flight

    # work

    def submit(
        self,
        request: EngineRequest,
        params: SamplingParams | None = None,
        *,
        deadline_s: float | None = None,
    ) -> concurrent.futures.Future[EngineResult]:
        """Queue one video; the future resolves when its answer is complete. `params` and
        `deadline_s` override the sampling parameters and the deadline of the config."""
        if not self._started:
            raise RuntimeError("engine not started")
        return asyncio.run_coroutine_threadsafe(
            self.analyze(request, params, deadline_s=deadline_s), self._loop
        )

    def run_many(
        self, requests: Iterable[EngineRequest], params: SamplingParams | None = None
    ) -> Iterator[tuple[EngineRequest, EngineResult | BaseException]]:
        """Submit all, yield (request, result or error) in completion order."""
        futures = {self.submit(r, params): r for r in requests}
        for future in concurrent.futures.as_completed(futures):
            exc = future.exception()
            yield futures[future], exc if exc is not None else future.result()

    def _vllm_priority(self, request: EngineRequest) -> int:
        # vLLM refuses a non-zero priority unless its scheduler runs the priority policy.
        return request.priority if self.config.scheduling_policy == "priority" else 0

    async def analyze(
        self,
        request: EngineRequest,
        params: SamplingParams | None = None,
        *,
        deadline_s: float | None = None,
    ) -> EngineResult:
        if self.dead is not None:
            raise EngineDeadError(f"engine is dead: {self._dead}")
        assert self._slots is not None
        assert self._llm is not None
        prompt = vllm_prompt(request)
        params = params or self._params
        queued = time.monotonic()
        async with self._slots.slot(request.priority):
            started = time.monotonic()
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            vllm_id = f"{request.request_id}:{uuid.uuid4().hex[:12]}"
            final = None
            cut: str | None = None
            try:
                async with asyncio.timeout(deadline_s or self.config.deadline_s):
                    async for output in self._llm.generate(
                        prompt, params, vllm_id, priority=self._vllm_priority(request)
                    ):
                        final = output
            except TimeoutError:
                # Past the per-video deadline: free the slot in vLLM's batch and answer with
                # what was written so far, marked as cut (the verdict says `unparseable`).
                await self._llm.abort(vllm_id)
                self.aborted += 1
                cut = DEADLINE
            except asyncio.CancelledError:
                await self._llm.abort(vllm_id)
                self.aborted += 1
                raise
            except Exception as exc:
                if _is_dead(exc) or self._llm.errored:
                    self._dead = exc
                    raise EngineDeadError(str(exc)) from exc
                raise EngineRequestError(_describe(exc)) from exc
            finally:
                self._in_flight -= 1
        infer_s = time.monotonic() - started
        if final is None or not final.outputs:
            if cut is not None:
                return cut_result(request, cut, started - queued, infer_s)
            raise EngineRequestError("the engine returned no output")
        result = to_result(request, final, started - queued, infer_s)
        return result if cut is None else replace(result, finish_reason=cut)


# -- vLLM's own batch upper bound -----------------------------------------------------------


class OfflineEngine:
    """One `LLM.generate` over many videos: vLLM's batch mode, for the CLI and benchmarks."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.max_model_len = config.max_model_len or derived_max_model_len(
            config, prompt_text_tokens(config)
        )
        self._llm: Any = LLM(**engine_kwargs(config, max_model_len=self.max_model_len))

    def generate(
        self, requests: Sequence[EngineRequest]
    ) -> list[EngineResult | EngineRequestError]:
        """Results in request order; a request vLLM refuses gets an error in its place."""
        params = sampling_params(self.config)
        prompts: list[dict[str, Any]] = []
        slots: list[int] = []
        results: list[EngineResult | EngineRequestError] = []
        for request in requests:
            try:
                prompts.append(vllm_prompt(request))
                slots.append(len(results))
                results.append(EngineRequestError("pending"))
            except EngineRequestError as exc:
                results.append(exc)
        started = time.monotonic()
        try:
            outputs = self._llm.generate(prompts, params, use_tqdm=False) if prompts else []
        except (ValueError, TypeError, RuntimeError) as exc:
            if _is_dead(exc):
                raise EngineDeadError(str(exc)) from exc
            # One bad request fails the whole call in vLLM's batch mode: isolate it.
            log.warning("offline_batch_failed_retrying_one_by_one", error=str(exc))
            for slot, prompt in zip(slots, prompts, strict=True):
                results[slot] = self._one(requests[slot], prompt, params)
            return results
        elapsed = time.monotonic() - started
        for slot, output in zip(slots, outputs, strict=True):
            results[slot] = to_result(requests[slot], output, 0.0, elapsed)
        return results

    def _one(
        self, request: EngineRequest, prompt: dict[str, Any], params: Any
    ) -> EngineResult | EngineRequestError:
        started = time.monotonic()
        try:
            [output] = self._llm.generate([prompt], params, use_tqdm=False)
        except (ValueError, TypeError, RuntimeError) as exc:
            if _is_dead(exc):
                raise EngineDeadError(str(exc)) from exc
            return EngineRequestError(_describe(exc))
        return to_result(request, output, 0.0, time.monotonic() - started)

    def close(self) -> None:
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
