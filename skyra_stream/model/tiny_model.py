"""A tiny random-weight Qwen2.5-VL that vLLM loads on the CPU, for tests and the demo.

No real checkpoint can be downloaded in CI, but vLLM's Qwen2.5-VL code path (processor,
vision tower, M-RoPE, multimodal scheduling, sampling, logprobs) runs the same on a model of
a few MB. Its answers are noise: never read anything into them.

Everything is built locally and deterministically for a seed: a byte-level BPE tokenizer
trained on the prompt and contract text with Qwen's special tokens and the Qwen2-VL chat
template, a config sized as checked in docs (head_dim 64: the CPU attention kernels refuse
16), random weights, and the image processor's config.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from skyra_stream.model.prompt import HEADER, INSTRUCTION, MAX_PIXELS, MIN_PIXELS, system_prompt
from skyra_stream.model.taxonomy import L3_TYPES

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The answer words as single tokens, so P(Fake) can be read off one position.
EXTRA_TOKENS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<type>",
    "</type>",
    "<t>",
    "</t>",
    "<bbox>",
    "</bbox>",
    "Fake",
    "Real",
]
TINY_MODEL_NAME = "skyra-tiny-random"


def chat_template() -> str:
    """The Qwen2-VL chat template, as shipped with Qwen2.5-VL-7B-Instruct."""
    return (files("skyra_stream") / "data" / "qwen2_vl_chat_template.jinja").read_text()


def _corpus() -> list[str]:
    example = (
        "<think>The video shows a person walking. <type>Unnatural Human Movement</type> in "
        "<t>[1.25, 2.50]</t> at <bbox>[0.10, 0.20, 0.55, 0.90]</bbox> the legs merge. "
        "The sky is consistent <t>[0.00, 4.00]</t> at <bbox>[0, 0, 0, 0]</bbox>.</think>\n"
        "<answer>Fake</answer> <answer>Real</answer>"
    )
    digits = " ".join(f"[T={i / 7:.2f}s] {i} {i * 13 % 100}.{i % 10}" for i in range(200))
    return [system_prompt(), HEADER, INSTRUCTION, example, digits, " ".join(L3_TYPES)] * 3


def build_tiny_model(out: Path, *, seed: int = 0, vocab_size: int = 1024) -> Path:
    # torch and transformers (~0.5 GiB) only for building: `is_tiny_model` and the
    # chat template are used by tools that must stay light.
    import torch  # noqa: PLC0415
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import (  # noqa: PLC0415
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )

    """Write the tiny model into `out` (created); returns `out`. Takes a few seconds."""
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens(EXTRA_TOKENS)
    tok.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=32768,
        chat_template=chat_template(),
    )
    ids: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        token_id = tok.token_to_id(token)
        assert token_id is not None, token
        ids[token] = token_id
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    padded_vocab = ((len(tokenizer) + 63) // 64) * 64
    text = {
        "vocab_size": padded_vocab,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [8, 12, 12],
        },
        "bos_token_id": pad,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "out_hidden_size": 256,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.bos_token_id = pad
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor = Qwen2VLImageProcessor(
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(chat_template())
    (out / "skyra_tiny_model.json").write_text(
        json.dumps({"name": TINY_MODEL_NAME, "seed": seed, "random_weights": True}) + "\n"
    )
    return out


def is_tiny_model(path: Path) -> bool:
    """True for a model directory that this module wrote (so tools can warn about it)."""
    return (Path(path) / "skyra_tiny_model.json").exists()
