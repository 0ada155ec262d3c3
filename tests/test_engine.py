"""The engine with real vLLM on the CPU and the tiny random Qwen2.5-VL."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from transformers import AutoProcessor

from skyra_stream.model.prompt import messages, render_prompt
from skyra_stream.model.response import parse_response
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import (
    EngineDeadError,
    EngineRequest,
    EngineRequestError,
    EngineResult,
    OfflineEngine,
    VerdictEngine,
    sampling_params,
)
from skyra_stream.runtime.configs import engine_config
from tests.conftest import engine_settings

STAMPS = [round(i * 0.5333, 4) for i in range(16)]


def request(i: int, frames: int = 16, size: tuple[int, int] = (256, 341)) -> EngineRequest:
    rng = np.random.default_rng(i)
    images = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(frames)]
    return EngineRequest(f"video-{i}", images, STAMPS[:frames])


def test_prompt_equals_the_processors_chat_template(tiny_model: Path) -> None:
    processor = AutoProcessor.from_pretrained(str(tiny_model))
    rendered = processor.apply_chat_template(
        messages(STAMPS), add_generation_prompt=True, tokenize=False
    )
    assert render_prompt(STAMPS) == rendered


def test_tiny_model_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    def digest(folder: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())
            if p.is_file()
        }

    first = digest(build_tiny_model(tmp_path / "a", seed=7))
    assert first == digest(build_tiny_model(tmp_path / "b", seed=7))
    assert (
        first["model.safetensors"]
        != digest(build_tiny_model(tmp_path / "c", seed=8))["model.safetensors"]
    )


def test_many_in_flight_come_back_one_each_matched_to_their_request(
    engine: VerdictEngine,
) -> None:
    # Different frame counts give each request a different prompt length, so a result
    # handed to the wrong request would show it.
    requests = [request(i, frames=9 + i) for i in range(8)]
    engine.peak_in_flight = 0
    seen: list[str] = []
    lengths: dict[str, int] = {}
    for req, result in engine.run_many(requests):
        assert isinstance(result, EngineResult), result
        assert result.request_id == req.request_id
        seen.append(req.request_id)
        lengths[req.request_id] = result.prompt_tokens
        assert result.output_tokens > 0
        assert result.finish_reason in ("stop", "length")
    assert sorted(seen) == sorted(r.request_id for r in requests)
    assert len(set(lengths.values())) == len(requests)
    ordered = [lengths[r.request_id] for r in requests]
    assert ordered == sorted(ordered)  # more frames, more prompt tokens
    assert engine.peak_in_flight > 1  # they were in the engine together


def test_guided_mode_makes_every_output_parse(engine: VerdictEngine) -> None:
    params = sampling_params(
        engine_config(engine_settings(Path("unused"), guided="regex", max_tokens=400))
    )
    results = [r for _, r in engine.run_many([request(100 + i) for i in range(4)], params)]
    for result in results:
        assert isinstance(result, EngineResult), result
        parsed = parse_response(result.text, duration_s=8.0, frame_size=(336, 252))
        assert parsed.status == "ok", result.text
        assert parsed.label in ("fake", "real")
        assert result.fake_probability is not None
        assert 0.0 <= result.fake_probability <= 1.0
        assert result.text.endswith("</answer>")


def test_max_tokens_cut_is_unparseable_not_a_crash(engine: VerdictEngine) -> None:
    params = sampling_params(engine_config(engine_settings(Path("unused"), max_tokens=3)))
    result = engine.submit(request(200), params).result(timeout=300)
    assert result.finish_reason == "length"
    assert result.output_tokens == 3
    assert parse_response(result.text).status == "unparseable"
    assert result.fake_probability is None


def test_a_generation_past_its_deadline_is_cut_and_frees_its_slot(engine: VerdictEngine) -> None:
    # Unguided and with room for thousands of tokens, the random model writes on: the
    # deadline (not the token cap) ends it, with what it wrote so far.
    params = sampling_params(
        engine_config(engine_settings(Path("unused"), max_tokens=4000, guided="off"))
    )
    aborted = engine.aborted
    result = engine.submit(request(250), params, deadline_s=1.5).result(timeout=300)
    assert result.finish_reason == "deadline"
    assert 0 < result.output_tokens < 4000
    assert parse_response(result.text).status == "unparseable"
    assert engine.aborted == aborted + 1
    assert engine.in_flight == 0  # the slot is free again
    assert isinstance(engine.submit(request(251)).result(timeout=300), EngineResult)


def test_a_request_the_processor_refuses_fails_alone(engine: VerdictEngine) -> None:
    # An aspect ratio over 200 is refused by Qwen's smart_resize.
    bad = EngineRequest("bad", [np.zeros((4, 1200, 3), np.uint8)] * 16, STAMPS)
    good = [request(300 + i) for i in range(3)]
    results = {req.request_id: res for req, res in engine.run_many([bad, *good])}
    assert isinstance(results["bad"], EngineRequestError)
    assert results["bad"].code.value == "engine_failed"
    for req in good:
        assert isinstance(results[req.request_id], EngineResult)
    # and the engine still serves afterwards
    assert isinstance(engine.submit(request(399)).result(timeout=300), EngineResult)


def test_mismatched_frames_and_timestamps_fail_the_request(engine: VerdictEngine) -> None:
    bad = EngineRequest("bad", [np.zeros((256, 256, 3), np.uint8)] * 3, STAMPS)
    with pytest.raises(EngineRequestError):
        engine.submit(bad).result(timeout=60)


# A second engine each (about a minute on 2 cores): in `make test-all`. The worker's test of a
# real engine death (tests/test_worker.py) runs on every `make test`.
@pytest.mark.slow
def test_offline_mode_gives_the_same_greedy_answers(
    engine: VerdictEngine, tiny_model: Path
) -> None:
    requests = [request(400 + i) for i in range(3)]
    online = {req.request_id: res for req, res in engine.run_many(requests)}
    offline = OfflineEngine(engine_config(engine_settings(tiny_model)))
    try:
        results = offline.generate(requests)
    finally:
        offline.close()
    for req, res in zip(requests, results, strict=True):
        assert isinstance(res, EngineResult)
        online_res = online[req.request_id]
        assert isinstance(online_res, EngineResult)
        assert res.text == online_res.text
        assert res.prompt_tokens == online_res.prompt_tokens


def _submit_until_it_fails(engine: VerdictEngine) -> None:
    for i in range(10):  # the loss is noticed on the next request at the latest
        engine.submit(request(501 + i)).result(timeout=120)
        time.sleep(0.5)


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


@pytest.mark.slow
def test_dead_engine_surfaces_as_engine_dead_and_shutdown_leaves_no_process(
    tiny_model: Path, engine: VerdictEngine
) -> None:
    before = {p.pid for p in _children()}
    dying = VerdictEngine(engine_config(engine_settings(tiny_model))).start()
    try:
        assert isinstance(dying.submit(request(500)).result(timeout=300), EngineResult)
        spawned = [p for p in _children() if p.pid not in before]
        assert spawned, "the engine runs in its own processes"
        for proc in spawned:
            os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(EngineDeadError):
            _submit_until_it_fails(dying)
        assert dying.dead is not None
        assert not dying.ready
        with pytest.raises(EngineDeadError):
            dying.submit(request(600)).result(timeout=60)
    finally:
        dying.close()
    deadline = time.monotonic() + 30
    while {p.pid for p in _children()} - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert {p.pid for p in _children()} - before == set()
