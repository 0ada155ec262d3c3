"""The response parser: exact on the contract, never raising on anything else."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyra_stream.model.response import parse_response
from skyra_stream.model.taxonomy import L3_TYPES

FAKE = (
    "<think>The video shows a dog running across a lawn. Checking the legs frame by frame. "
    "At the turn, the front leg <type>Abnormal Object Splitting</type> in <t>[1.5, 2.25]</t> "
    "at <bbox>[56, 28, 168, 140]</bbox> splits into two legs. The grass is consistent "
    "<t>[0.0, 3.0]</t> at <bbox>[0, 0, 0, 0]</bbox>. Later the text on the sign "
    "<type>Text Distortion</type> in <t>[2.5, 3.0]</t> at <bbox>[0.5, 0.1, 0.9, 0.3]</bbox> "
    "is garbled.</think>\n<answer>Fake</answer>"
)


def test_contract_example_parses_exactly() -> None:
    r = parse_response(FAKE, duration_s=3.0, frame_size=(448, 252))
    assert r.status == "ok"
    assert r.label == "fake"
    assert [a.type for a in r.artifacts] == ["Abnormal Object Splitting", "Text Distortion"]
    split, text = r.artifacts
    assert (split.group, split.category) == ("Violation of Laws", "Interaction Inconsistency")
    assert split.in_taxonomy
    assert (split.start_s, split.end_s) == (1.5, 2.25)
    assert split.bbox_format == "pixel"
    assert split.bbox == pytest.approx((56 / 448, 28 / 252, 168 / 448, 140 / 252), abs=1e-4)
    assert split.evidence.startswith("At the turn, the front leg")
    assert split.evidence.endswith("splits into two legs.")
    assert text.bbox_format == "normalized"
    assert text.bbox == (0.5, 0.1, 0.9, 0.3)
    assert (text.group, text.category) == ("Violation of Laws", "Violation of Commonsense")
    assert len(r.cleared_regions) == 1
    cleared = r.cleared_regions[0]
    assert (cleared.start_s, cleared.end_s, cleared.bbox, cleared.bbox_format) == (
        0.0,
        3.0,
        None,
        "none",
    )
    assert r.explanation is not None
    assert r.explanation.startswith("The video shows a dog")


def test_real_answer_with_cleared_regions() -> None:
    text = (
        "<think>A street scene. The faces stay the same <t>[0.0, 4.0]</t> at "
        "<bbox>[0.2, 0.2, 0.4, 0.6]</bbox>. Nothing unusual.</think><answer>Real</answer>"
    )
    r = parse_response(text, duration_s=4.0)
    assert (r.status, r.label, r.artifacts) == ("ok", "real", [])
    assert r.cleared_regions[0].bbox == (0.2, 0.2, 0.4, 0.6)


def test_first_answer_decides() -> None:
    r = parse_response("<think>x</think><answer>Real</answer><answer>Fake</answer>")
    assert r.label == "real"


@pytest.mark.parametrize("answer", ["Fake", "fake", " FAKE ", "**Fake**", "Fake.", "'Fake'"])
def test_answer_word_variants(answer: str) -> None:
    assert parse_response(f"<answer>{answer}</answer>").label == "fake"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no tags at all",
        "<think>cut off at max_tokens <type>Texture Jitt",
        "<think>x</think><answer>Fake",  # cut before </answer>
        "<think>x</think><answer>Maybe</answer>",
        "<answer></answer>",
        "<answer>Fake or Real</answer>",
    ],
)
def test_missing_or_unusable_answer_is_unparseable(text: str) -> None:
    r = parse_response(text)
    assert (r.status, r.label) == ("unparseable", None)


def test_truncated_think_keeps_complete_findings() -> None:
    text = (
        "<think>Blur <type>Unnatural Blur</type> in <t>[0.1, 0.2]</t> at "
        "<bbox>[0.1, 0.1, 0.2, 0.2]</bbox>. Then <type>Shape Dis"
    )
    r = parse_response(text, duration_s=1.0)
    assert r.status == "unparseable"
    assert r.artifacts[0].type == "Unnatural Blur"
    assert r.artifacts[0].bbox == (0.1, 0.1, 0.2, 0.2)


def test_unknown_type_is_kept_and_flagged() -> None:
    r = parse_response(
        "<think><type>Glitchy Vibes</type> in <t>[0, 1]</t> at <bbox>[0.1,0.1,0.5,0.5]</bbox>"
        "</think><answer>Fake</answer>"
    )
    assert r.artifacts[0].type == "Glitchy Vibes"
    assert not r.artifacts[0].in_taxonomy
    assert r.artifacts[0].category is None
    assert r.artifacts[0].group is None


def test_empty_type_is_not_an_artifact() -> None:
    r = parse_response("<type> </type> in <t>[0, 1]</t> at <bbox>[0.1,0.1,0.5,0.5]</bbox>")
    assert r.artifacts == []
    assert r.cleared_regions[0].bbox == (0.1, 0.1, 0.5, 0.5)


def test_type_names_match_case_and_hyphen_insensitively() -> None:
    r = parse_response("<type>abnormal rigid body crossing</type> in <t>[0, 1]</t>")
    assert r.artifacts[0].in_taxonomy
    assert r.artifacts[0].category == "Interaction Inconsistency"


def test_times_are_ordered_and_clamped_to_the_video() -> None:
    r = parse_response(
        "<type>Unnatural Blur</type> in <t>[95.55, 20.40]</t> at <bbox>[0,0,0,0]</bbox>. "
        "<type>Unnatural Blur</type> in <t>[-3, 2]</t> at <bbox>[0,0,0,0]</bbox>.",
        duration_s=10.0,
    )
    assert [(a.start_s, a.end_s) for a in r.artifacts] == [(10.0, 10.0), (0.0, 2.0)]


def test_unparseable_times_are_null() -> None:
    r = parse_response("<type>Unnatural Blur</type> in <t>[soon]</t> at <bbox>[1]</bbox>")
    a = r.artifacts[0]
    assert (a.start_s, a.end_s, a.bbox, a.bbox_format) == (None, None, None, "none")


def test_boxes_outside_the_frame_are_clipped_and_reordered() -> None:
    r = parse_response(
        "<type>Unnatural Blur</type> in <t>[0, 1]</t> at <bbox>[500, 300, -20, 100]</bbox>",
        frame_size=(400, 200),
    )
    assert r.artifacts[0].bbox == (0.0, 0.5, 1.0, 1.0)
    assert r.artifacts[0].bbox_format == "pixel"


def test_degenerate_box_is_dropped_but_the_finding_stays() -> None:
    r = parse_response(
        "<type>Unnatural Blur</type> in <t>[0, 1]</t> at <bbox>[0.5, 0.5, 0.5, 0.9]</bbox>. "
        "<type>Unnatural Blur</type> in <t>[0, 1]</t> at <bbox>[900, 900, 950, 990]</bbox>.",
        frame_size=(400, 200),
    )
    assert [(a.bbox, a.bbox_format) for a in r.artifacts] == [
        (None, "normalized"),
        (None, "pixel"),
    ]


def test_pixel_box_without_frame_size_has_no_box() -> None:
    r = parse_response("<type>Unnatural Blur</type> in <t>[0, 1]</t> at <bbox>[5,5,50,50]</bbox>")
    assert (r.artifacts[0].bbox, r.artifacts[0].bbox_format) == (None, "pixel")


def test_text_after_answer_is_ignored() -> None:
    r = parse_response(
        "<think>ok</think><answer>Real</answer> <type>Unnatural Blur</type> in <t>[0, 1]</t>"
    )
    assert r.label == "real"
    assert r.artifacts == []


def test_no_think_block_reads_findings_before_the_answer() -> None:
    r = parse_response(
        "<type>Unnatural Blur</type> in <t>[0, 1]</t> at <bbox>[0.1,0.1,0.3,0.3]</bbox>"
        "<answer>Fake</answer>"
    )
    assert r.artifacts[0].bbox == (0.1, 0.1, 0.3, 0.3)


# -- properties ----------------------------------------------------------------------------

_TAGS = [
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
    " in ",
    " at ",
    "[",
    "]",
    ", ",
    "Fake",
    "Real",
    ".",
]
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
).map(str)
_pieces = st.one_of(
    st.sampled_from(_TAGS),
    st.sampled_from(L3_TYPES),
    _numbers,
    st.text(alphabet=string.printable, max_size=20),
    st.text(max_size=10),
)
_model_like = st.lists(_pieces, max_size=60).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(), _model_like),
    duration=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    frame=st.one_of(st.none(), st.tuples(st.integers(-5, 5000), st.integers(-5, 5000))),
)
def test_never_raises_and_keeps_its_invariants(
    text: str, duration: float | None, frame: tuple[int, int] | None
) -> None:
    r = parse_response(text, duration_s=duration, frame_size=frame)
    assert r.status in ("ok", "unparseable")
    assert (r.status == "ok") == (r.label is not None)
    for region in [*r.artifacts, *r.cleared_regions]:
        if region.start_s is not None:
            assert region.end_s is not None
            assert 0.0 <= region.start_s <= region.end_s
        if region.bbox is not None:
            x1, y1, x2, y2 = region.bbox
            assert 0.0 <= x1 < x2 <= 1.0
            assert 0.0 <= y1 < y2 <= 1.0
        assert len(region.evidence) <= 2 * 600 + 400


@settings(max_examples=200, deadline=None)
@given(
    findings=st.lists(
        st.tuples(
            st.sampled_from(L3_TYPES),
            st.floats(0, 100, allow_nan=False),
            st.floats(0, 100, allow_nan=False),
        ),
        min_size=1,
        max_size=8,
    ),
    label=st.sampled_from(["Fake", "Real"]),
)
def test_well_formed_outputs_round_trip(
    findings: list[tuple[str, float, float]], label: str
) -> None:
    body = " ".join(
        f"Step {i}. <type>{t}</type> in <t>[{s:.2f}, {e:.2f}]</t> at <bbox>[0.1, 0.2, 0.3, 0.4]</bbox>."
        for i, (t, s, e) in enumerate(findings)
    )
    r = parse_response(f"<think>{body}</think><answer>{label}</answer>", duration_s=100.0)
    assert r.label == label.lower()
    assert [a.type for a in r.artifacts] == [t for t, _, _ in findings]
    assert all(a.in_taxonomy for a in r.artifacts)
    for a, (_, s, e) in zip(r.artifacts, findings, strict=True):
        assert (a.start_s, a.end_s) == pytest.approx((min(s, e), max(s, e)), abs=0.006)
        assert a.bbox == (0.1, 0.2, 0.3, 0.4)


def test_pathological_input_is_linear() -> None:
    # Thousands of unclosed tags must not trigger regex backtracking.
    text = "<type>" * 20_000 + "<t>[" * 20_000 + "<bbox>" * 20_000
    r = parse_response(text)
    assert r.status == "unparseable"
