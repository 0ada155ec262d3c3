"""Verdict -> Label Studio task -> annotation -> review event, as pure functions (no server).

The same conversions run against a real Label Studio in tests/test_review_console.py; here
every branch of the mapping, in milliseconds: frames and percent back to the verdict's clock
and 0..1 boxes, pairing of spans with boxes, and the annotations that cannot be reviews.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest

from skyra_stream.decisions import review_tasks as rt
from skyra_stream.decisions.review_events import audit_record
from skyra_stream.errors import SkyraError
from skyra_stream.evaluation.review_stats import render, review_stats
from skyra_stream.messages import Verdict
from skyra_stream.model.taxonomy import L3_TYPES
from tests.test_reviews import FAKE_ANSWER, verdict

TWO = (
    "<think>The wall <type>Texture Jittering</type> in <t>[0.10, 0.50]</t> at "
    "<bbox>[0.1, 0.2, 0.5, 0.6]</bbox> shimmers. A hand <type>Abnormal Human Body Structure"
    "</type> in <t>[0.60, 0.90]</t> has six fingers.</think>\n<answer>Fake</answer>"
)


def fake_verdict(raw: str = FAKE_ANSWER) -> Verdict:
    return verdict("fake", raw)


def task_of(v: Verdict) -> dict[str, Any]:
    made = rt.task_for(v, v.model_dump_json(), "ticket-1", "https://s3/x.mp4?sig")
    return {"id": 7, "project": 3, "data": made["data"], "predictions": made["predictions"]}


def annotation(result: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {
        "id": 11,
        "result": result,
        "completed_by": 2,
        "updated_at": "2026-12-01T10:00:00.123456Z",
        **kw,
    }


def review_of(task: dict[str, Any], result: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    return rt.review_from_annotation(task, annotation(result), "alice@x", project_id=3)


def test_the_labelling_config_has_a_lane_and_a_box_label_per_l3_type() -> None:
    root = ET.fromstring(rt.labelling_config())
    lanes = [e.get("value") for e in root.find("TimelineLabels") or []]
    box_labels = [e.get("value") for e in root.find("Labels") or []]
    assert lanes == list(L3_TYPES)
    assert box_labels == list(L3_TYPES)
    assert [c.get("value") for c in root.iter("Choice")] == ["Fake", "Real"]
    assert root.find("Video").get("value") == "$video"  # type: ignore[union-attr]


def test_the_prediction_carries_each_artifact_as_span_and_box_scored_with_p_fake() -> None:
    v = fake_verdict()
    task = rt.task_for(v, v.model_dump_json(), "t", "https://s3/x.mp4")
    [prediction] = task["predictions"]
    assert prediction == {**prediction, "model_version": "skyra-rl@r1", "score": 0.6}
    by_id = {r["id"]: r for r in prediction["result"]}
    # 0.10 s .. 0.50 s at 30 fps is frames 4 .. 16 (Label Studio counts from 1)
    assert by_id["a0-span"]["value"] == {
        "ranges": [{"start": 4, "end": 16}],
        "timelinelabels": ["Texture Jittering"],
    }
    first, last = by_id["a0-box"]["value"]["sequence"]
    assert (first["x"], first["y"], first["width"], first["height"]) == pytest.approx(
        (10, 20, 40, 40)
    )
    assert (first["frame"], first["enabled"], last["frame"], last["enabled"]) == (
        4,
        True,
        16,
        False,
    )
    assert by_id["verdict"]["value"] == {"choices": ["Fake"]}
    assert task["data"]["ticket"] == "t"
    assert Verdict.model_validate_json(task["data"]["verdict"]) == v


def test_an_untouched_prediction_is_a_plain_confirm() -> None:
    task = task_of(fake_verdict())
    review = review_of(task, task["predictions"][0]["result"])
    assert (review.outcome, review.label, review.artifacts) == ("confirm", "fake", [])
    assert review.reviewer == "alice@x"
    assert review.ticket == "ticket-1"
    assert review.review_id == "label-studio:3:7:11:20261201T100000123456Z"


def test_a_moved_box_and_a_shortened_span_come_back_on_the_verdicts_clock() -> None:
    task = task_of(fake_verdict())
    result = copy.deepcopy(task["predictions"][0]["result"])
    by_id = {r["id"]: r for r in result}
    by_id["a0-span"]["value"]["ranges"] = [{"start": 7, "end": 13}]  # 0.20 s .. 0.40 s
    for key in by_id["a0-box"]["value"]["sequence"]:
        key["x"] += 20  # moved right by a fifth of the frame
    review = review_of(task, result)
    assert review.outcome == "confirm"
    [artifact] = review.artifacts
    assert artifact.type == "Texture Jittering"
    assert (artifact.start_s, artifact.end_s) == (0.2, 0.4)
    assert artifact.bbox == pytest.approx((0.3, 0.2, 0.7, 0.6))


def test_an_overturn_to_real_drops_the_regions_still_on_the_page() -> None:
    task = task_of(fake_verdict())
    result = [r for r in task["predictions"][0]["result"] if r["from_name"] != rt.CHOICE] + [
        {"from_name": rt.CHOICE, "type": "choices", "value": {"choices": ["Real"]}}
    ]
    review = review_of(task, result)
    assert (review.outcome, review.label, review.artifacts) == ("overturn", "real", [])


def test_an_overturn_of_real_to_fake_pairs_new_boxes_with_spans_by_type_and_time() -> None:
    task = task_of(verdict("real"))
    result = [
        {"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}},
        {
            "id": "new1",
            "from_name": rt.SPANS,
            "value": {"ranges": [{"start": 1, "end": 10}], "timelinelabels": ["Text Distortion"]},
        },
        {
            "id": "new2",
            "from_name": rt.BOXES,
            "value": {
                "labels": ["Text Distortion"],
                "sequence": [
                    {"frame": 3, "x": 0, "y": 0, "width": 50, "height": 50, "enabled": True},
                    {"frame": 5, "x": 10, "y": 10, "width": 50, "height": 50, "enabled": True},
                ],
            },
        },
        {  # a box alone: its own artifact, over the frames it is on screen
            "id": "new3",
            "from_name": rt.BOXES,
            "value": {
                "labels": ["Shape Distortion"],
                "sequence": [{"frame": 16, "x": 50, "y": 50, "width": 25, "height": 25}],
            },
        },
    ]
    review = review_of(task, result)
    assert (review.outcome, review.label) == ("overturn", "fake")
    first, second = review.artifacts
    assert (first.type, first.start_s, first.end_s) == ("Text Distortion", 0.0, 0.3)
    assert first.bbox == pytest.approx((0.0, 0.0, 0.6, 0.6))  # union of its keyframes
    assert (second.type, second.start_s, second.end_s) == ("Shape Distortion", 0.5, 0.5)
    assert second.bbox == pytest.approx((0.5, 0.5, 0.75, 0.75))


def test_two_artifacts_keep_their_own_boxes() -> None:
    task = task_of(fake_verdict(TWO))
    result = copy.deepcopy(task["predictions"][0]["result"])
    for r in result:
        if r["id"] == "a1-span":
            r["value"]["ranges"] = [{"start": 19, "end": 25}]
    review = review_of(task, result)
    assert [(a.type, a.bbox is not None) for a in review.artifacts] == [
        ("Texture Jittering", True),
        ("Abnormal Human Body Structure", False),
    ]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([], "choose exactly one of Fake/Real"),
        ([{"from_name": rt.CHOICE, "value": {"choices": ["Fake", "Real"]}}], "exactly one"),
        ([{"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}}], "Fake needs at least one"),
        (
            [
                {"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}},
                {
                    "id": "x",
                    "from_name": rt.SPANS,
                    "value": {"ranges": [{"start": 1, "end": 2}], "timelinelabels": ["Wobbly"]},
                },
            ],
            "not an L3 type",
        ),
        (
            [
                {"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}},
                {
                    "id": "x",
                    "from_name": rt.SPANS,
                    "value": {
                        "ranges": [{"start": 1, "end": 900}],
                        "timelinelabels": ["Text Distortion"],
                    },
                },
            ],
            "past the video's end",
        ),
        (
            [
                {"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}},
                {
                    "id": "x",
                    "from_name": rt.SPANS,
                    "value": {
                        "ranges": [{"start": "a", "end": 2}],
                        "timelinelabels": ["Text Distortion"],
                    },
                },
            ],
            "frame number must be a number",
        ),
        (
            [
                {"from_name": rt.CHOICE, "value": {"choices": ["Fake"]}},
                {
                    "id": "b",
                    "from_name": rt.BOXES,
                    "value": {"labels": ["Text Distortion"], "sequence": [{"frame": 2, "x": "?"}]},
                },
            ],
            "lacks x, y, width or height",
        ),
    ],
)
def test_an_annotation_that_cannot_be_a_review_says_why(
    result: list[dict[str, Any]], message: str
) -> None:
    task = task_of(verdict("real"))
    with pytest.raises(SkyraError, match=message) as caught:
        review_of(task, result)
    assert caught.value.code.value == "invalid_review"


def test_a_task_without_a_verdict_or_with_a_broken_one_is_refused() -> None:
    with pytest.raises(SkyraError, match="carries no verdict"):
        rt.review_from_annotation({"id": 1, "data": {}}, annotation([]), "a", 1)
    data = task_of(verdict("real"))["data"]
    broken = {"id": 1, "data": {**data, "verdict": json.dumps({"event_id": 1})}}
    with pytest.raises(SkyraError, match="does not parse"):
        rt.review_from_annotation(broken, annotation([]), "a", 1)


def test_a_video_that_cannot_be_served_is_said_on_the_page() -> None:
    v = verdict("real")
    assert "video unavailable" in rt.task_for(v, v.model_dump_json(), "t", "")["data"]["summary"]
    assert "video unavailable" not in task_of(v)["data"]["summary"]


def test_review_stats_per_reviewer_and_model_version() -> None:
    v = fake_verdict()
    made = v.created_at
    task = task_of(v)
    confirm = rt.review_from_annotation(
        task,
        annotation(
            task["predictions"][0]["result"], updated_at=(made + timedelta(minutes=4)).isoformat()
        ),
        "alice",
        3,
    )
    overturn_result = [{"from_name": rt.CHOICE, "value": {"choices": ["Real"]}}]
    overturns = [
        rt.review_from_annotation(
            task,
            annotation(
                overturn_result, id=20 + n, updated_at=(made + timedelta(minutes=m)).isoformat()
            ),
            "bob",
            3,
        )
        for n, m in enumerate((10, 30))
    ]
    records = [audit_record(r) for r in [confirm, *overturns, overturns[0]]]  # one redelivered
    rows = {(r.group, r.key): r for r in review_stats(records)}
    alice, bob, model = (
        rows["reviewer", "alice"],
        rows["reviewer", "bob"],
        rows["model", "skyra-rl@r1"],
    )
    assert (alice.reviews, alice.overturn_rate, alice.agreement) == (1, 0.0, 1.0)
    assert (bob.reviews, bob.overturn_rate, bob.agreement) == (2, 1.0, 0.0)
    assert bob.median_s_to_review == pytest.approx(20 * 60)
    assert (model.reviews, model.overturned) == (3, 2)
    assert "skyra-rl@r1" in render(list(rows.values()))
