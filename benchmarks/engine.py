"""Engine throughput: one video per generate call vs the worker's engine vs one offline batch.

Arms, each on clips of its own (with prefix caching on, a clip an earlier arm saw would be
served from cache and flatter the later arm):
  (a) reference: `LLM.generate([one])` per video, as the Skyra research code does;
  (b) worker:    `VerdictEngine` (AsyncLLM, up to max_in_flight videos in the engine);
  (c) offline:   one `LLM.generate` over every clip, vLLM's own upper bound.
Every arm generates exactly `--max-tokens` tokens per video (ignore_eos, no stop string), so
the arms do the same work. Also prints where one video's time goes: the image processor,
vision encoder + prefill (a 1-token request), and each decode step.
Last line, for scripts: `ratio b/a=<x.xx> b/c=<x.xx>`.

CPU (tiny random model, built on the fly):
    python -m benchmarks.engine
GPU (the real Qwen2.5-VL-7B architecture with random weights; needs vLLM with CUDA):
    python -m benchmarks.engine --gpu --videos 64 --max-tokens 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import (
    EngineRequest,
    OfflineEngine,
    VerdictEngine,
    sampling_params,
)
from skyra_stream.runtime.configs import engine_config
from skyra_stream.settings import Settings

FRAME_SHAPE = (256, 455, 3)
STAMPS = [round(i * 0.6667, 4) for i in range(16)]

# Qwen2.5-VL-7B-Instruct's architecture (config.json of the released model).
QWEN25_VL_7B_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
    },
    "tie_word_embeddings": False,
}
QWEN25_VL_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}


def write_7b_dummy(folder: Path) -> Path:
    """The tiny model's tokenizer and processor with the 7B architecture's config, for
    `load_format="dummy"` (random 7B weights made by vLLM on the GPU, nothing downloaded).
    The tokenizer is smaller than the 7B vocabulary; the embedding table keeps its size."""
    build_tiny_model(folder)
    config = json.loads((folder / "config.json").read_text())
    text = dict(config["text_config"])
    text.update(QWEN25_VL_7B_TEXT)
    config["text_config"] = text
    config["vision_config"] = {**config["vision_config"], **QWEN25_VL_7B_VISION}
    config["torch_dtype"] = config["dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "model.safetensors").unlink()
    (folder / "skyra_tiny_model.json").unlink()
    return folder


def clips(n: int, seed: int) -> list[EngineRequest]:
    rng = np.random.default_rng(seed)
    return [
        EngineRequest(
            f"s{seed}-v{i}",
            [rng.integers(0, 255, FRAME_SHAPE, dtype=np.uint8) for _ in range(16)],
            STAMPS,
        )
        for i in range(n)
    ]


def fixed_length(settings: Settings, max_tokens: int) -> Any:
    return sampling_params(engine_config(settings), max_tokens=max_tokens, ignore_eos=True, stop=[])


def run_offline_arms(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    engine = OfflineEngine(engine_config(settings))
    params = fixed_length(settings, args.max_tokens)
    llm = engine._llm  # the benchmark drives vLLM directly for per-call timing

    def generate(requests: list[EngineRequest], p: Any = params) -> float:
        from skyra_stream.model.vllm_engine import vllm_prompt

        prompts = [vllm_prompt(r) for r in requests]
        start = time.perf_counter()
        llm.generate(prompts, p, use_tqdm=False)
        return time.perf_counter() - start

    out: dict[str, Any] = {}
    try:
        generate(clips(2, seed=900))  # warm-up: compile, caches, allocator
        one_token = fixed_length(settings, 1)
        prefill = [generate(clips(1, seed=910 + i), one_token) for i in range(3)]
        full = [generate(clips(1, seed=920 + i)) for i in range(3)]
        out["prefill_s"] = statistics.median(prefill)
        out["decode_step_s"] = max(0.0, statistics.median(full) - out["prefill_s"]) / max(
            1, args.max_tokens - 1
        )
        a = clips(args.videos, seed=1)
        out["a_s"] = sum(generate([r]) for r in a)
        out["c_s"] = generate(clips(args.videos, seed=3))
    finally:
        engine.close()
    return out


def run_worker_arm(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    engine = VerdictEngine(engine_config(settings)).start()
    params = fixed_length(settings, args.max_tokens)
    try:
        for _ in engine.run_many(clips(2, seed=950), params):
            pass
        engine.peak_in_flight = 0
        start = time.perf_counter()
        errors = [
            res
            for _, res in engine.run_many(clips(args.videos, seed=2), params)
            if isinstance(res, BaseException)
        ]
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed: {errors[0]!r}")
        return {"b_s": elapsed, "peak_in_flight": engine.peak_in_flight}
    finally:
        engine.close()


def processor_time(model: Path, settings: Settings) -> float:
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(str(model))
    frames = clips(1, seed=990)[0].frames
    size = {"shortest_edge": settings.mm_min_pixels, "longest_edge": settings.mm_max_pixels}
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        proc(images=list(frames), size=size, return_tensors="pt")
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-num-seqs", type=int, default=None)
    ap.add_argument("--model", type=Path, default=None, help="an existing model folder")
    ap.add_argument(
        "--gpu",
        action="store_true",
        help="7B architecture, random weights (load_format=dummy), GPU memory",
    )
    ap.add_argument("--kv-cache-bytes", type=int, default=1 << 30, help="CPU KV budget")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            model = args.model
        elif args.gpu:
            model = write_7b_dummy(Path(tmp) / "qwen25-vl-7b-dummy")
        else:
            model = build_tiny_model(Path(tmp) / "tiny")
        max_num_seqs = args.max_num_seqs or (64 if args.gpu else 16)
        settings = Settings(
            model_path=model,
            load_format="dummy" if args.gpu else "auto",
            dtype="bfloat16" if args.gpu else "auto",
            kv_cache_bytes=None if args.gpu else args.kv_cache_bytes,
            max_num_seqs=max_num_seqs,
            max_in_flight=max_num_seqs,
            max_tokens=args.max_tokens,
            mm_max_pixels=256 * 28 * 28,
            max_model_len=16 * 256 + 1024 + args.max_tokens,
        )
        print(
            f"model={'7B dummy' if args.gpu else model.name} videos/arm={args.videos} "
            f"tokens/video={args.max_tokens} max_num_seqs={max_num_seqs}",
            flush=True,
        )
        proc_s = processor_time(model, settings)
        offline = run_offline_arms(settings, args)
        worker = run_worker_arm(settings, args)

    n = args.videos
    rates = {
        k: n / v for k, v in (("a", offline["a_s"]), ("b", worker["b_s"]), ("c", offline["c_s"]))
    }
    print(f"{'arm':<34}{'seconds':>9}{'videos/s':>10}")
    print(f"{'(a) one video per generate':<34}{offline['a_s']:>9.2f}{rates['a']:>10.3f}")
    print(
        f"{'(b) worker engine (AsyncLLM)':<34}{worker['b_s']:>9.2f}{rates['b']:>10.3f}"
        f"   peak in flight {worker['peak_in_flight']}"
    )
    print(f"{'(c) one offline generate':<34}{offline['c_s']:>9.2f}{rates['c']:>10.3f}")
    print("one video, alone:")
    print(f"  image processor (16 frames)     {proc_s * 1000:9.1f} ms")
    print(f"  vision encoder + prefill        {offline['prefill_s'] * 1000:9.1f} ms")
    print(
        f"  one decode step                 {offline['decode_step_s'] * 1000:9.2f} ms"
        f"  (x{args.max_tokens} = {offline['decode_step_s'] * args.max_tokens:.2f} s)"
    )
    print(f"ratio b/a={rates['b'] / rates['a']:.2f} b/c={rates['b'] / rates['c']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
