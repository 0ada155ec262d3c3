"""Cost of structured output (`SKYRA_GUIDED=regex`) on the same engine, side by side.

Both arms run one offline batch over fresh clips of their own: `off` generates exactly
`--max-tokens` tokens per video (ignore_eos); `regex` is constrained by the contract's
grammar and stops at `</answer>` (at most `--max-tokens`). Output lengths differ, so the
comparison is per decode step: each arm's batch time minus the time of a 1-token batch of
the same size (prefill, which both arms share), divided by the tokens generated. A warm-up
compiles the grammar once before anything is timed.
Last line, for scripts:
`ratio regex_vs_off_per_token=<x.xx> parse_ok_off=<n>/<N> parse_ok_regex=<n>/<N>`.

    python -m benchmarks.guided [--videos 8] [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.engine import clips
from skyra_stream.model.response import parse_response
from skyra_stream.model.tiny_model import build_tiny_model
from skyra_stream.model.vllm_engine import OfflineEngine, sampling_params, vllm_prompt
from skyra_stream.runtime.configs import engine_config
from skyra_stream.settings import Settings


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            model_path=build_tiny_model(Path(tmp) / "tiny"),
            kv_cache_bytes=1 << 30,
            max_num_seqs=16,
            max_tokens=args.max_tokens,
            mm_max_pixels=256 * 28 * 28,
            max_model_len=16 * 256 + 1024 + args.max_tokens,
            guided_max_text_chars=200,
        )
        engine = OfflineEngine(engine_config(settings))
        llm = engine._llm
        arms = {
            "off": sampling_params(engine_config(settings), ignore_eos=True, stop=[]),
            "regex": sampling_params(
                engine_config(settings.model_copy(update={"guided": "regex"}))
            ),
        }
        stats = {}
        try:
            for params in arms.values():  # warm-up: grammar compile, caches
                llm.generate([vllm_prompt(r) for r in clips(1, seed=70)], params, use_tqdm=False)
            for seed, (name, params) in enumerate(arms.items(), start=71):
                one = params.clone()
                one.max_tokens = 1
                prompts = [vllm_prompt(r) for r in clips(args.videos, seed=seed * 10)]
                start = time.perf_counter()
                llm.generate(prompts, one, use_tqdm=False)
                prefill = time.perf_counter() - start
                prompts = [vllm_prompt(r) for r in clips(args.videos, seed=seed)]
                start = time.perf_counter()
                outputs = llm.generate(prompts, params, use_tqdm=False)
                elapsed = time.perf_counter() - start
                tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
                parsed = sum(parse_response(o.outputs[0].text).status == "ok" for o in outputs)
                stats[name] = (elapsed, max(0.0, elapsed - prefill), tokens, parsed)
        finally:
            engine.close()
    print(f"{'arm':<8}{'batch s':>9}{'decode s':>9}{'tokens':>8}{'ms/step':>9}{'parse ok':>10}")
    per_token = {}
    for name, (elapsed, decode, tokens, parsed) in stats.items():
        per_token[name] = decode / max(tokens / args.videos, 1)
        print(
            f"{name:<8}{elapsed:>9.2f}{decode:>9.2f}{tokens:>8}{per_token[name] * 1000:>9.2f}"
            f"{parsed:>7}/{args.videos}"
        )
    n = args.videos
    print(
        f"ratio regex_vs_off_per_token={per_token['regex'] / per_token['off']:.2f} "
        f"parse_ok_off={stats['off'][3]}/{n} parse_ok_regex={stats['regex'][3]}/{n}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
