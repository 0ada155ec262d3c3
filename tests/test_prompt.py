"""The prompt, byte for byte as docs/model-contract.md and the trained system prompt say."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from pathlib import Path

import jinja2
import pytest

from benchmarks.prompt_tokens import count as count_prompt_tokens
from skyra_stream.model.prompt import (
    INSTRUCTION,
    messages,
    model_frame_size,
    render_prompt,
    resized_size,
    system_prompt,
    user_content,
)
from skyra_stream.model.taxonomy import L3_TYPES, TAXONOMY, classify

SHARED_PROMPT = Path(__file__).resolve().parents[2] / "shared" / "skyra" / "system_prompt.txt"
PINNED_DIGEST = "b830157f7779808ea9f450c8298d2e8d2ca5facbc164a05c1ec3ed79f203fcd7"


def test_system_prompt_is_the_trained_one_byte_for_byte() -> None:
    text = system_prompt()
    assert text.startswith("\nYou are an expert AI video analyst.")
    assert text.endswith("\n")
    assert len(text.encode()) == 2478
    if SHARED_PROMPT.exists():  # the contract's copy, where this checkout has it
        assert text.encode() == SHARED_PROMPT.read_bytes()


def test_system_prompt_digest_is_pinned() -> None:
    digest = hashlib.sha256(system_prompt().encode()).hexdigest()
    assert digest == PINNED_DIGEST


def test_taxonomy_is_exactly_the_prompts_l3_list() -> None:
    in_prompt = re.findall(r"<type>([^<]+)</type>", system_prompt())
    assert "L3 Category Name" in in_prompt  # the tag-structure example, not a class
    assert sorted(t for t in in_prompt if t != "L3 Category Name") == sorted(L3_TYPES)
    assert len(L3_TYPES) == 23
    headings = re.findall(r"\*\*\d\.\d ([^*]+)\*\*", system_prompt())
    assert headings == [l2 for groups in TAXONOMY.values() for l2 in groups]


def test_classify_returns_l2_and_l1() -> None:
    cls = classify("Camera Motion Inconsistency")
    assert cls is not None
    assert (cls.category, cls.group) == ("Move Forgery", "Low-Level Forgery")
    assert classify("Not A Class") is None


def test_user_message_is_the_reference_text_split_on_image_markers() -> None:
    stamps = [0.0, 0.5333, 10.0]
    # The reference builds the text as lines joined by "\n" and then splits on <image>.
    lines = ["Here are the video frames and their corresponding timestamps:"]
    lines += [f"[T={t:.2f}s] <image>" for t in stamps]
    lines.append(INSTRUCTION)
    reference = "\n".join(lines).split("<image>")
    items = user_content(stamps)
    assert [i["text"] for i in items if i["type"] == "text"] == reference
    assert [i["type"] for i in items] == ["text", "image"] * 3 + ["text"]
    assert INSTRUCTION.startswith("\nPlease analyze")


def test_rendered_prompt_equals_the_qwen2_vl_chat_template() -> None:
    template = (files("skyra_stream") / "data" / "qwen2_vl_chat_template.jinja").read_text()
    stamps = [i * 0.6667 for i in range(16)]
    env = jinja2.Environment(keep_trailing_newline=True)
    expected = env.from_string(template).render(
        messages=messages(stamps), add_generation_prompt=True
    )
    assert render_prompt(stamps) == expected
    assert render_prompt(stamps).count("<|image_pad|>") == 16
    assert "[T=10.00s] <|vision_start|>" in render_prompt(stamps)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (455, 256)),
        ((1080, 1920), (256, 455)),
        ((256, 256), (256, 256)),
        ((100, 50), (512, 256)),
    ],
)
def test_short_side_resize(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(*size) == expected


@pytest.mark.heavy  # imports transformers (~10 s)
@pytest.mark.parametrize("size", [(455, 256), (256, 455), (256, 256), (341, 256), (2000, 256)])
def test_model_frame_size_matches_transformers_smart_resize(size: tuple[int, int]) -> None:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    w, h = size
    h_ref, w_ref = smart_resize(h, w, factor=28, min_pixels=224 * 224, max_pixels=1280 * 28 * 28)
    assert model_frame_size(w, h) == (w_ref, h_ref)


def test_prompt_tokens_besides_the_frames_are_what_the_sizing_quotes() -> None:
    """docs/deploy.md ("Sizing") builds the per-GPU budget on this count (Qwen's vocabulary):
    a change to the prompt must show up there too."""
    tokens = count_prompt_tokens(duration_s=10.0)
    assert (tokens.total, tokens.system) == (899, 665)


def test_every_reference_to_a_doc_resolves() -> None:
    """Docstrings and comments cite docs/<name>.md and, in quotes, a section of it: the file
    must exist and the section must be one of its headings."""
    import re

    root = Path(__file__).parents[1]
    cite = re.compile(r'(docs/[\w./-]+\.md)(?:,\s*"([^"]+)")?')
    sources = [
        p
        for folder in ("skyra_stream", "tests", "k8s", "benchmarks", "campaigns")
        for p in (root / folder).rglob("*.py")
    ]
    checked = 0
    for path in sources:
        text = re.sub(r"\s*\n\s*", " ", path.read_text(encoding="utf-8"))
        for doc, section in cite.findall(text):
            target = root / doc
            assert target.is_file(), f"{path}: {doc} does not exist"
            if section:
                headings = {
                    line.lstrip("#").strip()
                    for line in target.read_text(encoding="utf-8").splitlines()
                    if line.startswith("#")
                }
                assert any(h.startswith(section) for h in headings), (path, section)
            checked += 1
    assert checked >= 5
